// Login sessions shared by two gateway processes through a real redis-server: a session made on one
// works on the other, one refresh reaches the IdP under concurrent requests on both, a back-channel
// logout sent by the real IdP to one ends the session on both, sessions survive a gateway restart,
// and a Redis outage gives clear 503s (never a crash, never a logout) until Redis is back.
import { randomUUID } from 'node:crypto';
import { importJWK, SignJWT, type JWK, type JWTPayload } from 'jose';
import { freeLoopbackPort, startGateway, type RunningGateway } from '../support/gateway.js';
import { HttpBrowser, type Step } from '../support/http-browser.js';
import { startOrthanc, type OrthancHandle } from '../support/orthanc.js';
import { startRedis, type RedisHandle } from '../support/redis.js';
import { DEMO_USERS, gatewayClient, startTestIdp, type TestIdp } from '../support/test-idp.js';

const SECRET = 's'.repeat(40);
const EXPLORER = '/pacs-admin/app/explorer.html';
// Access tokens live 40 s and are refreshed when less than 30 s is left: a token is "near expiry"
// from 10 s after it was issued, and the token a refresh brings is not, for another 10 s.
const ACCESS_TOKEN_TTL_S = 40;
const REFRESH_BEFORE_S = 30;

let redis: RedisHandle;
let orthanc: OrthancHandle;
let idp: TestIdp;
let portA: number;
let portB: number;
let gwA: RunningGateway;
let gwB: RunningGateway;
const clients: Record<string, Record<string, unknown>> = {};

function routesYaml(port: number): string {
  return `
server:
  listen: 127.0.0.1:${port}
  admin: false
  logLevel: debug
identity:
  issuer: ${idp.issuer}
  audience: [pacs]
  client: { id: pacs-gateway, secret: '${idp.clientSecret}' }
session:
  secret: '${SECRET}'
  refreshBefore: ${REFRESH_BEFORE_S}s
store: ${redis.url}
routes:
  - name: admin
    path: /pacs-admin
    upstream: ${orthanc.url}
    expose: upstream
    auth: [session]
    allow: [admin]
    upstreamAuth: { basic: { username: ${orthanc.username}, password: '${orthanc.password}' } }
`;
}

async function ready(g: RunningGateway): Promise<void> {
  const until = Date.now() + 20_000;
  for (;;) {
    const r = await g.gateway.readiness();
    if (r.ready) return;
    if (Date.now() > until) throw new Error(`gateway not ready: ${JSON.stringify(r.checks)}`);
    await sleep(50);
  }
}

async function startA(): Promise<RunningGateway> {
  const g = await startGateway(routesYaml(portA));
  await ready(g);
  return g;
}

beforeAll(async () => {
  [redis, orthanc, idp] = await Promise.all([
    startRedis(), startOrthanc(), startTestIdp({ algs: ['RS256'], users: DEMO_USERS, clients, accessTokenTtl: ACCESS_TOKEN_TTL_S }),
  ]);
  portA = await freeLoopbackPort();
  do portB = await freeLoopbackPort(); while (portB === portA);
  const a = gatewayClient(`http://127.0.0.1:${portA}`);
  const b = gatewayClient(`http://127.0.0.1:${portB}`);
  // One client for both processes; the IdP sends back-channel logouts to A only.
  clients['pacs-gateway'] = {
    ...a,
    redirect_uris: [...(a.redirect_uris as string[]), ...(b.redirect_uris as string[])],
    post_logout_redirect_uris: [...(a.post_logout_redirect_uris as string[]), ...(b.post_logout_redirect_uris as string[])],
  };
  [gwA, gwB] = await Promise.all([startGateway(routesYaml(portA)), startGateway(routesYaml(portB))]);
  await Promise.all([ready(gwA), ready(gwB)]);
}, 60_000);

