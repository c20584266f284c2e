// One error type for every refusal the gateway makes, and one place that turns it into a response.
import type { IncomingMessage, ServerResponse } from 'node:http';

export type ErrorCode =
  | 'NO_ROUTE' | 'UNKNOWN_OPERATION' | 'BAD_REQUEST_PATH' | 'BAD_REQUEST' | 'METHOD_OVERRIDE' | 'METHOD_NOT_ALLOWED'
  | 'PAYLOAD_TOO_LARGE' | 'TOO_MANY_REQUESTS' | 'NOT_FOUND' | 'NOT_ACCEPTABLE' | 'SHARE_ENDED'
  | 'UNAUTHENTICATED' | 'LOGIN_REQUIRED' | 'SESSION_EXPIRED' | 'CREDENTIALS_INVALID' | 'CREDENTIALS_MALFORMED' | 'FORBIDDEN' | 'CROSS_ORIGIN'
  | 'IDP_UNAVAILABLE' | 'STORE_UNAVAILABLE' | 'UPSTREAM_ERROR' | 'UPSTREAM_UNAVAILABLE' | 'UPSTREAM_TIMEOUT' | 'SHUTTING_DOWN' | 'INTERNAL';

interface CodeInfo { status: number; title: string }

export const ERROR_CODES: Readonly<Record<ErrorCode, CodeInfo>> = Object.freeze({
  NO_ROUTE: { status: 404, title: 'Not found' },
  UNKNOWN_OPERATION: { status: 404, title: 'Not found' },
  BAD_REQUEST_PATH: { status: 400, title: 'Bad request path' },
  BAD_REQUEST: { status: 400, title: 'Bad request' },
  METHOD_OVERRIDE: { status: 400, title: 'Method override refused' },
  METHOD_NOT_ALLOWED: { status: 405, title: 'Method not allowed' },
  PAYLOAD_TOO_LARGE: { status: 413, title: 'Payload too large' },
  /** A study, series or instance that does not exist — or that the caller's study scope does not reach: the same answer. */
  NOT_FOUND: { status: 404, title: 'Not found' },
  NOT_ACCEPTABLE: { status: 406, title: 'Not acceptable' },
  /** A share link (or the browser session it opened) that expired, was revoked or was used up. */
  SHARE_ENDED: { status: 410, title: 'Share link ended' },
  TOO_MANY_REQUESTS: { status: 429, title: 'Too many requests' },
  UNAUTHENTICATED: { status: 401, title: 'Authentication required' },
  /** A browser navigation without a session: sent to the gateway's login (Location header). */
  LOGIN_REQUIRED: { status: 302, title: 'Sign-in required' },
  SESSION_EXPIRED: { status: 401, title: 'Session ended' },
  CREDENTIALS_INVALID: { status: 401, title: 'Invalid credentials' },
  CREDENTIALS_MALFORMED: { status: 400, title: 'Malformed credentials' },
  FORBIDDEN: { status: 403, title: 'Forbidden' },
  CROSS_ORIGIN: { status: 403, title: 'Cross-origin request refused' },
  IDP_UNAVAILABLE: { status: 503, title: 'Identity provider unavailable' },
  STORE_UNAVAILABLE: { status: 503, title: 'Session store unavailable' },
  UPSTREAM_ERROR: { status: 502, title: 'Upstream error' },
  UPSTREAM_UNAVAILABLE: { status: 502, title: 'Upstream unavailable' },
  UPSTREAM_TIMEOUT: { status: 504, title: 'Upstream timeout' },
  SHUTTING_DOWN: { status: 503, title: 'Shutting down' },
  INTERNAL: { status: 500, title: 'Internal error' },
});

/** Which of the gateway's pages a browser gets for an error, and what it shows beyond the reason. */
export interface ErrorPage { readonly name: string; readonly vars: Readonly<Record<string, string | readonly string[]>> }

