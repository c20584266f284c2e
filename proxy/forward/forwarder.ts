// The last step of the pipeline: hand an admitted request to a backend (proxy or static site).
import type { Duplex } from 'node:stream';
import type { Exchange } from '../exchange.js';

export interface Forwarder {
  forward(ex: Exchange): void;
  /** WebSocket upgrade; absent where the route does not allow it. */
  upgrade?(ex: Exchange, socket: Duplex, head: Buffer): void;
  close?(): void;
}
