// Browser login sessions over real HTTP: the gateway's OIDC client (code flow + PKCE) against the
// real oidc-provider IdP and its login form, /pacs-admin in front of a real Orthanc, a cookie jar
// that behaves like a browser's. Who gets in, who gets which page, and what the cookie looks like.
import { freeLoopbackPort, startGateway, type RunningGateway } from '../support/gateway.js';
import { randomUUID } from 'node:crypto';
import { HttpBrowser } from '../support/http-browser.js';
import { uploadInstances } from '../support/load-studies.js';
import { generateStudies } from '../support/synthetic-dicom.js';
import { startOrthanc, type OrthancHandle } from '../support/orthanc.js';
import { DEMO_USERS, gatewayClient, startTestIdp, type TestIdp } from '../support/test-idp.js';

const SECRET = 'x'.repeat(40);
let orthanc: OrthancHandle;
let idp: TestIdp;
let gw: RunningGateway;
const clients: Record<string, Record<string, unknown>> = {};

export function sessionRoutes(o: { idp: TestIdp; orthanc: OrthancHandle; port: number; extra?: string; store?: string }): string {
  return `
server:
  listen: 127.0.0.1:${o.port}
  admin: false
  logLevel: debug
identity:
  issuer: ${o.idp.issuer}
  audience: [pacs]
  client: { id: pacs-gateway, secret: '${o.idp.clientSecret}' }
session:
  secret: '${SECRET}'
store: ${o.store ?? 'memory'}
routes:
  - name: admin
    path: /pacs-admin
    upstream: ${o.orthanc.url}
    expose: upstream
    auth: [session]
    allow: [admin]
    upstreamAuth: { basic: { username: ${o.orthanc.username}, password: '${o.orthanc.password}' } }
${o.extra ?? ''}`;
}

async function ready(g: RunningGateway): Promise<void> {
  const until = Date.now() + 20_000;
  for (;;) {
    const r = await g.gateway.readiness();
    if (r.ready) return;
    if (Date.now() > until) throw new Error(`gateway not ready: ${JSON.stringify(r.checks)}`);
    await new Promise((ok) => setTimeout(ok, 50));
  }
}

beforeAll(async () => {
  [orthanc, idp] = await Promise.all([startOrthanc(), startTestIdp({ algs: ['RS256'], users: DEMO_USERS, clients })]);
  gw = await startGateway(sessionRoutes({ idp, orthanc, port: await freeLoopbackPort() }));
  // The IdP reads client metadata per request: the gateway's port is known only now.
  clients['pacs-gateway'] = gatewayClient(gw.url);
  await ready(gw);
}, 60_000);

afterAll(async () => {
  await gw?.stop();
  await Promise.all([orthanc?.stop(), idp?.stop()]);
});

const explorer = () => `${gw.url}/pacs-admin/app/explorer.html`;

test('a browser navigation without a session is sent to the login; an API call gets 401 JSON, never a redirect', async () => {
  const b = new HttpBrowser();
  const nav = await b.request(explorer());
  expect(nav.status).toBe(302);
  expect(nav.location).toBe(`${gw.url}/_gateway/login?return=${encodeURIComponent('/pacs-admin/app/explorer.html')}`);

  for (const headers of [{ accept: 'application/json' }, { accept: 'text/html', 'sec-fetch-mode': 'cors' }] as Record<string, string>[]) {
    const api = await b.request(`${gw.url}/pacs-admin/system`, { navigate: false, headers });
    expect(api.status).toBe(401);
    expect(api.location).toBeUndefined();
    expect(JSON.parse(api.text)).toMatchObject({ error: 'UNAUTHENTICATED' });
  }
  const post = await b.request(`${gw.url}/pacs-admin/tools/find`, { method: 'POST', navigate: false, headers: { 'content-type': 'application/json' }, body: '{}' });
  expect(post.status).toBe(401);
});

