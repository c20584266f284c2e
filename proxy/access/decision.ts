// What a caller may do: the interface every authorizer implements.
import type { Exchange } from '../exchange.js';
import type { Principal } from '../identity/principal.js';
import type { GatewayError } from '../errors.js';

export type Decision = { readonly allow: true } | { readonly allow: false; readonly error: GatewayError };
export const ALLOW: Decision = Object.freeze({ allow: true });

export interface Authorizer {
  authorize(principal: Principal, ex: Exchange): Decision;
}

/** Public routes: everyone may do everything the route forwards. */
export const allowAll: Authorizer = { authorize: () => ALLOW };
