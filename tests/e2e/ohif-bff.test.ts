// The shipped routes.yaml as it is (backend-for-frontend), in real Chromium: the gateway logs users in
// itself (/_gateway/login → the test IdP's form through /auth → /_gateway/callback, an HttpOnly
// pgw_session cookie), OHIF runs without an OIDC client of its own and every /pacs request is
// authorised by the cookie — no token ever reaches the browser. With 60-second access tokens, OHIF
// keeps loading new series and frames after three minutes (the gateway refreshes the tokens
// server-side); users without a role get the gateway's page, admins get Orthanc Explorer at
// /pacs-admin (and can change data through it: same-origin requests pass the CSRF check), others a
// 403 page; logout ends both the gateway's and the IdP's session.
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { type Browser, type BrowserContext, type Page, type Request, type Response } from 'playwright-core';
import { loadDemoData, uploadInstances, type DemoDataSummary } from '../support/load-studies.js';
import { startOrthanc, type OrthancHandle } from '../support/orthanc.js';
import { routesEnv } from '../support/stack-env.js';
import { launchChromium, waitForImage, watchPageProblems } from '../support/browser.js';
import { freeLoopbackPort, startGateway, type RunningGateway } from '../support/gateway.js';
import { generateStudies } from '../support/synthetic-dicom.js';
import { DEMO_USERS, gatewayClient, startTestIdp, type TestIdp } from '../support/test-idp.js';
import { jest } from '@jest/globals';

// A real browser on a 2-core machine shared with Orthanc and the IdP: a timing failure is retried
// once (and its error still printed); a real failure fails twice.
jest.retryTimes(1, { logErrorsBeforeRetry: true });

const VERBOSE = Boolean(process.env.E2E_VERBOSE);
const REALM_PATH = '/auth/realms/demo';
const ACCESS_TOKEN_TTL_S = 60;
/** Three-part JWTs (access and ID tokens) start with a base64url JSON header and payload. */
const JWT = /eyJ[A-Za-z0-9_-]*\.eyJ/;

let orthanc: OrthancHandle;
let data: DemoDataSummary;
let idp: TestIdp;
let gw: RunningGateway;
let browser: Browser;

beforeAll(async () => {
  orthanc = await startOrthanc();
  data = await loadDemoData(orthanc, { samples: false });
  // The issuer and the gateway's client registration name the gateway's port: chosen first.
  const publicUrl = `http://127.0.0.1:${await freeLoopbackPort()}`;
  idp = await startTestIdp({
    issuerUrl: `${publicUrl}${REALM_PATH}`, algs: ['RS256'], users: DEMO_USERS,
    clients: { 'pacs-gateway': gatewayClient(publicUrl) },
    accessTokenTtl: ACCESS_TOKEN_TTL_S,
  });
  // The shipped file, untouched: only the environment differs.
  gw = await startGateway(readFileSync(new URL('../../routes.yaml', import.meta.url), 'utf8'),
    routesEnv({ listen: new URL(publicUrl).host, publicUrl, adminListen: '127.0.0.1:0', orthanc, idp }));
  const until = Date.now() + 20_000;
  for (let r = await gw.gateway.readiness(); !r.ready; r = await gw.gateway.readiness()) {
    if (Date.now() > until) throw new Error(`gateway not ready: ${JSON.stringify(r.checks)}`);
    await new Promise((ok) => setTimeout(ok, 50));
  }
  browser = await launchChromium();
}, 90_000);

afterAll(async () => {
  await browser?.close();
  await gw?.stop();
  await Promise.all([idp?.stop(), orthanc?.stop()]);
});

// ---------------------------------------------------------------------------------------------
// Watching the browser

interface PacsRequest { at: number; method: string; url: string; authorization: boolean; status?: number }
interface Watch {
  violations: string[];
  errors: string[];
  pacs: PacsRequest[];
  /** Every URL the context requested, and the Location headers it was sent to. */
  urls: string[];
  /** Where a JWT turned up in what the browser received (URLs, headers, text bodies). */
  jwtSightings: string[];
  /** Text bodies still being read, and how many were searched. */
  pending: Promise<void>[];
  searchedBodies: number;
}

