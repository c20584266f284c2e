// Streams requests to an upstream with http-proxy-3: keep-alive agents, header hygiene,
// body limits, upstream credentials, and 502/504 mapping. Bodies are never buffered.
import http from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import { ProxyServer } from 'http-proxy-3';
import { GatewayError } from '../errors.js';
import type { Exchange } from '../exchange.js';
import type { RouteConfig } from '../config/schema.js';
import { stripRoutePrefix } from '../routing.js';
import type { Forwarder } from './forwarder.js';
import { forwardedFacts, removeHopByHop, setForwardedHeaders, stripGatewayCookies, type TrustFn } from './headers.js';

export interface ProxyDeps {
  readonly trust: TrustFn;
  /** Host used in forwarded headers when the client's Host is not a plain host[:port]. */
  readonly publicHost: string;
  readonly maxBodySize: number;
  readonly agents: UpstreamAgents;
  readonly onError: (ex: Exchange, err: GatewayError) => void;
  readonly onUpstreamError: (route: string, kind: 'refused' | 'timeout' | 'reset' | 'auth') => void;
}

export interface UpstreamAgents { readonly http: http.Agent; readonly https: https.Agent; destroy(): void }

/** One pair of keep-alive agents for all upstreams; LIFO keeps the hottest sockets in use. */
export function createUpstreamAgents(): UpstreamAgents {
  const opts = { keepAlive: true, keepAliveMsecs: 1000, maxSockets: 256, maxFreeSockets: 64, scheduling: 'lifo' as const, timeout: 120_000 };
  const agents = { http: new http.Agent(opts), https: new https.Agent(opts) };
  return { ...agents, destroy: () => { agents.http.destroy(); agents.https.destroy(); } };
}

const EXCHANGE = Symbol('pacs-gateway.exchange');
const TIMED_OUT = Symbol('pacs-gateway.timed-out');
type Tagged = http.IncomingMessage & { [EXCHANGE]?: Exchange; [TIMED_OUT]?: boolean };

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

export function createProxyForwarder(route: RouteConfig, deps: ProxyDeps): Forwarder {
  const target = new URL(route.upstream as string);
  const basic = route.upstreamAuth
    ? `Basic ${Buffer.from(`${route.upstreamAuth.basic.username}:${route.upstreamAuth.basic.password}`).toString('base64')}`
    : undefined;
  const limit = route.maxBodySize ?? deps.maxBodySize;
  const prefix = route.stripPrefix && route.path !== '/' ? route.path : undefined;
  const style = { prefix, orthancLinks: route.forward.orthancLinks };
  const proxy = new ProxyServer({
    target,
    agent: target.protocol === 'https:' ? deps.agents.https : deps.agents.http,
    changeOrigin: true,
    xfwd: false,
    ws: route.websocket,
  });

  proxy.on('proxyReq', (proxyReq, req) => {
    // An idle upstream (no connect, no headers, a stalled body) for route.timeout ends in 504.
    proxyReq.setTimeout(route.timeout, () => {
      (req as Tagged)[TIMED_OUT] = true;
      proxyReq.destroy(new Error('upstream timeout'));
    });
  });
  proxy.on('proxyRes', (proxyRes) => {
    const h = proxyRes.headers;
    removeHopByHop(h, false);
    if (basic && proxyRes.statusCode === 401) {
      // The upstream refused the gateway's own credentials: a Basic challenge would only make a
      // browser prompt for a password the user must never know.
      delete h['www-authenticate'];
      deps.onUpstreamError(route.name, 'auth');
    }
    h['x-content-type-options'] ??= 'nosniff';
  });
  // Errors without a callback (e.g. WebSocket sockets) must never reach the default handler that throws.
  proxy.on('error', (_err, _req, res) => {
    if (res && 'destroy' in res && !(res instanceof http.ServerResponse)) res.destroy();
  });

  const onProxyError = (err: Error & { code?: string }, req: http.IncomingMessage): void => {
    const tagged = req as Tagged;
    const ex = tagged[EXCHANGE];
    if (!ex) return;
    if (tagged[TIMED_OUT]) {
      deps.onUpstreamError(route.name, 'timeout');
      deps.onError(ex, new GatewayError('UPSTREAM_TIMEOUT', `the upstream did not answer within ${route.timeout} ms`));
    } else if (ex.req.socket.destroyed) {
      // The client went away first: nothing to answer.
      ex.res.destroy();
    } else {
      const kind = err.code && REFUSED.has(err.code) ? 'refused' : 'reset';
      deps.onUpstreamError(route.name, kind);
      deps.onError(ex, new GatewayError('UPSTREAM_UNAVAILABLE', kind === 'refused' ? 'the upstream is unreachable' : 'the upstream closed the connection'));
    }
  };

  function prepare(ex: Exchange, upgrade: boolean): void {
    const req = ex.req as Tagged;
    const t = ex.target!;
    const path = route.stripPrefix ? stripRoutePrefix(t.path, route.path) : t.path;
    const query = route.forward.splitIncludeField ? splitIncludeField(t.query) : t.query;
    req.url = query ? `${path}?${query}` : path;
    const headers = req.headers;
    removeHopByHop(headers, upgrade);
    setForwardedHeaders(headers, forwardedFacts(req, deps.trust, deps.publicHost), style);
    headers['x-request-id'] = ex.id;
    if (!route.forward.authorization) delete headers.authorization;
    if (!route.forward.gatewayCookies) stripGatewayCookies(headers);
    if (basic) headers.authorization = basic;
    if (route.forward.identity && ex.principal && ex.principal.via !== 'anonymous') {
      headers['x-forwarded-user'] = headerSafe(ex.principal.username ?? ex.principal.subject);
      headers['x-forwarded-roles'] = headerSafe([...ex.principal.roles].join(','));
    }
    req[EXCHANGE] = ex;
  }

  /** Refuses declared-too-large bodies up front and cuts streamed ones at the limit. */
  function enforceBodyLimit(ex: Exchange): boolean {
    const declared = ex.req.headers['content-length'];
    if (declared !== undefined && Number(declared) > limit) {
      deps.onError(ex, new GatewayError('PAYLOAD_TOO_LARGE', `request body over the ${limit}-byte limit of this route`));
      return false;
    }
    if (declared === undefined && ex.req.headers['transfer-encoding']) {
      let seen = 0;
      ex.req.on('data', (chunk: Buffer) => {
        seen += chunk.length;
        if (seen > limit) {
          ex.req.unpipe();
          deps.onError(ex, new GatewayError('PAYLOAD_TOO_LARGE', `request body over the ${limit}-byte limit of this route`));
          ex.req.destroy();
        }
      });
    }
    return true;
  }

  return {
    forward(ex) {
      if (!enforceBodyLimit(ex)) return;
      prepare(ex, false);
      proxy.web(ex.req, ex.res, onProxyError);
    },
    upgrade: route.websocket
      ? (ex: Exchange, socket: Duplex, head: Buffer) => {
        prepare(ex, true);
        proxy.ws(ex.req, socket, head, (err) => {
          deps.onUpstreamError(route.name, (err as { code?: string }).code === 'ECONNREFUSED' ? 'refused' : 'reset');
          socket.destroy();
        });
      }
      : undefined,
    close() { proxy.removeAllListeners(); },
  };
}
