// The last step of the pipeline: hand an admitted request to a backend (proxy or static site).
import type { Duplex } from 'node:stream';
import type { Exchange } from '../exchange.js';

/** An answer the gateway asked an upstream for itself (study lookups), read whole (bounded). */
export interface UpstreamAnswer { readonly status: number; readonly contentType: string; readonly body: Buffer }

export interface Forwarder {
  forward(ex: Exchange): void;
  /**
   * A GET the gateway makes on its own behalf, with the route's upstream credentials: `path` is below
   * the route (as a client would write it after the route prefix), `query` raw. Proxy routes only.
   */
  get?(path: string, query: string, accept: string, requestId: string): Promise<UpstreamAnswer>;
  /** WebSocket upgrade; absent where the route does not allow it. */
  upgrade?(ex: Exchange, socket: Duplex, head: Buffer): void;
  close?(): void;
}
