// Builds the gateway from a Config: the public listener, the admin listener, and their lifecycle.
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { allowAll } from './access/decision.js';
import { createCors } from './access/cors.js';
import { createRoleAuthorizer } from './access/roles.js';
import { createBearerAuthenticator } from './identity/bearer.js';
import { createIssuer } from './identity/issuer.js';
import type { Config, RouteConfig } from './config/schema.js';
import { GatewayError, sendError, toGatewayError } from './errors.js';
import type { Exchange } from './exchange.js';
import type { Forwarder } from './forward/forwarder.js';
import { compileTrust } from './forward/headers.js';
import { createProxyForwarder, createUpstreamPools } from './forward/proxy.js';
import { createStaticSite, type StaticSiteOptions } from './forward/static-site.js';
import { runChecks, upstreamReachable, type ReadinessCheck } from './ops/health.js';
import { createAdminServer } from './ops/admin.js';
import { createAccessLog, createLogger, redactQuery, type Logger } from './ops/log.js';
import { createMetrics, type Metrics } from './ops/metrics.js';
import { defaultChallenge, runRoute, type CompiledRoute } from './pipeline.js';
import { normaliseTarget, RouteTable } from './routing.js';

/** OHIF's own OIDC client (code flow + PKCE in the browser), from identity.viewerClientId. */
function viewerLogin(config: Config): StaticSiteOptions {
  const identity = config.identity;
  if (!identity?.viewerClientId) return {};
  const issuerOrigin = new URL(identity.issuer).origin;
  return {
    oidc: [{
      authority: identity.issuer,
      client_id: identity.viewerClientId,
      redirect_uri: '/callback',
      response_type: 'code',
      scope: 'openid profile email',
      post_logout_redirect_uri: '/',
      // JWT access tokens cannot be revoked at most IdPs (oidc-provider, Keycloak): OHIF's logout would hang.
      revokeAccessTokenOnSignout: false,
    }],
    // The browser talks to the IdP for discovery and tokens; same-origin when the IdP sits behind /auth.
    ...(issuerOrigin !== new URL(config.server.publicUrl).origin ? { connectSrc: [issuerOrigin] } : {}),
  };
}

export interface GatewayOptions { readonly logger?: Logger; readonly metrics?: Metrics }

export interface Gateway {
  readonly config: Config;
  readonly server: http.Server;
  readonly admin: http.Server | undefined;
  readonly metrics: Metrics;
  readonly routes: readonly CompiledRoute[];
  /** Starts both listeners; resolves with their base URLs (ports resolved when 0 was asked for). */
  listen(): Promise<{ url: string; adminUrl?: string }>;
  /** Graceful stop: refuse new connections, let in-flight requests finish within the shutdown bound. */
  close(): Promise<void>;
  readiness(): ReturnType<typeof runChecks>;
}

const HEALTH_PATHS = new Set(['/healthz', '/readyz']);

