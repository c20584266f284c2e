// OHIF through the real gateway in real Chromium, with a real Orthanc behind /pacs: the study list
// shows the synthetic patients and the viewer draws images — uncompressed and through a WebAssembly
// codec in a worker — under the gateway's CSP and cross-origin isolation, with no violation anywhere.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type Browser, type ConsoleMessage, type Page } from 'playwright-core';
import { loadDemoData, SAMPLES_DIR, uploadInstances, type DemoDataSummary } from '../support/load-studies.js';
import { startOrthanc, type OrthancHandle } from '../support/orthanc.js';
import { launchChromium, waitForImage } from '../support/browser.js';
import { startGateway, type RunningGateway } from '../support/gateway.js';
import { readDicomIdentifiers } from '../support/synthetic-dicom.js';
import { jest } from '@jest/globals';

// A real browser on a 2-core machine shared with Orthanc and the IdP: a timing failure is retried
// once (and its error still printed); a real failure fails twice.
jest.retryTimes(1, { logErrorsBeforeRetry: true });

const VERBOSE = Boolean(process.env.E2E_VERBOSE);

let orthanc: OrthancHandle;
let data: DemoDataSummary;
let gw: RunningGateway;
let browser: Browser;
let jpegLsStudy: string | undefined;

/** The real uncompressed CT sample re-encoded as JPEG-LS (decoded by CharLS/wasm in a worker), if dcmtk is installed. */
function makeJpegLsInstance(): Buffer | undefined {
  const source = path.join(SAMPLES_DIR, 'CT1_UNC.explicit_little_endian.dcm');
  if (!existsSync('/usr/bin/dcmcjpls') || !existsSync('/usr/bin/dcmodify') || !existsSync(source)) return undefined;
  const dir = mkdtempSync(path.join(tmpdir(), 'jpegls-'));
  try {
    const plain = path.join(dir, 'in.dcm');
    execFileSync('cp', [source, plain]);
    execFileSync('chmod', ['u+w', plain]);
    execFileSync('dcmodify', ['-nb', '-gst', '-gse', '-gin', '-m', '(0010,0010)=CODEC^JPEGLS', '-m', '(0010,0020)=PAT-JPEGLS', plain]);
    execFileSync('dcmcjpls', [plain, path.join(dir, 'jls.dcm')]);
    return readFileSync(path.join(dir, 'jls.dcm'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

beforeAll(async () => {
  orthanc = await startOrthanc();
  data = await loadDemoData(orthanc, { samples: false });
  const jls = makeJpegLsInstance();
  if (jls) {
    await uploadInstances(orthanc, [jls]);
    jpegLsStudy = readDicomIdentifiers(jls).studyInstanceUID;
  }
  gw = await startGateway(`
server: { listen: 127.0.0.1:0, admin: false, logLevel: warn }
routes:
  - name: dicomweb
    path: /pacs
    upstream: ${orthanc.url}
    auth: public
    upstreamAuth: { basic: { username: ${orthanc.username}, password: '${orthanc.password}' } }
    forward: { orthancLinks: true, splitIncludeField: true }
  - { name: viewer, path: /, static: ohif, auth: public, ohif: { title: Test PACS } }
`);
  browser = await launchChromium();
}, 90_000);

afterAll(async () => {
  await browser?.close();
  await gw?.stop();
  await orthanc?.stop();
});

interface Watch { violations: string[]; errors: string[]; console: string[] }

/** Records CSP violations (DOM events, and Chromium's reports from the page and its workers) and page errors. */
async function watch(page: Page): Promise<Watch> {
  const w: Watch = { violations: [], errors: [], console: [] };
  await page.exposeFunction('__reportViolation', (v: string) => { w.violations.push(v); });
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      (window as unknown as { __reportViolation(v: string): void }).__reportViolation(`${e.effectiveDirective} blocked ${e.blockedURI}`);
    });
  });
  const onConsole = (m: ConsoleMessage) => {
    w.console.push(`${m.type()}: ${m.text()}`);
    if (/Content Security Policy|Refused to/i.test(m.text())) w.violations.push(m.text().split('\n')[0]!);
  };
  page.on('console', onConsole);
  page.on('worker', (worker) => worker.on('console', onConsole));
  page.on('pageerror', (e) => w.errors.push(e.message));
  return w;
}

const report = (what: string, ms: number, w: Watch) => {
  if (VERBOSE) console.log(`${what}: ${ms} ms, ${w.violations.length} CSP violations\n${w.console.join('\n')}`);
};

test('the study list loads with no CSP violation, cross-origin isolated, listing the studies in Orthanc', async () => {
  const page = await browser.newPage();
  const w = await watch(page);
  const started = performance.now();
  const response = await page.goto(`${gw.url}/`);
  await page.getByText('DOE, ALICE').first().waitFor({ timeout: 30_000 });
  report('study list', Math.round(performance.now() - started), w);

  expect(response?.headers()['content-security-policy']).not.toContain("'unsafe-eval'");
  expect(await page.locator('#root > *').count()).toBeGreaterThan(0);
  expect(await page.evaluate(() => window.crossOriginIsolated)).toBe(true);
  for (const name of ['SMITH, BOB', 'MILLER, CAROL', 'NGUYEN, DAVID']) {
    expect(await page.getByText(name).first().isVisible()).toBe(true);
  }
  // Descriptions arrive only because the gateway splits OHIF's includefield=a,b for Orthanc 1.7.
  const description = data.synthetic.find((i) => i.patientId === 'PAT-0001')?.studyDescription as string;
  await page.getByText(description).first().waitFor({ timeout: 10_000 });
  expect(w.violations).toEqual([]);
  expect(w.errors).toEqual([]);
  await page.close();
}, 60_000);


test.each([
  ['a synthetic CT (uncompressed)', () => data.studies.find((s) => s.patientId === 'PAT-0001')?.studyInstanceUID],
  ['a JPEG-LS CT (CharLS WebAssembly in the decode worker)', () => jpegLsStudy],
])('the viewer draws %s with no CSP violation', async (label, studyOf) => {
  const study = studyOf();
  if (!study) throw new Error(`cannot test "${label}": dcmtk (dcmcjpls, dcmodify) or the CT sample is missing (scripts/setup.sh installs dcmtk)`);
  const page = await browser.newPage();
  const w = await watch(page);
  const started = performance.now();
  await page.goto(`${gw.url}/viewer?StudyInstanceUIDs=${study}`);
  await waitForImage(page);
  report(`viewer, ${label}`, Math.round(performance.now() - started), w);
  expect(w.violations).toEqual([]);
  expect(w.errors).toEqual([]);
  await page.close();
}, 60_000);
