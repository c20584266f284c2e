// The OHIF viewer: its prebuilt dist/ with cache rules, SPA fallback, compression and security
// headers, plus the gateway's own app-config.js. Everything is prepared once at start-up.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import compression from 'compression';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { Config, RouteConfig } from '../config/schema.js';
import { GatewayError, toGatewayError } from '../errors.js';
import type { Exchange } from '../exchange.js';
import type { Forwarder } from './forwarder.js';
import { buildOhifConfig, type OhifConfigOptions } from './ohif-config.js';
import { inlineScriptsOf, siteHeaders, type HeaderList } from './site-headers.js';

export interface StaticSiteDeps { readonly onError: (ex: Exchange, err: GatewayError) => void }

const IMMUTABLE = 'public, max-age=31536000, immutable';
const NO_CACHE = 'no-cache';
// webpack's [contenthash] (16 hex digits) in OHIF's chunk, wasm and font file names.
const HASHED = /(?:^|[.-])[0-9a-f]{16,}\.[a-z0-9]+$/;
// Extensions start with a letter, so a last segment such as a DICOM UID (1.2.840…) is still an app route.
const HAS_EXTENSION = /\.[A-Za-z][A-Za-z0-9]{0,9}$/;
const SCRIPT = /\.m?js$/;
const EXCHANGE = Symbol('pacs-gateway.static-exchange');
type Tagged = IncomingMessage & { [EXCHANGE]?: Exchange };

interface PackageJson { name?: string; ohif?: { version?: string } }

/** The gateway's own package.json and its directory, whether running from proxy/forward (jest) or dist/proxy/forward. */
export function gatewayPackage(from = path.dirname(fileURLToPath(import.meta.url))): { root: string; pkg: PackageJson } {
  for (let dir = from; ; dir = path.dirname(dir)) {
    const file = path.join(dir, 'package.json');
    if (existsSync(file)) {
      const pkg = JSON.parse(readFileSync(file, 'utf8')) as PackageJson;
      if (pkg.name === 'pacs-gateway') return { root: dir, pkg };
    }
    if (path.dirname(dir) === dir) throw new Error(`no pacs-gateway package.json above ${from}`);
  }
}

/** Where OHIF's built files are; throws an operator-facing message when they are missing. */
export function ohifDistDir(route: RouteConfig, config: Config): string {
  const configured = route.ohif?.root;
  let dir: string;
  let fix: string;
  if (configured) {
    dir = path.resolve(path.dirname(config.file), configured);
    fix = `check routes "${route.name}" ohif.root in ${config.file} (resolved relative to that file)`;
  } else {
    const { root, pkg } = gatewayPackage();
    const version = pkg.ohif?.version;
    if (!version) throw new Error(`${root}/package.json has no "ohif.version": cannot locate the OHIF viewer`);
    dir = path.join(root, '.cache', 'ohif', version, 'dist');
    fix = `run \`npm run fetch-ohif\` to fetch @ohif/app@${version}, or set ohif.root on route "${route.name}"`;
  }
  if (!existsSync(path.join(dir, 'index.html'))) throw new Error(`OHIF viewer not found: ${dir} has no index.html; ${fix}`);
  return dir;
}

interface Body { readonly data: Buffer; readonly type: string; readonly etag: string; readonly headers: HeaderList }
const bodyOf = (data: Buffer, type: string, headers: HeaderList): Body =>
  ({ data, type, headers, etag: `"${createHash('sha256').update(data).digest('base64url').slice(0, 27)}"` });
const setAll = (res: ServerResponse, headers: HeaderList): void => { for (const [name, value] of headers) res.setHeader(name, value); };

/** Start-up inputs from other parts of the gateway: the login work passes OHIF's oidc entries and the IdP's origin. */
export interface StaticSiteOptions extends OhifConfigOptions {
  readonly connectSrc?: readonly string[];
}

// Pages of dist/ whose inline scripts must run: the app, and the OIDC silent-renew iframe.
const PAGES_WITH_INLINE_SCRIPTS = ['index.html', 'silent-refresh.html'];

