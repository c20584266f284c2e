// Bearer tokens on an API route: what is accepted, and every refusal with its RFC 6750 answer.
import http from 'node:http';
import { startEchoUpstream, type EchoUpstream } from '../support/echo-upstream.js';
import { algNone, decode, hs256WithPublicKey, signWithForeignKey, signWithIdpKey } from '../support/forge.js';
import { accessLogFor, startGateway, type RunningGateway } from '../support/gateway.js';
import { rawExchange, request, statusOf, type Reply } from '../support/http-client.js';
import { startTestIdp, type TestIdp } from '../support/test-idp.js';

let idp: TestIdp;
let echo: EchoUpstream;
let gw: RunningGateway;

const config = (issuer: string, upstream: string, extra = '') => `
server:
  listen: 127.0.0.1:0
  admin: { listen: 127.0.0.1:0 }
  limits: { maxHeaderSize: 256KB }
identity:
  issuer: ${issuer}
  audience: [pacs]
  clockTolerance: 1s
  jwks: { cooldown: 30s }
  ${extra}
routes:
  - name: dicomweb
    path: /pacs
    upstream: ${upstream}
    expose: dicomweb
    dicomweb: { delete: true }
    auth: [bearer]
    allow: [view, download, upload, delete]
    forward: { identity: true }
    cors: { origins: ['http://viewer.example'] }
  - name: wado
    path: /wado
    upstream: ${upstream}
    expose: dicomweb
    auth: [bearer]
    queryToken: true
    allow: [view]
  - name: rest
    path: /rest
    upstream: ${upstream}
    expose: upstream
    auth: [bearer]
    queryToken: true
    allow: [admin]
`;

beforeAll(async () => {
  idp = await startTestIdp({ issuerPath: '/auth/realms/ohif' });
  echo = await startEchoUpstream();
  gw = await startGateway(config(idp.issuer, echo.url));
  await waitReady(gw);
});
afterAll(async () => {
  await gw?.stop();
  await echo?.stop();
  await idp?.stop();
});

async function waitReady(g: RunningGateway, want = 200): Promise<void> {
  const until = Date.now() + 10_000;
  while ((await request(g.adminUrl!, '/readyz')).status !== want) {
    if (Date.now() > until) throw new Error('gateway never became ready');
    await new Promise((r) => setTimeout(r, 50));
  }
}

const viewerToken = (o: Parameters<TestIdp['issueAccessToken']>[0] = {}) => idp.issueAccessToken({ username: 'alice', realmRoles: ['viewer'], ...o });
const get = (path: string, token?: string, headers: Record<string, string> = {}) =>
  request(gw.url, path, { headers: { accept: 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers } });

function expectChallenge(r: Reply, status: number, error?: string): void {
  expect(r.status).toBe(status);
  const h = String(r.headers['www-authenticate'] ?? '');
  expect(h).toMatch(/^Bearer realm="pacs"/);
  if (error) expect(h).toContain(`error="${error}"`);
  else expect(h).not.toContain('error=');
  expect(r.text).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}/); // never echo a token
}

