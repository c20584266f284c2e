// The shipped routes.yaml as it is, in real Chromium: a role limited to some studies (`external`:
// view, only studies whose InstitutionName is NORTH CLINIC) sees exactly those studies in OHIF. erin
// (external) logs in through the gateway (BFF) and OHIF's study list holds the NORTH CLINIC studies
// and nothing else — the same set Orthanc itself finds for that institution; she opens one and an
// image is drawn; she types the viewer URL of a GENERAL HOSPITAL study by hand and gets nothing but
// the gateway's not-found answers (the same as for a study that does not exist), and no image. alice
// (viewer, unlimited) still sees every patient in the same gateway: the filter is per caller.
import { readFileSync } from 'node:fs';
import { type Browser, type BrowserContext, type Page, type Request, type Response } from 'playwright-core';
import { loadDemoData, type DemoDataSummary } from '../support/load-studies.js';
import { startOrthanc, type OrthancHandle } from '../support/orthanc.js';
import { routesEnv } from '../support/stack-env.js';
import { launchChromium, waitForImage, watchPageProblems, showsImage } from '../support/browser.js';
import { freeLoopbackPort, startGateway, type RunningGateway } from '../support/gateway.js';
import { DEMO_USERS, gatewayClient, startTestIdp, type TestIdp } from '../support/test-idp.js';
import { jest } from '@jest/globals';

// A real browser on a 2-core machine shared with Orthanc and the IdP: a timing failure is retried
// once (and its error still printed); a real failure fails twice.
jest.retryTimes(1, { logErrorsBeforeRetry: true });

const VERBOSE = Boolean(process.env.E2E_VERBOSE);
/** With E2E_SHOTS=<dir>: screenshots of what OHIF shows, for a human to look at. */
const SHOTS = process.env.E2E_SHOTS;
const REALM_PATH = '/auth/realms/demo';
const STUDIES = '/pacs/dicom-web/studies';

let orthanc: OrthancHandle;
let data: DemoDataSummary;
let idp: TestIdp;
let gw: RunningGateway;
let browser: Browser;
/** What Orthanc itself holds: every study's UID → its InstitutionName. */
let institutionOf: Map<string, string>;
/** The NORTH CLINIC studies, straight from Orthanc (its REST API's exact-match search, not DICOMweb). */
let northClinic: Set<string>;

type DicomJson = Record<string, { vr?: string; Value?: unknown[] }>;
const tagValue = (d: DicomJson, tag: string): string | undefined => {
  const v = d[tag]?.Value?.[0];
  return typeof v === 'string' ? v : undefined;
};
const studyUid = (d: DicomJson) => tagValue(d, '0020000D');

/** A QIDO search straight at Orthanc (with its own credentials: no gateway in between). */
async function orthancQido(query: string): Promise<DicomJson[]> {
  const res = await fetch(`${orthanc.url}/dicom-web/studies?${query}`, { headers: { authorization: orthanc.authHeader, accept: 'application/dicom+json' } });
  if (res.status !== 200) throw new Error(`Orthanc answered ${res.status} to /dicom-web/studies?${query}`);
  return (await res.json()) as DicomJson[];
}

