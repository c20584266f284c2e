// Debian's Chromium driven by playwright-core, as the e2e tests use it.
import { chromium, type Browser, type ConsoleMessage, type Page } from 'playwright-core';

/** Headless, no sandbox (root in CI), and nothing that phones home on a machine without a network. */
export const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync'];

export const launchChromium = (): Promise<Browser> =>
  chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: CHROMIUM_ARGS });

/** In the page: whether Cornerstone's canvas holds a drawn (non-black) image. */
const canvasShowsImage = (): boolean => {
  const c = document.querySelector('canvas.cornerstone-canvas') as HTMLCanvasElement | null;
  const ctx = c && c.width > 0 ? c.getContext('2d', { willReadFrequently: true }) : null;
  if (!c || !ctx) return false;
  const d = ctx.getImageData(0, 0, c.width, c.height).data;
  for (let i = 0; i < d.length; i += 16) if (d[i]! + d[i + 1]! + d[i + 2]! > 60) return true;
  return false;
};

/** Waits until Cornerstone's canvas holds a drawn (non-black) image. */
export async function waitForImage(page: Page): Promise<void> {
  await page.waitForFunction(canvasShowsImage, undefined, { timeout: 45_000, polling: 250 });
}

/** Whether Cornerstone's canvas holds a drawn (non-black) image now: the test of waitForImage, once. */
export const showsImage = (page: Page): Promise<boolean> => page.evaluate(canvasShowsImage);

/**
 * Collects, into `into`, the page's CSP violations (the page's securitypolicyviolation events and
 * the console lines of the page and its workers) and its uncaught errors, as they happen.
 */
export async function watchPageProblems(page: Page, into: { violations: string[]; errors: string[] }): Promise<void> {
  await page.exposeFunction('__reportViolation', (v: string) => { into.violations.push(v); });
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      (window as unknown as { __reportViolation(v: string): void }).__reportViolation(`${e.effectiveDirective} blocked ${e.blockedURI}`);
    });
  });
  const onConsole = (m: ConsoleMessage) => {
    if (/Content Security Policy|Refused to/i.test(m.text())) into.violations.push(m.text().split('\n')[0]!);
  };
  page.on('console', onConsole);
  page.on('worker', (worker) => worker.on('console', onConsole));
  page.on('pageerror', (e) => into.errors.push(e.message));
}
