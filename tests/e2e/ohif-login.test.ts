// OHIF's own OIDC client (the alternative to the shipped backend-for-frontend mode), in real
// Chromium: OHIF → the dev IdP's login form through the gateway's /auth route → back to OHIF with a
// bearer token → QIDO/WADO through /pacs to a real Orthanc. The gateway runs the shipped routes.yaml
// switched to this mode the way the README says (viewer public, /pacs bearer only).
import { readFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { type Browser, type BrowserContext, type Page, type Request } from 'playwright-core';
import { loadDemoData, type DemoDataSummary } from '../support/load-studies.js';
import { startOrthanc, type OrthancHandle } from '../support/orthanc.js';
import { routesEnv } from '../support/stack-env.js';
import { launchChromium, waitForImage, watchPageProblems } from '../support/browser.js';
import { startGateway, type RunningGateway } from '../support/gateway.js';
import { browserClient, DEMO_USERS, startTestIdp, type TestIdp } from '../support/test-idp.js';
import { jest } from '@jest/globals';

// A real browser on a 2-core machine shared with Orthanc and the IdP: a timing failure is retried
// once (and its error still printed); a real failure fails twice.
jest.retryTimes(1, { logErrorsBeforeRetry: true });

const VERBOSE = Boolean(process.env.E2E_VERBOSE);
const REALM_PATH = '/auth/realms/demo';
const OHIF_CLIENT = 'ohif-viewer';

let orthanc: OrthancHandle;
let data: DemoDataSummary;
let idp: TestIdp;
let gw: RunningGateway;
let browser: Browser;

/** The issuer must name the gateway's port, so the port is chosen before anything starts. */
async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((ok, ko) => { srv.once('error', ko); srv.listen(0, '127.0.0.1', ok); });
  const { port } = srv.address() as AddressInfo;
  await new Promise<void>((ok) => srv.close(() => ok()));
  return port;
}

/** The shipped routes.yaml with OHIF logging users in itself: the viewer public, /pacs bearer only. */
export function viewerOidcMode(shipped: string): string {
  const pacs = /(\n  - name: dicomweb\n(?:    .*\n)*?)    auth: \[session, bearer(?:, share)?\]\n/;
  const viewer = /(\n  - name: viewer\n(?:    .*\n)*?)    auth: \[session(?:, share)?\]\n/;
  if (!pacs.test(shipped) || !viewer.test(shipped)) throw new Error('routes.yaml no longer has the BFF auth lines this test switches');
  return shipped.replace(pacs, '$1    auth: [bearer]\n').replace(viewer, '$1    auth: public\n');
}

beforeAll(async () => {
  orthanc = await startOrthanc();
  data = await loadDemoData(orthanc);
  const publicUrl = `http://127.0.0.1:${await freePort()}`;
  idp = await startTestIdp({
    issuerUrl: `${publicUrl}${REALM_PATH}`, algs: ['RS256'], users: DEMO_USERS, clients: { [OHIF_CLIENT]: browserClient(publicUrl) },
    // OHIF renews a token 60 s before it expires: 65 s makes it renew (with its refresh token) within a test.
    accessTokenTtl: 65,
  });
  gw = await startGateway(viewerOidcMode(readFileSync(new URL('../../routes.yaml', import.meta.url), 'utf8')),
    routesEnv({ listen: new URL(publicUrl).host, publicUrl, adminListen: '127.0.0.1:0', orthanc, idp }));
  browser = await launchChromium();
}, 90_000);

afterAll(async () => {
  await browser?.close();
  await gw?.stop();
  await Promise.all([idp?.stop(), orthanc?.stop()]);
});

interface PacsRequest { method: string; url: string; authorization: 'bearer' | 'none' | 'other'; status?: number; wwwAuthenticate?: string }
interface Watch { violations: string[]; errors: string[]; pacs: PacsRequest[] }

/** CSP violations and page errors (as in ohif-csp.test.ts), plus every /pacs request: did it carry a token, what came back. */
async function watch(context: BrowserContext, page: Page): Promise<Watch> {
  const w: Watch = { violations: [], errors: [], pacs: [] };
  await watchPageProblems(page, w);
  const seen = new Map<Request, PacsRequest>();
  // The context sees requests of the page and of its workers alike.
  context.on('request', (req) => {
    if (!new URL(req.url()).pathname.startsWith('/pacs')) return;
    const value = req.headers().authorization;
    const entry: PacsRequest = { method: req.method(), url: req.url(), authorization: !value ? 'none' : /^Bearer \S+$/.test(value) ? 'bearer' : 'other' };
    seen.set(req, entry);
    w.pacs.push(entry);
  });
  context.on('response', (res) => {
    const entry = seen.get(res.request());
    if (!entry) return;
    entry.status = res.status();
    entry.wwwAuthenticate = res.headers()['www-authenticate'];
  });
  return w;
}

