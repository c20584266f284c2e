// Credentials in query strings: never in a log line, and access_token never upstream (except on a
// route that forwards the client's own credentials, such as the IdP's).
//
// Every secret is a distinctive random value, so "the raw log text does not contain it" cannot pass
// by accident; harmless parameters next to it must stay readable in the logged query.
import { randomBytes } from 'node:crypto';
import { startEchoUpstream, type EchoUpstream } from '../support/echo-upstream.js';
import { accessLogFor, startGateway, type RunningGateway } from '../support/gateway.js';
import { request, type Reply } from '../support/http-client.js';
import { startTestIdp, type TestIdp } from '../support/test-idp.js';

let idp: TestIdp;
let echo: EchoUpstream;
let gw: RunningGateway;

const config = (issuer: string, upstream: string) => `
server:
  listen: 127.0.0.1:0
  admin: { listen: 127.0.0.1:0 }
identity:
  issuer: ${issuer}
  audience: [pacs]
  clockTolerance: 1s
routes:
  # The IdP, as in routes.yaml: public, path kept, the client's own Authorization passed on.
  - { name: idp, path: /auth, upstream: ${upstream}, expose: upstream, auth: public, stripPrefix: false, forward: { authorization: true } }
  # WADO-URI style clients that can only put the token in the query.
  - { name: wado, path: /wado, upstream: ${upstream}, expose: dicomweb, auth: [bearer], queryToken: true, allow: [view] }
  # The ordinary DICOMweb API: header tokens only.
  - { name: pacs, path: /pacs, upstream: ${upstream}, expose: dicomweb, auth: [bearer], allow: [view] }
  # A public upstream that gets no client credentials.
  - { name: open, path: /open, upstream: ${upstream}, expose: upstream, auth: public }
`;

beforeAll(async () => {
  idp = await startTestIdp({ issuerPath: '/auth/realms/ohif' });
  echo = await startEchoUpstream();
  gw = await startGateway(config(idp.issuer, echo.url));
  const until = Date.now() + 10_000;
  while ((await request(gw.adminUrl!, '/readyz')).status !== 200) {
    if (Date.now() > until) throw new Error('gateway never became ready');
    await new Promise((r) => setTimeout(r, 50));
  }
});
afterAll(async () => {
  await gw?.stop();
  await echo?.stop();
  await idp?.stop();
});

/** A value no log line could contain unless this test put it there. */
const secret = (label: string) => `S3cr3t${label.replace(/[^A-Za-z0-9]/g, '')}${randomBytes(12).toString('hex')}`;
const viewerToken = () => idp.issueAccessToken({ username: 'alice', realmRoles: ['viewer'] });

const LOGOUT = '/auth/realms/ohif/protocol/openid-connect/logout';
const REDIRECT = 'post_logout_redirect_uri=http%3A%2F%2F127.0.0.1%3A8080%2Flogged-out';
const PATIENT = 'PatientName=DOE%5EJOHN*';

/** The access log line of a reply (written when the response closes). */
const logLine = (r: Reply) => accessLogFor(gw, r.headers['x-request-id'] as string);

/** The URL the echo upstream says it received. */
const upstreamUrl = (r: Reply): string => (JSON.parse(r.text) as { url: string }).url;

/** Neither the secret nor any of its dot-separated parts (a JWT's payload or signature) is in any log line. */
function expectNotLogged(value: string): void {
  const raw = gw.rawLogs();
  expect(raw.includes(value) ? `log contains ${value.slice(0, 24)}…` : 'not logged').toBe('not logged');
  for (const part of value.split('.').filter((p) => p.length >= 16)) {
    expect(raw.includes(part) ? `log contains part ${part.slice(0, 24)}…` : 'not logged').toBe('not logged');
  }
}

/** Parameter names whose values are credentials; each is sent with a fresh random value. */
const SECRET_NAMES = [
  'access_token', 'refresh_token', 'id_token', 'code', 'state', 'nonce', 'session_state', 'client_secret', 'code_verifier',
  'api_key', 'apikey', 'apiKey', 'key', 'x-api-key', 'X-Api-Key', 'share', 'password', 'passwd', 'client_assertion', 'assertion',
  'user_code', 'token', 'secret', 'signature', 'sig',
  // Spellings of the same names: percent-encoded, other case, padded with form-encoded spaces.
  '%69d_token_hint', 'id%5Ftoken%5Fhint', 'ID_TOKEN_HINT', '%61ccess_token', 'ACCESS_TOKEN', 'Client_Secret', '%63ode', 'code+', '+state',
] as const;