/** The page renderer (proxy/endpoints/pages.ts), given to sendError by the server. */
export interface ErrorPages {
  send(res: ServerResponse, status: number, name: string, vars: Record<string, string | readonly string[] | undefined>, extraHeaders?: Record<string, string>): void;
}

export class GatewayError extends Error {
  readonly status: number;
  /** Extra response headers, e.g. WWW-Authenticate for a bearer challenge. */
  readonly headers: Readonly<Record<string, string>>;
  readonly page: ErrorPage | undefined;
  constructor(readonly code: ErrorCode, readonly reason: string, opts: { headers?: Record<string, string>; cause?: unknown; page?: ErrorPage } = {}) {
    super(`${code}: ${reason}`, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'GatewayError';
    this.status = ERROR_CODES[code].status;
    this.headers = opts.headers ?? {};
    this.page = opts.page;
  }
}

/** Anything thrown that is not a GatewayError becomes INTERNAL, with no detail exposed. */
export function toGatewayError(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  return new GatewayError('INTERNAL', 'the gateway could not handle this request', { cause: err });
}

/** Browsers navigating get a small HTML page; everything else (XHR, fetch, DICOMweb clients) gets JSON. */
export function wantsHtml(req: IncomingMessage): boolean {
  const accept = req.headers.accept;
  if (!accept || !accept.includes('text/html')) return false;
  const mode = req.headers['sec-fetch-mode'];
  return mode === undefined || mode === 'navigate';
}

const HTML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
export const escapeHtml = (s: string): string => s.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c] ?? c);

/** Whether the request announces a body (a length above zero, or chunked framing). */
export function announcesBody(req: IncomingMessage): boolean {
  const h = req.headers;
  if (h['transfer-encoding'] !== undefined) return true;
  const length = h['content-length'];
  return length !== undefined && length !== '0';
}

export function sendError(req: IncomingMessage, res: ServerResponse, err: GatewayError, requestId: string, pages?: ErrorPages): void {
  if (res.headersSent) {
    // Mid-stream failure: the status is gone; cutting the connection is the only honest signal.
    res.destroy();
    return;
  }
  const { title } = ERROR_CODES[err.code];
  // Whatever a half-run step set is dropped, except CORS headers: a browser client must be able to read the error.
  for (const name of res.getHeaderNames()) if (!name.startsWith('access-control-') && name !== 'vary') res.removeHeader(name);
  for (const [k, v] of Object.entries(err.headers)) res.setHeader(k, v);
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('X-Request-Id', requestId);
  res.setHeader('X-Content-Type-Options', 'nosniff');
  // A refusal before the body was read (401, 403, 404, 413…): Node would read and discard the whole
  // declared body to reuse the connection — gigabytes for one unauthenticated client. With
  // Connection: close it half-closes after the answer and ends the connection instead.
  if (!req.complete && announcesBody(req)) res.setHeader('Connection', 'close');
  if (pages && wantsHtml(req)) {
    pages.send(res, err.status, err.page?.name ?? 'error', {
      title: `${err.status} ${title}`, heading: title, status: String(err.status), reason: err.reason, requestId, ...err.page?.vars,
    });
    return;
  }
  let body: string;
  if (wantsHtml(req)) {
    res.setHeader('Content-Type', 'text/html; charset=utf-8');
    res.setHeader('Content-Security-Policy', "default-src 'none'; style-src 'unsafe-inline'");
    body = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${err.status} ${escapeHtml(title)}</title>`
      + '<style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;color:#222}code{color:#555}</style></head>'
      + `<body><h1>${err.status} ${escapeHtml(title)}</h1><p>${escapeHtml(err.reason)}</p>`
      + `<p><code>request id: ${escapeHtml(requestId)}</code></p></body></html>`;
  } else {
    res.setHeader('Content-Type', 'application/json; charset=utf-8');
    body = JSON.stringify({ error: err.code, status: err.status, message: err.reason, requestId });
  }
  res.statusCode = err.status;
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.end(req.method === 'HEAD' ? undefined : body);
}