const TEXT_TYPE = /^(text\/|application\/(json|dicom\+json|javascript|x-www-form-urlencoded|xml)|image\/svg)/i;

/**
 * CSP violations and page errors (as in ohif-login.test.ts), every /pacs request (with or without an
 * Authorization header, what came back, when), and a search for JWTs in everything the browser saw.
 */
async function watch(context: BrowserContext, page: Page): Promise<Watch> {
  const w: Watch = { violations: [], errors: [], pacs: [], urls: [], jwtSightings: [], pending: [], searchedBodies: 0 };
  await watchPageProblems(page, w);
  const seen = new Map<Request, PacsRequest>();
  // The context sees requests of the page and of its workers alike.
  context.on('request', (req) => {
    w.urls.push(req.url());
    if (JWT.test(req.url())) w.jwtSightings.push(`request URL ${req.url()}`);
    if (!new URL(req.url()).pathname.startsWith('/pacs')) return;
    const entry: PacsRequest = { at: Date.now(), method: req.method(), url: req.url(), authorization: req.headers().authorization !== undefined };
    seen.set(req, entry);
    w.pacs.push(entry);
  });
  context.on('response', (res: Response) => {
    const entry = seen.get(res.request());
    if (entry) entry.status = res.status();
    const headers = res.headers();
    for (const [name, value] of Object.entries(headers)) if (JWT.test(value)) w.jwtSightings.push(`${name} header of ${res.url()}`);
    if (headers.location) w.urls.push(new URL(headers.location, res.url()).href);
    if (!TEXT_TYPE.test(headers['content-type'] ?? '') || (res.status() >= 300 && res.status() < 400)) return;
    w.pending.push(res.text().then(
      (body) => { w.searchedBodies++; if (JWT.test(body)) w.jwtSightings.push(`body of ${res.url()}: …${body.slice(Math.max(0, body.search(JWT) - 40), body.search(JWT) + 60)}…`); },
      () => undefined, // the body is gone (e.g. the page navigated away): nothing to search
    ));
  });
  return w;
}

const short = (url: string) => { const u = new URL(url); return `${u.pathname.replace(/\d+(\.\d+){2,}/g, '<uid>')}${u.search ? '?…' : ''}`; };

/** One line per request; `→ -` means no answer (yet, or cancelled by a navigation). */
const described = (r: PacsRequest) => `${r.method} ${short(r.url)} auth=${r.authorization ? 'yes' : 'none'} → ${r.status ?? '-'}`;

/** With E2E_VERBOSE: the timing and every /pacs request, grouped. */
function report(what: string, ms: number, w: Watch): void {
  if (!VERBOSE) return;
  const byKind = new Map<string, number>();
  for (const line of w.pacs.map(described)) byKind.set(line, (byKind.get(line) ?? 0) + 1);
  console.log(`${what}: ${ms} ms, ${w.violations.length} CSP violations, ${w.errors.length} page errors, ${w.pacs.length} /pacs requests\n`
    + [...byKind].map(([k, n]) => `  ${n} × ${k}`).join('\n') + (w.errors.length ? `\n${w.errors.join('\n')}` : ''));
}

/** A fresh browser context (no gateway or IdP session) with the watches attached. */
async function freshPage(): Promise<{ context: BrowserContext; page: Page; w: Watch }> {
  const context = await browser.newContext();
  const page = await context.newPage();
  return { context, page, w: await watch(context, page) };
}

const onLoginForm = (u: URL) => u.origin === gw.url && u.pathname.startsWith(`${REALM_PATH}/interaction/`);