describe('accepted tokens', () => {
  test('a valid RS256 access token reaches the upstream; the token itself does not', async () => {
    const r = await get('/pacs/dicom-web/studies', await viewerToken());
    expect(r.status).toBe(200);
    const seen = JSON.parse(r.text) as { headers: Record<string, string> };
    expect(seen.headers.authorization).toBeUndefined();
    expect(seen.headers['x-forwarded-user']).toBe('alice');
    expect(seen.headers['x-forwarded-roles']).toBe('viewer');
  });

  test.each(['ES256', 'PS256'] as const)('%s tokens are accepted', async (alg) => {
    expect((await get('/pacs/dicom-web/studies', await viewerToken({ alg }))).status).toBe(200);
  });

  test('the scheme is case-insensitive', async () => {
    const token = await viewerToken();
    for (const scheme of ['bearer', 'BEARER', 'BeArEr']) {
      expect((await request(gw.url, '/pacs/dicom-web/studies', { headers: { authorization: `${scheme} ${token}` } })).status).toBe(200);
    }
  });

  test('a Keycloak-profile token (typ JWT, client in azp, aud "account") is accepted', async () => {
    const token = await idp.issueAccessToken({ style: 'keycloak', clientId: 'pacs', audience: 'account', realmRoles: ['viewer'] });
    expect(decode(token).header.typ).toBe('JWT');
    expect((await get('/pacs/dicom-web/studies', token)).status).toBe(200);
  });

  test('roles come from resource_access.<audience>.roles too', async () => {
    const token = await idp.issueAccessToken({ clientRoles: { pacs: ['uploader'] } });
    expect((await request(gw.url, '/pacs/dicom-web/studies', { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: 'x' })).status).toBe(200);
    const other = await idp.issueAccessToken({ clientRoles: { 'some-other-client': ['uploader'] } });
    expect((await request(gw.url, '/pacs/dicom-web/studies', { method: 'POST', headers: { authorization: `Bearer ${other}` }, body: 'x' })).status).toBe(403);
  });

  test('client-sent identity headers are replaced, never trusted', async () => {
    const r = await get('/pacs/dicom-web/studies', await viewerToken(), { 'x-forwarded-user': 'root', 'x-forwarded-roles': 'admin' });
    const seen = JSON.parse(r.text) as { headers: Record<string, string> };
    expect(seen.headers['x-forwarded-user']).toBe('alice');
    expect(seen.headers['x-forwarded-roles']).toBe('viewer');
  });

  test('a verified token is cached: the second use is a cache hit', async () => {
    const token = await viewerToken();
    const hits = async () => Number(/pacs_gateway_token_cache_total\{result="hit"\} (\d+)/.exec((await request(gw.adminUrl!, '/metrics')).text)?.[1] ?? 0);
    await get('/pacs/dicom-web/studies', token);
    const before = await hits();
    await get('/pacs/dicom-web/studies', token);
    await get('/pacs/dicom-web/studies', token);
    expect(await hits()).toBe(before + 2);
  });

  test('a cached token stops working when it expires', async () => {
    const token = await viewerToken({ ttl: 1 });
    expect((await get('/pacs/dicom-web/studies', token)).status).toBe(200);
    await new Promise((r) => setTimeout(r, 2300)); // ttl 1 s + clock tolerance 1 s
    expectChallenge(await get('/pacs/dicom-web/studies', token), 401, 'invalid_token');
  });
});

/** One client connection, kept alive between calls: reply status and whether the socket was reused. */
function keepAliveClient(base: string) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const u = new URL(base);
  const call = (path: string, authorization?: string, method = 'GET') => new Promise<{ status: number; challenge: string; reused: boolean }>((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, path, method, agent, headers: authorization ? { authorization } : {} }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, challenge: String(res.headers['www-authenticate'] ?? ''), reused: req.reusedSocket }));
    });
    req.on('error', reject);
    req.end();
  });
  return { call, close: () => agent.destroy() };
}

