// Reads a Principal out of verified access-token claims, by the configured claim paths.
import type { JWTPayload } from 'jose';
import type { Permission } from '../access/operations.js';
import type { Principal } from './principal.js';

/** Compiles "realm_access.roles" into a reader of string arrays (or space-separated strings). */
export function compileClaimPath(path: string): (claims: JWTPayload) => readonly string[] {
  const keys = path.split('.');
  return (claims) => {
    let v: unknown = claims;
    for (const k of keys) {
      if (!v || typeof v !== 'object' || !Object.hasOwn(v, k)) return [];
      v = (v as Record<string, unknown>)[k];
    }
    if (Array.isArray(v)) return v.filter((x): x is string => typeof x === 'string');
    return typeof v === 'string' ? v.split(' ').filter(Boolean) : [];
  };
}

export interface ClaimReaders {
  readonly roles: ReadonlyArray<(c: JWTPayload) => readonly string[]>;
  readonly username: string;
  readonly permissionsOf: (roles: Iterable<string>) => ReadonlySet<Permission>;
}

export function principalFromClaims(claims: JWTPayload, readers: ClaimReaders, expiresAt: number): Principal {
  const roles = new Set<string>();
  for (const read of readers.roles) for (const r of read(claims)) roles.add(r);
  const scope = claims.scope;
  const scp = (claims as { scp?: unknown }).scp;
  const scopes = new Set<string>(typeof scope === 'string' ? scope.split(' ').filter(Boolean) : Array.isArray(scp) ? scp.filter((s): s is string => typeof s === 'string') : []);
  const username = claims[readers.username];
  return Object.freeze({
    subject: claims.sub as string,
    ...(typeof username === 'string' ? { username } : {}),
    roles, scopes, permissions: readers.permissionsOf(roles), via: 'bearer' as const, expiresAt,
  });
}
