// Runs one route: authenticate → authorise → forward. Routes are compiled once at start-up.
import type { Authorizer } from './access/decision.js';
import type { OperationTable } from './access/operations.js';
import type { Cors } from './access/cors.js';
import type { ScopeGate } from './access/scope-gate.js';
import type { RouteConfig } from './config/schema.js';
import { GatewayError } from './errors.js';
import type { Exchange } from './exchange.js';
import type { Forwarder } from './forward/forwarder.js';
import { ANONYMOUS, type Authenticator, type Principal } from './identity/principal.js';

export interface CompiledRoute {
  readonly path: string;
  readonly name: string;
  readonly config: RouteConfig;
  readonly authenticators: readonly Authenticator[];
  readonly authorizer: Authorizer;
  readonly forwarder: Forwarder;
  readonly cors: Cors | undefined;
  /** What each request does upstream (undefined for the static site, which serves only its files). */
  readonly operations: OperationTable | undefined;
  /** Request-body limit in bytes. */
  readonly maxBodySize: number;
  /** DICOMweb routes: checks the studies a request touches for callers limited to some studies. */
  readonly scopeGate?: ScopeGate | undefined;
}

const defaultChallenge = (): GatewayError => new GatewayError('UNAUTHENTICATED', 'this route requires authentication');

/** No credential at all: the first authenticator with an answer for this kind of request gives it. */
function challenge(route: CompiledRoute, ex: Exchange): GatewayError {
  for (const a of route.authenticators) {
    const c = a.challenge(ex);
    if (c) return c;
  }
  return defaultChallenge();
}

/** The first authenticator that recognises a credential wins; synchronous answers stay synchronous. */
function identify(route: CompiledRoute, ex: Exchange, from = 0): Principal | Promise<Principal> {
  for (let i = from; i < route.authenticators.length; i++) {
    const p = (route.authenticators[i] as Authenticator).authenticate(ex);
    if (p instanceof Promise) return p.then((found) => found ?? identify(route, ex, i + 1));
    if (p) return p;
  }
  throw challenge(route, ex);
}

function admit(route: CompiledRoute, ex: Exchange, principal: Principal): void {
  ex.principal = principal;
  const decision = route.authorizer.authorize(principal, ex);
  if (decision.allow) return;
  const by = route.authenticators.find((a) => a.via === principal.via);
  throw by ? by.refuse(ex, principal, decision.reason) : new GatewayError('FORBIDDEN', decision.reason);
}

/**
 * Public routes, and authenticated ones whose credential is already verified (cached), run
 * synchronously: no promise on the hot path. Either way a thrown GatewayError is the caller's to answer.
 */
export function runRoute(route: CompiledRoute, ex: Exchange, forward: (ex: Exchange) => void): void | Promise<void> {
  if (route.authenticators.length === 0) {
    admit(route, ex, ANONYMOUS);
    forward(ex);
    return;
  }
  const principal = identify(route, ex);
  if (!(principal instanceof Promise)) {
    admit(route, ex, principal);
    forward(ex);
    return;
  }
  return principal.then((p) => {
    admit(route, ex, p);
    forward(ex);
  });
}
