// Security headers for the viewer, tuned to what OHIF needs (checked in Chromium by
// tests/e2e/ohif-csp.test.ts). helmet runs once at start-up; requests only copy the result.
// Two policies: documents get a strict one; scripts get one that also allows eval, which only
// matters where a script is a worker's entry point (a worker's policy is its script's response
// header) — Cornerstone's emscripten codecs build functions with `new Function` in the decode worker.
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import helmet from 'helmet';

export type HeaderList = ReadonlyArray<readonly [name: string, value: string]>;

export interface SiteHeaderOptions {
  /** Bodies of the inline <script> elements of OHIF's pages, allowed by hash rather than 'unsafe-inline'. */
  readonly inlineScripts: readonly string[];
  /** The public URL is https: adds HSTS and upgrade-insecure-requests (both harmful on plain http). */
  readonly https: boolean;
  /** Extra origins the viewer may fetch from (e.g. an IdP's token endpoint on another origin). */
  readonly connectSrc?: readonly string[];
}

/** Every <script> element without a src attribute: its exact text, as CSP hashes it. */
export function inlineScriptsOf(html: string): string[] {
  const out: string[] = [];
  for (const m of html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script\s*>/gi)) {
    if (!/\ssrc\s*=/i.test(` ${m[1] ?? ''}`) && m[2]) out.push(m[2]);
  }
  return out;
}

const hashSource = (script: string): string => `'sha256-${createHash('sha256').update(script, 'utf8').digest('base64')}'`;

export interface SiteHeaders {
  /** For HTML documents and every other non-script file. */
  readonly page: HeaderList;
  /** For JavaScript files: the same, plus 'unsafe-eval' for worker contexts. */
  readonly script: HeaderList;
}

function helmetFor(opts: SiteHeaderOptions, allowEval: boolean) {
  return helmet({
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        'default-src': ["'self'"],
        // Codecs and ONNX runtimes are WebAssembly; OHIF's pages carry a few small inline scripts.
        'script-src': ["'self'", "'wasm-unsafe-eval'", ...(allowEval ? ["'unsafe-eval'"] : []), ...new Set(opts.inlineScripts.map(hashSource))],
        'script-src-attr': ["'none'"],
        // Emotion/Tailwind-style runtime <style> elements.
        'style-src': ["'self'", "'unsafe-inline'"],
        // Cornerstone's decode and compute workers are bundles, some started from blob: URLs.
        'worker-src': ["'self'", 'blob:'],
        'img-src': ["'self'", 'data:', 'blob:'],
        'media-src': ["'self'", 'data:', 'blob:'],
        'font-src': ["'self'", 'data:'],
        'connect-src': ["'self'", 'data:', 'blob:', ...(opts.connectSrc ?? [])],
        'object-src': ["'none'"],
        'base-uri': ["'self'"],
        'form-action': ["'self'"],
        'frame-ancestors': ["'self'"],
        ...(opts.https ? { 'upgrade-insecure-requests': [] } : {}),
      },
    },
    // Cross-origin isolation gives OHIF SharedArrayBuffer (Cornerstone's volume loader); every
    // subresource is same-origin through the gateway, so require-corp costs nothing.
    crossOriginEmbedderPolicy: { policy: 'require-corp' },
    crossOriginOpenerPolicy: { policy: 'same-origin' },
    crossOriginResourcePolicy: { policy: 'same-origin' },
    referrerPolicy: { policy: 'no-referrer' },
    strictTransportSecurity: opts.https ? { maxAge: 31_536_000, includeSubDomains: true } : false,
    xFrameOptions: { action: 'sameorigin' },
  });
}

/** The header lists helmet would set, captured once by running it against a recording response. */
export function siteHeaders(opts: SiteHeaderOptions): SiteHeaders {
  return Object.freeze({ page: record(helmetFor(opts, false)), script: record(helmetFor(opts, true)) });
}

function record(middleware: ReturnType<typeof helmet>): HeaderList {
  const headers = new Map<string, string>();
  const recorder = {
    setHeader(name: string, value: string | number | readonly string[]) { headers.set(name, String(value)); return recorder; },
    removeHeader(name: string) { headers.delete(name); },
  };
  let done = false;
  middleware({} as IncomingMessage, recorder as unknown as ServerResponse, (err?: unknown) => {
    if (err) throw err;
    done = true;
  });
  if (!done) throw new Error('helmet did not finish synchronously; headers cannot be precomputed');
  return Object.freeze([...headers].map(([k, v]) => Object.freeze([k, v] as const)));
}
