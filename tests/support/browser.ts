// Debian's Chromium driven by playwright-core, as the e2e tests use it.
import { chromium, type Browser, type Page } from 'playwright-core';

/** Headless, no sandbox (root in CI), and nothing that phones home on a machine without a network. */
export const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync'];

export const launchChromium = (): Promise<Browser> =>
  chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: CHROMIUM_ARGS });

/** Waits until Cornerstone's canvas holds a drawn (non-black) image. */
export async function waitForImage(page: Page): Promise<void> {
  await page.waitForFunction(() => {
    const c = document.querySelector('canvas.cornerstone-canvas') as HTMLCanvasElement | null;
    const ctx = c && c.width > 0 ? c.getContext('2d', { willReadFrequently: true }) : null;
    if (!c || !ctx) return false;
    const d = ctx.getImageData(0, 0, c.width, c.height).data;
    for (let i = 0; i < d.length; i += 16) if (d[i]! + d[i + 1]! + d[i + 2]! > 60) return true;
    return false;
  }, undefined, { timeout: 45_000, polling: 250 });
}