/** Opens `path` without a session: the gateway sends the browser to the IdP's form (through /auth); fill it in and submit. */
async function logIn(page: Page, username: string, path = '/'): Promise<void> {
  await page.goto(`${gw.url}${path}`);
  await page.waitForURL(onLoginForm, { timeout: 30_000 });
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(username);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

// ---------------------------------------------------------------------------------------------
// OHIF's viewport

/** A digest of the first Cornerstone canvas's pixels (sampled), or '' while none is drawn. */
const canvasDigest = (page: Page): Promise<string> => page.evaluate(() => {
  const c = document.querySelector('canvas.cornerstone-canvas') as HTMLCanvasElement | null;
  const ctx = c && c.width > 0 ? c.getContext('2d', { willReadFrequently: true }) : null;
  if (!c || !ctx) return '';
  const d = ctx.getImageData(0, 0, c.width, c.height).data;
  let h = 0x811c9dc5;
  for (let i = 0; i < d.length; i += 64) h = Math.imul(h ^ d[i]!, 0x01000193) >>> 0;
  return h.toString(16);
});

/** Waits until the viewport shows something other than the image whose digest is `before`. */
async function waitForNewImage(page: Page, before: string): Promise<void> {
  const until = Date.now() + 30_000;
  while ((await canvasDigest(page)) === before) {
    if (Date.now() > until) throw new Error('the viewport still shows the same image');
    await page.waitForTimeout(250);
  }
  await waitForImage(page);
}

/** Mouse-wheel steps over the viewport (OHIF's stack scroll): each step shows the next image. */
async function scroll(page: Page, steps: number): Promise<void> {
  const box = await page.locator('canvas.cornerstone-canvas').first().boundingBox();
  if (!box) throw new Error('no viewport to scroll');
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  for (let i = 0; i < steps; i++) {
    await page.mouse.wheel(0, 120);
    await page.waitForTimeout(150);
  }
}

/**
 * Double-clicks the series' thumbnail in OHIF's study browser (left panel): the active viewport loads
 * that series. OHIF's notifications (bottom of the page) can cover the lower thumbnails for a while:
 * when one is in the way, the double-click goes to the thumbnail itself (a DOM event, as React sees a click).
 */
async function openSeries(page: Page, seriesNumber: number): Promise<void> {
  const thumbnail = page.locator(`[data-cy="study-browser-thumbnail"][data-series="${seriesNumber}"]`);
  await thumbnail.scrollIntoViewIfNeeded();
  const clicked = await thumbnail.dblclick({ timeout: 5_000 }).then(() => true, () => false);
  if (!clicked) await thumbnail.dispatchEvent('dblclick');
}

const seriesOf = (r: PacsRequest) => /\/series\/([\d.]+)/.exec(r.url)?.[1];
const isPixels = (r: PacsRequest) => /\/(frames|rendered)\b/.test(new URL(r.url).pathname);

const sleepUntil = (t: number) => new Promise((ok) => setTimeout(ok, Math.max(0, t - Date.now())));

async function until(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((ok) => setTimeout(ok, 100));
  }
}

/**
 * OHIF's first visit of the viewer: a tour that covers it with a modal overlay, and an "investigational
 * use only" banner over the bottom of the page (and of the study browser). Dismiss both, as a user would.
 */
async function dismissViewerNotices(page: Page): Promise<void> {
  const skip = page.getByRole('button', { name: 'Skip all' });
  if (await skip.waitFor({ timeout: 10_000 }).then(() => true, () => false)) await skip.click();
  await page.locator('.shepherd-modal-is-visible').waitFor({ state: 'detached', timeout: 10_000 }).catch(() => undefined);
  const hide = page.getByRole('button', { name: 'Confirm and hide' });
  if (await hide.waitFor({ timeout: 5_000 }).then(() => true, () => false)) await hide.click();
  await hide.waitFor({ state: 'detached', timeout: 10_000 }).catch(() => undefined);
}

// ---------------------------------------------------------------------------------------------