afterAll(async () => {
  await Promise.all([gwA?.stop(), gwB?.stop()]);
  await Promise.all([orthanc?.stop(), idp?.stop(), redis?.stop()]);
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const json = (s: Step): Record<string, unknown> => JSON.parse(s.text) as Record<string, unknown>;
const api = (b: HttpBrowser, url: string) => b.request(url, { navigate: false, headers: { accept: 'application/json' } });
const system = (b: HttpBrowser, g: RunningGateway) => api(b, `${g.url}/pacs-admin/system`);
const me = async (b: HttpBrowser, g: RunningGateway) => json(await api(b, `${g.url}/_gateway/me`));

async function adminOnA(): Promise<HttpBrowser> {
  const b = new HttpBrowser();
  const page = await b.loginThrough(`${gwA.url}${EXPLORER}`, 'admin');
  expect(page.status).toBe(200);
  expect(page.text).toContain('Orthanc Explorer');
  return b;
}

/** Polls until `fn` gives true or `ms` passes; returns the last answer. */
async function eventually(fn: () => Promise<boolean>, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  for (;;) {
    if (await fn()) return true;
    if (Date.now() > until) return false;
    await sleep(100);
  }
}

test('a session made on gateway A works on gateway B (the same cookie jar: cookies ignore ports)', async () => {
  const b = await adminOnA();
  // Two processes with nothing in common but Redis.
  expect(gwA.url).not.toBe(gwB.url);
  const onB = await system(b, gwB);
  expect(onB.status).toBe(200);
  expect(json(onB)).toHaveProperty('DicomAet');
  expect(await me(b, gwB)).toMatchObject({ username: 'admin', subject: (await me(b, gwA)).subject });
  const page = await b.request(`${gwB.url}${EXPLORER}`);
  expect(page.status).toBe(200);
  expect(page.text).toContain('Orthanc Explorer');
});

test('20 concurrent requests on both gateways with a token near expiry: one refresh reaches the IdP, all succeed', async () => {
  const b = await adminOnA();
  const expiresBefore = Date.parse((await me(b, gwA)).accessTokenExpiresAt as string);
  // Wait until less than refreshBefore is left (plus a second for rounding of exp to whole seconds).
  await sleep(Math.max(0, expiresBefore - REFRESH_BEFORE_S * 1000 - Date.now() + 1000));
  const refreshesBefore = idp.refreshGrantCount();
  const answers = await Promise.all([
    ...Array.from({ length: 10 }, () => system(b, gwA)),
    ...Array.from({ length: 10 }, () => system(b, gwB)),
  ]);
  expect(answers.map((r) => r.status)).toEqual(Array(20).fill(200));
  expect(idp.refreshGrantCount() - refreshesBefore).toBe(1);
  // The session now holds the new token, on both processes.
  const expiresAfter = Date.parse((await me(b, gwB)).accessTokenExpiresAt as string);
  expect(expiresAfter).toBeGreaterThan(expiresBefore);
  expect(Date.parse((await me(b, gwA)).accessTokenExpiresAt as string)).toBe(expiresAfter);
  // And it is not refreshed again while it is fresh.
  expect((await system(b, gwA)).status).toBe(200);
  expect(idp.refreshGrantCount() - refreshesBefore).toBe(1);
}, 60_000);

const cookieOf = (b: HttpBrowser) => b.cookiesFor(gwA.url).get('pgw_session')!.value;

/** Whether the session `cookie` answers 401 SESSION_EXPIRED on `g` within ~3 s (a 401 clears it from the jar: it is put back each time). */
async function endsOn(b: HttpBrowser, cookie: string, g: RunningGateway): Promise<boolean> {
  return eventually(async () => {
    b.setCookie(g.url, 'pgw_session', cookie);
    const r = await system(b, g);
    return r.status === 401 && json(r).error === 'SESSION_EXPIRED';
  }, 3000);
}

async function postLogoutToken(g: RunningGateway, claims: JWTPayload): Promise<Step> {
  const jwk = idp.privateJwks().keys.find((k: JWK) => k.alg === 'RS256') as JWK;
  const token = await new SignJWT({
    iss: idp.issuer, aud: 'pacs-gateway', iat: Math.floor(Date.now() / 1000), jti: randomUUID(),
    events: { 'http://schemas.openid.net/event/backchannel-logout': {} }, ...claims,
  }).setProtectedHeader({ alg: 'RS256', kid: jwk.kid!, typ: 'logout+jwt' }).sign(await importJWK(jwk, 'RS256'));
  return new HttpBrowser().request(`${g.url}/_gateway/backchannel-logout`, {
    method: 'POST', navigate: false, headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ logout_token: token }).toString(),
  });
}