test('the login goes to the IdP with PKCE S256, state and nonce, and an admin lands where they were going', async () => {
  const b = new HttpBrowser();
  const steps = await b.follow(explorer());
  const toIdp = steps.find((s) => s.location?.startsWith(idp.authorizationEndpoint));
  expect(toIdp).toBeDefined();
  const auth = new URL(toIdp!.location!);
  expect(auth.searchParams.get('code_challenge_method')).toBe('S256');
  expect(auth.searchParams.get('code_challenge')).toMatch(/^[A-Za-z0-9_-]{43}$/);
  expect(auth.searchParams.get('state')).toMatch(/^[A-Za-z0-9_-]{20,}$/);
  expect(auth.searchParams.get('nonce')).toMatch(/^[A-Za-z0-9_-]{20,}$/);
  expect(auth.searchParams.get('client_id')).toBe('pacs-gateway');
  expect(auth.searchParams.get('redirect_uri')).toBe(`${gw.url}/_gateway/callback`);

  const after = await b.submitLogin(steps[steps.length - 1]!, 'admin', 'admin');
  const callback = after.find((s) => s.url.startsWith(`${gw.url}/_gateway/callback`))!;
  expect(callback.status).toBe(302);
  expect(callback.location).toBe(explorer());
  const cookie = callback.headers.getSetCookie().find((c) => c.startsWith('pgw_session='))!;
  expect(cookie).toMatch(/; HttpOnly/i);
  expect(cookie).toMatch(/; SameSite=Lax/i);
  expect(cookie).not.toMatch(/Secure/i); // http public URL: a Secure cookie would never come back
  expect(cookie.split(';')[0]!.length).toBeLessThan(200);
  const last = after[after.length - 1]!;
  expect(last.status).toBe(200);
  expect(last.text).toContain('Orthanc Explorer');
  // No token reaches the browser: not in cookies, not in any page or header of the flow.
  const jar = JSON.stringify([...b.jar.values()].flatMap((m) => [...m.values()]));
  expect(jar).not.toMatch(/eyJ[A-Za-z0-9_-]+\.eyJ/);

  const system = await b.request(`${gw.url}/pacs-admin/system`, { navigate: false, headers: { accept: 'application/json' } });
  expect(system.status).toBe(200);
  expect(JSON.parse(system.text)).toHaveProperty('DicomAet');
  const me = JSON.parse((await b.request(`${gw.url}/_gateway/me`, { navigate: false })).text);
  expect(me).toMatchObject({ username: 'admin', roles: ['admin', 'uploader', 'viewer'] });
  expect(me.permissions).toContain('admin');
});

test('a viewer gets a 403 page naming the missing permission with a way out; a user without roles is told so', async () => {
  const alice = new HttpBrowser();
  const page = await alice.loginThrough(explorer(), 'alice');
  expect(page.status).toBe(403);
  expect(page.headers.get('content-type')).toMatch(/text\/html/);
  expect(page.text).toContain('admin permission');
  expect(page.text).toContain('alice');
  expect(page.text).toMatch(/<form[^>]+method="post"[^>]+action="\/_gateway\/logout"/);
  const api = await alice.request(`${gw.url}/pacs-admin/system`, { navigate: false, headers: { accept: 'application/json' } });
  expect(api.status).toBe(403);
  expect(JSON.parse(api.text)).toMatchObject({ error: 'FORBIDDEN' });
  expect(api.headers.get('www-authenticate')).toBeNull(); // a session is not a bearer token

  const carol = new HttpBrowser();
  const none = await carol.loginThrough(explorer(), 'carol');
  expect(none.status).toBe(403);
  expect(none.text).toContain('carol');
  expect(none.text.toLowerCase()).toContain('no role');
});

test('a session cookie set before the login does not survive it (no fixation)', async () => {
  const b = new HttpBrowser();
  const planted = 'planted-by-an-attacker';
  b.setCookie(gw.url, 'pgw_session', planted);
  const first = await b.loginThrough(explorer(), 'admin');
  expect(first.status).toBe(200);
  const now = b.cookiesFor(gw.url).get('pgw_session')!.value;
  expect(now).not.toBe(planted);
  // A real session id of another login, planted in a browser that then signs in, is replaced too.
  const victim = new HttpBrowser();
  victim.setCookie(gw.url, 'pgw_session', now);
  const form = await victim.follow(`${gw.url}/_gateway/login?return=%2Fpacs-admin%2Fapp%2Fexplorer.html`);
  await victim.submitLogin(form[form.length - 1]!, 'alice', 'alice');
  expect(victim.cookiesFor(gw.url).get('pgw_session')!.value).not.toBe(now);
  expect(JSON.parse((await victim.request(`${gw.url}/_gateway/me`, { navigate: false })).text)).toMatchObject({ username: 'alice' });
  // The attacker's copy of the planted id no longer works: the login ended that session.
  const attacker = await b.request(`${gw.url}/pacs-admin/system`, { navigate: false, headers: { accept: 'application/json' } });
  expect(attacker.status).toBe(401);
});

test('logout ends the local session and sends the browser to the IdP with id_token_hint and the registered return', async () => {
  const b = new HttpBrowser();
  expect((await b.loginThrough(explorer(), 'admin')).status).toBe(200);
  const sessionCookie = b.cookiesFor(gw.url).get('pgw_session')!.value;
  const out = await b.request(`${gw.url}/_gateway/logout`, { method: 'POST', headers: { origin: gw.url, 'content-type': 'application/x-www-form-urlencoded' }, body: '' });
  expect(out.status).toBe(303);
  const end = new URL(out.location!);
  expect(`${end.origin}${end.pathname}`).toBe(`${idp.issuer}/protocol/openid-connect/logout`);
  expect(end.searchParams.get('id_token_hint')).toMatch(/^eyJ/);
  expect(end.searchParams.get('post_logout_redirect_uri')).toBe(`${gw.url}/_gateway/logged-out`);
  expect(b.cookiesFor(gw.url).has('pgw_session')).toBe(false);
  // The old cookie is dead even if someone kept a copy.
  const replay = new HttpBrowser();
  replay.setCookie(gw.url, 'pgw_session', sessionCookie);
  expect((await replay.request(`${gw.url}/pacs-admin/system`, { navigate: false, headers: { accept: 'application/json' } })).status).toBe(401);
  const loggedOut = await b.request(`${gw.url}/_gateway/logged-out`);
  expect(loggedOut.status).toBe(200);
  expect(loggedOut.text).toContain('/_gateway/login');
});