test('alice opens / → the gateway logs her in through the IdP form → OHIF lists the studies and draws an image, every /pacs request by cookie, no token in the browser', async () => {
  const { context, page, w } = await freshPage();
  try {
    const started = performance.now();
    await logIn(page, 'alice');
    await page.getByText('DOE, ALICE').first().waitFor({ timeout: 30_000 });
    report('login + study list', Math.round(performance.now() - started), w);
    // The way in: / → the gateway's login → the IdP (its public URL, through /auth) → the gateway's callback → /.
    const path = (u: string) => new URL(u).pathname;
    expect(w.urls.map(path)).toEqual(expect.arrayContaining(['/_gateway/login', `${REALM_PATH}/protocol/openid-connect/auth`, '/_gateway/callback']));
    expect(w.urls.every((u) => new URL(u).origin === gw.url)).toBe(true);
    expect(new URL(page.url()).origin).toBe(gw.url);
    expect(path(page.url())).toBe('/');
    for (const name of ['SMITH, BOB', 'MILLER, CAROL', 'NGUYEN, DAVID']) expect(await page.getByText(name).first().isVisible()).toBe(true);
    const qido = w.pacs.filter((r) => path(r.url) === '/pacs/dicom-web/studies');
    expect(qido.length).toBeGreaterThan(0);

    const study = data.studies.find((s) => s.patientId === 'PAT-0001')!.studyInstanceUID;
    await page.goto(`${gw.url}/viewer?StudyInstanceUIDs=${study}`);
    await waitForImage(page);
    report('login + study list + viewer', Math.round(performance.now() - started), w);
    expect(w.pacs.some((r) => r.url.includes('/frames/') && r.status === 200)).toBe(true);

    // OHIF's configuration carries no OIDC client and no token.
    const appConfig = await page.evaluate(() => fetch('/app-config.js').then((r) => r.text()));
    expect(appConfig).toContain('window.config');
    expect(appConfig).not.toMatch(/oidc/i);
    expect(appConfig).not.toMatch(JWT);
    expect(appConfig).not.toMatch(/access_token|id_token|refresh_token|client_secret/i);

    // Nothing a script can read holds a token, and the session cookie is not even visible to scripts.
    const readable = await page.evaluate(() => ({
      local: JSON.stringify({ ...localStorage }), session: JSON.stringify({ ...sessionStorage }), cookie: document.cookie,
    }));
    expect(readable.local).not.toMatch(JWT);
    expect(readable.session).not.toMatch(JWT);
    expect(readable.cookie).not.toMatch(JWT);
    expect(readable.cookie).not.toContain('pgw_session');
    const cookie = (await context.cookies(gw.url)).find((c) => c.name === 'pgw_session');
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: 'Lax', path: '/' });
    expect(cookie!.value).not.toMatch(JWT);
    expect(cookie!.name.length + cookie!.value.length).toBeLessThan(200);

    await page.waitForLoadState('networkidle').catch(() => undefined);
    await Promise.all(w.pending);
    expect(w.jwtSightings).toEqual([]);
    expect(w.searchedBodies).toBeGreaterThan(10); // the IdP's form, OHIF's scripts, QIDO and metadata answers…
    // Every /pacs request: no Authorization header, answered 200 (none cancelled by the navigation is refused either).
    expect(w.pacs.filter((r) => r.authorization).map(described)).toEqual([]);
    expect(w.pacs.filter((r) => r.status !== undefined && r.status !== 200).map(described)).toEqual([]);
    expect(w.pacs.filter((r) => r.status === 200).length).toBeGreaterThan(qido.length);
    expect(w.violations).toEqual([]);
    expect(w.errors).toEqual([]);
  } finally {
    await context.close();
  }
}, 120_000);

/** A synthetic MR study of seven small series: one shown at first, a new one opened every 30 s, the last after three minutes. */
const LONG_READ = generateStudies({
  seed: 'pacs-gateway-e2e-bff-long-read-v1',
  patients: [{ name: 'LONG^READ', id: 'PAT-LONG', birthDate: '19700101', sex: 'O', studies: [{
    description: 'MR LONG READ', date: '20240601', accessionNumber: 'ACC-LONG',
    series: Array.from({ length: 7 }, (_, i) => ({
      modality: 'MR' as const, description: `Long read ${i + 1} of 7`, slices: 10, rows: 128, columns: 128,
      weighting: i % 2 ? 'T2' as const : 'T1' as const, orientation: (['axial', 'sagittal', 'coronal'] as const)[i % 3],
    })),
  }] }],
});