describe('no credential in a query string reaches a log line', () => {
  test('a realistic logout: id_token_hint carries a whole signed ID token', async () => {
    const idToken = await idp.issueIdToken({ clientId: 'ohif', realmRoles: ['viewer'] });
    const r = await request(gw.url, `${LOGOUT}?id_token_hint=${idToken}&${REDIRECT}&state=${secret('state')}`);
    expect(r.status).toBe(200);
    expect(upstreamUrl(r)).toContain(`id_token_hint=${idToken}`); // the IdP gets it: it needs it
    const line = await logLine(r);
    expect(line.query).toBe(`id_token_hint=[redacted]&${REDIRECT}&state=[redacted]`);
    expectNotLogged(idToken);
  });

  test.each(SECRET_NAMES)('%s on the public IdP route', async (name) => {
    const value = secret(name);
    const r = await request(gw.url, `${LOGOUT}?${REDIRECT}&${name}=${value}&ui_locales=en`);
    expect(r.status).toBe(200);
    expect((await logLine(r)).query).toBe(`${REDIRECT}&${name}=[redacted]&ui_locales=en`);
    expectNotLogged(value);
  });

  test.each(SECRET_NAMES.filter((n) => n !== 'access_token'))('%s on a bearer DICOMweb route authenticated by a query token', async (name) => {
    const token = await viewerToken();
    const value = secret(name);
    const r = await request(gw.url, `/wado/dicom-web/studies?${PATIENT}&access_token=${token}&${name}=${value}&limit=10`);
    expect(r.status).toBe(200);
    expect((await logLine(r)).query).toBe(`${PATIENT}&${name}=[redacted]&limit=10`);
    expectNotLogged(value);
    expectNotLogged(token);
  });

  test.each(SECRET_NAMES)('%s on a bearer DICOMweb route, refused without a token (401)', async (name) => {
    const value = secret(name);
    const r = await request(gw.url, `/pacs/dicom-web/studies?${PATIENT}&${name}=${value}`);
    expect(r.status).toBe(401);
    expect((await logLine(r)).query).toBe(`${PATIENT}&${name}=[redacted]`);
    expectNotLogged(value);
  });

  test('a valid query token on the queryToken route is neither logged nor forwarded', async () => {
    const token = await viewerToken();
    const r = await request(gw.url, `/wado/dicom-web/studies?access_token=${token}&${PATIENT}`);
    expect(r.status).toBe(200);
    expect(upstreamUrl(r)).toBe(`/dicom-web/studies?${PATIENT}`);
    expect((await logLine(r)).query).toBe(PATIENT);
    expectNotLogged(token);
  });

  test('refused query tokens (invalid, repeated, malformed) are not logged either', async () => {
    const token = await viewerToken();
    const a = secret('a');
    const b = secret('b');
    const cases = [
      [`access_token=${a}&${PATIENT}`, 401],
      [`access_token=${a}&${PATIENT}&access_token=${b}`, 400],
      [`access_token=${token}&access_token=${token}`, 400],
      [`access_token=${a}%E0%A4%A`, 400],
      [`access_token=${a}!x&${PATIENT}`, 400],
    ] as const;
    for (const [query, status] of cases) {
      const r = await request(gw.url, `/wado/dicom-web/studies?${query}`);
      expect({ query: query.slice(-30), status: r.status }).toEqual({ query: query.slice(-30), status });
      await logLine(r);
    }
    expectNotLogged(a);
    expectNotLogged(b);
    expectNotLogged(token);
  });

  test('a query token sent together with a header token (400) is not logged', async () => {
    const header = await viewerToken();
    const query = await viewerToken();
    const r = await request(gw.url, `/wado/dicom-web/studies?access_token=${query}&${PATIENT}`, { headers: { authorization: `Bearer ${header}` } });
    expect(r.status).toBe(400);
    expect((await logLine(r)).query).toBe(PATIENT);
    expectNotLogged(query);
    expectNotLogged(header);
  });

  test('a JWT under an innocuous name, as a bare query, or as a parameter name', async () => {
    const jwt = await idp.issueIdToken({ clientId: 'ohif' });
    const dotted = jwt.replace(/\./g, '%2E');
    const cases: Array<[string, string]> = [
      [`foo=${jwt}&${REDIRECT}`, `foo=[redacted]&${REDIRECT}`],
      [`${jwt}&${REDIRECT}`, `[redacted]&${REDIRECT}`],
      [`${REDIRECT}&${jwt}`, `${REDIRECT}&[redacted]`],
      [`${jwt}=x&${REDIRECT}`, `[redacted]&${REDIRECT}`],
      [`foo=${dotted}&${REDIRECT}`, `foo=[redacted]&${REDIRECT}`],
      [`next=%2Fcb%3Ft%3D${jwt}&${REDIRECT}`, `next=[redacted]&${REDIRECT}`],
    ];
    for (const [query, logged] of cases) {
      const r = await request(gw.url, `${LOGOUT}?${query}`);
      expect(r.status).toBe(200);
      expect((await logLine(r)).query).toBe(logged);
    }
    const bare = await request(gw.url, `/pacs/dicom-web/studies?${jwt}`);
    expect(bare.status).toBe(401);
    expect((await logLine(bare)).query).toBe('[redacted]');
    expectNotLogged(jwt);
  });

  test('secrets on a request refused before routing or by the operation table are not logged', async () => {
    const values = [secret('n'), secret('o'), secret('p')];
    const replies = [
      await request(gw.url, `/nowhere?code=${values[0]}&${PATIENT}`), // no route: 404
      await request(gw.url, `/pacs/not-dicomweb?client_secret=${values[1]}`), // not a DICOMweb operation
      await request(gw.url, `/pacs/dicom-web/studies?key=${values[2]}&_method=DELETE`), // method override: 400
    ];
    for (const r of replies) expect(r.status).toBeGreaterThanOrEqual(400);
    const lines = await Promise.all(replies.map(logLine));
    expect(lines[0]!.query).toBe(`code=[redacted]&${PATIENT}`);
    expect(lines[1]!.query).toBe('client_secret=[redacted]');
    expect(lines[2]!.query).toBe('key=[redacted]&_method=DELETE');
    for (const v of values) expectNotLogged(v);
  });

  test('harmless parameters stay readable in the logged query', async () => {
    const r = await request(gw.url, `/pacs/dicom-web/studies?${PATIENT}&StudyDate=20240101-20241231&includefield=00081030&limit=25&offset=0&fuzzymatching=true`, {
      headers: { authorization: `Bearer ${await viewerToken()}` },
    });
    expect(r.status).toBe(200);
    expect((await logLine(r)).query).toBe(`${PATIENT}&StudyDate=20240101-20241231&includefield=00081030&limit=25&offset=0&fuzzymatching=true`);
    const logout = await request(gw.url, `${LOGOUT}?client_id=ohif&${REDIRECT}&ui_locales=en`);
    expect((await logLine(logout)).query).toBe(`client_id=ohif&${REDIRECT}&ui_locales=en`);
  });
});