describe('the verified-token cache keeps every check', () => {
  // A token is verified once, then answered from the cache (and, on the same connection, from the
  // connection's last token). None of that may skip a check that does not depend on the signature.
  test('a cached token sent twice, or in the header and the query, is still refused with 400', async () => {
    const token = await viewerToken();
    expect((await get('/wado/wado?requestType=WADO&studyUID=1.2&seriesUID=1.2.3&objectUID=1.2.3.4', token)).status).toBe(200); // now cached
    const raw = await rawExchange(gw.url, `GET /pacs/dicom-web/studies HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nAuthorization: Bearer ${token}\r\nConnection: close\r\n\r\n`);
    expect(statusOf(raw)).toBe(400);
    expect(raw).toContain('error="invalid_request"');
    expectChallenge(await get(`/wado/wado?requestType=WADO&studyUID=1.2&seriesUID=1.2.3&objectUID=1.2.3.4&access_token=${token}`, token), 400, 'invalid_request');
  });

  test('a cached token still needs the permission for the operation', async () => {
    const token = await viewerToken();
    expect((await get('/pacs/dicom-web/studies', token)).status).toBe(200);
    expectChallenge(await request(gw.url, '/pacs/dicom-web/studies', { method: 'POST', body: 'x', headers: { authorization: `Bearer ${token}` } }), 403, 'insufficient_scope');
  });

  test('strings that merely contain or extend a cached token are judged in full', async () => {
    const token = await viewerToken();
    expect((await get('/pacs/dicom-web/studies', token)).status).toBe(200);
    for (const value of [`Bearer ${token}==`, `Bearer ${token}x`, `Bearer ${token} x`, `Bearer ${token},x`, `Bearer ${token.slice(0, -1)}`, `Bearer x${token}`]) {
      const r = await request(gw.url, '/pacs/dicom-web/studies', { headers: { authorization: value } });
      expect({ value: value.slice(-12), status: r.status }).toEqual({ value: value.slice(-12), status: r.status === 400 ? 400 : 401 });
      expect(r.headers['www-authenticate']).toMatch(/error="(invalid_token|invalid_request)"/);
    }
    // Other spellings of the same credential that the grammar allows are still accepted.
    for (const value of [`bearer ${token}`, `BEARER  ${token}`]) expect((await request(gw.url, '/pacs/dicom-web/studies', { headers: { authorization: value } })).status).toBe(200);
  });

  test('on one keep-alive connection, each request is judged by its own token', async () => {
    const client = keepAliveClient(gw.url);
    try {
      const alice = await viewerToken();
      const forged = await signWithForeignKey(alice);
      const uploader = await idp.issueAccessToken({ username: 'bob', realmRoles: ['auditor'] }); // a role that grants nothing
      expect((await client.call('/pacs/dicom-web/studies', `Bearer ${alice}`)).status).toBe(200);
      expect(await client.call('/pacs/dicom-web/studies', `Bearer ${alice}`)).toEqual({ status: 200, challenge: '', reused: true });
      const afterForged = await client.call('/pacs/dicom-web/studies', `Bearer ${forged}`);
      expect(afterForged).toMatchObject({ status: 401, reused: true });
      expect(afterForged.challenge).toContain('error="invalid_token"');
      expect(await client.call('/pacs/dicom-web/studies', `Bearer ${alice}`)).toMatchObject({ status: 200, reused: true });
      expect(await client.call('/pacs/dicom-web/studies', `Bearer ${uploader}`)).toMatchObject({ status: 403, reused: true }); // bob may not search
      expect(await client.call('/pacs/dicom-web/studies')).toMatchObject({ status: 401, reused: true });
      expect(await client.call('/pacs/dicom-web/studies', `Bearer ${alice}`)).toMatchObject({ status: 200, reused: true });
    } finally { client.close(); }
  });

  test('a token remembered on a connection stops working there when it expires', async () => {
    const client = keepAliveClient(gw.url);
    try {
      const token = await viewerToken({ ttl: 1 });
      expect((await client.call('/pacs/dicom-web/studies', `Bearer ${token}`)).status).toBe(200);
      expect(await client.call('/pacs/dicom-web/studies', `Bearer ${token}`)).toMatchObject({ status: 200, reused: true });
      expect(await client.call('/pacs/dicom-web/studies', `Bearer ${token}`)).toMatchObject({ status: 200, reused: true });
      await new Promise((r) => setTimeout(r, 2300)); // ttl 1 s + clock tolerance 1 s
      const late = await client.call('/pacs/dicom-web/studies', `Bearer ${token}`);
      expect(late).toMatchObject({ status: 401, reused: true });
      expect(late.challenge).toContain('error="invalid_token"');
    } finally { client.close(); }
  });
});