export function createStaticSite(route: RouteConfig, config: Config, deps: StaticSiteDeps, opts: StaticSiteOptions = {}): Forwarder {
  const dist = ohifDistDir(route, config);
  const indexHtml = readFileSync(path.join(dist, 'index.html'));
  const headers = siteHeaders({
    inlineScripts: PAGES_WITH_INLINE_SCRIPTS.map((f) => path.join(dist, f)).filter((f) => existsSync(f))
      .flatMap((f) => inlineScriptsOf(readFileSync(f, 'utf8'))),
    https: config.server.publicUrl.startsWith('https:'),
    ...(opts.connectSrc ? { connectSrc: opts.connectSrc } : {}),
  });
  const index = bodyOf(indexHtml, 'text/html; charset=utf-8', headers.page);
  const appConfig = bodyOf(Buffer.from(buildOhifConfig(route, config, opts)), 'text/javascript; charset=utf-8', headers.script);
  const generated = new Map<string, Body>([['/app-config.js', appConfig], ['/index.html', index]]);
  // A share link's visitor: no OIDC client (never one for them), no study list; the gateway limits what /pacs gives.
  const { oidc: _oidc, ...withoutLogin } = opts;
  const shareConfig = bodyOf(Buffer.from(buildOhifConfig(route, config, { ...withoutLogin, showStudyList: false })), 'text/javascript; charset=utf-8', headers.script);

  const exchangeOf = (req: IncomingMessage): Exchange => (req as Tagged)[EXCHANGE] as Exchange;
  const sendBody = (res: Response, body: Body): void => {
    setAll(res, body.headers);
    res.setHeader('Content-Type', body.type);
    res.setHeader('Cache-Control', NO_CACHE);
    res.setHeader('ETag', body.etag);
    res.send(body.data); // answers 304 to a matching If-None-Match, and HEAD without a body
  };

  const app = express();
  app.disable('x-powered-by');
  app.disable('etag'); // generated bodies carry precomputed ETags; files get send()'s
  app.use((req: Request, res: Response, next: NextFunction) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      next(new GatewayError('METHOD_NOT_ALLOWED', 'the viewer is read-only', { headers: { Allow: 'GET, HEAD' } }));
      return;
    }
    next();
  });
  // A gzip/br body for a byte range would not match the range's offsets: ranges go out unencoded.
  app.use(compression({ filter: (req, res) => res.statusCode !== 206 && !req.headers.range && compression.filter(req, res) }));
  app.use((req: Request, res: Response, next: NextFunction) => {
    const body = req.path === '/app-config.js' && exchangeOf(req).principal?.via === 'share' ? shareConfig
      : generated.get(req.path) ?? (HAS_EXTENSION.test(req.path) ? undefined : index);
    if (body) sendBody(res, body);
    else next();
  });
  app.use(express.static(dist, {
    index: false,
    redirect: false,
    dotfiles: 'ignore',
    fallthrough: false,
    cacheControl: false,
    setHeaders: (res: ServerResponse, file: string) => {
      setAll(res, SCRIPT.test(file) ? headers.script : headers.page);
      res.setHeader('Cache-Control', HASHED.test(path.basename(file)) ? IMMUTABLE : NO_CACHE);
    },
  }));
  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    const status = err instanceof GatewayError ? undefined : (err as { status?: number }).status;
    const ex = exchangeOf(req);
    if (status === 412 || status === 416) {
      // Conditional and range failures are answers, not errors: keep send's headers (Content-Range).
      for (const [k, v] of Object.entries((err as { headers?: Record<string, string> }).headers ?? {})) res.setHeader(k, v);
      res.status(status).end();
    } else if (status === 404) {
      deps.onError(ex, new GatewayError('NO_ROUTE', 'no such file in the viewer'));
    } else if (status === 400 || status === 403) {
      deps.onError(ex, new GatewayError('BAD_REQUEST_PATH', 'this path cannot name a viewer file'));
    } else {
      deps.onError(ex, toGatewayError(err));
    }
  });
  const handle = app as unknown as (req: IncomingMessage, res: ServerResponse, done: (err?: unknown) => void) => void;

  return {
    forward(ex) {
      const t = ex.target!;
      const req = ex.req as Tagged;
      req[EXCHANGE] = ex;
      ex.res.setHeader('X-Request-Id', ex.id);
      req.url = t.query ? `${t.path}?${t.query}` : t.path;
      handle(req, ex.res, (err) => deps.onError(ex, err ? toGatewayError(err) : new GatewayError('NO_ROUTE', 'no such file in the viewer')));
    },
  };
}
