// Token claims that decide on their own: the subject, and the claims that mark ID tokens, logout
// tokens and refresh tokens. Each refusal here is paired with the same token minus the marker,
// which is accepted, so the marker is the only thing that stands between the token and the upstream.
//
// Most cases run on a gateway with `tokenTypes: [jwt]` (the plain JWT profile: header typ absent or
// "JWT", nothing else asked of the header): there no header check can refuse an ID or refresh token
// first, so the claim checks in checkTokenType are the deciding ones.
import { randomUUID } from 'node:crypto';
import type { JWTPayload } from 'jose';
import { startEchoUpstream, type EchoUpstream } from '../support/echo-upstream.js';
import { decode, signWithIdpKey } from '../support/forge.js';
import { startGateway, type RunningGateway } from '../support/gateway.js';
import { request, type Reply } from '../support/http-client.js';
import { startTestIdp, type TestIdp } from '../support/test-idp.js';

let idp: TestIdp;
let echo: EchoUpstream;
/** Default token profiles: [at+jwt, keycloak]. */
let gwDefault: RunningGateway;
/** tokenTypes: [jwt] only. */
let gwJwt: RunningGateway;

const config = (issuer: string, upstream: string, extra = '') => `
server:
  listen: 127.0.0.1:0
  admin: { listen: 127.0.0.1:0 }
identity:
  issuer: ${issuer}
  audience: [pacs]
  clockTolerance: 1s
  ${extra}
routes:
  - { name: api, path: /pacs, upstream: ${upstream}, expose: dicomweb, auth: [bearer], allow: [view] }
`;

async function waitReady(g: RunningGateway): Promise<void> {
  const until = Date.now() + 10_000;
  while ((await request(g.adminUrl!, '/readyz')).status !== 200) {
    if (Date.now() > until) throw new Error('gateway never became ready');
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  idp = await startTestIdp({ issuerPath: '/auth/realms/ohif' });
  echo = await startEchoUpstream();
  gwDefault = await startGateway(config(idp.issuer, echo.url));
  gwJwt = await startGateway(config(idp.issuer, echo.url, 'tokenTypes: [jwt]'));
  await Promise.all([waitReady(gwDefault), waitReady(gwJwt)]);
});
afterAll(async () => {
  await gwDefault?.stop();
  await gwJwt?.stop();
  await echo?.stop();
  await idp?.stop();
});

const nowSec = () => Math.floor(Date.now() / 1000);

/**
 * The claims of a valid access token for a viewer (a fresh subject each time, so no two tokens are
 * the same string and the verified-token cache never answers for another case).
 */
function accessClaims(extra: Record<string, unknown> = {}): JWTPayload {
  return {
    iss: idp.issuer, aud: 'pacs', sub: `user-${randomUUID()}`, iat: nowSec(), exp: nowSec() + 300,
    jti: randomUUID(), azp: 'ohif', scope: 'openid profile', preferred_username: 'alice',
    realm_access: { roles: ['viewer'] },
    ...extra,
  };
}

/** Header typ as the plain JWT profile has it: "JWT", or no typ at all. */
const PLAIN_HEADERS = [['typ JWT', { typ: 'JWT' }], ['no typ', { typ: undefined }]] as const;

const call = (gw: RunningGateway, token: string): Promise<Reply> =>
  request(gw.url, '/pacs/dicom-web/studies', { headers: { accept: 'application/json', authorization: `Bearer ${token}` } });

function expectInvalidToken(r: Reply, description?: string | RegExp): void {
  expect(r.status).toBe(401);
  const h = String(r.headers['www-authenticate'] ?? '');
  expect(h).toMatch(/^Bearer realm="pacs"/);
  expect(h).toContain('error="invalid_token"');
  if (typeof description === 'string') expect(h).toContain(description);
  else if (description) expect(h).toMatch(description);
}

/** Markers that make an otherwise valid access token an ID, logout or refresh token. */
const NOT_ACCESS_TOKEN: ReadonlyArray<readonly [string, Record<string, unknown>]> = [
  ['nonce (ID token)', { nonce: 'n-0S6_WzA2Mj' }],
  ['at_hash (ID token)', { at_hash: 'HK6E_P6Dh8Y93mRNtsDB1Q' }],
  ['events (logout token)', { events: { 'http://schemas.openid.net/event/backchannel-logout': {} }, sid: 'sid-1' }],
  ['payload typ ID', { typ: 'ID' }],
  ['payload typ Refresh', { typ: 'Refresh' }],
  ['payload typ Logout', { typ: 'Logout' }],
  ['payload typ Offline (Keycloak offline token)', { typ: 'Offline' }],
];