test(`with ${ACCESS_TOKEN_TTL_S}-second access tokens, a study open in OHIF keeps loading new series and frames after three minutes: no reload, no 401`, async () => {
  await uploadInstances(orthanc, LONG_READ.map((i) => i.file));
  const study = LONG_READ[0]!.studyInstanceUID;
  const series = [...new Map(LONG_READ.map((i) => [i.seriesInstanceUID, i.seriesDescription])).entries()]
    .map(([uid, description], index) => ({ uid, description, number: index + 1 }));
  const { context, page, w } = await freshPage();
  try {
    await logIn(page, 'alice');
    await page.getByText('DOE, ALICE').first().waitFor({ timeout: 30_000 });
    await page.goto(`${gw.url}/viewer?StudyInstanceUIDs=${study}`);
    await waitForImage(page);
    await dismissViewerNotices(page);
    await page.locator('[data-cy="study-browser-thumbnail"]').nth(series.length - 1).waitFor({ timeout: 30_000 });
    // OHIF shows one series first (and prefetches its frames); of the others it has loaded one frame each, for the thumbnails.
    const overlay = page.locator('[data-cy="viewport-overlay-top-left"]', { hasText: /Long read \d of 7/ }).first();
    await overlay.waitFor({ timeout: 30_000 });
    const text = await overlay.innerText();
    const shownFirst = series.find((c) => text.includes(c.description));
    if (!shownFirst) throw new Error(`the viewport shows none of the series: ${text}`);
    const unseen = series.filter((s) => s !== shownFirst);

    // From here on, the same document: no reload, no navigation.
    const start = Date.now();
    const refreshesBefore = idp.refreshGrantCount();
    await page.evaluate(() => { (window as unknown as { __marker: number }).__marker = 1; });
    let loads = 0;
    page.on('load', () => { loads++; });
    const log = (what: string) => { if (VERBOSE) console.log(`+${Math.round((Date.now() - start) / 1000)} s: ${what} (refresh grants so far: ${idp.refreshGrantCount() - refreshesBefore})`); };

    /** Pixels of series `uid` requested at or after `since` and answered 200. */
    const pixelsOf = (uid: string, since: number) => w.pacs.filter((r) => r.at >= since && isPixels(r) && seriesOf(r) === uid && r.status === 200);
    /** The page itself asks for a series' metadata, with the cookie only: an extra proof beside OHIF's own requests. */
    const fetchMetadata = (uid: string) => page.evaluate(
      (url) => fetch(url, { headers: { accept: 'application/dicom+json' } }).then((r) => r.status),
      `/pacs/dicom-web/studies/${study}/series/${uid}/metadata`,
    );
    /** Double-clicks a series OHIF has not shown yet: it loads and draws its frames; then scrolls through some of them. */
    const openNew = async (s: (typeof series)[number]): Promise<number> => {
      const t = Date.now();
      const before = await canvasDigest(page);
      await openSeries(page, s.number);
      await page.locator('[data-cy="viewport-overlay-top-left"]', { hasText: s.description }).waitFor({ timeout: 30_000 });
      await waitForNewImage(page, before);
      await scroll(page, 4);
      await until(() => pixelsOf(s.uid, t).length >= 2, 30_000, `frames of series ${s.number} loaded with 200`);
      expect(await fetchMetadata(s.uid)).toBe(200);
      log(`series ${s.number} (${s.description}) opened: ${pixelsOf(s.uid, t).length} frames loaded, ${w.pacs.filter((r) => r.at >= t).length} /pacs requests`);
      return t;
    };

    // Every 30 s OHIF opens a series it has not shown yet: new frames, each needing a valid token at the gateway.
    for (const [i, s] of unseen.slice(0, -1).entries()) {
      await sleepUntil(start + (i + 1) * 30_000);
      await openNew(s);
    }
    // The three minutes are over: the last series, never shown so far, is opened, loaded and drawn.
    await sleepUntil(start + 181_000);
    const last = unseen[unseen.length - 1]!;
    const mark = await openNew(last);
    expect(mark - start).toBeGreaterThanOrEqual(180_000);
    expect(pixelsOf(last.uid, mark).length).toBeGreaterThanOrEqual(2);
    await waitForImage(page);

    expect(w.pacs.filter((r) => r.status === 401 || r.status === 403).map(described)).toEqual([]);
    expect(w.pacs.filter((r) => r.authorization).map(described)).toEqual([]);
    expect(await page.evaluate(() => (window as unknown as { __marker?: number }).__marker)).toBe(1);
    expect(loads).toBe(0);
    expect(new URL(page.url()).pathname).toBe('/viewer');
    // The gateway renewed the 60-second tokens several times (it alone holds them).
    expect(idp.refreshGrantCount() - refreshesBefore).toBeGreaterThanOrEqual(3);
    expect(w.violations).toEqual([]);
    expect(w.errors).toEqual([]);
    report('three minutes in the viewer', Date.now() - start, w);
  } finally {
    await context.close();
  }
}, 300_000);

