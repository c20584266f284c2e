// Roles → permissions → operations. A route lists the permissions it grants at most; a caller needs
// the operation's permission from both the route and their own roles. Default deny.
import type { Exchange } from '../exchange.js';
import type { Principal } from '../identity/principal.js';
import { ALLOW, type Authorizer, type Decision } from './decision.js';
import type { RoleGrantConfig } from '../config/schema.js';
import { compileValueClaim } from '../identity/claims.js';
import type { Permission } from './operations.js';
import { attributeTag, compileGrants, type Grants, type RoleGrant } from './scope.js';

export type PermissionTable = Readonly<Record<string, readonly Permission[]>>;

/** The demo roles (and the shipped Keycloak realm's): used when routes.yaml has no `permissions` table. */
export const DEFAULT_PERMISSIONS: PermissionTable = Object.freeze({
  viewer: Object.freeze(['view'] as Permission[]),
  uploader: Object.freeze(['view', 'upload'] as Permission[]),
  admin: Object.freeze(['view', 'download', 'upload', 'delete', 'share', 'admin'] as Permission[]),
});

/**
 * Compiles routes.yaml's permissions table into a function from a principal's roles (and token
 * claims, for limits that take their values from a claim) to what they grant.
 */
export function compileRoleGrants(table: Readonly<Record<string, RoleGrantConfig>>): GrantsOf {
  const grants: Record<string, RoleGrant> = {};
  for (const [role, g] of Object.entries(table)) {
    if (Array.isArray(g)) { grants[role] = { permissions: g }; continue; }
    const limit = g as Exclude<RoleGrantConfig, readonly Permission[]>;
    grants[role] = {
      permissions: limit.permissions,
      ...(limit.ownUploads ? { ownUploads: true } : {}),
      ...(limit.studies ? { studies: Object.entries(limit.studies).map(([key, values]) => ({
        tag: attributeTag(key) as string, // validated by the schema
        values: Array.isArray(values) ? { list: values } : { claim: compileValueClaim((values as { claim: string }).claim) },
      })) } : {}),
    };
  }
  return compileGrants(grants);
}

export type GrantsOf = (roles: Iterable<string>, claims?: Record<string, unknown>) => Grants;

export function createPermissionAuthorizer(routeName: string, allow: readonly Permission[]): Authorizer {
  const granted = new Set(allow);
  const deny = (_p: Principal, reason: string): Decision => ({ allow: false, reason });
  return {
    authorize(p: Principal, ex: Exchange): Decision {
      const op = ex.operation;
      if (!op) return deny(p, 'the request has no operation'); // never happens: every upstream route classifies first
      const needed = op.permission;
      if (!granted.has(needed)) return deny(p, `the ${routeName} route does not allow ${op.name} (it needs the ${needed} permission)`);
      if (p.permissions.has(needed)) {
        // A permission some role grants only for some studies: the scope gate checks the studies
        // this request touches (against the upstream's answers) before anything is forwarded.
        const scope = p.limited?.get(needed);
        if (scope) {
          if (op.kind === 'upstream-rest') return deny(p, `your ${needed} permission is limited to some studies, and ${op.name} reaches beyond any study`);
          ex.scope = scope;
        }
        return ALLOW;
      }
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