describe('refused tokens', () => {
  test('no token: 401 with a bare challenge', async () => {
    expectChallenge(await get('/pacs/dicom-web/studies'), 401);
  });

  test('another scheme (Basic) is not a bearer token: 401 with a bare challenge', async () => {
    expectChallenge(await request(gw.url, '/pacs/dicom-web/studies', { headers: { authorization: 'Basic dXNlcjpwYXNz' } }), 401);
  });

  test('alg "none"', async () => {
    expectChallenge(await get('/pacs/dicom-web/studies', algNone(await viewerToken())), 401, 'invalid_token');
  });

  test('HS256 signed with the public key', async () => {
    for (const forged of hs256WithPublicKey(idp, await viewerToken())) expectChallenge(await get('/pacs/dicom-web/studies', forged), 401, 'invalid_token');
  });

  test('signed by a key the IdP never published, under a real kid', async () => {
    const r = await get('/pacs/dicom-web/studies', await signWithForeignKey(await viewerToken()));
    expectChallenge(r, 401, 'invalid_token');
    expect(r.headers['www-authenticate']).toContain('signature verification failed');
  });

  test('expired', async () => {
    const r = await get('/pacs/dicom-web/studies', await viewerToken({ timeShift: -3600 }));
    expectChallenge(r, 401, 'invalid_token');
    expect(r.headers['www-authenticate']).toContain('error_description="token expired"');
  });

  test('nbf in the future', async () => {
    const real = decode(await viewerToken()).payload;
    const r = await get('/pacs/dicom-web/studies', await signWithIdpKey(idp, { ...real, nbf: Math.floor(Date.now() / 1000) + 3600 }));
    expectChallenge(r, 401, 'invalid_token');
    expect(r.headers['www-authenticate']).toContain('not yet valid');
  });

  test('wrong issuer, signed with the real key', async () => {
    const real = decode(await viewerToken()).payload;
    const r = await get('/pacs/dicom-web/studies', await signWithIdpKey(idp, { ...real, iss: 'http://127.0.0.1:1/auth/realms/evil' }));
    expectChallenge(r, 401, 'invalid_token');
    expect(r.headers['www-authenticate']).toContain('wrong issuer');
  });

  test('wrong audience and azp', async () => {
    const r = await get('/pacs/dicom-web/studies', await idp.issueAccessToken({ audience: 'other-api', clientId: 'other-client', realmRoles: ['viewer'] }));
    expectChallenge(r, 401, 'invalid_token');
    expect(r.headers['www-authenticate']).toContain('audience');
  });

  test('an ID token presented as an access token', async () => {
    const idToken = await idp.issueIdToken({ clientId: 'pacs', realmRoles: ['viewer'] });
    expect(decode(idToken).payload.aud).toBe('pacs'); // its audience would pass: only the type check stops it
    const r = await get('/pacs/dicom-web/studies', idToken);
    expectChallenge(r, 401, 'invalid_token');
    expect(r.headers['www-authenticate']).toContain('not an access token');
  });

  test('a Keycloak refresh token (typ Refresh) signed with the real key', async () => {
    const real = decode(await viewerToken()).payload;
    expectChallenge(await get('/pacs/dicom-web/studies', await signWithIdpKey(idp, { ...real, typ: 'Refresh' }, { typ: 'JWT' })), 401, 'invalid_token');
  });

  test('an opaque refresh token', async () => {
    expectChallenge(await get('/pacs/dicom-web/studies', await idp.issueRefreshToken({})), 401, 'invalid_token');
  });

  test('a token missing the type marker of any accepted profile', async () => {
    const real = decode(await viewerToken()).payload;
    const r = await get('/pacs/dicom-web/studies', await signWithIdpKey(idp, { ...real, typ: undefined }, { typ: 'JWT' }));
    expectChallenge(r, 401, 'invalid_token');
  });

  test('truncated and padded tokens', async () => {
    const token = await viewerToken();
    for (const bad of [token.slice(0, -10), token.slice(0, token.lastIndexOf('.')), `${token}AAAA`, `${token}==`, `${token}.extra`, `x${token}`]) {
      const r = await get('/pacs/dicom-web/studies', bad);
      expect({ tail: bad.slice(-8), refused: r.status === 400 || r.status === 401 }).toEqual({ tail: bad.slice(-8), refused: true });
      expect(r.headers['www-authenticate']).toMatch(/error="(invalid_token|invalid_request)"/);
    }
  });

  test('a 100 KB token is refused before any parsing', async () => {
    const r = await get('/pacs/dicom-web/studies', 'a'.repeat(100 * 1024));
    expectChallenge(r, 401, 'invalid_token');
    expect(r.headers['www-authenticate']).toContain('token too large');
  });

  test('two Authorization headers: 400 invalid_request', async () => {
    const token = await viewerToken();
    const raw = await rawExchange(gw.url, `GET /pacs/dicom-web/studies HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nAuthorization: Bearer ${token}\r\nConnection: close\r\n\r\n`);
    expect(statusOf(raw)).toBe(400);
    expect(raw).toContain('error="invalid_request"');
  });

  test.each(['Bearer', 'Bearer ', 'Bearer a b', 'Bearer a,b', 'Bearer "quoted"'])('malformed header %j: 400 invalid_request', async (value) => {
    const r = await request(gw.url, '/pacs/dicom-web/studies', { headers: { authorization: value } });
    expectChallenge(r, 400, 'invalid_request');
  });
});