test('carol (no roles) signs in and gets the gateway\'s "no role" page (403, with Sign out), not an empty OHIF', async () => {
  const { context, page, w } = await freshPage();
  try {
    const landed = page.waitForResponse((r) => r.url() === `${gw.url}/` && r.status() !== 302, { timeout: 30_000 });
    await logIn(page, 'carol');
    const res = await landed;
    expect(res.status()).toBe(403);
    await page.waitForLoadState();
    const text = await page.locator('body').innerText();
    expect(text).toMatch(/no role/i);
    expect(text).toContain('carol');
    expect(text).not.toMatch(/data source|connection error/i);
    expect(await page.locator('#root').count()).toBe(0); // not OHIF's page
    expect(w.pacs).toEqual([]);
    const signOut = page.getByRole('button', { name: 'Sign out' });
    expect(await signOut.isVisible()).toBe(true);
    // Sign out works from that page: a form POST, which Chromium sends with `Origin: null` (the page's
    // Referrer-Policy is no-referrer) and `Sec-Fetch-Site: same-origin`.
    await signOut.click();
    await page.waitForURL((u) => u.origin === gw.url && u.pathname === '/_gateway/logged-out', { timeout: 10_000 });
    expect(await page.locator('body').innerText()).toMatch(/signed out/i);
    expect((await context.cookies(gw.url)).find((c) => c.name === 'pgw_session')).toBeUndefined();
    expect(w.violations).toEqual([]);
  } finally {
    await context.close();
  }
}, 60_000);

test('Orthanc Explorer: an admin signs in at /pacs-admin, sees the patients and deletes one through its UI; alice gets a 403 page naming the admin permission', async () => {
  // A throwaway patient, uploaded straight to Orthanc, for the admin to delete.
  const name = `THROWAWAY^${randomUUID().slice(0, 8).toUpperCase()}`;
  const files = generateStudies({
    seed: randomUUID(),
    patients: [{ name, id: `PAT-TMP-${randomUUID().slice(0, 8)}`, birthDate: '20000101', sex: 'O', studies: [
      { description: 'CT THROWAWAY', date: '20240101', accessionNumber: 'ACC-TMP', series: [{ modality: 'CT', description: 'one slice', slices: 1, rows: 64, columns: 64 }] },
    ] }],
  }).map((i) => i.file);
  const [uploaded] = await uploadInstances(orthanc, files);
  const patient = uploaded!.ParentPatient;
  const inOrthanc = async () => (await fetch(`${orthanc.url}/patients/${patient}`, { headers: { authorization: orthanc.authHeader } })).status;
  expect(await inOrthanc()).toBe(200);

  const explorer = `${gw.url}/pacs-admin/app/explorer.html`;
  const admin = await freshPage();
  try {
    await logIn(admin.page, 'admin', '/pacs-admin/app/explorer.html');
    await admin.page.waitForURL((u) => u.href.startsWith(explorer), { timeout: 30_000 });
    // Explorer's own patient list (its "All patients" page) shows the demo patients.
    await admin.page.goto(`${explorer}#find-patients`);
    await admin.page.getByText('DOE^ALICE').first().waitFor({ timeout: 30_000 });
    await admin.page.getByText(name).first().waitFor({ timeout: 10_000 });

    // Its delete button, confirmed in its dialog: a DELETE by the session cookie, from the gateway's origin.
    await admin.page.goto(`${explorer}#patient?uuid=${patient}`);
    await admin.page.getByText(name).first().waitFor({ timeout: 10_000 });
    const deleted = admin.page.waitForResponse((r) => r.request().method() === 'DELETE' && r.url().endsWith(`/pacs-admin/patients/${patient}`), { timeout: 30_000 });
    await admin.page.locator('#patient-delete').click();
    await admin.page.locator('.ui-simpledialog-controls a', { hasText: 'OK' }).click();
    const res = await deleted;
    expect(res.status()).toBe(200);
    expect(res.request().headers().authorization).toBeUndefined();
    expect(await inOrthanc()).toBe(404);
    const adminRequests = admin.w.pacs.filter((r) => r.url.startsWith(`${gw.url}/pacs-admin/`));
    expect(adminRequests.filter((r) => r.status === 401 || r.status === 403).map(described)).toEqual([]);
    expect(admin.w.violations).toEqual([]);
  } finally {
    await admin.context.close();
  }

  const alice = await freshPage();
  try {
    await logIn(alice.page, 'alice', '/pacs-admin/app/explorer.html');
    await alice.page.waitForURL((u) => u.href === explorer, { timeout: 30_000 });
    const res = await alice.page.goto(explorer);
    expect(res!.status()).toBe(403);
    const text = await alice.page.locator('body').innerText();
    expect(text).toContain('alice');
    expect(text).toMatch(/\badmin\b/);
    expect(text).toMatch(/permission/i);
    expect(await alice.page.getByRole('button', { name: 'Sign out' }).isVisible()).toBe(true);
    expect(alice.w.violations).toEqual([]);
  } finally {
    await alice.context.close();
  }
}, 120_000);

