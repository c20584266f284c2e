// Builds the gateway from a Config: the public listener, the admin listener, and their lifecycle.
import http from 'node:http';
import https from 'node:https';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { allowAll } from './access/decision.js';
import { createCors } from './access/cors.js';
import { createScopeGate } from './access/scope-gate.js';
import { attributeTag } from './access/scope.js';
import { createDicomwebTable, upstreamRestTable, type OperationTable } from './access/operations.js';
import { anyPermission, compileRoleGrants, createPermissionAuthorizer } from './access/permissions.js';
import { refuseBodyWithoutMeaning, refuseDeclaredTooLarge, refuseMethodOverrides } from './access/request-checks.js';
import { createBearerAuthenticator } from './identity/bearer.js';
import { createIssuer } from './identity/issuer.js';
import { createOidcClient, type OidcClient } from './identity/oidc-client.js';
import type { Authenticator } from './identity/principal.js';
import { createSessionAuthenticator } from './identity/session.js';
import { createSessions } from './identity/sessions.js';
import { createShareAuthenticator } from './identity/share.js';
import { createShares } from './identity/shares.js';
import { createGatewayEndpoints, GATEWAY_PREFIX, LOGIN_PATH, LOGOUT_PATH } from './endpoints/gateway.js';
import { loadPages } from './endpoints/pages.js';
import { SHARE_LINK_PREFIX } from './endpoints/shares.js';
import { createStore } from './store/store.js';
import type { Config, RouteConfig } from './config/schema.js';
import { GatewayError, sendError, toGatewayError } from './errors.js';
import type { Exchange } from './exchange.js';
import type { Forwarder } from './forward/forwarder.js';
import { compileTrust } from './forward/headers.js';
import { createProxyForwarder, createUpstreamPools } from './forward/proxy.js';
import { createStaticSite, type StaticSiteOptions } from './forward/static-site.js';
import { cachedReadiness, runChecks, upstreamReachable, type ReadinessCheck } from './ops/health.js';
import { createAdminServer } from './ops/admin.js';
import { createAccessLog, createLogger, redactQuery, redactText, type Logger } from './ops/log.js';
import { createMetrics, type Metrics } from './ops/metrics.js';
import { readPair, reloadOnChange } from './ops/tls.js';
import { runRoute, type CompiledRoute } from './pipeline.js';
import { normaliseTarget, RouteTable, stripRoutePrefix } from './routing.js';

/**
 * OHIF's own OIDC client (code flow + PKCE in the browser), from identity.viewerClientId — unless the
 * viewer sits behind the gateway's login (backend-for-frontend): then OHIF has no OIDC client at
 * all, and its DICOMweb requests carry the session cookie instead of a token.
 */
