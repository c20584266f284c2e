// Trust in one token issuer: its key set, the token verifier built on it, and its readiness check.
import type { IdentityConfig } from '../config/schema.js';
import type { ReadinessCheck } from '../ops/health.js';
import type { Logger } from '../ops/log.js';
import type { Metrics } from '../ops/metrics.js';
import type { ClaimReaders } from './claims.js';
import { createTokenVerifier, type TokenVerifier } from './bearer.js';
import { createKeySet, type KeySet } from './jwks.js';

export interface Issuer {
  readonly keySet: KeySet;
  readonly verifier: TokenVerifier;
  /** Keys held count as ready even while refreshes fail (stale-if-error); no keys at all does not. */
  readonly readiness: ReadinessCheck;
}

export function createIssuer(identity: IdentityConfig, log: Logger, metrics: Metrics, grantsOf: ClaimReaders['grantsOf']): Issuer {
  const keySet: KeySet = createKeySet(identity, log, {
    onFetch: (result) => {
      metrics.jwksFetches.inc({ result });
      metrics.jwksStale.set(keySet.status().stale ? 1 : 0);
    },
  });
  const verifier = createTokenVerifier(identity, keySet, grantsOf);
  metrics.trackTokenCache(verifier.cacheStats);
  const readiness: ReadinessCheck = {
    name: 'identity',
    check: async () => {
      const s = keySet.status();
      const detail = s.keys === 0 ? `no keys yet${s.lastError ? `: ${s.lastError}` : ''}`
        : s.stale ? `${s.keys} keys held, stale: ${s.lastError}` : `${s.keys} keys`;
      return { ok: s.keys > 0, detail };
    },
  };
  return { keySet, verifier, readiness };
}
