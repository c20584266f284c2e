// Streams requests to an upstream: header hygiene, body limits, upstream credentials, and 502/504
// mapping. HTTP goes through an undici Pool per upstream origin (measured ~1.8× the requests/s of
// http-proxy-3's best mode on small DICOMweb replies, see bench/proxy-modes.mjs); WebSocket upgrades
// go through http-proxy-3. Bodies are never buffered: backpressure runs end to end both ways.
import http from 'node:http';
import { pipeline, Readable, Transform, type Duplex } from 'node:stream';
import { ProxyServer } from 'http-proxy-3';
import { Pool, errors as undiciErrors, type Dispatcher } from 'undici';
import { GatewayError } from '../errors.js';
import type { Exchange } from '../exchange.js';
import type { RouteConfig } from '../config/schema.js';
import { withoutParameter } from '../query.js';
import { stripRoutePrefix } from '../routing.js';
import type { Forwarder } from './forwarder.js';
import { MULTIPART_DICOM, relayAsZip, wantsZip } from './zip.js';
import { forwardedFacts, forwardingHeaders, headerObject, responseHeaderList, upstreamHeaders, type CookiePolicy, type HeaderList, type TrustFn } from './headers.js';

export interface ProxyDeps {
  readonly trust: TrustFn;
  /** server.publicUrl: host and protocol of the links upstreams write, for clients not behind a trusted proxy. */
  readonly publicUrl: URL;
  readonly maxBodySize: number;
  /** A client that reads nothing of a response for this long is cut off (0: never). */
  readonly sendTimeout: number;
  readonly pools: UpstreamPools;
  readonly onError: (ex: Exchange, err: GatewayError) => void;
  readonly onUpstreamError: (route: string, kind: 'refused' | 'timeout' | 'reset' | 'auth') => void;
  /** An upstream 5xx withheld from the caller: its status and the start of its body, for the log. */
  readonly onUpstreamFailure: (ex: Exchange, status: number, excerpt: string) => void;
}

/** One keep-alive connection pool per upstream origin, shared by every route that targets it. */
export interface UpstreamPools { get(origin: string): Pool; close(graceMs?: number): Promise<void> }

export function createUpstreamPools(): UpstreamPools {
  const pools = new Map<string, Pool>();
  return {
    get(origin) {
      let pool = pools.get(origin);
      if (!pool) {
        // Timeouts are per request (the route's); these only bound idle sockets and connects.
        pool = new Pool(origin, { connections: 256, pipelining: 1, keepAliveTimeout: 4_000, connect: { timeout: 10_000 } });
        pools.set(origin, pool);
      }
      return pool;
    },
    /** Lets in-flight upstream requests finish for up to graceMs, then cuts whatever is left. */
    async close(graceMs = 1000) {
      await Promise.all([...pools.values()].map(async (p) => {
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<'late'>((r) => { timer = setTimeout(() => r('late'), graceMs); });
        const ended = await Promise.race([p.close().then(() => 'closed' as const, () => 'late' as const), late]);
        clearTimeout(timer);
        if (ended === 'late') await p.destroy().catch(() => undefined);
      }));
    },
  };
}

/** Header values must be visible ASCII; anything else (a user name with accents) is percent-encoded. */
const headerSafe = (v: string): string => (/^[\x20-\x7e]*$/.test(v) ? v : encodeURIComponent(v));

/** The query without access_token parameters (any case or percent-encoding of the name): a token never goes upstream. */
export const withoutAccessToken = (query: string): string => withoutParameter(query, 'access_token');

/** includefield=a,b → includefield=a&includefield=b; other parameters untouched. */
export function splitIncludeField(query: string): string {
  if (!query.includes(',') && !query.toLowerCase().includes('%2c')) return query;
  return query.split('&').flatMap((pair) => {
    const eq = pair.indexOf('=');
    if (eq < 0 || pair.slice(0, eq).toLowerCase() !== 'includefield') return [pair];
    const name = pair.slice(0, eq);
    let value: string;
    try { value = decodeURIComponent(pair.slice(eq + 1)); } catch { return [pair]; }
    return value.split(',').map((f) => f.trim()).filter(Boolean).map((f) => `${name}=${encodeURIComponent(f)}`);
  }).join('&');
}