beforeAll(async () => {
  orthanc = await startOrthanc();
  data = await loadDemoData(orthanc, { samples: false });
  const all = await orthancQido('includefield=00080080');
  institutionOf = new Map(all.map((d) => [studyUid(d)!, tagValue(d, '00080080') ?? '']));
  // Not QIDO's `InstitutionName=NORTH%20CLINIC`: the DICOMweb plugin 1.7 of Orthanc 1.10 finds nothing
  // for any exact-match value holding a space (`NORTH+CLINIC`, `StudyDescription=CT%20HEAD` alike: []),
  // while `NORTH?CLINIC` finds both. Orthanc's own /tools/find matches it exactly.
  const found = await fetch(`${orthanc.url}/tools/find`, {
    method: 'POST', headers: { authorization: orthanc.authHeader, 'content-type': 'application/json' },
    body: JSON.stringify({ Level: 'Study', Expand: true, Query: { InstitutionName: 'NORTH CLINIC' } }),
  });
  if (found.status !== 200) throw new Error(`Orthanc answered ${found.status} to /tools/find`);
  northClinic = new Set(((await found.json()) as { MainDicomTags: { StudyInstanceUID: string } }[]).map((s) => s.MainDicomTags.StudyInstanceUID));
  // The issuer and the gateway's client registration name the gateway's port: chosen first.
  const publicUrl = `http://127.0.0.1:${await freeLoopbackPort()}`;
  idp = await startTestIdp({
    issuerUrl: `${publicUrl}${REALM_PATH}`, algs: ['RS256'], users: DEMO_USERS,
    clients: { 'pacs-gateway': gatewayClient(publicUrl) },
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

/** The demo study of a patient (the first one, in the demo spec's order of that patient's studies). */
function studyOf(patientId: string, institution: string): string {
  const found = data.studies.filter((s) => s.patientId === patientId && institutionOf.get(s.studyInstanceUID) === institution);
  if (found.length !== 1) throw new Error(`expected one ${institution} study of ${patientId}, found ${found.length}`);
  return found[0]!.studyInstanceUID;
}

// ---------------------------------------------------------------------------------------------
// Watching the browser (as in ohif-bff.test.ts)

interface PacsRequest { at: number; method: string; url: string; status?: number; contentType?: string; body?: string }
interface Watch {
  violations: string[];
  errors: string[];
  pacs: PacsRequest[];
  /** Bodies still being read. */
  pending: Promise<void>[];
}

/** JSON answers (searches, metadata, errors) are small and worth keeping; pixel data is not. */
const KEEP_BODY = /^application\/(dicom\+)?json/i;

/** CSP violations, page errors and every /pacs request (what came back, and JSON bodies). */
async function watch(context: BrowserContext, page: Page): Promise<Watch> {
  const w: Watch = { violations: [], errors: [], pacs: [], pending: [] };
  await watchPageProblems(page, w);
  const seen = new Map<Request, PacsRequest>();
  // The context sees requests of the page and of its workers alike.
  context.on('request', (req) => {
    if (!new URL(req.url()).pathname.startsWith('/pacs')) return;
    const entry: PacsRequest = { at: Date.now(), method: req.method(), url: req.url() };
    seen.set(req, entry);
    w.pacs.push(entry);
  });
  context.on('response', (res: Response) => {
    const entry = seen.get(res.request());
    if (!entry) return;
    entry.status = res.status();
    entry.contentType = res.headers()['content-type'] ?? '';
    if (!KEEP_BODY.test(entry.contentType)) return;
    w.pending.push(res.text().then((body) => { entry.body = body; }, () => undefined));
  });
  return w;
}

const short = (url: string) => { const u = new URL(url); return `${u.pathname.replace(/\d+(\.\d+){2,}/g, '<uid>')}${u.search ? '?…' : ''}`; };
const described = (r: PacsRequest) => `${r.method} ${short(r.url)} → ${r.status ?? '-'}`;
const pathOf = (r: PacsRequest) => new URL(r.url).pathname;

/** With E2E_VERBOSE: the timing and every /pacs request, grouped. */
function report(what: string, ms: number, w: Watch): void {
  if (!VERBOSE) return;
  const byKind = new Map<string, number>();
  for (const line of w.pacs.map(described)) byKind.set(line, (byKind.get(line) ?? 0) + 1);
  console.log(`${what}: ${ms} ms, ${w.violations.length} CSP violations, ${w.errors.length} page errors, ${w.pacs.length} /pacs requests\n`
    + [...byKind].map(([k, n]) => `  ${n} × ${k}`).join('\n') + (w.errors.length ? `\n${w.errors.join('\n')}` : ''));
}

async function shot(page: Page, name: string): Promise<void> {
  if (SHOTS) await page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });
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

/** Logs in at / and waits for OHIF's study list to show `name` and then to settle. */
async function studyListOf(page: Page, username: string, name: string): Promise<void> {
  await logIn(page, username);
  await page.getByText(name).first().waitFor({ timeout: 30_000 });
  await page.waitForLoadState('networkidle', { timeout: 15_000 }).catch(() => undefined);
}

/** How many times a text shows in the page's visible text (the study list: one row per study). */
const occurrences = async (page: Page, text: string): Promise<number> => (await page.locator('body').innerText()).split(text).length - 1;

/** The study UIDs of the study list's QIDO answers (OHIF's search across studies), and how many answers there were. */
function studyListAnswers(w: Watch): { answers: PacsRequest[]; uids: string[] } {
  const answers = w.pacs.filter((r) => pathOf(r) === STUDIES && r.status === 200 && r.body !== undefined);
  const uids = answers.flatMap((r) => (JSON.parse(r.body!) as DicomJson[]).map((d) => studyUid(d) ?? '<no StudyInstanceUID>'));
  return { answers, uids };
}


const sorted = (xs: Iterable<string>) => [...xs].sort();

// ---------------------------------------------------------------------------------------------

test('erin (external: NORTH CLINIC only) logs in at / → OHIF lists exactly the NORTH CLINIC studies, the same set Orthanc finds for that institution', async () => {
  // What Orthanc holds: two NORTH CLINIC studies among five (else the comparisons below prove nothing),
  // by its exact-match search and by the InstitutionName (0008,0080) of its full DICOMweb study list alike.
  expect(northClinic.size).toBe(2);
  expect(sorted(northClinic)).toEqual(sorted([...institutionOf].filter(([, i]) => i === 'NORTH CLINIC').map(([uid]) => uid)));
  expect(sorted(northClinic)).toEqual(sorted([studyOf('PAT-0003', 'NORTH CLINIC'), studyOf('PAT-0004', 'NORTH CLINIC')]));
  expect(institutionOf.size).toBe(5);

  const { context, page, w } = await freshPage();
  try {
    const started = performance.now();
    await studyListOf(page, 'erin', 'MILLER, CAROL');
    await Promise.all(w.pending);
    report('erin: login + study list', Math.round(performance.now() - started), w);
    await shot(page, 'erin-study-list');
    expect(new URL(page.url()).pathname).toBe('/');

    // The list: carol's study and david's follow-up (his CT HEAD is GENERAL HOSPITAL), nobody else.
    for (const name of ['MILLER, CAROL', 'NGUYEN, DAVID']) expect(await page.getByText(name).first().isVisible()).toBe(true);
    for (const name of ['DOE, ALICE', 'SMITH, BOB']) expect(await page.getByText(name).count()).toBe(0);
    expect(await occurrences(page, 'NGUYEN, DAVID')).toBe(1);
    expect(await page.getByText('1-2 of 2').count()).toBe(1); // OHIF's own count of the list
    expect(await page.getByText('MR BRAIN FOLLOW-UP').count()).toBeGreaterThan(0);
    expect(await page.getByText('CT HEAD').count()).toBe(0);

    // What the gateway answered to OHIF's search: exactly Orthanc's own NORTH CLINIC studies.
    const { answers, uids } = studyListAnswers(w);
    expect(answers.length).toBeGreaterThan(0);
    expect(sorted(new Set(uids))).toEqual(sorted(northClinic));
    expect(uids.length).toBe(new Set(uids).size * answers.length); // each answer the whole set, no duplicates

    expect(w.pacs.filter((r) => r.status === 401 || r.status === 403).map(described)).toEqual([]);
    expect(w.violations).toEqual([]);
    expect(w.errors).toEqual([]);
  } finally {
    await context.close();
  }
}, 60_000);

test('erin opens carol\'s NORTH CLINIC study in the viewer: an image is drawn, every /pacs request answered 200', async () => {
  const carol = studyOf('PAT-0003', 'NORTH CLINIC');
  const { context, page, w } = await freshPage();
  try {
    const started = performance.now();
    await studyListOf(page, 'erin', 'MILLER, CAROL');
    const viewerFrom = Date.now();
    await page.goto(`${gw.url}/viewer?StudyInstanceUIDs=${carol}`);
    await waitForImage(page);
    await page.waitForLoadState('networkidle', { timeout: 15_000 }).catch(() => undefined);
    await Promise.all(w.pending);
    report('erin: login + viewer of carol\'s study', Math.round(performance.now() - started), w);
    await shot(page, 'erin-viewer-carol');

    const viewer = w.pacs.filter((r) => r.at >= viewerFrom);
    expect(viewer.some((r) => r.url.includes(`/studies/${carol}/`) && r.url.includes('/metadata') && r.status === 200)).toBe(true);
    expect(viewer.some((r) => r.url.includes(`/studies/${carol}/`) && /\/frames\//.test(r.url) && r.status === 200)).toBe(true);
    // Every /pacs request of the page answered 200: none refused (401/403) nor hidden (404).
    expect(w.pacs.filter((r) => r.status !== undefined && r.status !== 200).map(described)).toEqual([]);
    expect(w.violations).toEqual([]);
    expect(w.errors).toEqual([]);
  } finally {
    await context.close();
  }
}, 60_000);

test('erin types the viewer URL of alice\'s GENERAL HOSPITAL study: only not-found answers (as for a study that does not exist), no image', async () => {
  const alice = studyOf('PAT-0001', 'GENERAL HOSPITAL');
  const { context, page, w } = await freshPage();
  try {
    await studyListOf(page, 'erin', 'MILLER, CAROL');
    const viewerFrom = Date.now();
    await page.goto(`${gw.url}/viewer?StudyInstanceUIDs=${alice}`);
    // What OHIF shows (Chromium, OHIF 3.13.2): a black page with the text "One or more of the requested
    // studies are not available at this time. Return to the study list to select a different study to
    // view." (under its first-visit tour, "Scrolling Through Images 1/11 Skip all"): no viewport, no canvas.
    const unavailable = page.getByText('One or more of the requested studies are not available');
    const settled = Date.now() + 20_000;
    while (Date.now() < settled && !(await unavailable.isVisible()) && !(await showsImage(page))) await page.waitForTimeout(250);
    expect(await showsImage(page)).toBe(false);
    expect(await unavailable.isVisible()).toBe(true);
    await page.waitForLoadState('networkidle', { timeout: 15_000 }).catch(() => undefined);
    // And still no image 8 seconds later (the same page draws carol's study in a few: test above).
    const noImageUntil = Date.now() + 8_000;
    while (Date.now() < noImageUntil) {
      expect(await showsImage(page)).toBe(false);
      await page.waitForTimeout(250);
    }
    await Promise.all(w.pending);
    await shot(page, 'erin-viewer-alice');
    if (VERBOSE) console.log(`OHIF shows, for alice's study:\n${(await page.locator('body').innerText()).slice(0, 2000)}`);
    report('erin: viewer of alice\'s study', 0, w);

    // OHIF asked for alice's study…
    const forAlice = w.pacs.filter((r) => r.at >= viewerFrom && r.url.includes(alice));
    expect(forAlice.length).toBeGreaterThan(0);
    // …and every answer was the gateway's not-found: 404 {"error":"NOT_FOUND"}, or an empty search.
    const notFound = (r: PacsRequest) =>
      (r.status === 404 && /json/.test(r.contentType ?? '') && (JSON.parse(r.body ?? '{}') as { error?: string }).error === 'NOT_FOUND')
      || (r.status === 200 && r.body !== undefined && JSON.parse(r.body) instanceof Array && (JSON.parse(r.body) as unknown[]).length === 0);
    expect(forAlice.filter((r) => r.status !== undefined && !notFound(r)).map((r) => `${described(r)} ${r.contentType} ${r.body?.slice(0, 200)}`)).toEqual([]);
    // In particular, no metadata, frame or rendered image of it came back.
    expect(forAlice.filter((r) => /\/(metadata|frames|rendered|bulk)/.test(r.url) && r.status === 200).map(described)).toEqual([]);

    // Straight from the page, with erin's session: alice's study answers exactly as one that does not exist.
    const missing = '1.2.826.0.1.3680043.8.498.99999999999999999999999999999999';
    const ask = (path: string, accept = 'application/dicom+json') => page.evaluate(async ([url, accept]) => {
      const r = await fetch(url!, { headers: { accept: accept! } });
      const body = await r.text();
      let json: unknown;
      try { json = JSON.parse(body); } catch { json = body; }
      if (json && typeof json === 'object' && 'requestId' in json) delete (json as { requestId?: string }).requestId;
      return { status: r.status, type: r.headers.get('content-type'), json };
    }, [path, accept]);
    // Its real series and instance UIDs too (what someone who knows them would ask for), pixels included.
    const known = data.studies.find((x) => x.studyInstanceUID === alice)!;
    const [series, instance] = [known.seriesInstanceUIDs[0]!, known.sopInstanceUIDs[0]!];
    const frames = 'multipart/related; type="application/octet-stream"; transfer-syntax=*';
    for (const [tail, accept] of [
      ['/metadata'], ['/series'], ['/instances'], [`/series/${series}/metadata`], [`/series/${series}/instances`],
      [`/series/${series}/instances/${instance}/frames/1`, frames], [`/series/${series}/instances/${instance}/rendered`, 'image/jpeg'],
    ] as [string, string?][]) {
      const [foreign, absent] = [await ask(`${STUDIES}/${alice}${tail}`, accept), await ask(`${STUDIES}/${missing}${tail}`, accept)];
      expect({ tail, ...foreign }).toEqual({ tail, ...absent });
      expect([404, 200]).toContain(foreign.status);
      if (foreign.status === 404) expect(foreign.json).toMatchObject({ error: 'NOT_FOUND' });
      else expect(foreign.json).toEqual([]);
    }
    expect(await ask(`${STUDIES}?StudyInstanceUID=${alice}`)).toMatchObject({ status: 200, json: [] });

    expect(w.pacs.filter((r) => r.status === 401 || r.status === 403).map(described)).toEqual([]);
    expect(w.violations).toEqual([]);
  } finally {
    await context.close();
  }
}, 60_000);

test('alice (viewer, unlimited) in the same gateway still sees every patient: the filter is per caller', async () => {
  const { context, page, w } = await freshPage();
  try {
    await studyListOf(page, 'alice', 'DOE, ALICE');
    await Promise.all(w.pending);
    for (const name of ['DOE, ALICE', 'SMITH, BOB', 'MILLER, CAROL', 'NGUYEN, DAVID']) expect(await page.getByText(name).first().isVisible()).toBe(true);
    expect(await occurrences(page, 'NGUYEN, DAVID')).toBe(2);
    expect(await page.getByText('1-5 of 5').count()).toBe(1);
    expect(await page.getByText('CT HEAD').count()).toBeGreaterThan(0);
    const { answers, uids } = studyListAnswers(w);
    expect(answers.length).toBeGreaterThan(0);
    expect(sorted(new Set(uids))).toEqual(sorted(institutionOf.keys()));
    expect(w.pacs.filter((r) => r.status === 401 || r.status === 403).map(described)).toEqual([]);
    expect(w.violations).toEqual([]);
    expect(w.errors).toEqual([]);
  } finally {
    await context.close();
  }
}, 60_000);