describe('permissions per operation', () => {
  const call = async (method: string, path: string, roles: string[]) => request(gw.url, path, {
    method, headers: { authorization: `Bearer ${await idp.issueAccessToken({ realmRoles: roles })}` }, ...(method === 'POST' ? { body: 'x' } : {}),
  });
  const STUDIES = '/pacs/dicom-web/studies';
  const STUDY = '/pacs/dicom-web/studies/1.2.840.99.1';

  test.each([
    ['GET', STUDIES, ['viewer'], 200], ['HEAD', STUDIES, ['viewer'], 200], ['POST', STUDIES, ['uploader'], 200],
    ['DELETE', STUDY, ['admin'], 200], ['GET', STUDY, ['admin'], 200], ['GET', `${STUDY}/metadata`, ['viewer'], 200],
    ['GET', STUDIES, ['uploader'], 200], ['POST', STUDIES, ['viewer'], 403], ['DELETE', STUDY, ['viewer', 'uploader'], 403],
    ['GET', STUDY, ['viewer', 'uploader'], 403], ['GET', STUDIES, [], 403], ['GET', STUDIES, ['nobody-knows-this-role'], 403],
  ] as const)('%s %s with %j → %i', async (method, path, roles, status) => {
    const r = await call(method, path, [...roles]);
    expect(r.status).toBe(status);
    if (status === 403) expect(String(r.headers['www-authenticate'])).toContain('error="insufficient_scope"');
  });

  test('a denial names the operation and the missing permission', async () => {
    const r = await call('GET', STUDY, ['viewer']);
    expect(r.status).toBe(403);
    expect(JSON.parse(r.text)).toMatchObject({ error: 'FORBIDDEN', message: expect.stringContaining('retrieve-study needs the download permission') });
  });

  test('a route grants at most its own permissions, whatever the roles', async () => {
    // The wado route allows only view: an admin's download (an original file over WADO-URI) is refused there.
    const r = await call('GET', '/wado/wado?requestType=WADO&studyUID=1.2&seriesUID=1.2.3&objectUID=1.2.3.4&contentType=application%2Fdicom', ['admin']);
    expect(r.status).toBe(403);
    expect(JSON.parse(r.text).message).toContain('the wado route does not allow wado-uri-original');
  });

  test.each(['PATCH', 'PUT'])('%s is no DICOMweb operation: 405 before any token is looked at', async (method) => {
    const r = await request(gw.url, STUDIES, { method, body: 'x' });
    expect(r.status).toBe(405);
    expect(r.headers.allow).toBe('GET, HEAD, POST');
  });
});

