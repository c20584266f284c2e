// Who is calling: what every authenticator produces and every authorizer reads.
import type { Permission } from '../access/operations.js';
import type { StudyScope } from '../access/scope.js';
import type { GatewayError } from '../errors.js';
import type { Exchange } from '../exchange.js';

export interface Principal {
  readonly subject: string;
  readonly username?: string;
  readonly roles: ReadonlySet<string>;
  readonly scopes: ReadonlySet<string>;
  /** What the roles grant, from routes.yaml's permissions table (computed once, when the credential is verified). */
  readonly permissions: ReadonlySet<Permission>;
  /** Permissions (among the above) that hold only for the studies of a scope; absent: none is limited. */
  readonly limited?: ReadonlyMap<Permission, StudyScope>;
  readonly via: 'anonymous' | 'bearer' | 'session' | 'share' | 'api-key';
  /** Epoch milliseconds after which the credential is no longer valid (Infinity for anonymous). */
  readonly expiresAt: number;
}

export const ANONYMOUS: Principal = Object.freeze({
  subject: 'anonymous', roles: new Set<string>(), scopes: new Set<string>(), permissions: new Set<Permission>(), via: 'anonymous', expiresAt: Infinity,
});

export type AuthenticatorName = 'bearer' | 'session' | 'share';

/**
 * Identifies the caller. Returns null for "no credential of my kind here" (the next authenticator
 * is tried), a Principal, or throws a GatewayError for a credential that is present but bad.
 * Each authenticator answers in its own form: a Bearer challenge, a login redirect, a page.
 */
export interface Authenticator {
  readonly name: AuthenticatorName;
  /** The `via` of the principals it makes: the pipeline asks the same authenticator to refuse them. */
  readonly via: Principal['via'];
  authenticate(ex: Exchange): Promise<Principal | null> | Principal | null;
  /** No credential of any kind: this authenticator's way to ask for one, or null to let the next one answer. */
  challenge(ex: Exchange): GatewayError | null;
  /** An identified caller the authorizer refused: a 403 in this authenticator's form. */
  refuse(ex: Exchange, principal: Principal, reason: string): GatewayError;
}
