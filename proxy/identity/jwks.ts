// The issuer's signing keys: OIDC discovery with retry, jose's remote key set (which caches keys,
// refetches on an unknown kid and dedupes fetches), plus what jose leaves to us: a cooldown that
// also holds while the IdP fails, stale-if-error, periodic refresh and readiness.
import { createRemoteJWKSet, customFetch, type JWTVerifyGetKey } from 'jose';
import type { IdentityConfig } from '../config/schema.js';
import type { Logger } from '../ops/log.js';

export interface KeySetStatus {
  readonly discovered: boolean;
  readonly keys: number;
  /** The last fetch failed; verification goes on with the keys held (stale-if-error). */
  readonly stale: boolean;
  readonly lastError?: string;
  readonly lastSuccessAt?: number;
}

export interface KeySet {
  /** Undefined until discovery succeeded and keys were fetched once: callers must fail closed. */
  readonly getKey: JWTVerifyGetKey | undefined;
  status(): KeySetStatus;
  /** Starts discovery (retrying with backoff until it succeeds) and periodic refresh. */
  start(): void;
  close(): void;
}

export interface KeySetHooks {
  readonly onFetch?: (result: 'ok' | 'error' | 'suppressed') => void;
}

/** Rewrites an IdP URL from the public issuer base to the gateway's internal base. */
export function toInternal(url: string, issuer: string, internalUrl: string | undefined): string {
  if (!internalUrl) return url;
  return url.startsWith(issuer) ? internalUrl + url.slice(issuer.length) : url;
}

export function createKeySet(identity: IdentityConfig, log: Logger, hooks: KeySetHooks = {}): KeySet {
  const base = identity.internalUrl ?? identity.issuer;
  const { cooldown, timeout, refreshInterval } = identity.jwks;
  let getKey: (JWTVerifyGetKey & { reload(): Promise<void>; jwks(): { keys: unknown[] } | undefined }) | undefined;
  let discovered = false;
  let stale = false;
  let lastError: string | undefined;
  let lastSuccessAt: number | undefined;
  let lastAttemptAt = -Infinity;
  const timers = new Set<NodeJS.Timeout>();
  let closed = false;

  const later = (ms: number, fn: () => void) => {
    const t = setTimeout(() => { timers.delete(t); if (!closed) fn(); }, ms);
    t.unref();
    timers.add(t);
  };

  // Every JWKS request passes here: at most one attempt per cooldown, whatever the outcome, so a
  // flood of unknown kids cannot hammer the IdP — not even while it is failing.
  const guardedFetch = async (url: string, init: RequestInit): Promise<Response> => {
    const now = Date.now();
    if (getKey?.jwks() && now - lastAttemptAt < cooldown) {
      hooks.onFetch?.('suppressed');
      throw new Error('JWKS refetch cooling down');
    }
    lastAttemptAt = now;
    try {
      const res = await fetch(url, { ...init, redirect: 'error' });
      if (!res.ok) throw new Error(`JWKS endpoint answered HTTP ${res.status}`);
      stale = false;
      lastError = undefined;
      lastSuccessAt = Date.now();
      hooks.onFetch?.('ok');
      return res;
    } catch (err) {
      stale = true;
      lastError = err instanceof Error ? err.message : String(err);
      hooks.onFetch?.('error');
      log.warn({ issuer: identity.issuer, error: lastError }, 'JWKS fetch failed; keeping the keys held');
      throw err;
    }
  };

  async function discover(): Promise<string> {
    const url = `${base}/.well-known/openid-configuration`;
    const res = await fetch(url, { signal: AbortSignal.timeout(timeout), redirect: 'error', headers: { accept: 'application/json' } });
    if (!res.ok) throw new Error(`discovery answered HTTP ${res.status}`);
    const doc = await res.json() as { issuer?: unknown; jwks_uri?: unknown };
    if (doc.issuer !== identity.issuer) throw new Error(`discovery issuer ${JSON.stringify(doc.issuer)} is not the configured issuer`);
    if (typeof doc.jwks_uri !== 'string') throw new Error('discovery document has no jwks_uri');
    return toInternal(doc.jwks_uri, identity.issuer, identity.internalUrl);
  }

  async function bootstrap(attempt: number): Promise<void> {
    try {
      const jwksUri = await discover();
      const remote = createRemoteJWKSet(new URL(jwksUri), {
        cooldownDuration: cooldown, timeoutDuration: timeout, cacheMaxAge: Infinity, [customFetch]: guardedFetch,
      });
      await remote.reload();
      getKey = remote;
      discovered = true;
      log.info({ issuer: identity.issuer, keys: remote.jwks()?.keys.length ?? 0 }, 'identity provider keys loaded');
      const refresh = () => { remote.reload().catch(() => { /* stale-if-error: recorded by guardedFetch */ }).finally(() => later(refreshInterval, refresh)); };
      later(refreshInterval, refresh);
    } catch (err) {
      stale = true;
      lastError = err instanceof Error ? err.message : String(err);
      const delay = Math.min(30_000, 250 * 2 ** Math.min(attempt, 7));
      log.warn({ issuer: identity.issuer, error: lastError, retryInMs: delay }, 'identity provider not reachable yet');
      later(delay, () => void bootstrap(attempt + 1));
    }
  }

  return {
    get getKey() { return getKey; },
    status: () => ({
      discovered, keys: getKey?.jwks()?.keys.length ?? 0, stale,
      ...(lastError ? { lastError } : {}), ...(lastSuccessAt ? { lastSuccessAt } : {}),
    }),
    start() { void bootstrap(0); },
    close() { closed = true; for (const t of timers) clearTimeout(t); timers.clear(); },
  };
}