test('a logout token for one IdP session, posted to gateway A, ends its gateway sessions on A and on B; another IdP session goes on', async () => {
  // The IdP's sid for a browser is in its ID token: a local logout shows it (id_token_hint) and
  // leaves the IdP session alive, so the next login in that browser has the same sid.
  const b = await adminOnA();
  const out = await b.request(`${gwA.url}/_gateway/logout`, { method: 'POST', headers: { origin: gwA.url, 'content-type': 'application/x-www-form-urlencoded' }, body: '' });
  const hint = new URL(out.location!).searchParams.get('id_token_hint')!;
  const { sid, sub } = JSON.parse(Buffer.from(hint.split('.')[1]!, 'base64url').toString()) as { sid: string; sub: string };
  expect(sid).toEqual(expect.any(String));
  expect((await b.loginThrough(`${gwB.url}${EXPLORER}`, 'admin')).status).toBe(200); // this time through B
  const other = await adminOnA(); // the same user in another browser: another IdP session
  for (const g of [gwA, gwB]) {
    expect((await system(b, g)).status).toBe(200);
    expect((await system(other, g)).status).toBe(200);
  }
  const cookie = cookieOf(b);
  // What oidc-provider (and Keycloak) send: sub and sid, signed with the IdP's key.
  const r = await postLogoutToken(gwA, { sub, sid });
  expect(r.status).toBe(200);
  expect(gwA.logs.find((l) => l.msg === 'back-channel logout')).toMatchObject({ sessions: 1 });
  expect(await endsOn(b, cookie, gwB)).toBe(true);
  expect(await endsOn(b, cookie, gwA)).toBe(true);
  for (const g of [gwA, gwB]) expect((await system(other, g)).status).toBe(200);
  // A token naming only the user (sub) ends every session of that user, made on either process.
  const third = new HttpBrowser();
  expect((await third.loginThrough(`${gwB.url}${EXPLORER}`, 'admin')).status).toBe(200);
  const [otherCookie, thirdCookie] = [cookieOf(other), cookieOf(third)];
  expect((await postLogoutToken(gwB, { sub })).status).toBe(200);
  expect(await endsOn(other, otherCookie, gwA)).toBe(true);
  expect(await endsOn(third, thirdCookie, gwA)).toBe(true);
});

// oidc-provider sends logout tokens through an SSRF-guarded dispatcher that refuses loopback
// addresses; the test IdP replaces its fetch so the POST reaches a gateway on 127.0.0.1.
test('the real IdP\'s back-channel logout (user signs out at the IdP) reaches gateway A and ends the session on A and on B', async () => {
  const b = await adminOnA();
  const other = await adminOnA(); // the same user in another browser: another IdP session
  for (const g of [gwA, gwB]) {
    expect((await system(b, g)).status).toBe(200);
    expect((await system(other, g)).status).toBe(200);
  }
  const logsBefore = gwA.logs.filter((l) => l.msg === 'back-channel logout').length;
  const cookie = cookieOf(b);
  // The user signs out at the IdP (its end_session page, which posts its confirmation form by script).
  const confirm = await b.request(`${idp.issuer}/protocol/openid-connect/logout?client_id=pacs-gateway`);
  expect(confirm.status).toBe(200);
  const action = /<form id="op.logoutForm" method="post" action="([^"]+)"/.exec(confirm.text)?.[1];
  const xsrf = /name="xsrf" value="([^"]+)"/.exec(confirm.text)?.[1];
  expect(action && xsrf).toBeTruthy();
  const done = await b.request(new URL(action!, confirm.url).href, {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', origin: idp.origin }, body: new URLSearchParams({ xsrf: xsrf! }).toString(),
  });
  expect(done.status).toBeLessThan(400);

  // The IdP called A, and A ended the session in Redis: gone on both processes.
  expect(await eventually(async () => gwA.logs.filter((l) => l.msg === 'back-channel logout').length > logsBefore, 3000)).toBe(true);
  expect(gwA.logs.filter((l) => l.msg === 'back-channel logout').at(-1)).toMatchObject({ sessions: 1 });
  expect(await endsOn(b, cookie, gwB)).toBe(true);
  expect(await endsOn(b, cookie, gwA)).toBe(true);
  for (const g of [gwA, gwB]) expect((await system(other, g)).status).toBe(200);
});

