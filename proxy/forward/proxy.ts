// Streams requests to an upstream: header hygiene, body limits, upstream credentials, and 502/504
// mapping. HTTP goes through an undici Pool per upstream origin (measured ~1.8× the requests/s of
// http-proxy-3's best mode on small DICOMweb replies, see bench/proxy-modes.mjs); WebSocket upgrades
// go through http-proxy-3. Bodies are never buffered: backpressure runs end to end both ways.
import http from 'node:http';
import type { EventEmitter } from 'node:events';
import { pipeline, Transform, type Duplex } from 'node:stream';
import { ProxyServer } from 'http-proxy-3';
import { Pool, errors as undiciErrors, type Dispatcher } from 'undici';
import { GatewayError } from '../errors.js';
import type { Exchange } from '../exchange.js';
import type { RouteConfig } from '../config/schema.js';
import { stripRoutePrefix } from '../routing.js';
import type { Forwarder } from './forwarder.js';
import { forwardedFacts, removeResponseHopByHop, upstreamHeaders, type TrustFn } from './headers.js';

export interface ProxyDeps {
  readonly trust: TrustFn;
  /** Host used in forwarded headers when the client's Host is not a plain host[:port]. */
  readonly publicHost: string;
  readonly maxBodySize: number;
  readonly pools: UpstreamPools;
  readonly onError: (ex: Exchange, err: GatewayError) => void;
  readonly onUpstreamError: (route: string, kind: 'refused' | 'timeout' | 'reset' | 'auth') => void;
}

/** One keep-alive connection pool per upstream origin, shared by every route that targets it. */
export interface UpstreamPools { get(origin: string): Pool; close(): Promise<void> }

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
    async close() { await Promise.all([...pools.values()].map((p) => p.close().catch(() => p.destroy()))); },
  };
}

/** Header values must be visible ASCII; anything else (a user name with accents) is percent-encoded. */
const headerSafe = (v: string): string => (/^[\x20-\x7e]*$/.test(v) ? v : encodeURIComponent(v));

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

export function createProxyForwarder(route: RouteConfig, deps: ProxyDeps): Forwarder {
  const target = new URL(route.upstream as string);
  const basePath = target.pathname === '/' ? '' : target.pathname.replace(/\/$/, '');
  const pool = deps.pools.get(target.origin);
  const basic = route.upstreamAuth
    ? `Basic ${Buffer.from(`${route.upstreamAuth.basic.username}:${route.upstreamAuth.basic.password}`).toString('base64')}`
    : undefined;
  const limit = route.maxBodySize ?? deps.maxBodySize;
  const prefix = route.stripPrefix && route.path !== '/' ? route.path : undefined;
  const headerOpts = (upgrade: boolean) => ({
    prefix, orthancLinks: route.forward.orthancLinks, upgrade,
    forwardAuthorization: route.forward.authorization, forwardGatewayCookies: route.forward.gatewayCookies,
  });
  const webOpts = headerOpts(false);
  const wsOpts = headerOpts(true);

  /** The upstream path (prefix stripped, base path added, query rewritten). */
  function upstreamPath(ex: Exchange): string {
    const t = ex.target!;
    const path = route.stripPrefix ? stripRoutePrefix(t.path, route.path) : t.path;
    const query = route.forward.splitIncludeField ? splitIncludeField(t.query) : t.query;
    const full = basePath + path;
    return query ? `${full}?${query}` : full;
  }

  function headersFor(ex: Exchange, upgrade: boolean): http.OutgoingHttpHeaders {
    const h = upstreamHeaders(ex.req.headers, forwardedFacts(ex.req, deps.trust, deps.publicHost), upgrade ? wsOpts : webOpts);
    h['x-request-id'] = ex.id;
    if (basic) h.authorization = basic;
    if (route.forward.identity && ex.principal && ex.principal.via !== 'anonymous') {
      h['x-forwarded-user'] = headerSafe(ex.principal.username ?? ex.principal.subject);
      h['x-forwarded-roles'] = headerSafe([...ex.principal.roles].join(','));
    }
    return h;
  }

  /** Refuses declared-too-large bodies up front; streamed (chunked) ones are cut at the limit. */
  function bodyOf(ex: Exchange): Dispatcher.DispatchOptions['body'] | false {
    const { req } = ex;
    const declared = req.headers['content-length'];
    const chunked = req.headers['transfer-encoding'] !== undefined;
    if (declared !== undefined && Number(declared) > limit) {
      deps.onError(ex, new GatewayError('PAYLOAD_TOO_LARGE', `request body over the ${limit}-byte limit of this route`));
      return false;
    }
    if (!chunked && (declared === undefined || declared === '0')) return null;
    if (!chunked) return req;
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
    return counted;
  }

  function fail(ex: Exchange, err: Error & { code?: string }): void {
    if (ex.res.destroyed || ex.req.socket.destroyed) return; // the client went away first: nothing to answer
    if (ex.res.headersSent) { ex.res.destroy(); return; }   // mid-stream: cutting the connection is the signal
    if (ex.errorCode === 'PAYLOAD_TOO_LARGE') return;
    const kind = classify(err);
    deps.onUpstreamError(route.name, kind);
    if (kind === 'timeout') deps.onError(ex, new GatewayError('UPSTREAM_TIMEOUT', `the upstream did not answer within ${route.timeout} ms`));
    else deps.onError(ex, new GatewayError('UPSTREAM_UNAVAILABLE', kind === 'refused' ? 'the upstream is unreachable' : 'the upstream closed the connection'));
  }

  const ws = route.websocket ? new ProxyServer({ target, changeOrigin: true, xfwd: false, ws: true }) : undefined;
  // Errors without a callback must never reach http-proxy-3's default handler, which throws.
  ws?.on('error', (_err, _req, socket) => { if (socket && 'destroy' in socket) socket.destroy(); });

  return {
    forward(ex) {
      const body = bodyOf(ex);
      if (body === false) return;
      const { req, res } = ex;
      // undici takes any EventEmitter as its abort signal; the response is one, and costs no
      // AbortController per request (which measured ~15 % of the small-reply throughput).
      res.once('close', () => { if (!res.writableFinished) res.emit('abort'); });
      pool.stream({
        path: upstreamPath(ex), method: req.method as Dispatcher.HttpMethod, headers: headersFor(ex, false) as Record<string, string | string[]>, body,
        signal: res as unknown as EventEmitter, headersTimeout: route.timeout, bodyTimeout: route.timeout,
      }, ({ statusCode, headers: up }) => {
        removeResponseHopByHop(up);
        if (basic && statusCode === 401) {
          // The upstream refused the gateway's own credentials: a Basic challenge would only make a
          // browser prompt for a password the user must never know.
          delete up['www-authenticate'];
          deps.onUpstreamError(route.name, 'auth');
        }
        up['x-content-type-options'] ??= 'nosniff';
        up['x-request-id'] = ex.id;
        res.writeHead(statusCode, up as http.OutgoingHttpHeaders);
        return res;
      }, (err) => { if (err) fail(ex, err); });
    },
    upgrade: ws
      ? (ex: Exchange, socket: Duplex, head: Buffer) => {
        ex.req.url = upstreamPath(ex);
        ex.req.headers = headersFor(ex, true) as http.IncomingHttpHeaders;
        ws.ws(ex.req, socket, head, (err) => {
          deps.onUpstreamError(route.name, classify(err as Error));
          socket.destroy();
        });
      }
      : undefined,
    close() { ws?.removeAllListeners(); },
  };
}
