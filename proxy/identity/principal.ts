// Who is calling: what every authenticator produces and every authorizer reads.
import type { Permission } from '../access/operations.js';
import type { Exchange } from '../exchange.js';

export interface Principal {
  readonly subject: string;
  readonly username?: string;
  readonly roles: ReadonlySet<string>;
  readonly scopes: ReadonlySet<string>;
  /** What the roles grant, from routes.yaml's permissions table (computed once, when the credential is verified). */
  readonly permissions: ReadonlySet<Permission>;
  readonly via: 'anonymous' | 'bearer' | 'session' | 'share' | 'api-key';
  /** Epoch milliseconds after which the credential is no longer valid (Infinity for anonymous). */
  readonly expiresAt: number;
}

export const ANONYMOUS: Principal = Object.freeze({
  subject: 'anonymous', roles: new Set<string>(), scopes: new Set<string>(), permissions: new Set<Permission>(), via: 'anonymous', expiresAt: Infinity,
});

/**
 * Identifies the caller. Returns null for "no credential of my kind here" (the next authenticator
 * is tried), a Principal, or throws a GatewayError for a credential that is present but bad.
 */
export interface Authenticator {
  readonly name: string;
  authenticate(ex: Exchange): Promise<Principal | null> | Principal | null;
}
