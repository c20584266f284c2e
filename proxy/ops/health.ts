// Liveness and readiness: alive means the process answers; ready means every upstream answers HTTP.
import http from 'node:http';
import https from 'node:https';

export interface ReadinessCheck { readonly name: string; check(): Promise<{ ok: boolean; detail: string }> }

/** Any HTTP answer (even 401) proves the upstream is there; a refused or silent socket does not. */
export function upstreamReachable(name: string, origin: string, timeoutMs = 2000): ReadinessCheck {
  const url = new URL(origin);
  const lib = url.protocol === 'https:' ? https : http;
  return {
    name,
    check: () => new Promise((resolve) => {
      const req = lib.request(url, { method: 'HEAD', agent: false, timeout: timeoutMs }, (res) => {
        res.resume();
        resolve({ ok: true, detail: `HTTP ${res.statusCode}` });
      });
      req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
      req.on('error', (err: NodeJS.ErrnoException) => resolve({ ok: false, detail: err.code ?? err.message }));
      req.end();
    }),
  };
}

export async function runChecks(checks: readonly ReadinessCheck[]): Promise<{ ready: boolean; checks: Record<string, { ok: boolean; detail: string }> }> {
  const results = await Promise.all(checks.map(async (c) => [c.name, await c.check()] as const));
  return { ready: results.every(([, r]) => r.ok), checks: Object.fromEntries(results) };
}

type Readiness = Awaited<ReturnType<typeof runChecks>>;

/** One round of checks shared by every caller within `ttlMs` (and by concurrent callers while it runs). */
export function cachedReadiness(run: () => Promise<Readiness>, ttlMs: number): () => Promise<Readiness> {
  let last: { at: number; result: Promise<Readiness> } | undefined;
  return () => {
    const now = Date.now();
    if (!last || now - last.at >= ttlMs) {
      const result = run();
      last = { at: now, result };
      // A round that throws is not kept: the next caller tries again.
      result.catch(() => { if (last?.result === result) last = undefined; });
    }
    return last.result;
  };
}
