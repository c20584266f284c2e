// Per-request state that walks the pipeline: one object, created once, never re-derived.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Principal } from './identity/principal.js';
import type { Target } from './routing.js';

export interface Exchange {
  readonly id: string;
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly startedAt: number;
  target?: Target;
  routeName?: string;
  principal?: Principal;
  /** Why the gateway refused or failed, for the access log (never a credential). */
  errorCode?: string;
  /** Set while an upstream request is in flight: cancel() cuts it when the client goes away. */
  upstreamCall?: { cancel(): void } | undefined;
}