describe('query-string tokens', () => {
  test('accepted where the route enables them, removed before forwarding and from the logs', async () => {
    const token = await viewerToken();
    const r = await request(gw.url, `/wado/wado?requestType=WADO&access_token=${token}&studyUID=1.2&seriesUID=1.2.3&objectUID=1.2.3.4`);
    expect(r.status).toBe(200);
    expect((JSON.parse(r.text) as { url: string }).url).toBe('/wado?requestType=WADO&studyUID=1.2&seriesUID=1.2.3&objectUID=1.2.3.4');
    await accessLogFor(gw, r.headers['x-request-id'] as string);
    expect(gw.rawLogs()).not.toContain(token);
    expect(gw.rawLogs()).not.toContain(token.split('.')[2]);
  });

  test('ignored where the route does not enable them', async () => {
    expectChallenge(await get(`/pacs/dicom-web/studies?access_token=${await viewerToken()}`), 401);
  });

  test('a malformed or repeated query token is a 400 that says which', async () => {
    const base = '/wado/wado?requestType=WADO&studyUID=1.2&seriesUID=1.2.3&objectUID=1.2.3.4';
    // On a DICOMweb route the operation table already refuses the malformed query (400); a route
    // exposing a whole upstream reads no query, so there the bearer authenticator judges it.
    expect((await get(`${base}&access_token=%zz`)).status).toBe(400);
    const bad = await get('/rest/x?access_token=%zz');
    expectChallenge(bad, 400, 'invalid_request');
    expect(String(bad.headers['www-authenticate'])).toContain('malformed access_token parameter');
    const twice = await get(`${base}&access_token=a&access_token=b`);
    expectChallenge(twice, 400, 'invalid_request');
    expect(String(twice.headers['www-authenticate'])).toContain('more than one access_token parameter');
  });

  test('header and query together are refused', async () => {
    const token = await viewerToken();
    expectChallenge(await get(`/wado/wado?requestType=WADO&studyUID=1.2&seriesUID=1.2.3&objectUID=1.2.3.4&access_token=${token}`, token), 400, 'invalid_request');
  });
});

describe('CORS', () => {
  test('a preflight from an allowed origin is answered without a token', async () => {
    const r = await request(gw.url, '/pacs/dicom-web/studies', { method: 'OPTIONS', headers: {
      origin: 'http://viewer.example', 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization',
    } });
    expect(r.status).toBe(204);
    expect(r.headers['access-control-allow-origin']).toBe('http://viewer.example');
    expect(r.headers['access-control-allow-headers']).toMatch(/Authorization/);
  });

  test('a preflight from another origin is refused', async () => {
    const r = await request(gw.url, '/pacs/dicom-web/studies', { method: 'OPTIONS', headers: { origin: 'http://evil.example', 'access-control-request-method': 'GET' } });
    expect(r.status).toBe(403);
    expect(r.headers['access-control-allow-origin']).toBeUndefined();
  });

  test('a 401 to an allowed origin carries CORS headers so the client can read it', async () => {
    const r = await get('/pacs/dicom-web/studies', undefined, { origin: 'http://viewer.example' });
    expect(r.status).toBe(401);
    expect(r.headers['access-control-allow-origin']).toBe('http://viewer.example');
    expect(r.headers['access-control-expose-headers']).toContain('WWW-Authenticate');
  });
});

test('the algorithm allow-list refuses a validly signed token in an algorithm not listed', async () => {
  const strict = await startGateway(config(idp.issuer, echo.url, 'algorithms: [RS256]'));
  try {
    await waitReady(strict);
    const ok = await request(strict.url, '/pacs/dicom-web/studies', { headers: { authorization: `Bearer ${await viewerToken({ alg: 'RS256' })}` } });
    expect(ok.status).toBe(200);
    const r = await request(strict.url, '/pacs/dicom-web/studies', { headers: { authorization: `Bearer ${await viewerToken({ alg: 'ES256' })}` } });
    expectChallenge(r, 401, 'invalid_token');
    expect(r.headers['www-authenticate']).toContain('algorithm not allowed');
  } finally {
    await strict.stop();
  }
});

test('no token ever reaches the logs', async () => {
  const token = await viewerToken();
  await get('/pacs/dicom-web/studies', token);
  await get('/pacs/dicom-web/studies', algNone(token));
  expect(gw.rawLogs()).not.toContain(token.split('.')[1]);
});