test('logins and logouts are counted, and no token, cookie, code or secret ever reaches the log', async () => {
  const b = new HttpBrowser();
  expect((await b.loginThrough(explorer(), 'admin')).status).toBe(200);
  const cookie = b.cookiesFor(gw.url).get('pgw_session')!.value;
  await b.request(`${gw.url}/_gateway/logout`, { method: 'POST', headers: { origin: gw.url }, body: '' });
  const metrics = await gw.gateway.metrics.registry.getSingleMetricAsString('pacs_gateway_session_events_total');
  expect(Number(/event="login"} (\d+)/.exec(metrics)?.[1])).toBeGreaterThanOrEqual(1);
  expect(Number(/event="logout"} (\d+)/.exec(metrics)?.[1])).toBeGreaterThanOrEqual(1);
  const logs = gw.rawLogs();
  expect(logs).toContain('"msg":"login"');
  expect(logs).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}\.eyJ/); // no JWT (access, ID or logout token)
  expect(logs).not.toContain(cookie.split('.')[0]); // no session id
  expect(logs).not.toContain(SECRET);
  expect(logs).not.toContain(idp.clientSecret);
  // The callback's code and state are redacted in the access log.
  const callbacks = gw.logs.filter((l) => l.msg === 'request' && l.path === '/_gateway/callback');
  expect(callbacks.length).toBeGreaterThan(0);
  for (const line of callbacks) expect(String(line.query)).toMatch(/^code=\[redacted\]&state=\[redacted\]/);
});

test('a signed-in browser makes share links from the gateway\'s own pages only (its session cookie is ambient)', async () => {
  // A second gateway with a DICOMweb route and share links; the same client, its redirect added.
  const port = await freeLoopbackPort();
  const extra = `  - { name: dicomweb, path: /pacs, upstream: ${orthanc.url}, expose: dicomweb, auth: [session, share], allow: [view],
      upstreamAuth: { basic: { username: ${orthanc.username}, password: '${orthanc.password}' } } }
shares: { route: dicomweb }
`;
  const base = gatewayClient(gw.url);
  const mine = gatewayClient(`http://127.0.0.1:${port}`);
  clients['pacs-gateway'] = { ...base, redirect_uris: [...(base.redirect_uris as string[]), ...(mine.redirect_uris as string[])] };
  const g = await startGateway(sessionRoutes({ idp, orthanc, port, extra }));
  try {
    await ready(g);
    const [uploaded] = await uploadInstances(orthanc, [generateStudies({ seed: randomUUID(), patients: [{ name: 'SHARE^ME', id: 'PAT-SM', birthDate: '19900101', sex: 'O', studies: [
      { description: 'S', date: '20240101', accessionNumber: 'ACC-SM', series: [{ modality: 'CT', description: 'x', slices: 1, rows: 16, columns: 16 }] }] }] })[0]!.file]);
    const study = (await (await fetch(`${orthanc.url}/studies/${uploaded!.ParentStudy}`, { headers: { authorization: orthanc.authHeader } })).json() as { MainDicomTags: { StudyInstanceUID: string } }).MainDicomTags.StudyInstanceUID;
    const b = new HttpBrowser();
    expect((await b.loginThrough(`${g.url}/pacs-admin/app/explorer.html`, 'admin')).status).toBe(200);
    const body = JSON.stringify({ studies: [study], expiresIn: '1h' });
    const post = (headers: Record<string, string>) => b.request(`${g.url}/_gateway/shares`, {
      method: 'POST', navigate: false, body, headers: { 'content-type': 'application/json', accept: 'application/json', ...headers },
    });
    const cross = await post({ origin: 'https://evil.example' });
    expect({ status: cross.status, error: (JSON.parse(cross.text) as { error: string }).error }).toEqual({ status: 403, error: 'CROSS_ORIGIN' });
    const same = await post({ origin: g.url });
    expect(same.status).toBe(201);
    expect((JSON.parse(same.text) as { url: string }).url).toMatch(new RegExp(`^${g.url}/_gateway/s/[A-Za-z0-9_-]{43}$`));
  } finally {
    await g.stop();
  }
});