const short = (url: string) => { const u = new URL(url); return `${u.pathname.replace(/\d+(\.\d+){2,}/g, '<uid>')}${u.search ? '?…' : ''}`; };

/** One line per request; `→ -` means no answer yet (e.g. cancelled by a navigation). */
const described = (r: PacsRequest) => `${r.method} ${short(r.url)} auth=${r.authorization} → ${r.status ?? '-'}`;

/** With E2E_VERBOSE: the timing and every /pacs request, grouped — which ones carried a token. */
function report(what: string, ms: number, w: Watch): void {
  if (!VERBOSE) return;
  const byKind = new Map<string, number>();
  for (const line of w.pacs.map(described)) byKind.set(line, (byKind.get(line) ?? 0) + 1);
  console.log(`${what}: ${ms} ms, ${w.violations.length} CSP violations, ${w.errors.length} page errors, ${w.pacs.length} /pacs requests\n`
    + [...byKind].map(([k, n]) => `  ${n} × ${k}`).join('\n') + (w.errors.length ? `\n${w.errors.join('\n')}` : ''));
}

/** OHIF's start page sends the browser to the IdP's form (through /auth): fill it in and submit. */
async function logIn(page: Page, username: string, password: string): Promise<void> {
  await page.goto(`${gw.url}/`);
  await page.waitForURL((u) => u.origin === gw.url && u.pathname.startsWith(`${REALM_PATH}/interaction/`), { timeout: 30_000 });
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}


test('the IdP is reached through /auth with its public issuer, and its tokens open /pacs (internalUrl end to end)', async () => {
  const doc = await (await fetch(`${gw.url}${REALM_PATH}/.well-known/openid-configuration`)).json() as Record<string, string>;
  expect(doc.issuer).toBe(`${gw.url}${REALM_PATH}`);
  expect(doc.jwks_uri).toBe(`${gw.url}${REALM_PATH}/protocol/openid-connect/certs`);
  expect(doc.authorization_endpoint).toBe(`${gw.url}${REALM_PATH}/protocol/openid-connect/auth`);

  const studies = `${gw.url}/pacs/dicom-web/studies`;
  expect((await fetch(studies)).status).toBe(401);
  const token = await idp.issueAccessToken({ username: 'api', realmRoles: ['viewer'], clientId: OHIF_CLIENT });
  const res = await fetch(studies, { headers: { authorization: `Bearer ${token}` } });
  expect(res.status).toBe(200);
  expect((await res.json() as unknown[]).length).toBe(data.studyInstanceUIDs.length);
  // The gateway took the keys from the IdP's own port (jwks_uri rewritten to internalUrl), never through itself.
  expect(idp.jwksFetchCount()).toBeGreaterThanOrEqual(1);
  expect(gw.logs.filter((l) => l.msg === 'request' && String(l.path).endsWith('/openid-connect/certs'))).toEqual([]);
});

test('/pacs-admin takes an admin bearer token (browsers log in there with a session, see session-login.test.ts)', async () => {
  expect((await fetch(`${gw.url}/pacs-admin/app/explorer.html`)).status).toBe(401);
  const viewer = await idp.issueAccessToken({ realmRoles: ['viewer'], clientId: OHIF_CLIENT });
  expect((await fetch(`${gw.url}/pacs-admin/system`, { headers: { authorization: `Bearer ${viewer}` } })).status).toBe(403);
  const admin = await idp.issueAccessToken({ realmRoles: ['admin'], clientId: OHIF_CLIENT });
  expect((await fetch(`${gw.url}/pacs-admin/system`, { headers: { authorization: `Bearer ${admin}` } })).status).toBe(200);
});

/** A fresh browser context (no IdP session) with the watches attached. */
async function freshPage(): Promise<{ context: BrowserContext; page: Page; w: Watch }> {
  const context = await browser.newContext();
  const page = await context.newPage();
  return { context, page, w: await watch(context, page) };
}