test('logout: /_gateway/logout ends the session at the gateway and the IdP; / asks for the login again and the old page gets 401 on /pacs', async () => {
  const { context, page, w } = await freshPage();
  try {
    await logIn(page, 'alice');
    await page.getByText('DOE, ALICE').first().waitFor({ timeout: 30_000 });
    const old = (await context.cookies(gw.url)).find((c) => c.name === 'pgw_session');
    expect(old).toBeDefined();
    expect(await page.evaluate(() => fetch('/pacs/dicom-web/studies').then((r) => r.status))).toBe(200);

    // Another tab of the same browser logs out; OHIF stays open in the first one.
    const tab = await context.newPage();
    const tabUrls: string[] = [];
    tab.on('request', (r) => { if (r.isNavigationRequest()) tabUrls.push(`${r.method()} ${new URL(r.url()).pathname}`); });
    await tab.goto(`${gw.url}/_gateway/logout`);
    await tab.waitForURL((u) => u.origin === gw.url && u.pathname === '/_gateway/logged-out', { timeout: 30_000 });
    expect(await tab.locator('body').innerText()).toMatch(/signed out/i);
    // Through the IdP's end-session endpoint, whose page submits its confirmation form by itself, and back.
    expect(tabUrls).toEqual(expect.arrayContaining([
      `GET ${REALM_PATH}/protocol/openid-connect/logout`, `POST ${REALM_PATH}/protocol/openid-connect/logout/confirm`, 'GET /_gateway/logged-out',
    ]));
    expect((await context.cookies(gw.url)).find((c) => c.name === 'pgw_session')).toBeUndefined();

    // The old OHIF page: its /pacs requests are refused now, and the old cookie is dead server-side too.
    expect(await page.evaluate(() => fetch('/pacs/dicom-web/studies', { headers: { accept: 'application/json' } }).then((r) => r.status))).toBe(401);
    const replay = await fetch(`${gw.url}/pacs/dicom-web/studies`, { headers: { cookie: `pgw_session=${old!.value}`, accept: 'application/json' } });
    expect(replay.status).toBe(401);

    // Opening the viewer again asks for the password again: no IdP session is left to sign in silently.
    await tab.goto(`${gw.url}/`);
    await tab.waitForURL(onLoginForm, { timeout: 30_000 });
    expect(await tab.getByLabel('Password').isVisible()).toBe(true);
    expect(w.violations).toEqual([]);
  } finally {
    await context.close();
  }
}, 60_000);
