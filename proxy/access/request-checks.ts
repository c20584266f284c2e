// Checks every request passes before it is routed further: no smuggled verbs, no bodies where a
// method has none, no declared body over the route's limit. Each answers before authentication.
import type { IncomingMessage } from 'node:http';
import { announcesBody, GatewayError } from '../errors.js';
import { hasParameter } from '../query.js';

/**
 * Headers that make a server or framework run another method or path than the request line says
 * (Orthanc 1.10 honours X-HTTP-Method-Override on any method; others honour the rest). They never
 * reach an upstream: the gateway authorizes the request it sees, so it refuses to forward another.
 */
export const OVERRIDE_HEADERS = ['x-http-method-override', 'x-http-method', 'x-method-override', 'x-original-url', 'x-rewrite-url'] as const;

/** Refuses method overrides in headers or the query (400, logged as METHOD_OVERRIDE). */
export function refuseMethodOverrides(req: IncomingMessage, query: string): void {
  const h = req.headers;
  for (const name of OVERRIDE_HEADERS) {
    if (h[name] !== undefined) throw new GatewayError('METHOD_OVERRIDE', `the ${name} header is refused: the gateway forwards exactly the method and path it authorizes`);
  }
  if (hasParameter(query, '_method')) throw new GatewayError('METHOD_OVERRIDE', 'the _method query parameter is refused: the gateway forwards exactly the method it authorizes');
}

/** GET, HEAD and DELETE carry no body here: a body on them is a way to smuggle content past the method. */
export function refuseBodyWithoutMeaning(req: IncomingMessage): void {
  const m = req.method;
  if ((m === 'GET' || m === 'HEAD' || m === 'DELETE') && announcesBody(req)) {
    throw new GatewayError('BAD_REQUEST', `a ${m} request must not carry a body`);
  }
}

/** A declared Content-Length over the route's limit: 413 before anyone is authenticated or anything is read. */
export function refuseDeclaredTooLarge(req: IncomingMessage, limit: number): void {
  const length = req.headers['content-length'];
  if (length !== undefined && Number(length) > limit) {
    throw new GatewayError('PAYLOAD_TOO_LARGE', `request body over the ${limit}-byte limit of this route`);
  }
}
