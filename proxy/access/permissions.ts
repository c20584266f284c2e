// Roles → permissions → operations. A route lists the permissions it grants at most; a caller needs
// the operation's permission from both the route and their own roles. Default deny.
import type { Exchange } from '../exchange.js';
import type { Principal } from '../identity/principal.js';
import { ALLOW, type Authorizer, type Decision } from './decision.js';
import type { Permission } from './operations.js';

export type PermissionTable = Readonly<Record<string, readonly Permission[]>>;

/** The demo roles (and the shipped Keycloak realm's): used when routes.yaml has no `permissions` table. */
export const DEFAULT_PERMISSIONS: PermissionTable = Object.freeze({
  viewer: Object.freeze(['view'] as Permission[]),
  uploader: Object.freeze(['view', 'upload'] as Permission[]),
  admin: Object.freeze(['view', 'download', 'upload', 'delete', 'share', 'admin'] as Permission[]),
});

/** Compiles the table into a function from a principal's roles to its permissions. */
export function compilePermissions(table: PermissionTable): (roles: Iterable<string>) => ReadonlySet<Permission> {
  const byRole = new Map(Object.entries(table));
  return (roles) => {
    const out = new Set<Permission>();
    for (const role of roles) for (const p of byRole.get(role) ?? []) out.add(p);
    return out;
  };
}

export function createPermissionAuthorizer(routeName: string, allow: readonly Permission[]): Authorizer {
  const granted = new Set(allow);
  const deny = (_p: Principal, reason: string): Decision => ({ allow: false, reason });
  return {
    authorize(p: Principal, ex: Exchange): Decision {
      const op = ex.operation;
      if (!op) return deny(p, 'the request has no operation'); // never happens: every upstream route classifies first
      const needed = op.permission;
      if (!granted.has(needed)) return deny(p, `the ${routeName} route does not allow ${op.name} (it needs the ${needed} permission)`);
      if (p.permissions.has(needed)) return ALLOW;
      return deny(p, `${op.name} needs the ${needed} permission, which ${p.roles.size === 0 ? 'a caller without roles lacks' : 'your roles do not grant'}`);
    },
  };
}

/**
 * Routes without operations (the viewer's files behind a login): any permission opens them, so a
 * signed-in user whose roles open nothing is told so instead of getting an empty viewer.
 */
export const anyPermission: Authorizer = {
  authorize: (p) => (p.permissions.size > 0 ? ALLOW
    : { allow: false, reason: p.roles.size === 0 ? 'your account has no role' : 'none of your roles opens anything here' }),
};