function viewerLogin(config: Config, route: RouteConfig): StaticSiteOptions {
  const identity = config.identity;
  if (!identity?.viewerClientId || (Array.isArray(route.auth) && route.auth.includes('session'))) return {};
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

/** Requests under /_gateway/ are the gateway's own (login, logout, pages' assets), never a route's. */
const isGatewayPath = (path: string): boolean => path.startsWith(GATEWAY_PREFIX) || path === '/_gateway';

export interface Gateway {
  readonly config: Config;
  readonly server: http.Server;
  readonly admin: http.Server | undefined;
  readonly metrics: Metrics;
  readonly routes: readonly CompiledRoute[];
  /** Starts the listeners; resolves with their base URLs (ports resolved when 0 was asked for). */
  listen(): Promise<{ url: string; adminUrl?: string; redirectUrl?: string }>;
  /** Graceful stop: refuse new connections, let in-flight requests finish within the shutdown bound. */
  close(): Promise<void>;
  readiness(): ReturnType<typeof runChecks>;
}

const HEALTH_PATHS = new Set(['/healthz', '/readyz']);

/** The path as the access log shows it: a share link's code is a credential, and never logged. */
const loggedPath = (path: string): string => (path.startsWith(SHARE_LINK_PREFIX) ? `${SHARE_LINK_PREFIX}…` : path);

export function createGateway(config: Config, opts: GatewayOptions = {}): Gateway {
  const log = opts.logger ?? createLogger(config.server.logLevel);
  const metrics = opts.metrics ?? createMetrics({ defaultMetrics: true });
  const pools = createUpstreamPools();
  const trust = compileTrust(config.server.trustProxy);
  const accessLog = createAccessLog(log);
  const issuerOrigin = config.identity ? new URL(config.identity.issuer).origin : undefined;
  const pages = loadPages(undefined, issuerOrigin && issuerOrigin !== new URL(config.server.publicUrl).origin ? { formOrigins: [issuerOrigin] } : {});
  const store = createStore(config.store, { log });
  let shuttingDown = false;

  const fail = (ex: Exchange, err: GatewayError): void => {
    ex.errorCode = err.code;
    if (err.status < 500) metrics.denials.inc({ route: ex.routeName ?? '-', operation: ex.operation?.name ?? '-', code: err.code });
    if (err.code === 'INTERNAL') log.error({ reqId: ex.id, err: err.cause }, 'internal error');
    sendError(ex.req, ex.res, err, ex.id, pages);
  };

  const forwarderFor = (route: RouteConfig): Forwarder => route.upstream
    ? createProxyForwarder(route, {
      trust, pools, publicUrl: new URL(config.server.publicUrl), maxBodySize: config.server.limits.maxBodySize,
      sendTimeout: config.server.timeouts.send, onError: fail,
      onUpstreamError: (name, kind) => {
        metrics.upstreamErrors.inc({ route: name, kind });
        log.warn({ route: name, kind }, 'upstream error');
      },
      onUpstreamFailure: (ex, status, excerpt) => {
        metrics.upstreamErrors.inc({ route: ex.routeName ?? '-', kind: 'status' });
        // The upstream's own words go to the log (they may describe its network); the caller gets the gateway's.
        log.warn({ reqId: ex.id, route: ex.routeName, operation: ex.operation?.name, status, upstreamBody: redactText(excerpt) }, 'upstream failed');
      },
    })
    : createStaticSite(route, config, { onError: fail }, viewerLogin(config, route));

  const identity = config.identity;
  const issuer = identity ? createIssuer(identity, log, metrics, compileRoleGrants(config.permissions)) : undefined;

  // Login sessions: the gateway's own OIDC client, session records in the store, the session authenticator.
  let oidcClient: OidcClient | undefined;
  let sessionAuth: Authenticator | undefined;
  let login: Parameters<typeof createGatewayEndpoints>[0]['login'];
  if (identity?.client && config.session && issuer) {
    oidcClient = createOidcClient(identity, log);
    const sessions = createSessions(config.session, store, config.server.publicUrl.startsWith('https:'));
    sessionAuth = createSessionAuthenticator({
      sessions, oidc: oidcClient, verifier: issuer.verifier, publicOrigin: new URL(config.server.publicUrl).origin,
      refreshBefore: config.session.refreshBefore, log, loginPath: LOGIN_PATH, logoutPath: LOGOUT_PATH,
      count: (event) => metrics.sessionEvents.inc({ event }),
    });
    login = { sessions, oidc: oidcClient, verifier: issuer.verifier, keySet: issuer.keySet };
  }

  // Share links: records in the store, cookies signed with the session secret.
  const shares = config.shares && config.session ? createShares(store, config.session.secret, config.server.publicUrl.startsWith('https:')) : undefined;
  const shareAuth = shares ? createShareAuthenticator(shares, new URL(config.server.publicUrl).origin) : undefined;

  const operationsOf = (route: RouteConfig): OperationTable | undefined => {
    if (!route.upstream) return undefined; // the static site answers only GET/HEAD for its own files
    return route.dicomweb ? createDicomwebTable(route.dicomweb) : upstreamRestTable;
  };

  // Every study attribute a limited role reads: each study lookup asks the upstream for all of them.
  const scopeTags = [...new Set(Object.values(config.permissions).flatMap((g) => (Array.isArray(g) ? []
    : Object.keys((g as { studies?: Record<string, unknown> }).studies ?? {}).map((k) => attributeTag(k) as string))))];

  const compile = (route: RouteConfig): CompiledRoute => {
    const forwarder = forwarderFor(route);
    const scopeGate = route.dicomweb && forwarder.get
      ? createScopeGate({ root: route.dicomweb.roots[0] as string, routePath: route.path, get: forwarder.get.bind(forwarder), tags: scopeTags, store, onLookup: (kind) => metrics.scopeLookups.inc({ kind }) })
      : undefined;
    const base = {
      path: route.path, name: route.name, config: route, forwarder, cors: route.cors ? createCors(route.cors) : undefined,
      operations: operationsOf(route), maxBodySize: route.maxBodySize ?? config.server.limits.maxBodySize, scopeGate,
    };
    if (route.auth === 'public') return { ...base, authenticators: [], authorizer: allowAll };
    // The schema guarantees identity, a session section and allow rules wherever they are needed.
    const authenticators = route.auth.map((name): Authenticator => (name === 'session' ? sessionAuth!
      : name === 'share' ? shareAuth!
        : createBearerAuthenticator(issuer!.verifier, { queryToken: route.queryToken, maxTokenSize: identity!.maxTokenSize })));
    const authorizer = route.static ? anyPermission : createPermissionAuthorizer(route.name, route.allow!);
    return { ...base, authenticators, authorizer };
  };
  const routes: CompiledRoute[] = config.routes.map(compile);
  const table = new RouteTable(routes);

  let shareEndpoints: Parameters<typeof createGatewayEndpoints>[0]['shares'];
  if (shares && config.shares) {
    const gate = routes.find((r) => r.name === config.shares!.route)?.scopeGate;
    if (!gate) throw new Error(`shares.route "${config.shares.route}" is not a DICOMweb route`); // the schema checks this first
    const bearer = identity ? createBearerAuthenticator(issuer!.verifier, { queryToken: false, maxTokenSize: identity.maxTokenSize }) : undefined;
    const callers = [sessionAuth, bearer].filter((a): a is Authenticator => a !== undefined);
    shareEndpoints = {
      shares, config: config.shares, publicUrl: config.server.publicUrl, gate,
      identify: async (ex) => {
        for (const a of callers) {
          const p = await a.authenticate(ex);
          if (p) return p;
        }
        throw new GatewayError('UNAUTHENTICATED', 'share links are made by a signed-in user or with a bearer token', { headers: { 'WWW-Authenticate': 'Bearer realm="pacs"' } });
      },
      count: (event) => metrics.sessionEvents.inc({ event }),
    };
  }
  const endpoints = createGatewayEndpoints({
    config, pages, log, store, login, fail, count: (event) => metrics.sessionEvents.inc({ event }),
    ...(shareEndpoints ? { shares: shareEndpoints } : {}),
  });

  const readinessChecks: ReadinessCheck[] = [...new Set(config.routes.flatMap((r) => (r.upstream ? [new URL(r.upstream).origin] : [])))]
    .map((origin) => upstreamReachable(`upstream ${origin}`, origin));
  if (issuer) readinessChecks.push(issuer.readiness);
  if (oidcClient) readinessChecks.push(oidcClient.readiness);
  if (store.kind === 'redis') readinessChecks.push({ name: 'store', check: () => store.check() });
  const readiness = () => runChecks(readinessChecks);
  // The public /readyz is anyone's to call: it shares one round of checks per second instead of
  // fanning out to every upstream per call. The private admin listener checks afresh.
  const publicReadiness = cachedReadiness(readiness, 1000);

  // Upstream requests in flight per authenticated user: one user's stalled downloads must not take
  // every worker of the upstream (Orthanc has a fixed thread pool).
  const perUser = config.server.limits.concurrencyPerUser;
  const inFlight = new Map<string, number>();
  function forwardWithinLimit(route: CompiledRoute, ex: Exchange): void {
    if (ex.scope) {
      // A caller limited to some studies: the gate checks (or answers) first.
      const scope = ex.scope;
      if (!route.scopeGate) throw new GatewayError('FORBIDDEN', 'this route cannot limit requests to some studies');
      route.scopeGate.check(ex, scope).then((forward) => {
        if (forward && !ex.res.destroyed) { ex.scope = undefined; forwardWithinLimit(route, ex); }
      }).catch((err: unknown) => fail(ex, toGatewayError(err)));
      return;
    }
    const p = ex.principal;
    // Only authenticated routes have non-anonymous callers, and those are all upstream routes.
    if (perUser > 0 && p && p.via !== 'anonymous') {
      const key = p.subject;
      const n = inFlight.get(key) ?? 0;
      if (n >= perUser) {
        throw new GatewayError('TOO_MANY_REQUESTS', `more than ${perUser} requests of one user at once`, { headers: { 'Retry-After': '1' } });
      }
      inFlight.set(key, n + 1);
      ex.release = () => {
        const left = (inFlight.get(key) ?? 1) - 1;
        if (left <= 0) inFlight.delete(key); else inFlight.set(key, left);
      };
    }
    route.forwarder.forward(ex);
  }

  function newExchange(req: http.IncomingMessage, res: http.ServerResponse): Exchange {
    const ex: Exchange = { id: randomUUID(), req, res, startedAt: performance.now() };
    const socket = req.socket; // detached from req once the response is done
    const bytesBefore = socket.bytesWritten;
    res.on('close', () => { // emitted once per response
      const seconds = (performance.now() - ex.startedAt) / 1000;
      const route = ex.routeName ?? '-';
      const status = res.writableFinished ? res.statusCode : 499;
      if (ex.upstreamCall && !res.writableFinished) ex.upstreamCall.cancel();
      if (ex.release) { ex.release(); ex.release = undefined; }
      const operation = ex.operation?.name ?? '-';
      metrics.observeRequest(route, operation, req.method ?? '-', status, seconds);
      if (accessLog) accessLog({
        reqId: ex.id, method: req.method ?? '-', path: ex.target ? loggedPath(ex.target.path) : '-', query: ex.target ? redactQuery(ex.target.query) || undefined : undefined,
        route, operation, status, ms: seconds * 1000, bytes: socket.bytesWritten - bytesBefore,
        sub: ex.principal && ex.principal.via !== 'anonymous' ? ex.principal.subject : undefined,
        error: ex.errorCode, aborted: !res.writableFinished,
      });
    });
    return ex;
  }

  async function answerHealth(ex: Exchange, path: string): Promise<void> {
    const ready = path === '/readyz' ? (await publicReadiness()).ready && !shuttingDown : !shuttingDown;
    const body = JSON.stringify({ status: ready ? (path === '/readyz' ? 'ready' : 'alive') : 'unavailable' });
    ex.res.writeHead(ready ? 200 : 503, { 'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body), 'x-request-id': ex.id });
    ex.res.end(ex.req.method === 'HEAD' ? undefined : body);
  }

  function resolve(ex: Exchange): CompiledRoute | 'gateway' {
    const target = normaliseTarget(ex.req.url, ex.req.headers.host);
    ex.target = target;
    if (isGatewayPath(target.path)) {
      ex.routeName = '_gateway';
      return 'gateway';
    }
    const route = table.match(target.path);
    if (!route) throw new GatewayError('NO_ROUTE', 'no route for this path');
    ex.routeName = route.name;
    return route;
  }

  /** Every check that needs no identity, and the operation: overrides, bodies, the operation table. */
  function screen(ex: Exchange, route: CompiledRoute): void {
    const { req } = ex;
    const target = ex.target!;
    refuseMethodOverrides(req, target.query);
    refuseBodyWithoutMeaning(req);
    refuseDeclaredTooLarge(req, route.maxBodySize);
    if (route.operations) {
      ex.operation = route.operations.classify(req.method ?? 'GET', stripRoutePrefix(target.path, route.path), target.query);
    }
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
      if (route === 'gateway') {
        refuseMethodOverrides(req, ex.target!.query);
        endpoints.handle(ex);
        return;
      }
      if (route.cors) {
        // Preflights are answered without a token; every other answer (errors too) carries CORS headers.
        if (route.cors.preflight(req, res)) return;
        route.cors.decorate(req, res);
      }
      screen(ex, route);
      const pending = runRoute(route, ex, (e) => forwardWithinLimit(route, e));
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
      if (route === 'gateway') { refuse(404, 'no WebSocket here'); return; }
      screen(ex, route);
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
  const serverOptions = {
    maxHeaderSize: limits.maxHeaderSize,
    headersTimeout: timeouts.headers,
    requestTimeout: timeouts.request,
    keepAliveTimeout: timeouts.keepAlive,
    requireHostHeader: true,
  };
  const tls = config.server.tls;
  const hsts = tls?.hsts ? `max-age=${Math.floor((tls.hsts === true ? 180 * 86_400_000 : tls.hsts) / 1000)}; includeSubDomains` : undefined;
  const handler = hsts
    ? (req: http.IncomingMessage, res: http.ServerResponse) => { res.setHeader('Strict-Transport-Security', hsts); onRequest(req, res); }
    : onRequest;
  // HTTP/1.1 over TLS 1.2 or newer when server.tls is set; plain HTTP otherwise.
  const server: http.Server = tls
    ? https.createServer({ ...serverOptions, ...readPair(tls), minVersion: 'TLSv1.2', ALPNProtocols: ['http/1.1'] }, handler)
    : http.createServer(serverOptions, handler);
  const stopReload = tls ? reloadOnChange(server as https.Server, tls, log) : undefined;
  // The optional plain listener only sends browsers to the https URL (the public URL's origin, never the Host header).
  const redirector = tls?.redirectFrom ? http.createServer({ requireHostHeader: false }, (req, res) => {
    const target = new URL(req.url?.startsWith('/') ? req.url : '/', config.server.publicUrl);
    res.writeHead(308, { location: target.href, 'content-length': 0, connection: 'close' });
    res.end();
  }) : undefined;
  server.on('upgrade', onUpgrade);
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    // Malformed HTTP never reaches a handler: answer briefly and close, as Node would, but logged.
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    log.info({ code: err.code, status }, 'client error');
    if (socket.writable && !(socket as { _httpMessage?: unknown })._httpMessage) {
      socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    } else socket.destroy();
  });

  for (const w of config.warnings) log.warn(w);

  const admin = config.server.admin === false ? undefined
    : createAdminServer({ metrics, readiness, shuttingDown: () => shuttingDown, log });

  const listenOn = (srv: http.Server, host: string, port: number, scheme = 'http') => new Promise<string>((ok, ko) => {
    srv.once('error', ko);
    srv.listen(port, host, () => {
      srv.off('error', ko);
      const a = srv.address() as AddressInfo;
      ok(`${scheme}://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`);
    });
  });

  return {
    config, server, admin, metrics, routes, readiness,
    async listen() {
      issuer?.keySet.start();
      oidcClient?.start();
      const url = await listenOn(server, config.server.listen.host, config.server.listen.port, tls ? 'https' : 'http');
      const adminCfg = config.server.admin;
      const adminUrl = admin && adminCfg ? await listenOn(admin, adminCfg.listen.host, adminCfg.listen.port) : undefined;
      const redirectUrl = redirector && tls?.redirectFrom ? await listenOn(redirector, tls.redirectFrom.host, tls.redirectFrom.port) : undefined;
      log.info({ url, adminUrl, redirectUrl, routes: config.routes.map((r) => `${r.path} → ${r.upstream ?? `static:${r.static}`} (${r.name})`) }, 'listening');
      return { url, ...(adminUrl ? { adminUrl } : {}), ...(redirectUrl ? { redirectUrl } : {}) };
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
      if (redirector?.listening) await new Promise<void>((ok) => { redirector.close(() => ok()); redirector.closeAllConnections(); });
      stopReload?.();
      for (const r of routes) r.forwarder.close?.();
      await pools.close();
      issuer?.keySet.close();
      oidcClient?.close();
      await store.close();
      log.info('stopped');
    },
  };
}