describe('tokenTypes [jwt]: the claims alone tell an access token from an ID, logout or refresh token', () => {
  test.each(PLAIN_HEADERS)('the plain access token (%s) is accepted: the baseline for every refusal below', async (_label, header) => {
    const token = await signWithIdpKey(idp, accessClaims(), header);
    expect(decode(token).header.typ).toBe(header.typ);
    expect((await call(gwJwt, token)).status).toBe(200);
  });

  test.each(PLAIN_HEADERS)('a payload typ Bearer (%s) is an access token too', async (_label, header) => {
    expect((await call(gwJwt, await signWithIdpKey(idp, accessClaims({ typ: 'Bearer' }), header))).status).toBe(200);
  });

  describe.each(PLAIN_HEADERS)('header %s', (_label, header) => {
    test.each(NOT_ACCESS_TOKEN)('%s: 401 invalid_token; the same token without it: 200', async (_what, marker) => {
      const claims = accessClaims();
      const without = await signWithIdpKey(idp, claims, header);
      const withMarker = await signWithIdpKey(idp, { ...claims, ...marker }, header);
      expect((await call(gwJwt, without)).status).toBe(200);
      expectInvalidToken(await call(gwJwt, withMarker), 'not an access token');
    });
  });

  test('the marker is refused even when the token also says payload typ Bearer', async () => {
    for (const marker of [{ nonce: 'n' }, { at_hash: 'h' }, { events: {} }]) {
      const claims = accessClaims({ typ: 'Bearer' });
      expect((await call(gwJwt, await signWithIdpKey(idp, claims, { typ: 'JWT' }))).status).toBe(200);
      expectInvalidToken(await call(gwJwt, await signWithIdpKey(idp, { ...claims, ...marker }, { typ: 'JWT' })), 'not an access token');
    }
  });

  test('a marker claim counts whatever its value (null, empty, false)', async () => {
    for (const marker of [{ nonce: null }, { nonce: '' }, { at_hash: false }, { events: null }]) {
      expectInvalidToken(await call(gwJwt, await signWithIdpKey(idp, accessClaims(marker), { typ: 'JWT' })), 'not an access token');
    }
  });

  test('payload typ is compared in any case', async () => {
    for (const typ of ['id', 'REFRESH', 'logout']) {
      expectInvalidToken(await call(gwJwt, await signWithIdpKey(idp, accessClaims({ typ }), { typ: 'JWT' })), `typ ${typ.toLowerCase()}`);
    }
    expect((await call(gwJwt, await signWithIdpKey(idp, accessClaims({ typ: 'BEARER' }), { typ: 'JWT' }))).status).toBe(200);
  });

  test('a real ID token from the IdP (aud = this API) is refused', async () => {
    const idToken = await idp.issueIdToken({ clientId: 'pacs', realmRoles: ['viewer'] });
    const { header, payload } = decode(idToken);
    expect(payload.aud).toBe('pacs');
    expect(header.typ === undefined || String(header.typ).toLowerCase() === 'jwt').toBe(true); // passes the [jwt] header check
    expectInvalidToken(await call(gwJwt, idToken), 'not an access token');
  });

  // checkTokenType: under [jwt] alone the header must be absent or "JWT"; an RFC 9068 header typ
  // (at+jwt) is a profile that was not configured, so it is refused, not accepted as "a JWT".
  test.each(['at+jwt', 'application/at+jwt', 'AT+JWT'])('header typ %s is not the plain JWT profile: 401 (token type)', async (typ) => {
    const claims = accessClaims();
    expect((await call(gwJwt, await signWithIdpKey(idp, claims, { typ: 'JWT' }))).status).toBe(200);
    expectInvalidToken(await call(gwJwt, await signWithIdpKey(idp, claims, { typ })), 'not an access token (token type)');
  });

  test.each(['logout+jwt', 'secevent+jwt', 'JOSE', 'dpop+jwt'])('header typ %s: 401 (token type)', async (typ) => {
    expectInvalidToken(await call(gwJwt, await signWithIdpKey(idp, accessClaims(), { typ })), 'not an access token (token type)');
  });

  test('header typ "application/jwt" is the plain profile too (media type prefix ignored)', async () => {
    expect((await call(gwJwt, await signWithIdpKey(idp, accessClaims(), { typ: 'application/jwt' }))).status).toBe(200);
  });

  test('a real RFC 9068 access token from the IdP (header typ at+jwt) is refused under [jwt]', async () => {
    const token = await idp.issueAccessToken({ realmRoles: ['viewer'] });
    expect(decode(token).header.typ).toBe('at+jwt');
    expectInvalidToken(await call(gwJwt, token), 'not an access token (token type)');
    expect((await call(gwDefault, token)).status).toBe(200);
  });
});