const REFUSED = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNABORTED']);

type Kind = 'refused' | 'timeout' | 'reset';
function classify(err: Error & { code?: string }): Kind {
  if (err instanceof undiciErrors.HeadersTimeoutError || err instanceof undiciErrors.BodyTimeoutError || err instanceof undiciErrors.ConnectTimeoutError) return 'timeout';
  return err.code && REFUSED.has(err.code) ? 'refused' : 'reset';
}

/**
 * Relays one upstream response to the client, as an undici dispatch handler: raw headers in, a flat
 * header list out (no header object is built or edited), body chunks written as they arrive with
 * backpressure both ways, the upstream request aborted when the client goes away. This is what
 * undici's pool.stream does, without its per-request AsyncResource, parsed header object and
 * end-of-stream listeners (measured in bench/: the difference is visible on 2 KB replies).
 */
class ResponseRelay implements Dispatcher.DispatchHandler {
  private abort: ((err?: Error) => void) | undefined;
  private resume: (() => void) | undefined;
  private waitingForDrain = false;
  private done = false;
  /** Set while an upstream 5xx is withheld: its status and the first bytes of its body (for the log). */
  private failure: { readonly status: number; excerpt: string } | undefined;
  private sendTimer: NodeJS.Timeout | undefined;

  /** Set while a refused answer is dropped for a second try (Orthanc's frames quirk, below). */
  private retrying = false;

  /** `retry`: called instead of relaying a 400, once, when the request may be asked again another way. */
  constructor(private readonly ex: Exchange, private readonly route: RelayRoute, private readonly retry?: () => void) {}

  onConnect(abort: (err?: Error) => void): void {
    const { res } = this.ex;
    if (res.destroyed || res.writableEnded) { abort(new ClientGoneError()); return; }
    this.abort = abort;
    this.ex.upstreamCall = this;
  }

  /** The client went away: stop the upstream request. */
  cancel(): void {
    this.abort?.(new ClientGoneError());
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    if (statusCode < 200) return true; // 1xx: the final answer follows
    const { res } = this.ex;
    if (statusCode === 400 && this.retry) { this.retrying = true; return true; }
    if (statusCode >= 500 && !this.route.showsUpstreamFailures(this.ex)) {
      // The upstream's error text (internal paths, what it found on its network) is not the caller's
      // to read: the body goes to the log, the caller gets the gateway's own 502 once it has ended.
      this.failure = { status: statusCode, excerpt: '' };
      return true;
    }
    // The upstream refused the gateway's own credentials: a Basic challenge would only make a
    // browser prompt for a password the user must never know.
    const refusedUs = this.route.hidesChallenge && statusCode === 401;
    if (refusedUs) this.route.upstreamRefusedUs();
    this.resume = resume;
    try {
      res.writeHead(statusCode, responseHeaderList(rawHeaders, { dropChallenge: refusedUs, requestId: this.ex.id }));
    } catch (err) {
      // A header Node refuses to send (invalid characters): the answer is a 502, not a crash.
      this.abort?.(err as Error);
      return false;
    }
    return true;
  }

  onData(chunk: Buffer): boolean {
    const { res } = this.ex;
    if (this.retrying) return true;
    if (this.failure) {
      if (this.failure.excerpt.length < FAILURE_EXCERPT) this.failure.excerpt += chunk.toString('utf8', 0, FAILURE_EXCERPT);
      return true;
    }
    if (res.write(chunk)) return true;
    if (!this.waitingForDrain) {
      this.waitingForDrain = true;
      // A client that stops reading holds an upstream connection (and, on Orthanc, a worker thread):
      // past the send timeout it is cut off, which aborts the upstream request too. Large downloads
      // wait for 'drain' many times a second, so one timer per relay checks the current wait
      // instead of a timer being made and cleared for each.
      // The callbacks are made on the first wait only: small answers never wait and allocate none.
      this.stalledAt = performance.now();
      this.checkStall ??= () => this.checkSend();
      if (this.route.sendTimeout > 0 && !this.sendTimer) this.sendTimer = setTimeout(this.checkStall, this.route.sendTimeout);
      res.once('drain', this.drained ??= () => { this.waitingForDrain = false; this.resume?.(); });
    }
    return false;
  }

