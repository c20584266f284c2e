// Attacks on the login session, over real HTTP against the real oidc-provider IdP and a real Orthanc:
// open redirects through the return target, forged/foreign/replayed callbacks, CSRF on the proxy and
// on logout, tampered cookies, idle and absolute timeouts, forged back-channel logout tokens and a
// refresh the IdP refuses. Each test asserts what the check under attack decides, not just "an error".
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { generateKeyPair, importJWK, SignJWT, type JWK, type JWTPayload } from 'jose';
import { freeLoopbackPort, startGateway, type RunningGateway } from '../support/gateway.js';
import { HttpBrowser, type Step } from '../support/http-browser.js';
import { uploadInstances } from '../support/load-studies.js';
import { startOrthanc, type OrthancHandle } from '../support/orthanc.js';
import { generateStudies } from '../support/synthetic-dicom.js';
import { DEMO_USERS, gatewayClient, startTestIdp, type TestIdp } from '../support/test-idp.js';

const SECRET = 'x'.repeat(40);
const BACKCHANNEL_EVENT = 'http://schemas.openid.net/event/backchannel-logout';
const EXPLORER = '/pacs-admin/app/explorer.html';
const EVIL = 'http://evil.example';

let orthanc: OrthancHandle;
let idp: TestIdp;
let gw: RunningGateway;
// The IdP reads client metadata per request: each gateway's client is registered once its port is known.
const clients: Record<string, Record<string, unknown>> = {};
const extraGateways: RunningGateway[] = [];

function routesYaml(o: { port: number; clientId: string; session?: string }): string {
  return `
server:
  listen: 127.0.0.1:${o.port}
  admin: false
  logLevel: debug
identity:
  issuer: ${idp.issuer}
  audience: [pacs]
  client: { id: ${o.clientId}, secret: '${idp.clientSecret}' }
session:
  secret: '${SECRET}'
${o.session ?? ''}
store: memory
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

/** Another gateway with its own client at the IdP (gatewayClient's metadata without the `without` keys). */
async function startExtraGateway(clientId: string, session: string, without: readonly string[] = []): Promise<RunningGateway> {
  const port = await freeLoopbackPort();
  const metadata = gatewayClient(`http://127.0.0.1:${port}`);
  for (const key of without) delete metadata[key];
  clients[clientId] = metadata;
  const g = await startGateway(routesYaml({ port, clientId, session }));
  extraGateways.push(g);
  await ready(g);
  return g;
}

beforeAll(async () => {
  [orthanc, idp] = await Promise.all([startOrthanc(), startTestIdp({ algs: ['RS256'], users: DEMO_USERS, clients })]);
  const port = await freeLoopbackPort();
  clients['pacs-gateway'] = gatewayClient(`http://127.0.0.1:${port}`);
  gw = await startGateway(routesYaml({ port, clientId: 'pacs-gateway' }));
  await ready(gw);
}, 60_000);

