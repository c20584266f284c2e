// What a caller may do: the interface every authorizer implements.
import type { Exchange } from '../exchange.js';
import type { Principal } from '../identity/principal.js';

/** A refusal is a reason: the principal's authenticator turns it into a 403 of its own form. */
export type Decision = { readonly allow: true } | { readonly allow: false; readonly reason: string };
export const ALLOW: Decision = Object.freeze({ allow: true });

export interface Authorizer {
  authorize(principal: Principal, ex: Exchange): Decision;
}

/** Public routes: everyone may do everything the route forwards. */
export const allowAll: Authorizer = { authorize: () => ALLOW };