  private stalledAt = 0;
  private drained: (() => void) | undefined;
  private checkStall: (() => void) | undefined;

  private checkSend(): void {
    this.sendTimer = undefined;
    if (!this.waitingForDrain || this.done) return;
    const waited = performance.now() - this.stalledAt;
    const timeout = this.route.sendTimeout;
    if (waited >= timeout) {
      this.ex.errorCode = 'SEND_TIMEOUT';
      this.ex.res.destroy();
      return;
    }
    this.sendTimer = setTimeout(this.checkStall!, timeout - waited);
  }

  onComplete(): void {
    this.done = true;
    if (this.sendTimer) { clearTimeout(this.sendTimer); this.sendTimer = undefined; }
    this.ex.upstreamCall = undefined;
    if (this.retrying) { this.retry!(); return; }
    if (this.failure) {
      this.route.withheld(this.ex, this.failure.status, this.failure.excerpt.slice(0, FAILURE_EXCERPT));
      return;
    }
    this.ex.res.end();
  }

  onError(err: Error): void {
    if (this.sendTimer) { clearTimeout(this.sendTimer); this.sendTimer = undefined; }
    if (this.done) return;
    this.done = true;
    this.ex.upstreamCall = undefined;
    this.route.fail(this.ex, err);
  }
}

/** The largest answer the gateway reads whole for itself (a study lookup, one page of a search). */
const LOOKUP_LIMIT = 64 * 1024 * 1024;

const emptyBody = (): Readable => Readable.from([]);

const ANY_SYNTAX = /transfer-syntax\s*=\s*"?\*"?/i;
const EXPLICIT_LITTLE_ENDIAN = '1.2.840.10008.1.2.1';
const anyTransferSyntax = (accept: string | undefined): boolean => accept !== undefined && ANY_SYNTAX.test(accept);

/** A flat header list with `name` (any case) replaced by one value. */
function withHeader(list: readonly string[], name: string, value: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < list.length; i += 2) if ((list[i] as string).toLowerCase() !== name) out.push(list[i] as string, list[i + 1] as string);
  out.push(name, value);
  return out;
}

/** How much of a withheld upstream error body is kept for the log. */
const FAILURE_EXCERPT = 1024;

/** What a relay needs from its route; one object per route, so a request allocates no closures for it. */
interface RelayRoute {
  /** The upstream gets the gateway's own credentials: its 401 challenge must not reach the client. */
  readonly hidesChallenge: boolean;
  readonly sendTimeout: number;
  upstreamRefusedUs(): void;
  /** Whether the caller may read an upstream's 5xx answer as it is (admins). */
  showsUpstreamFailures(ex: Exchange): boolean;
  /** An upstream 5xx was withheld: log it and answer with the gateway's own error. */
  withheld(ex: Exchange, status: number, excerpt: string): void;
  fail(ex: Exchange, err: Error & { code?: string }): void;
}

/** Why an upstream request was cut: the client closed its connection first. */
class ClientGoneError extends Error {
  constructor() { super('the client closed the connection'); this.name = 'ClientGoneError'; }
}

