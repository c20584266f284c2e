// Reads a Principal out of verified access-token claims, by the configured claim paths.
import type { JWTPayload } from 'jose';
import type { Grants } from '../access/scope.js';
import type { Principal } from './principal.js';

/** The value at a dotted claim path ("realm_access.roles"), or undefined. */
function claimAt(claims: unknown, keys: readonly string[]): unknown {
  let v: unknown = claims;
  for (const k of keys) {
    if (!v || typeof v !== 'object' || !Object.hasOwn(v, k)) return undefined;
    v = (v as Record<string, unknown>)[k];
  }
  return v;
}

/** Compiles "realm_access.roles" into a reader of string arrays (or space-separated strings). */
export function compileClaimPath(path: string): (claims: JWTPayload) => readonly string[] {
  const keys = path.split('.');
  return (claims) => {
    const v = claimAt(claims, keys);
    if (Array.isArray(v)) return v.filter((x): x is string => typeof x === 'string');
    return typeof v === 'string' ? v.split(' ').filter(Boolean) : [];
  };
}

/**
 * Compiles "site.names" into a reader of attribute values: a string claim is one value (an
 * institution name has spaces), an array gives its strings; anything else gives none.
 */
export function compileValueClaim(path: string): (claims: Record<string, unknown>) => readonly string[] {
  const keys = path.split('.');
  return (claims) => {
    const v = claimAt(claims, keys);
    if (Array.isArray(v)) return v.filter((x): x is string => typeof x === 'string' && x.length > 0);
    return typeof v === 'string' && v.length > 0 ? [v] : [];
  };
}

export interface ClaimReaders {
  readonly roles: ReadonlyArray<(c: JWTPayload) => readonly string[]>;
  readonly username: string;
  /** What the roles grant; claims give the values of limits read from the token. */
  readonly grantsOf: (roles: Iterable<string>, claims?: Record<string, unknown>) => Grants;
}

export function principalFromClaims(claims: JWTPayload, readers: ClaimReaders, expiresAt: number): Principal {
  const roles = new Set<string>();
  for (const read of readers.roles) for (const r of read(claims)) roles.add(r);
  const scope = claims.scope;
  const scp = (claims as { scp?: unknown }).scp;
  const scopes = new Set<string>(typeof scope === 'string' ? scope.split(' ').filter(Boolean) : Array.isArray(scp) ? scp.filter((s): s is string => typeof s === 'string') : []);
  const username = claims[readers.username];
  const grants = readers.grantsOf(roles, claims);
  return Object.freeze({
    subject: claims.sub as string,
    ...(typeof username === 'string' ? { username } : {}),
    roles, scopes, permissions: grants.permissions, ...(grants.limited ? { limited: grants.limited } : {}), via: 'bearer' as const, expiresAt,
  });
}