describe('default token profiles [at+jwt, keycloak]: claims decide where the header passes', () => {
  test('a Keycloak-style token (header typ JWT, payload typ Bearer) is accepted; with nonce, at_hash or events it is refused', async () => {
    const claims = accessClaims({ typ: 'Bearer' });
    expect((await call(gwDefault, await signWithIdpKey(idp, claims, { typ: 'JWT' }))).status).toBe(200);
    for (const marker of [{ nonce: 'n-0S6_WzA2Mj' }, { at_hash: 'HK6E_P6Dh8Y93mRNtsDB1Q' }, { events: { 'http://schemas.openid.net/event/backchannel-logout': {} } }]) {
      expectInvalidToken(await call(gwDefault, await signWithIdpKey(idp, { ...claims, ...marker }, { typ: 'JWT' })), 'not an access token (ID or logout token)');
    }
  });

  test('a Keycloak-style token without a header typ, with nonce: 401', async () => {
    const claims = accessClaims({ typ: 'Bearer' });
    expect((await call(gwDefault, await signWithIdpKey(idp, claims, { typ: undefined }))).status).toBe(200);
    expectInvalidToken(await call(gwDefault, await signWithIdpKey(idp, { ...claims, nonce: 'n' }, { typ: undefined })), 'not an access token');
  });

  test('an RFC 9068 header (typ at+jwt) does not excuse an ID, logout or refresh marker in the payload', async () => {
    const claims = accessClaims({ client_id: 'ohif' });
    expect((await call(gwDefault, await signWithIdpKey(idp, claims, { typ: 'at+jwt' }))).status).toBe(200);
    for (const [what, marker] of NOT_ACCESS_TOKEN) {
      const r = await call(gwDefault, await signWithIdpKey(idp, { ...claims, ...marker }, { typ: 'at+jwt' }));
      expect({ what, status: r.status }).toEqual({ what, status: 401 });
      expectInvalidToken(r, 'not an access token');
    }
  });

  test('the plain JWT profile is not on by default: header typ JWT and no payload typ is refused', async () => {
    const claims = accessClaims();
    expect((await call(gwJwt, await signWithIdpKey(idp, claims, { typ: 'JWT' }))).status).toBe(200);
    expectInvalidToken(await call(gwDefault, await signWithIdpKey(idp, claims, { typ: 'JWT' })), 'not an access token (token type)');
  });
});

describe('the subject is required', () => {
  const withoutSub = (extra: Record<string, unknown> = {}): JWTPayload => {
    const { sub: _sub, ...rest } = accessClaims(extra);
    return rest;
  };

  test('an RFC 9068 token signed with the real key but without sub: 401 invalid_token naming the subject; with sub: 200', async () => {
    const claims = accessClaims({ client_id: 'ohif' });
    expect((await call(gwDefault, await signWithIdpKey(idp, claims, { typ: 'at+jwt' }))).status).toBe(200);
    const { sub: _sub, ...rest } = claims;
    const r = await call(gwDefault, await signWithIdpKey(idp, rest, { typ: 'at+jwt' }));
    expectInvalidToken(r, 'error_description="token has no subject"');
    expect(echo.seen.some((s) => s.headers['x-request-id'] === r.headers['x-request-id'])).toBe(false); // never forwarded
  });

  test('a Keycloak-style token without sub: 401 (subject)', async () => {
    expectInvalidToken(await call(gwDefault, await signWithIdpKey(idp, withoutSub({ typ: 'Bearer' }), { typ: 'JWT' })), /subject/);
  });

  test('a plain JWT-profile token without sub: 401 (subject)', async () => {
    expectInvalidToken(await call(gwJwt, await signWithIdpKey(idp, withoutSub(), { typ: 'JWT' })), /subject/);
  });

  test.each([null, 123, '', '   ', {}, ['a'], true])('a sub that is not a non-empty string (%j): 401 (subject)', async (sub) => {
    const r = await call(gwDefault, await signWithIdpKey(idp, accessClaims({ client_id: 'ohif', sub }), { typ: 'at+jwt' }));
    expectInvalidToken(r, 'error_description="token has no subject"');
  });
});
