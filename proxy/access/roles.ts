// Method → roles rules from routes.yaml. A method without a rule (and no '*' rule) is denied.
import type { RouteConfig } from '../config/schema.js';
import { GatewayError } from '../errors.js';
import { bearerChallenge } from '../identity/bearer.js';
import type { Principal } from '../identity/principal.js';
import { ALLOW, type Authorizer, type Decision } from './decision.js';

type Rule = { readonly anyAuthenticated: boolean; readonly roles: ReadonlySet<string> };

export function createRoleAuthorizer(allow: NonNullable<RouteConfig['allow']>, realm: string): Authorizer {
  const rules = new Map<string, Rule>();
  for (const [method, roles] of Object.entries(allow)) {
    if (roles) rules.set(method, { anyAuthenticated: roles.includes('*'), roles: new Set(roles.filter((r) => r !== '*')) });
  }
  // HEAD is a GET without a body: it follows the GET rule unless it has its own.
  if (!rules.has('HEAD') && rules.has('GET')) rules.set('HEAD', rules.get('GET') as Rule);
  const fallback = rules.get('*');

  const deny = (p: Principal, reason: string): Decision => ({
    allow: false,
    error: new GatewayError('FORBIDDEN', reason, p.via === 'bearer'
      ? { headers: { 'WWW-Authenticate': bearerChallenge(realm, 'insufficient_scope', reason) } } : {}),
  });

  return {
    authorize(p, ex) {
      const method = ex.req.method ?? 'GET';
      const rule = rules.get(method) ?? fallback;
      if (!rule) return deny(p, `${method} is not allowed on this route`);
      if (rule.anyAuthenticated) return ALLOW;
      for (const r of p.roles) if (rule.roles.has(r)) return ALLOW;
      return deny(p, `${method} needs one of the roles: ${[...rule.roles].join(', ')}`);
    },
  };
}