describe('access_token never goes upstream', () => {
  const SPELLINGS = ['access_token', '%61ccess_token', 'ACCESS_TOKEN', 'Access_Token', 'access%5Ftoken', '%61%63%63%65%73%73%5F%74%6F%6B%65%6E', 'access_token+'] as const;

  test.each(SPELLINGS)('%s=… on a bearer DICOMweb route without queryToken (header token): removed', async (name) => {
    const value = secret('xyz');
    const r = await request(gw.url, `/pacs/dicom-web/studies?${name}=${value}&x=1`, { headers: { authorization: `Bearer ${await viewerToken()}` } });
    expect(r.status).toBe(200);
    expect(upstreamUrl(r)).toBe('/dicom-web/studies?x=1');
    expectNotLogged(value);
  });

  test.each(SPELLINGS)('%s=… on a public expose: upstream route without forward.authorization: removed', async (name) => {
    const value = secret('xyz');
    const r = await request(gw.url, `/open/anything?${name}=${value}&x=1`);
    expect(r.status).toBe(200);
    expect(upstreamUrl(r)).toBe('/anything?x=1');
    expectNotLogged(value);
  });

  test.each(SPELLINGS.filter((n) => n !== 'access_token'))('%s=… on the queryToken route is not taken as the token, and not forwarded either', async (name) => {
    const value = secret('xyz');
    const r = await request(gw.url, `/wado/dicom-web/studies?x=1&${name}=${value}`, { headers: { authorization: `Bearer ${await viewerToken()}` } });
    expect(r.status).toBe(200);
    expect(upstreamUrl(r)).toBe('/dicom-web/studies?x=1');
    expectNotLogged(value);
  });

  test('a bare access_token (no value) and an access_token between other parameters are removed too', async () => {
    const value = secret('xyz');
    const r = await request(gw.url, `/open/a?x=1&access_token&y=2&access_token=${value}&z=3`);
    expect(r.status).toBe(200);
    expect(upstreamUrl(r)).toBe('/a?x=1&y=2&z=3');
  });

  test('names that merely contain access_token are forwarded', async () => {
    const r = await request(gw.url, '/open/a?x_access_token=1&access_token_type=2&x=1');
    expect(upstreamUrl(r)).toBe('/a?x_access_token=1&access_token_type=2&x=1');
  });

  test.each(['access_token', '%61ccess_token', 'ACCESS_TOKEN'])('%s=… passes on a route that forwards the client\'s credentials (the IdP\'s userinfo), and is still not logged', async (name) => {
    const value = secret('xyz');
    const path = `/auth/realms/ohif/protocol/openid-connect/userinfo?${name}=${value}&x=1`;
    const r = await request(gw.url, path);
    expect(r.status).toBe(200);
    expect(upstreamUrl(r)).toBe(path);
    expect((await logLine(r)).query).toBe(`${name}=[redacted]&x=1`);
    expectNotLogged(value);
  });
});
