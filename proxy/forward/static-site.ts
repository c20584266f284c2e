// TEMPORARY placeholder: the OHIF static site is being written (see forward/static-site.ts owner).
import type { Config, RouteConfig } from '../config/schema.js';
import { GatewayError } from '../errors.js';
import type { Exchange } from '../exchange.js';
import type { Forwarder } from './forwarder.js';

export interface StaticSiteDeps { readonly onError: (ex: Exchange, err: GatewayError) => void }

export function createStaticSite(_route: RouteConfig, _config: Config, deps: StaticSiteDeps): Forwarder {
  return { forward: (ex) => deps.onError(ex, new GatewayError('NO_ROUTE', 'static site not available')) };
}