export function createGateway(config: Config, opts: GatewayOptions = {}): Gateway {
  const log = opts.logger ?? createLogger(config.server.logLevel);
  const metrics = opts.metrics ?? createMetrics({ defaultMetrics: true });
  const pools = createUpstreamPools();
  const trust = compileTrust(config.server.trustProxy);
  const accessLog = createAccessLog(log);
  let shuttingDown = false;

  const fail = (ex: Exchange, err: GatewayError): void => {
    ex.errorCode = err.code;
    if (err.status < 500) metrics.denials.inc({ route: ex.routeName ?? '-', code: err.code });
    if (err.code === 'INTERNAL') log.error({ reqId: ex.id, err: err.cause }, 'internal error');
    sendError(ex.req, ex.res, err, ex.id);
  };

  const forwarderFor = (route: RouteConfig): Forwarder => route.upstream
    ? createProxyForwarder(route, {
      trust, pools, publicHost: new URL(config.server.publicUrl).host, maxBodySize: config.server.limits.maxBodySize, onError: fail,
      onUpstreamError: (name, kind) => {
        metrics.upstreamErrors.inc({ route: name, kind });
        log.warn({ route: name, kind }, 'upstream error');
      },
    })
    : createStaticSite(route, config, { onError: fail }, viewerLogin(config));

  const identity = config.identity;
  const issuer = identity ? createIssuer(identity, log, metrics) : undefined;

  const compile = (route: RouteConfig): CompiledRoute => {
    const base = { path: route.path, name: route.name, config: route, forwarder: forwarderFor(route), cors: route.cors ? createCors(route.cors) : undefined };
    if (route.auth === 'public') return { ...base, authenticators: [], authorizer: allowAll, challenge: defaultChallenge };
    // The schema guarantees identity and allow rules for every authenticated route.
    const bearer = createBearerAuthenticator(issuer!.verifier, { queryToken: route.queryToken, maxTokenSize: identity!.maxTokenSize });
    return { ...base, authenticators: [bearer], authorizer: createRoleAuthorizer(route.allow!, identity!.realm), challenge: bearer.challenge };
  };
  const routes: CompiledRoute[] = config.routes.map(compile);
  const table = new RouteTable(routes);

  const readinessChecks: ReadinessCheck[] = [...new Set(config.routes.flatMap((r) => (r.upstream ? [new URL(r.upstream).origin] : [])))]
    .map((origin) => upstreamReachable(`upstream ${origin}`, origin));
  if (issuer) readinessChecks.push(issuer.readiness);
  const readiness = () => runChecks(readinessChecks);

  function newExchange(req: http.IncomingMessage, res: http.ServerResponse): Exchange {
    const ex: Exchange = { id: randomUUID(), req, res, startedAt: performance.now() };
    const socket = req.socket; // detached from req once the response is done
    const bytesBefore = socket.bytesWritten;
    res.on('close', () => { // emitted once per response
      const seconds = (performance.now() - ex.startedAt) / 1000;
      const route = ex.routeName ?? '-';
      const status = res.writableFinished ? res.statusCode : 499;
      if (ex.upstreamCall && !res.writableFinished) ex.upstreamCall.cancel();
      metrics.observeRequest(route, req.method ?? '-', status, seconds);
      if (accessLog) accessLog({
        reqId: ex.id, method: req.method ?? '-', path: ex.target?.path ?? '-', query: ex.target ? redactQuery(ex.target.query) || undefined : undefined,
        route, status, ms: seconds * 1000, bytes: socket.bytesWritten - bytesBefore,
        sub: ex.principal && ex.principal.via !== 'anonymous' ? ex.principal.subject : undefined,
        error: ex.errorCode, aborted: !res.writableFinished,
      });
    });
    return ex;
  }

  async function answerHealth(ex: Exchange, path: string): Promise<void> {
    const ready = path === '/readyz' ? (await readiness()).ready && !shuttingDown : !shuttingDown;
    const body = JSON.stringify({ status: ready ? (path === '/readyz' ? 'ready' : 'alive') : 'unavailable' });
    ex.res.writeHead(ready ? 200 : 503, { 'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body), 'x-request-id': ex.id });
    ex.res.end(ex.req.method === 'HEAD' ? undefined : body);
  }

  function resolve(ex: Exchange): CompiledRoute {
    const target = normaliseTarget(ex.req.url, ex.req.headers.host);
    ex.target = target;
    const route = table.match(target.path);
    if (!route) throw new GatewayError('NO_ROUTE', 'no route for this path');
    ex.routeName = route.name;
    return route;
  }

  function onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    const ex = newExchange(req, res);
    // X-Request-Id is added by whichever step answers: a header set here would push Node's writeHead
    // off its fast path for every proxied response.
    if (shuttingDown) res.setHeader('Connection', 'close');
    try {
      if ((req.method === 'GET' || req.method === 'HEAD') && HEALTH_PATHS.has(req.url ?? '')) {
        ex.routeName = '_health';
        void answerHealth(ex, req.url as string);
        return;
      }
      const route = resolve(ex);
      const pending = runRoute(route, ex, (e) => route.forwarder.forward(e));
      if (pending) pending.catch((err: unknown) => fail(ex, toGatewayError(err)));
    } catch (err) {
      fail(ex, toGatewayError(err));
    }
  }

  function onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    const refuse = (status: number, reason: string) => {
      socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(reason)}\r\n\r\n${reason}`);
    };
    const res = new http.ServerResponse(req); // never written: upgrades answer on the socket
    const ex: Exchange = { id: randomUUID(), req, res, startedAt: performance.now() };
    try {
      const route = resolve(ex);
      const upgrade = route.forwarder.upgrade;
      if (!upgrade) { refuse(400, 'WebSocket upgrade is not allowed on this route'); return; }
      const pending = runRoute(route, ex, (e) => upgrade.call(route.forwarder, e, socket, head));
      if (pending) pending.catch((err: unknown) => { const g = toGatewayError(err); refuse(g.status, g.reason); });
    } catch (err) {
      const g = toGatewayError(err);
      refuse(g.status, g.reason);
    }
  }

  const { timeouts, limits } = config.server;
  const server = http.createServer({
    maxHeaderSize: limits.maxHeaderSize,
    headersTimeout: timeouts.headers,
    requestTimeout: timeouts.request,
    keepAliveTimeout: timeouts.keepAlive,
    requireHostHeader: true,
  }, onRequest);
  server.on('upgrade', onUpgrade);
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    // Malformed HTTP never reaches a handler: answer briefly and close, as Node would, but logged.
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    log.info({ code: err.code, status }, 'client error');
    if (socket.writable && !(socket as { _httpMessage?: unknown })._httpMessage) {
      socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    } else socket.destroy();
  });

  const admin = config.server.admin === false ? undefined
    : createAdminServer({ metrics, readiness, shuttingDown: () => shuttingDown, log });

  const listenOn = (srv: http.Server, host: string, port: number) => new Promise<string>((ok, ko) => {
    srv.once('error', ko);
    srv.listen(port, host, () => {
      srv.off('error', ko);
      const a = srv.address() as AddressInfo;
      ok(`http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`);
    });
  });

  return {
    config, server, admin, metrics, routes, readiness,
    async listen() {
      issuer?.keySet.start();
      const url = await listenOn(server, config.server.listen.host, config.server.listen.port);
      const adminCfg = config.server.admin;
      const adminUrl = admin && adminCfg ? await listenOn(admin, adminCfg.listen.host, adminCfg.listen.port) : undefined;
      log.info({ url, adminUrl, routes: config.routes.map((r) => `${r.path} → ${r.upstream ?? `static:${r.static}`} (${r.name})`) }, 'listening');
      return adminUrl ? { url, adminUrl } : { url };
    },
    async close() {
      if (shuttingDown) return;
      shuttingDown = true;
      const closed = new Promise<void>((ok) => server.close(() => ok()));
      server.closeIdleConnections();
      const bound = new Promise<void>((ok) => setTimeout(ok, timeouts.shutdown).unref());
      await Promise.race([closed, bound]);
      server.closeAllConnections();
      if (admin) await new Promise<void>((ok) => { admin.close(() => ok()); admin.closeAllConnections(); });
      for (const r of routes) r.forwarder.close?.();
      await pools.close();
      issuer?.keySet.close();
      log.info('stopped');
    },
  };
}