afterAll(async () => {
  await Promise.all([gw?.stop(), ...extraGateways.map((g) => g.stop())]);
  await Promise.all([orthanc?.stop(), idp?.stop()]);
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const json = (s: Step): Record<string, unknown> => JSON.parse(s.text) as Record<string, unknown>;
const sessionCookie = (b: HttpBrowser, g: RunningGateway = gw) => b.cookiesFor(g.url).get('pgw_session')?.value;
/** The Set-Cookie lines of a step that set a session cookie with a value (not the clearing one). */
const newSessionCookies = (s: Step) => s.headers.getSetCookie().filter((c) => /^pgw_session=[^;]+/.test(c));
const clearsSession = (s: Step) => s.headers.getSetCookie().some((c) => /^pgw_session=;/.test(c) && /expires=Thu, 01 Jan 1970/i.test(c));

/** An XHR/fetch-style call (no navigation headers) that wants JSON. */
function api(b: HttpBrowser, url: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Step> {
  return b.request(url, { ...init, navigate: false, headers: { accept: 'application/json', ...init.headers } });
}
const system = (b: HttpBrowser, g: RunningGateway = gw) => api(b, `${g.url}/pacs-admin/system`);

/** Starts a login at /_gateway/login?<query>, signs in at the IdP, and stops before the callback: returns its URL. */
async function loginUpToCallback(b: HttpBrowser, query: string, user = 'admin', g: RunningGateway = gw): Promise<{ callback: string; state: string }> {
  const steps = await b.follow(`${g.url}/_gateway/login?${query}`);
  const toIdp = steps.find((s) => s.location?.startsWith(idp.authorizationEndpoint));
  if (!toIdp) throw new Error(`login did not go to the IdP: ${steps.map((s) => `${s.status} ${s.url}`).join(' → ')}`);
  const state = new URL(toIdp.location!).searchParams.get('state')!;
  const after = await b.submitLogin(steps[steps.length - 1]!, user, user, `${g.url}/_gateway/callback`);
  const callback = after[after.length - 1]!.location;
  if (!callback?.startsWith(`${g.url}/_gateway/callback?`)) throw new Error(`the IdP did not send the browser back: ${callback}`);
  return { callback, state };
}

/** A full admin login through the explorer; the browser then holds a working session. */
async function adminSession(g: RunningGateway = gw): Promise<HttpBrowser> {
  const b = new HttpBrowser();
  const page = await b.loginThrough(`${g.url}${EXPLORER}`, 'admin');
  expect(page.status).toBe(200);
  expect((await system(b, g)).status).toBe(200);
  return b;
}

/** The gateway's login-error page: a clear 4xx HTML page with a way to try again, and nothing it must not show. */
function expectLoginErrorPage(s: Step, reason?: RegExp): void {
  expect(s.status).toBeGreaterThanOrEqual(400);
  expect(s.status).toBeLessThan(500);
  expect(s.headers.get('content-type')).toMatch(/^text\/html/);
  expect(s.text).toContain('Sign-in did not complete');
  expect(s.text).toMatch(/<a class="button" href="\/_gateway\/login\?return=[^"]*">Try again<\/a>/);
  const requestId = s.headers.get('x-request-id');
  expect(requestId).toMatch(/^[0-9a-f-]{36}$/);
  expect(s.text).toContain(requestId!);
  if (reason) expect(s.text).toMatch(reason);
  // No stack trace, no source path, no token.
  expect(s.text).not.toMatch(/\bat [\w.<>]+ \(|node_modules|\.ts:\d+|\.js:\d+/);
  expect(s.text).not.toMatch(/eyJ[A-Za-z0-9_-]+\.eyJ/);
  expect(newSessionCookies(s)).toEqual([]);
}

// ------------------------------------------------------------------------------------------------
// Open redirect through the return target

const enc = encodeURIComponent;
// [label, the raw query value of `return` as it appears in the login URL]
const REFUSED_RETURNS: ReadonlyArray<readonly [string, string]> = [
  ['//evil.example', enc('//evil.example')],
  ['/\\evil.example', enc('/\\evil.example')],
  ['https://evil.example', enc('https://evil.example')],
  ['/%2F%2Fevil.example (the value itself encoded)', enc('/%2F%2Fevil.example')],
  ['/%2F%2Fevil.example (decoded by the query: ///evil.example)', '/%2F%2Fevil.example'],
  ['/%5Cevil.example (the value itself encoded)', enc('/%5Cevil.example')],
  ['/%5Cevil.example (decoded by the query: /\\evil.example)', '/%5Cevil.example'],
  [' /x (leading space)', enc(' /x')],
  ['/x%0d%0aLocation:%20http://evil (encoded CRLF in the value)', enc('/x%0d%0aLocation:%20http://evil')],
  ['/x CR LF Location: http://evil (raw CRLF in the value)', enc('/x\r\nLocation: http://evil')],
  ['javascript:alert(1)', enc('javascript:alert(1)')],
  ['/<TAB>/evil.example', enc('/\t/evil.example')],
  ['/%09/evil.example (decoded by the query: a tab)', '/%09/evil.example'],
  ['/<LF>/evil.example', enc('/\n/evil.example')],
  ['<TAB>//evil.example', enc('\t//evil.example')],
  ['%2F%2Fevil.example (the value itself encoded)', enc('%2F%2Fevil.example')],
  ['%2F%2Fevil.example (decoded by the query: //evil.example)', '%2F%2Fevil.example'],
  ['///evil.example', enc('///evil.example')],
  ['https:evil.example', enc('https:evil.example')],
  ['http:/\\evil.example', enc('http:/\\evil.example')],
  ['/_gateway/login (a loop back into the login)', enc('/_gateway/login?return=/')],
];
// Paths that pass the "one leading slash" test but that URL normalisation (dot segments) turns into
// //evil.example: safeReturnPath returns the normalised pathname, so the browser goes to evil.example.
const DOT_SEGMENT_RETURNS: ReadonlyArray<readonly [string, string]> = [
  ['/.//evil.example', enc('/.//evil.example')],
  ['/x/..//evil.example', enc('/x/..//evil.example')],
  ['/%2e//evil.example (an encoded dot)', enc('/%2e//evil.example')],
];

/** Logs in with `returnQuery`; checks every Location from the callback on stays on the gateway; returns the callback's target. */
async function landingAfterLogin(returnQuery: string): Promise<string> {
  const b = new HttpBrowser();
  const { callback } = await loginUpToCallback(b, `return=${returnQuery}`);
  let step = await b.request(callback);
  expect(step.status).toBe(302);
  expect(newSessionCookies(step)).toHaveLength(1);
  const landing = step.location!;
  // Follow only while on the gateway: a redirect elsewhere fails here instead of leaving the machine.
  for (let hops = 0; step.location; hops++) {
    expect(new URL(step.location).origin).toBe(gw.url);
    expect(step.location).not.toMatch(/[\r\n\t ]/);
    if (step.status < 300 || step.status >= 400 || hops > 5) break;
    step = await b.request(step.location);
  }
  return landing;
}

describe('open redirect on the return target', () => {
  test.each(REFUSED_RETURNS)('return=%s: after login the browser lands on / of the gateway', async (_label, value) => {
    expect(await landingAfterLogin(value)).toBe(`${gw.url}/`);
  });

  // URL resolution removes dot segments: `/.//evil.example` would come out as `//evil.example`.
  test.each(DOT_SEGMENT_RETURNS)('return=%s: dot segments do not turn into //evil.example', async (_label, value) => {
    expect(await landingAfterLogin(value)).toBe(`${gw.url}/`);
  });

  test('a legitimate deep link with a query survives the login intact', async () => {
    expect(await landingAfterLogin(enc('/viewer?StudyInstanceUIDs=1.2.3'))).toBe(`${gw.url}/viewer?StudyInstanceUIDs=1.2.3`);
    expect(await landingAfterLogin(enc(EXPLORER))).toBe(`${gw.url}${EXPLORER}`);
  });
});

// ------------------------------------------------------------------------------------------------
// The callback: state, binding cookie, duplicated parameters, IdP errors, code replay and injection

describe('callback attacks', () => {
  test('a missing, forged or unknown state gets the login-error page and no session', async () => {
    const b = new HttpBrowser();
    // A browser with a login of its own in progress (so it holds a binding cookie).
    await loginUpToCallback(b, 'return=%2F');
    expect(b.cookiesFor(gw.url).has('pgw_login')).toBe(true);
    const cases: Array<[string, RegExp]> = [
      ['code=abc', /has no state/],
      ['code=abc&state=', /has no state/],
      ['code=abc&state=forged', /unknown, has expired or was already used/],
      [`code=abc&state=${randomBytes(32).toString('base64url')}`, /unknown, has expired or was already used/],
      ['error=access_denied', /has no state/],
    ];
    for (const [query, reason] of cases) {
      const page = await b.request(`${gw.url}/_gateway/callback?${query}`);
      expectLoginErrorPage(page, reason);
      expect(sessionCookie(b)).toBeUndefined();
    }
  });

  test('a callback started in browser A and completed in browser B (no or another binding cookie) is refused', async () => {
    const a1 = new HttpBrowser();
    const { callback: c1 } = await loginUpToCallback(a1, 'return=%2F');
    const bare = new HttpBrowser(); // no cookie at all: a link sent to a victim
    const p1 = await bare.request(c1);
    expectLoginErrorPage(p1, /started in another browser/);
    expect(sessionCookie(bare)).toBeUndefined();

    const a2 = new HttpBrowser();
    const { callback: c2 } = await loginUpToCallback(a2, 'return=%2F');
    const other = new HttpBrowser(); // a browser with its own login in progress: its binding differs
    await loginUpToCallback(other, 'return=%2F', 'alice');
    const p2 = await other.request(c2);
    expectLoginErrorPage(p2, /started in another browser/);
    expect(sessionCookie(other)).toBeUndefined();
  });

  test('duplicated state or code parameters are refused by name (not left to the IdP or openid-client)', async () => {
    const b = new HttpBrowser();
    const { callback, state } = await loginUpToCallback(b, `return=${enc(EXPLORER)}`);
    const code = new URL(callback).searchParams.get('code')!;
    expectLoginErrorPage(await b.request(`${callback}&state=${state}`), /parameter &quot;state&quot; more than once/);
    expectLoginErrorPage(await b.request(`${callback}&state=other`), /parameter &quot;state&quot; more than once/);
    expectLoginErrorPage(await b.request(`${callback}&code=${code}`), /parameter &quot;code&quot; more than once/);
    expect(sessionCookie(b)).toBeUndefined();
  });

  test('error=access_denied with a valid state: a 4xx page naming the error, the description escaped, no session', async () => {
    const b = new HttpBrowser();
    const steps = await b.follow(`${gw.url}/_gateway/login?return=${enc(EXPLORER)}`);
    const state = new URL(steps.find((s) => s.location?.startsWith(idp.authorizationEndpoint))!.location!).searchParams.get('state')!;
    const description = 'The user said no <script>alert(1)</script>';
    const page = await b.request(`${gw.url}/_gateway/callback?error=access_denied&error_description=${enc(description)}&state=${state}`);
    expectLoginErrorPage(page, /access_denied/);
    expect(page.text).toContain('The user said no &lt;script&gt;alert(1)&lt;/script&gt;');
    expect(page.text).not.toContain('<script>');
    // The retry link keeps the user's destination.
    expect(page.text).toContain(`href="/_gateway/login?return=${enc(EXPLORER)}"`);
    expect(sessionCookie(b)).toBeUndefined();
  });

  test('a completed callback replayed (fresh browser, same browser, even with its binding cookie restored) gives no session', async () => {
    const a = new HttpBrowser();
    const { callback } = await loginUpToCallback(a, `return=${enc(EXPLORER)}`);
    const binding = a.cookiesFor(gw.url).get('pgw_login')!.value;
    const first = await a.request(callback);
    expect(first.status).toBe(302);
    const session = sessionCookie(a);
    expect(session).toBeDefined();

    const fresh = new HttpBrowser();
    expectLoginErrorPage(await fresh.request(callback), /unknown, has expired or was already used/);
    expect(sessionCookie(fresh)).toBeUndefined();

    const again = await a.request(callback);
    expectLoginErrorPage(again, /unknown, has expired or was already used/);
    // The state is single-use at the gateway itself, before the IdP would refuse the used code.
    a.setCookie(gw.url, 'pgw_login', binding);
    expectLoginErrorPage(await a.request(callback), /unknown, has expired or was already used/);
    // The first login's session is untouched by the replays.
    expect(sessionCookie(a)).toBe(session);
    expect((await system(a)).status).toBe(200);
  });

  test('a code stolen from another login and injected into the attacker\'s own login is refused (PKCE / nonce)', async () => {
    const victim = new HttpBrowser();
    const { callback: victimCallback } = await loginUpToCallback(victim, 'return=%2F');
    const stolen = new URL(victimCallback).searchParams.get('code')!;

    const attacker = new HttpBrowser();
    const { callback: own } = await loginUpToCallback(attacker, 'return=%2F', 'alice');
    const injected = new URL(own);
    injected.searchParams.set('code', stolen);
    const page = await attacker.request(injected.href);
    expectLoginErrorPage(page, /could not be completed/);
    expect(sessionCookie(attacker)).toBeUndefined();
  });
});

// ------------------------------------------------------------------------------------------------
// CSRF: state-changing requests with the session cookie must come from the gateway's own origin

function freshInstanceFile(): Buffer {
  return generateStudies({ seed: randomUUID(), patients: [{ id: `CSRF-${randomUUID().slice(0, 8)}`, name: 'CSRF^CANARY', birthDate: '19700101', sex: 'O', studies: [{
    description: 'csrf canary', date: '20260101', accessionNumber: 'ACC-CSRF',
    series: [{ modality: 'CT', description: 'one slice', slices: 1, rows: 64, columns: 64 }],
  }] }] })[0]!.file;
}

const inOrthanc = async (studyId: string) =>
  (await fetch(`${orthanc.url}/studies/${studyId}`, { headers: { authorization: orthanc.authHeader } })).status;

describe('CSRF', () => {
  let admin: HttpBrowser;
  beforeAll(async () => { admin = await adminSession(); });

  test('a cross-origin DELETE with the admin\'s cookie is refused and the study stays in Orthanc; from the gateway\'s origin it works', async () => {
    const [uploaded] = await uploadInstances(orthanc, [freshInstanceFile()]);
    const study = uploaded!.ParentStudy;
    expect(await inOrthanc(study)).toBe(200);
    const url = `${gw.url}/pacs-admin/studies/${study}`;
    const refused: Array<[string, Record<string, string>]> = [
      ['a foreign Origin', { origin: EVIL }],
      ['Origin: null (sandboxed frame, data: URL)', { origin: 'null' }],
      ['Origin: null from a sandboxed frame on another site', { origin: 'null', 'sec-fetch-site': 'cross-site' }],
      ['the gateway\'s host on another port', { origin: 'http://127.0.0.1:1' }],
      ['no Origin, Sec-Fetch-Site: cross-site', { 'sec-fetch-site': 'cross-site' }],
      ['no Origin, Sec-Fetch-Site: same-site (a sibling host)', { 'sec-fetch-site': 'same-site' }],
      ['neither Origin nor Sec-Fetch-Site (fail closed)', {}],
      ['a foreign Origin with Sec-Fetch-Site: same-origin', { origin: EVIL, 'sec-fetch-site': 'same-origin' }],
    ];
    for (const [label, headers] of refused) {
      const r = await api(admin, url, { method: 'DELETE', headers });
      expect({ label, status: r.status, error: json(r).error }).toEqual({ label, status: 403, error: 'CROSS_ORIGIN' });
      expect(await inOrthanc(study)).toBe(200);
    }
    // Not a broken route: the same request from the gateway's own pages deletes the study.
    const ok = await api(admin, url, { method: 'DELETE', headers: { origin: gw.url } });
    expect(ok.status).toBe(200);
    expect(await inOrthanc(study)).toBe(404);
  });

  test('a harmless POST (tools/find) from the gateway\'s origin succeeds; cross-origin it is refused; a GET from anywhere is fine', async () => {
    const find = (headers: Record<string, string>) => api(admin, `${gw.url}/pacs-admin/tools/find`, {
      method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify({ Level: 'Study', Query: {} }),
    });
    const cross = await find({ origin: EVIL });
    expect(cross.status).toBe(403);
    expect(json(cross).error).toBe('CROSS_ORIGIN');
    const line = gw.logs.find((l) => l.reqId === cross.headers.get('x-request-id') && l.msg === 'request');
    expect(line).toMatchObject({ status: 403, error: 'CROSS_ORIGIN' });

    for (const headers of [{ origin: gw.url }, { 'sec-fetch-site': 'same-origin' }] as Record<string, string>[]) {
      const same = await find(headers);
      expect(same.status).toBe(200);
      expect(Array.isArray(JSON.parse(same.text))).toBe(true);
    }
    // Safe methods are not checked: a foreign page may link to or load a GET.
    const get = await api(admin, `${gw.url}/pacs-admin/system`, { headers: { origin: EVIL, 'sec-fetch-site': 'cross-site' } });
    expect(get.status).toBe(200);
  });

  test('logout cannot be forced by another site; the session survives every refused attempt', async () => {
    const b = await adminSession();
    const form = { 'content-type': 'application/x-www-form-urlencoded' };
    const attempts: Array<[string, { method: string; headers: Record<string, string>; body?: string }]> = [
      ['POST with a foreign Origin', { method: 'POST', headers: { ...form, origin: EVIL }, body: '' }],
      ['POST with Origin: null', { method: 'POST', headers: { ...form, origin: 'null' }, body: '' }],
      ['POST with Origin: null from another site', { method: 'POST', headers: { ...form, origin: 'null', 'sec-fetch-site': 'cross-site' }, body: '' }],
      ['POST with Sec-Fetch-Site: cross-site', { method: 'POST', headers: { ...form, 'sec-fetch-site': 'cross-site' }, body: '' }],
      ['POST with neither header', { method: 'POST', headers: form, body: '' }],
      ['GET with Sec-Fetch-Site: cross-site (an <img> or a link on another site)', { method: 'GET', headers: { 'sec-fetch-site': 'cross-site' } }],
      ['GET with Sec-Fetch-Site: same-site', { method: 'GET', headers: { 'sec-fetch-site': 'same-site' } }],
    ];
    for (const [label, init] of attempts) {
      const r = await b.request(`${gw.url}/_gateway/logout`, init);
      expect({ label, status: r.status, location: r.location }).toEqual({ label, status: 403, location: undefined });
      expect(clearsSession(r)).toBe(false);
      expect((await system(b)).status).toBe(200);
    }
    // The same site can: with its Origin, or — a form on a page served with Referrer-Policy: no-referrer,
    // as the gateway's own pages are — with Origin: null and Sec-Fetch-Site: same-origin.
    const out = await b.request(`${gw.url}/_gateway/logout`, { method: 'POST', headers: { ...form, origin: gw.url }, body: '' });
    expect(out.status).toBe(303);
    expect((await system(b)).status).toBe(401);
    const b2 = await adminSession();
    const fromPage = await b2.request(`${gw.url}/_gateway/logout`, { method: 'POST', headers: { ...form, origin: 'null', 'sec-fetch-site': 'same-origin' }, body: '' });
    expect(fromPage.status).toBe(303);
    expect((await system(b2)).status).toBe(401);
  });
});

// ------------------------------------------------------------------------------------------------
// Tampered session cookies

describe('tampered cookie', () => {
  const flip = (s: string, i: number) => `${s.slice(0, i)}${s[i] === 'A' ? 'B' : 'A'}${s.slice(i + 1)}`;

  test('a flipped signature, a flipped id, or the real id signed with another secret: no session, and the cookie is cleared', async () => {
    const owner = await adminSession();
    const value = sessionCookie(owner)!;
    const dot = value.lastIndexOf('.');
    const id = value.slice(0, dot);
    const sig = value.slice(dot + 1);
    const otherSecret = createHmac('sha256', 'y'.repeat(40)).update(id).digest('base64').replace(/=+$/, '');
    const forged: Array<[string, string]> = [
      ['one signature character flipped', `${id}.${flip(sig, 10)}`],
      ['one id character flipped', `${flip(id, 10)}.${sig}`],
      ['the real id signed with another secret', `${id}.${otherSecret}`],
      ['the bare id, unsigned', id],
    ];
    for (const [label, cookie] of forged) {
      const b = new HttpBrowser();
      b.setCookie(gw.url, 'pgw_session', cookie);
      const r = await system(b);
      expect({ label, status: r.status }).toEqual({ label, status: 401 });
      expect(clearsSession(r)).toBe(true);
      expect(b.cookiesFor(gw.url).has('pgw_session')).toBe(false);

      b.setCookie(gw.url, 'pgw_session', cookie);
      const nav = await b.request(`${gw.url}${EXPLORER}`);
      expect({ label, status: nav.status }).toEqual({ label, status: 302 });
      expect(nav.location).toBe(`${gw.url}/_gateway/login?return=${enc(EXPLORER)}`);
      expect(clearsSession(nav)).toBe(true);
    }
    // The genuine cookie still works: the refusals were about the tampering, not the session.
    expect((await system(owner)).status).toBe(200);
  });
});

// ------------------------------------------------------------------------------------------------
// Idle and absolute timeouts

describe('expired sessions', () => {
  test('idle timeout: use keeps the session alive past the timeout; then unused, it ends (API 401 SESSION_EXPIRED, navigation 302 to login)', async () => {
    // idleTimeout 3s: the last-seen mark is written at most once a second, so use every 1.5 s keeps it alive.
    const g = await startExtraGateway('pgw-idle', '  idleTimeout: 3s');
    const b = await adminSession(g);
    const started = Date.now();
    while (Date.now() - started < 5000) {
      await sleep(1500);
      expect((await system(b, g)).status).toBe(200);
    }
    const cookie = sessionCookie(b, g)!;
    await sleep(3500);
    const r = await system(b, g);
    expect(r.status).toBe(401);
    expect(json(r).error).toBe('SESSION_EXPIRED');
    expect(clearsSession(r)).toBe(true);
    b.setCookie(g.url, 'pgw_session', cookie);
    const nav = await b.request(`${g.url}${EXPLORER}`);
    expect(nav.status).toBe(302);
    expect(nav.location).toBe(`${g.url}/_gateway/login?return=${enc(EXPLORER)}`);
  }, 30_000);

  // The last-seen mark must be rewritten often enough that use keeps even a 1-s session alive.
  test('idle timeout of 1 s: a session used every 300 ms stays alive', async () => {
    const g = await startExtraGateway('pgw-idle1', '  idleTimeout: 1s');
    const b = await adminSession(g);
    const started = Date.now();
    while (Date.now() - started < 2500) {
      await sleep(300);
      expect((await system(b, g)).status).toBe(200);
    }
  }, 30_000);

  test('absolute timeout: use resets the idle timer but not the absolute one', async () => {
    const g = await startExtraGateway('pgw-absolute', '  idleTimeout: 2s\n  absoluteTimeout: 5s');
    const b = await adminSession(g);
    const startedAt = Date.parse(json(await api(b, `${g.url}/_gateway/me`)).sessionStartedAt as string);
    const at = (ms: number) => sleep(Math.max(0, startedAt + ms - Date.now()));
    // Used every 1.2 s: past the 2 s idle timeout, still alive.
    for (const t of [1200, 2400, 3600]) {
      await at(t);
      expect((await system(b, g)).status).toBe(200);
    }
    await at(5600);
    // Used less than 2 s ago, but 5 s after the login: over.
    const r = await system(b, g);
    expect(r.status).toBe(401);
    expect(json(r).error).toBe('SESSION_EXPIRED');
    expect(clearsSession(r)).toBe(true);
  }, 30_000);
});

// ------------------------------------------------------------------------------------------------
// Back-channel logout tokens

interface LogoutTokenOptions { claims?: JWTPayload; omit?: string[]; key?: CryptoKey; kid?: string; alg?: string }

async function idpKey(): Promise<{ key: CryptoKey; kid: string }> {
  const jwk = idp.privateJwks().keys.find((k: JWK) => k.alg === 'RS256') as JWK;
  return { key: (await importJWK(jwk, 'RS256')) as CryptoKey, kid: jwk.kid! };
}

async function logoutToken(o: LogoutTokenOptions = {}): Promise<string> {
  const own = await idpKey();
  const payload: JWTPayload = {
    iss: idp.issuer, aud: 'pacs-gateway', iat: Math.floor(Date.now() / 1000), jti: randomUUID(),
    events: { [BACKCHANNEL_EVENT]: {} }, ...o.claims,
  };
  for (const k of o.omit ?? []) delete payload[k];
  return new SignJWT(payload).setProtectedHeader({ alg: o.alg ?? 'RS256', kid: o.kid ?? own.kid, typ: 'logout+jwt' }).sign(o.key ?? own.key);
}

const backchannel = (token: string | undefined) => new HttpBrowser().request(`${gw.url}/_gateway/backchannel-logout`, {
  method: 'POST', navigate: false, headers: { 'content-type': 'application/x-www-form-urlencoded' },
  body: token === undefined ? '' : new URLSearchParams({ logout_token: token }).toString(),
});

describe('back-channel logout', () => {
  test('forged, foreign and malformed logout tokens are refused (400) and the session keeps working', async () => {
    const b = await adminSession();
    const sub = json(await api(b, `${gw.url}/_gateway/me`)).subject as string;
    expect(sub).toMatch(/^[0-9a-f-]{36}$/);
    const now = Math.floor(Date.now() / 1000);
    const foreign = await generateKeyPair('RS256');
    const accessToken = await idp.issueAccessToken({ sub, username: 'admin', realmRoles: ['admin'], audience: 'pacs-gateway', clientId: 'pacs-gateway' });
    const unsigned = (claims: JWTPayload) => `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'logout+jwt' })).toString('base64url')}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.`;
    const refused: Array<[string, string | undefined]> = [
      ['no logout_token', undefined],
      ['not a JWT', 'not-a-token'],
      ['signed by another key (with the IdP\'s kid)', await logoutToken({ claims: { sub }, key: foreign.privateKey as CryptoKey })],
      ['alg none', unsigned({ iss: idp.issuer, aud: 'pacs-gateway', iat: now, jti: randomUUID(), sub, events: { [BACKCHANNEL_EVENT]: {} } })],
      ['wrong aud', await logoutToken({ claims: { sub, aud: 'another-client' } })],
      ['wrong iss', await logoutToken({ claims: { sub, iss: EVIL } })],
      ['no events', await logoutToken({ claims: { sub }, omit: ['events'] })],
      ['another event', await logoutToken({ claims: { sub, events: { 'http://schemas.openid.net/event/other': {} } } })],
      ['the event is not an object', await logoutToken({ claims: { sub, events: { [BACKCHANNEL_EVENT]: 'yes' } } })],
      ['a nonce (an ID token)', await logoutToken({ claims: { sub, nonce: 'n-0S6_WzA2Mj' } })],
      ['neither sid nor sub', await logoutToken()],
      ['no jti', await logoutToken({ claims: { sub }, omit: ['jti'] })],
      ['no iat', await logoutToken({ claims: { sub }, omit: ['iat'] })],
      ['iat 15 minutes old', await logoutToken({ claims: { sub, iat: now - 15 * 60 } })],
      ['expired', await logoutToken({ claims: { sub, iat: now - 400, exp: now - 300 } })],
      ['a real access token of the IdP for this user (aud = the gateway\'s client)', accessToken],
    ];
    for (const [label, token] of refused) {
      const r = await backchannel(token);
      expect({ label, status: r.status, error: r.status === 400 ? json(r).error : r.text }).toEqual({ label, status: 400, error: 'invalid_request' });
      expect((await system(b)).status).toBe(200);
    }
  });

  test('a correct logout token (sub) ends every session of the user; the same token again is a replay (400)', async () => {
    const b1 = await adminSession();
    const b2 = await adminSession();
    const alice = new HttpBrowser();
    expect((await alice.loginThrough(`${gw.url}${EXPLORER}`, 'alice')).status).toBe(403); // signed in, not an admin
    expect((await api(alice, `${gw.url}/_gateway/me`)).status).toBe(200);
    const sub = json(await api(b1, `${gw.url}/_gateway/me`)).subject as string;
    const token = await logoutToken({ claims: { sub } });
    const ok = await backchannel(token);
    expect(ok.status).toBe(200);
    expect(ok.headers.get('cache-control')).toBe('no-store');
    for (const b of [b1, b2]) {
      const r = await system(b);
      expect(r.status).toBe(401);
      expect(json(r).error).toBe('SESSION_EXPIRED');
    }
    // Another user's session is not touched.
    expect((await api(alice, `${gw.url}/_gateway/me`)).status).toBe(200);
    // Replayed: refused, whatever it would do now.
    const b3 = await adminSession();
    const replay = await backchannel(token);
    expect(replay.status).toBe(400);
    expect(json(replay).error_description).toMatch(/replayed/);
    expect((await system(b3)).status).toBe(200);
  });

  test('a logout token naming the IdP session (sid) ends exactly the sessions of that IdP session', async () => {
    // The sid is in the ID token: a local logout shows it (id_token_hint) without ending the IdP session.
    const x = await adminSession();
    const out = await x.request(`${gw.url}/_gateway/logout`, { method: 'POST', headers: { origin: gw.url, 'content-type': 'application/x-www-form-urlencoded' }, body: '' });
    const hint = new URL(out.location!).searchParams.get('id_token_hint')!;
    const { sid, sub } = JSON.parse(Buffer.from(hint.split('.')[1]!, 'base64url').toString()) as { sid: string; sub: string };
    expect(sid).toEqual(expect.any(String));
    // Same browser, same IdP session: a new gateway session with the same sid. Another browser: another sid.
    expect((await x.loginThrough(`${gw.url}${EXPLORER}`, 'admin')).status).toBe(200);
    const y = await adminSession();
    expect((await system(x)).status).toBe(200);

    // As IdPs send it: sid and sub. The sid decides; the user's other IdP session goes on.
    const r = await backchannel(await logoutToken({ claims: { sid, sub } }));
    expect(r.status).toBe(200);
    expect((await system(x)).status).toBe(401);
    expect((await system(y)).status).toBe(200);
    // sid alone is enough too.
    expect((await x.loginThrough(`${gw.url}${EXPLORER}`, 'admin')).status).toBe(200);
    expect((await system(x)).status).toBe(200);
    expect((await backchannel(await logoutToken({ claims: { sid } }))).status).toBe(200);
    expect((await system(x)).status).toBe(401);
    expect((await system(y)).status).toBe(200);
  });
});

// ------------------------------------------------------------------------------------------------
// Refresh refused by the IdP

describe('refresh failure', () => {
  test('when the IdP refuses the refresh (the user logged out at the IdP), the session ends: navigation 302 to login, API 401', async () => {
    // refreshBefore 59m: every request refreshes. No back-channel logout for this client, so only
    // the failed refresh can tell the gateway.
    const g = await startExtraGateway('pgw-refresh', '  refreshBefore: 59m', ['backchannel_logout_uri', 'backchannel_logout_session_required']);
    const b = new HttpBrowser();
    expect((await b.loginThrough(`${g.url}${EXPLORER}`, 'admin')).status).toBe(200);
    const before = idp.refreshGrantCount();
    expect((await system(b, g)).status).toBe(200);
    expect(idp.refreshGrantCount()).toBeGreaterThan(before);
    const cookie = sessionCookie(b, g)!;

    // RP-initiated logout at the IdP for this client, as its page does it (a form posted by script).
    const confirm = await b.request(`${idp.issuer}/protocol/openid-connect/logout?client_id=pgw-refresh`);
    expect(confirm.status).toBe(200);
    const action = /<form id="op.logoutForm" method="post" action="([^"]+)"/.exec(confirm.text)?.[1];
    const xsrf = /name="xsrf" value="([^"]+)"/.exec(confirm.text)?.[1];
    expect(action && xsrf).toBeTruthy();
    const done = await b.request(new URL(action!, confirm.url).href, {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', origin: idp.origin }, body: new URLSearchParams({ xsrf: xsrf! }).toString(),
    });
    expect(done.status).toBeLessThan(400);

    const nav = await b.request(`${g.url}${EXPLORER}`);
    expect(nav.status).toBe(302);
    expect(nav.location).toBe(`${g.url}/_gateway/login?return=${enc(EXPLORER)}`);
    expect(clearsSession(nav)).toBe(true);
    expect(g.logs.some((l) => l.msg === 'session refresh refused by the IdP: session ended')).toBe(true);
    // The session is gone, not just the cookie.
    b.setCookie(g.url, 'pgw_session', cookie);
    const r = await system(b, g);
    expect(r.status).toBe(401);
    expect(json(r).error).toBe('SESSION_EXPIRED');
  }, 30_000);
});