test('sessions survive a restart of gateway A (Redis keeps them)', async () => {
  const b = await adminOnA();
  const cookie = b.cookiesFor(gwA.url).get('pgw_session')!.value;
  await gwA.stop();
  gwA = await startA();
  expect(b.cookiesFor(gwA.url).get('pgw_session')!.value).toBe(cookie);
  const r = await system(b, gwA);
  expect(r.status).toBe(200);
  expect(await me(b, gwA)).toMatchObject({ username: 'admin' });
  const page = await b.request(`${gwA.url}${EXPLORER}`);
  expect(page.status).toBe(200);
});

test('Redis down: new logins get a clear 503, live sessions are not logged out, readiness says why, other pages still served; Redis back: logins work', async () => {
  const b = await adminOnA();
  const cookie = b.cookiesFor(gwA.url).get('pgw_session')!.value;
  await redis.kill();
  try {
    // A new login, as a browser navigation: the gateway's HTML error page, with the reason.
    const fresh = new HttpBrowser();
    const page = await fresh.request(`${gwA.url}/_gateway/login?return=%2F`);
    expect(page.status).toBe(503);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(page.headers.get('retry-after')).toBe('5');
    expect(page.text).toMatch(/session store cannot be reached/);
    expect(page.text).toContain(page.headers.get('x-request-id')!);
    expect(page.text).not.toMatch(/\bat [\w.<>]+ \(|node_modules|\.ts:\d+|ECONNREFUSED|redis:\/\//);
    expect(page.location).toBeUndefined();
    // The same for a script: JSON with a stable code.
    const call = await api(fresh, `${gwB.url}/_gateway/login?return=%2F`);
    expect(call.status).toBe(503);
    expect(json(call)).toMatchObject({ error: 'STORE_UNAVAILABLE' });
    // A navigation to a session route without a session still goes to the login (no store needed to say so).
    expect((await fresh.request(`${gwA.url}${EXPLORER}`)).status).toBe(302);

    // A live session during the outage: 503, and the cookie is kept (a Redis blip is not a logout).
    for (const g of [gwA, gwB]) {
      const r = await system(b, g);
      expect(r.status).toBe(503);
      expect(json(r)).toMatchObject({ error: 'STORE_UNAVAILABLE' });
      expect(r.headers.getSetCookie().some((c) => c.startsWith('pgw_session='))).toBe(false);
      expect(b.cookiesFor(g.url).get('pgw_session')?.value).toBe(cookie);
    }

    const readiness = await gwA.gateway.readiness();
    expect(readiness.ready).toBe(false);
    expect(readiness.checks.store).toMatchObject({ ok: false });
    expect(readiness.checks.store!.detail).not.toContain('redis://');
    const readyz = await api(fresh, `${gwA.url}/readyz`);
    expect(readyz.status).toBe(503);

    // Everything that needs no store keeps working.
    expect((await fresh.request(`${gwA.url}/healthz`, { navigate: false })).status).toBe(200);
    const css = await fresh.request(`${gwA.url}/_gateway/static/gateway.css`, { navigate: false, headers: { accept: 'text/css' } });
    expect(css.status).toBe(200);
    expect(css.headers.get('content-type')).toMatch(/^text\/css/);
    expect((await fresh.request(`${gwB.url}/_gateway/logged-out`)).status).toBe(200);
  } finally {
    await redis.restart();
  }

  // Back (empty: no persistence): both processes reconnect and logins work again, across processes.
  for (const g of [gwA, gwB]) {
    expect(await eventually(async () => (await g.gateway.readiness()).checks.store?.ok === true, 15_000)).toBe(true);
  }
  const again = await adminOnA();
  expect((await system(again, gwB)).status).toBe(200);
}, 60_000);