export function createProxyForwarder(route: RouteConfig, deps: ProxyDeps): Forwarder {
  const target = new URL(route.upstream as string);
  const basePath = target.pathname === '/' ? '' : target.pathname.replace(/\/$/, '');
  const pool = deps.pools.get(target.origin);
  const basic = route.upstreamAuth
    ? `Basic ${Buffer.from(`${route.upstreamAuth.basic.username}:${route.upstreamAuth.basic.password}`).toString('base64')}`
    : undefined;
  const limit = route.maxBodySize ?? deps.maxBodySize;
  const prefix = route.stripPrefix && route.path !== '/' ? route.path : undefined;
  const cookies: CookiePolicy = Array.isArray(route.forward.cookies) ? new Set(route.forward.cookies) : route.forward.cookies as 'none' | 'all';
  const headerOpts = (upgrade: boolean) => ({
    prefix, orthancLinks: route.forward.orthancLinks, upgrade,
    // The gateway's own upstream credentials replace the client's Authorization.
    forwardAuthorization: route.forward.authorization && !route.upstreamAuth, cookies,
  });
  // A route that passes the client's own credentials upstream (the IdP) passes its query as sent.
  const stripsAccessToken = !route.forward.authorization;
  const webOpts = headerOpts(false);
  const wsOpts = headerOpts(true);

  /** The upstream path (prefix stripped, base path added, query rewritten). */
  function upstreamPath(ex: Exchange): string {
    const t = ex.target!;
    const path = route.stripPrefix ? stripRoutePrefix(t.path, route.path) : t.path;
    const sent = stripsAccessToken ? withoutAccessToken(t.query) : t.query;
    const query = route.forward.splitIncludeField ? splitIncludeField(sent) : sent;
    const full = basePath + path;
    return query ? `${full}?${query}` : full;
  }

  /**
   * The gateway's forwarding headers for a request. Without trusted proxies they depend only on the
   * connection's peer address (host and protocol are server.publicUrl's), so each connection keeps
   * its list and every request of a keep-alive client reuses it.
   */
  const forwardingByConnection = new WeakMap<object, readonly string[]>();
  function forwardingFor(ex: Exchange): readonly string[] {
    const { req } = ex;
    if (!deps.trust.none) return forwardingHeaders(forwardedFacts(req, deps.trust, deps.publicUrl), webOpts);
    const known = forwardingByConnection.get(req.socket);
    if (known) return known;
    const list = forwardingHeaders(forwardedFacts(req, deps.trust, deps.publicUrl), webOpts);
    forwardingByConnection.set(req.socket, list);
    return list;
  }

  function headersFor(ex: Exchange, upgrade: boolean): HeaderList {
    const h = upstreamHeaders(ex.req.headers, forwardingFor(ex), upgrade ? wsOpts : webOpts);
    h.push('x-request-id', ex.id);
    if (basic) h.push('authorization', basic);
    if (route.forward.identity && ex.principal && ex.principal.via !== 'anonymous') {
      h.push('x-forwarded-user', headerSafe(ex.principal.username ?? ex.principal.subject));
      h.push('x-forwarded-roles', headerSafe([...ex.principal.roles].join(',')));
    }
    return h;
  }

  /**
   * The request body for undici. Declared-too-large bodies were refused before authentication
   * (request-checks.ts); streamed (chunked) ones are cut at the limit here.
   */
  function bodyOf(ex: Exchange): Dispatcher.DispatchOptions['body'] {
    const { req } = ex;
    const declared = req.headers['content-length'];
    const chunked = req.headers['transfer-encoding'] !== undefined;
    if (!chunked && (declared === undefined || declared === '0')) return ex.bodyGuard ? guarded(ex, emptyBody()) : null;
    if (!chunked) return ex.bodyGuard ? guarded(ex, req) : req;
    // A chunked body has no declared size: it passes through a counter that fails the stream at the
    // limit. (A 'data' listener on req instead would switch it to flowing mode and lose chunks that
    // arrive before undici reads.) transfer-encoding itself is never copied: undici frames the body.
    let seen = 0;
    const counted = new Transform({
      transform(chunk: Buffer, _enc, done) {
        seen += chunk.length;
        if (seen > limit) {
          deps.onError(ex, new GatewayError('PAYLOAD_TOO_LARGE', `request body over the ${limit}-byte limit of this route`));
          done(new Error('request body over the limit'));
          return;
        }
        done(null, chunk);
      },
    });
    pipeline(req, counted, () => { /* errors surface through undici's callback */ });
    return ex.bodyGuard ? guarded(ex, counted) : counted;
  }

  /**
   * The body through the exchange's guard (a store checked part by part). A refusal is answered
   * here; the rest of the client's body is read and dropped (so the client, still sending, gets the
   * answer), the upstream request is cut before the refused part's bytes leave.
   */
  function guarded(ex: Exchange, source: NodeJS.ReadableStream): Transform {
    const guard = ex.bodyGuard as Transform;
    source.pipe(guard);
    guard.once('error', (err) => {
      source.unpipe(guard);
      if (err instanceof GatewayError && !ex.res.headersSent) deps.onError(ex, err);
      if (!ex.req.complete) {
        ex.req.resume();
        ex.res.once('finish', () => setTimeout(() => { if (!ex.req.complete) ex.req.destroy(); }, 5_000).unref());
      }
    });
    return guard;
  }

  function fail(ex: Exchange, err: Error & { code?: string }): void {
    if (ex.res.destroyed || ex.req.socket.destroyed) return; // the client went away first: nothing to answer
    if (ex.res.writableEnded) return; // answered already (a body refused on its way: too large, a part out of scope)
    if (err instanceof GatewayError && !ex.res.headersSent) { deps.onError(ex, err); return; }
    if (ex.res.headersSent) { ex.res.destroy(); return; }   // mid-stream: cutting the connection is the signal
    if (ex.errorCode === 'PAYLOAD_TOO_LARGE') return;
    const kind = classify(err);
    deps.onUpstreamError(route.name, kind);
    if (kind === 'timeout') deps.onError(ex, new GatewayError('UPSTREAM_TIMEOUT', `the upstream did not answer within ${route.timeout} ms`));
    else deps.onError(ex, new GatewayError('UPSTREAM_UNAVAILABLE', kind === 'refused' ? 'the upstream is unreachable' : 'the upstream closed the connection'));
  }

  /** A study or series as a ZIP: the upstream's multipart answer, re-packed while it streams. */
  async function zipped(ex: Exchange, uid: string): Promise<void> {
    const list = withHeader(headersFor(ex, false) as string[], 'accept', MULTIPART_DICOM);
    let res: Dispatcher.ResponseData;
    try {
      res = await pool.request({ path: upstreamPath(ex), method: 'GET', headers: list, headersTimeout: route.timeout, bodyTimeout: route.timeout });
    } catch (err) {
      fail(ex, err as Error);
      return;
    }
    if (res.statusCode !== 200) {
      res.body.resume();
      if (res.statusCode === 404) throw new GatewayError('NOT_FOUND', 'no such study, series or instance');
      throw new GatewayError('UPSTREAM_ERROR', `the upstream failed to answer this retrieve (HTTP ${res.statusCode})`);
    }
    const type = res.headers['content-type'];
    ex.upstreamCall = { cancel: () => res.body.destroy() };
    await relayAsZip(ex, Array.isArray(type) ? type[0] : type, res.body, `${uid}.zip`);
    ex.upstreamCall = undefined;
  }

  const relayRoute: RelayRoute = {
    hidesChallenge: basic !== undefined,
    sendTimeout: deps.sendTimeout,
    upstreamRefusedUs: () => deps.onUpstreamError(route.name, 'auth'),
    showsUpstreamFailures: (ex) => ex.principal?.permissions.has('admin') === true,
    withheld(ex, status, excerpt) {
      deps.onUpstreamFailure(ex, status, excerpt);
      deps.onError(ex, new GatewayError('UPSTREAM_ERROR', `the upstream failed to answer this request (HTTP ${status}); the gateway logged the details under this request id`));
    },
    fail,
  };

  const ws = route.websocket ? new ProxyServer({ target, changeOrigin: true, xfwd: false, ws: true }) : undefined;
  // Errors without a callback must never reach http-proxy-3's default handler, which throws.
  ws?.on('error', (_err, _req, socket) => { if (socket && 'destroy' in socket) socket.destroy(); });

  /** The upstream path of a path below the route (as a request's would be mapped). */
  const routeBase = route.stripPrefix || route.path === '/' ? '' : route.path;
  const ownHeaders = (accept: string, requestId: string): string[] => {
    const h = ['accept', accept, 'x-request-id', requestId];
    if (basic) h.push('authorization', basic);
    return h;
  };

  return {
    async get(path, query, accept, requestId) {
      const q = route.forward.splitIncludeField ? splitIncludeField(query) : query;
      const full = basePath + routeBase + path + (q ? `?${q}` : '');
      let res: Dispatcher.ResponseData;
      try {
        res = await pool.request({ path: full, method: 'GET', headers: ownHeaders(accept, requestId), headersTimeout: route.timeout, bodyTimeout: route.timeout });
      } catch (err) {
        const kind = classify(err as Error & { code?: string });
        deps.onUpstreamError(route.name, kind);
        throw kind === 'timeout' ? new GatewayError('UPSTREAM_TIMEOUT', `the upstream did not answer within ${route.timeout} ms`)
          : new GatewayError('UPSTREAM_UNAVAILABLE', kind === 'refused' ? 'the upstream is unreachable' : 'the upstream closed the connection');
      }
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > LOOKUP_LIMIT) {
          res.body.destroy();
          throw new GatewayError('UPSTREAM_ERROR', `an upstream answer the gateway needed was over ${LOOKUP_LIMIT} bytes`);
        }
        chunks.push(chunk);
      }
      const type = res.headers['content-type'];
      return { status: res.statusCode, contentType: Array.isArray(type) ? type[0] ?? '' : type ?? '', body: Buffer.concat(chunks) };
    },
    forward(ex) {
      const op = ex.operation;
      if (op?.kind === 'retrieve' && op.original && (op.level === 'studies' || op.level === 'series') && wantsZip(ex.req.headers.accept)) {
        zipped(ex, op.series ?? op.study ?? 'study').catch((err: unknown) => fail(ex, err as Error));
        return;
      }
      const body = bodyOf(ex);
      const headers = headersFor(ex, false) as string[];
      const path = upstreamPath(ex);
      const method = ex.req.method as Dispatcher.HttpMethod;
      // Orthanc 1.10's DICOMweb plugin cannot hand out the stored frames of some JPEG files (fragmented,
      // without a basic offset table): `transfer-syntax=*` — what OHIF asks for — gets 400 "Bad file
      // format". Such a refusal is asked again for the frame uncompressed (Explicit VR Little Endian,
      // which it transcodes to and every viewer reads); every other answer goes through as it is.
      const retry = route.forward.orthancLinks && ex.operation?.level === 'frames' && anyTransferSyntax(ex.req.headers.accept)
        ? () => {
          if (ex.res.destroyed) return;
          pool.dispatch({
            path, method, headers: withHeader(headers, 'accept', ex.req.headers.accept!.replace(ANY_SYNTAX, `transfer-syntax=${EXPLICIT_LITTLE_ENDIAN}`)),
            body: null, headersTimeout: route.timeout, bodyTimeout: route.timeout,
          }, new ResponseRelay(ex, relayRoute));
        }
        : undefined;
      pool.dispatch({ path, method, headers, body, headersTimeout: route.timeout, bodyTimeout: route.timeout }, new ResponseRelay(ex, relayRoute, retry));
    },
    upgrade: ws
      ? (ex: Exchange, socket: Duplex, head: Buffer) => {
        ex.req.url = upstreamPath(ex);
        ex.req.headers = headerObject(headersFor(ex, true)) as http.IncomingHttpHeaders;
        ws.ws(ex.req, socket, head, (err) => {
          deps.onUpstreamError(route.name, classify(err as Error));
          socket.destroy();
        });
      }
      : undefined,
    close() { ws?.removeAllListeners(); },
  };
}