test('alice logs in through the IdP form, OHIF lists the studies and draws an image — every /pacs request with her token', async () => {
  const { context, page, w } = await freshPage();
  try {
    const started = performance.now();
    const hostile = '"><img src=x onerror=alert(1)>';
    await logIn(page, hostile, 'wrong-password');
    await page.getByRole('alert').getByText('Invalid username or password.').waitFor();
    expect(await page.getByLabel('Username').inputValue()).toBe(hostile); // echoed as text, not markup
    expect(await page.locator('img').count()).toBe(0);
    await page.getByLabel('Username').fill('alice');
    await page.getByLabel('Password').fill('alice');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByText('DOE, ALICE').first().waitFor({ timeout: 30_000 });
    report('login + study list', Math.round(performance.now() - started), w);
    expect(new URL(page.url()).origin).toBe(gw.url);
    for (const name of ['SMITH, BOB', 'MILLER, CAROL', 'NGUYEN, DAVID']) expect(await page.getByText(name).first().isVisible()).toBe(true);
    const qido = w.pacs.filter((r) => new URL(r.url).pathname === '/pacs/dicom-web/studies');
    expect(qido.length).toBeGreaterThan(0);
    expect(qido.map(described).filter((d) => !d.endsWith('auth=bearer → 200'))).toEqual([]);

    const study = data.studies.find((s) => s.patientId === 'PAT-0001')!.studyInstanceUID;
    await page.goto(`${gw.url}/viewer?StudyInstanceUIDs=${study}`);
    await waitForImage(page);
    report('login + study list + viewer', Math.round(performance.now() - started), w);

    expect(w.pacs.some((r) => r.url.includes('/frames/') && r.status === 200)).toBe(true);
    expect(w.pacs.filter((r) => r.authorization !== 'bearer' || r.status === 401).map(described)).toEqual([]);
    expect(w.violations).toEqual([]);
    expect(w.errors).toEqual([]);
  } finally {
    await context.close();
  }
}, 120_000);

test("OHIF follows Orthanc's bulk-data links and renews its token, both with the token, through the gateway", async () => {
  // The real CT sample pair (PatientID 0010): OHIF reads some of its attributes from BulkDataURIs.
  const sample = data.studies.find((s) => s.source === 'sample' && s.patientId === '0010');
  if (!sample) throw new Error('the real DICOM samples are missing (tests/support/load-studies.ts SAMPLES_DIR)');
  const { context, page, w } = await freshPage();
  try {
    const started = performance.now();
    await logIn(page, 'alice', 'alice');
    await page.getByText('DOE, ALICE').first().waitFor({ timeout: 30_000 });
    const bulk = page.waitForResponse((r) => r.url().includes('/bulk/'), { timeout: 30_000 });
    const renewed = page.waitForResponse((r) => r.url().endsWith('/openid-connect/token') && /grant_type=refresh_token/.test(r.request().postData() ?? ''), { timeout: 30_000 });
    await page.goto(`${gw.url}/viewer?StudyInstanceUIDs=${sample.studyInstanceUID}`);
    expect((await bulk).status()).toBe(200);
    const refresh = await renewed;
    report('login + bulk data + token renewal', Math.round(performance.now() - started), w);
    expect(refresh.status()).toBe(200);
    const { access_token: token } = await refresh.json() as { access_token: string };
    expect((await fetch(`${gw.url}/pacs/dicom-web/studies`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);

    expect(w.pacs.filter((r) => r.url.includes('/bulk/')).map(described).filter((d) => !d.endsWith('auth=bearer → 200'))).toEqual([]);
    expect(w.pacs.filter((r) => r.authorization !== 'bearer' || r.status === 401).map(described)).toEqual([]);
    expect(w.violations).toEqual([]);
  } finally {
    await context.close();
  }
}, 120_000);

test('carol (no roles) logs in but the gateway refuses her QIDO with 403 insufficient_scope, and OHIF lists nothing', async () => {
  const { context, page, w } = await freshPage();
  try {
    const started = performance.now();
    const refused = page.waitForResponse((r) => new URL(r.url()).pathname === '/pacs/dicom-web/studies', { timeout: 30_000 });
    await logIn(page, 'carol', 'carol');
    const res = await refused;
    report('carol: login + refused QIDO', Math.round(performance.now() - started), w);
    expect(res.status()).toBe(403);
    expect(res.headers()['www-authenticate']).toMatch(/^Bearer realm="pacs", error="insufficient_scope"/);
    expect(res.request().headers().authorization).toMatch(/^Bearer /);
    expect(new URL(page.url()).origin).toBe(gw.url);
    await page.waitForTimeout(500);
    expect(await page.getByText('DOE, ALICE').count()).toBe(0);
    expect(w.violations).toEqual([]);
  } finally {
    await context.close();
  }
}, 60_000);
