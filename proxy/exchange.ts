// Per-request state that walks the pipeline: one object, created once, never re-derived.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Transform } from 'node:stream';
import type { Operation } from './access/operations.js';
import type { StudyScope } from './access/scope.js';
import type { Principal } from './identity/principal.js';
import type { Target } from './routing.js';

export interface Exchange {
  readonly id: string;
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly startedAt: number;
  target?: Target;
  routeName?: string;
  /** What the request does on the upstream (operation table), set right after routing. */
  operation?: Operation;
  principal?: Principal;
  /** Set by the authorizer when the caller's permission for this operation holds only within a study scope. */
  scope?: StudyScope;
  /** A store by a caller limited to some studies: the body passes through this check on its way upstream. */
  bodyGuard?: Transform;
  /** Why the gateway refused or failed, for the access log (never a credential). */
  errorCode?: string;
  /** Set while an upstream request is in flight: cancel() cuts it when the client goes away. */
  upstreamCall?: { cancel(): void } | undefined;
  /** Gives back what the request holds (its slot in the per-principal upstream limit) when the response closes. */
  release?: (() => void) | undefined;
}
