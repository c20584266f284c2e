// routes.yaml → typed, validated Config. One zod schema gives both the checks and the types.
import { z } from 'zod';

const UNITS_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const UNITS_BYTES: Record<string, number> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 };

/** `30s`, `500ms`, `5m`, `1h`, or a number of milliseconds. */
export const Duration = z.union([z.number(), z.string()]).transform((v, ctx) => {
  const m = /^\s*(\d+)\s*(ms|s|m|h)?\s*$/.exec(String(v));
  if (!m) {
    ctx.addIssue({ code: 'custom', message: `expected a duration such as 30s, 500ms or 5m, got ${JSON.stringify(v)}` });
    return z.NEVER;
  }
  return Number(m[1]) * (UNITS_MS[m[2] ?? 'ms'] ?? 1);
});

/** `16KB`, `2GB`, or a number of bytes (binary multiples). */
export const ByteSize = z.union([z.number(), z.string()]).transform((v, ctx) => {
  const m = /^\s*(\d+)\s*(b|kb|mb|gb)?\s*$/i.exec(String(v));
  if (!m) {
    ctx.addIssue({ code: 'custom', message: `expected a size such as 16KB, 100MB or 2GB, got ${JSON.stringify(v)}` });
    return z.NEVER;
  }
  return Number(m[1]) * (UNITS_BYTES[(m[2] ?? 'b').toLowerCase()] ?? 1);
});

const HttpUrl = z.string().refine((s) => {
  try {
    const u = new URL(s);
    return (u.protocol === 'http:' || u.protocol === 'https:') && /^https?:\/\//i.test(s) && !u.username && !u.password;
  } catch { return false; }
}, { error: (iss) => `expected an http(s) URL without credentials, got ${JSON.stringify(iss.input)}` })
  .transform((s) => s.replace(/\/+$/, ''));

/** `host:port`; port 0 picks a free port (tests). */
export const ListenAddress = z.union([z.string(), z.number()]).transform((v, ctx) => {
  const s = String(v);
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(s) ?? (/^\d{1,5}$/.test(s) ? [s, undefined, '127.0.0.1', s] : null);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) {
    ctx.addIssue({ code: 'custom', message: `expected host:port such as 127.0.0.1:8080, got ${JSON.stringify(v)}` });
    return z.NEVER;
  }
  return { host: (m[1] ?? m[2]) as string, port };
});
export type ListenAddress = z.output<typeof ListenAddress>;

const RoutePath = z.string().refine(
  (p) => p === '/' || /^(\/[A-Za-z0-9._~!$&'()*+,;=:@-]+)+$/.test(p) && !p.split('/').some((s) => s === '.' || s === '..'),
  { error: (iss) => `expected an absolute path of plain segments such as /pacs (no trailing slash), got ${JSON.stringify(iss.input)}` },
);

const Name = z.string().regex(/^[a-z][a-z0-9_-]{0,62}$/, { error: 'expected a lower-case name such as dicomweb (letters, digits, - and _)' });

const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;

const TrustProxy = z.union([
  z.literal(false),
  z.number().int().min(0).max(10),
  z.array(z.string().min(1)).min(1),
], { error: 'expected false, a number of trusted hops, or a list of trusted proxy addresses/CIDRs (e.g. [loopback, 10.0.0.0/8])' });

const Server = z.strictObject({
  listen: ListenAddress.prefault('127.0.0.1:8080'),
  publicUrl: HttpUrl.optional(),
  trustProxy: TrustProxy.default(false),
  timeouts: z.strictObject({
    headers: Duration.default(20_000),
    request: Duration.default(600_000),
    keepAlive: Duration.default(5_000),
    shutdown: Duration.default(10_000),
  }).prefault({}),
  limits: z.strictObject({
    maxHeaderSize: ByteSize.default(16 * 1024),
    maxBodySize: ByteSize.default(2 * 1024 ** 3),
  }).prefault({}),
  admin: z.union([z.literal(false), z.strictObject({ listen: ListenAddress.prefault('127.0.0.1:9090') })]).prefault({}),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

const UpstreamAuth = z.strictObject({
  basic: z.strictObject({ username: z.string().min(1), password: z.string().min(1) }),
});

const Ohif = z.strictObject({
  /** Name of the route whose upstream is Orthanc's DICOMweb (OHIF's data source). */
  dataSource: Name.default('dicomweb'),
  dicomwebPath: z.string().regex(/^\/[A-Za-z0-9/_-]*$/).default('/dicom-web'),
  wadoUriPath: z.string().regex(/^\/[A-Za-z0-9/_-]*$/).default('/wado'),
  /** Directory holding OHIF's built dist/ (default: the pinned @ohif/app fetched by scripts/fetch-ohif.mjs). */
  root: z.string().min(1).optional(),
  title: z.string().max(100).default('PACS'),
});

const Route = z.strictObject({
  name: Name,
  path: RoutePath,
  upstream: HttpUrl.optional(),
  static: z.literal('ohif', { error: 'expected "ohif" (the only built-in static site)' }).optional(),
  ohif: Ohif.optional(),
  auth: z.union([z.literal('public'), z.array(Name).min(1)], { error: 'expected "public" or a list of authenticator names such as [bearer]' }),
  allow: z.record(z.enum([...HTTP_METHODS, '*']), z.array(z.string().min(1))).optional(),
  stripPrefix: z.boolean().optional(),
  websocket: z.boolean().default(false),
  timeout: Duration.default(60_000),
  maxBodySize: ByteSize.optional(),
  upstreamAuth: UpstreamAuth.optional(),
  forward: z.strictObject({
    /** Pass the client's own Authorization header upstream (off: upstream gets the gateway's credentials). */
    authorization: z.boolean().default(false),
    /** Pass the gateway's own cookies upstream (other cookies always pass). */
    gatewayCookies: z.boolean().default(false),
  }).prefault({}),
});

export const ConfigSchema = z.strictObject({
  server: Server.prefault({}),
  routes: z.array(Route).min(1, { error: 'expected at least one route' }),
}).superRefine((cfg, ctx) => {
  const seenNames = new Map<string, number>();
  const seenPaths = new Map<string, number>();
  cfg.routes.forEach((r, i) => {
    const dupName = seenNames.get(r.name);
    if (dupName !== undefined) ctx.addIssue({ code: 'custom', path: ['routes', i, 'name'], message: `duplicate route name "${r.name}" (also routes[${dupName}])` });
    seenNames.set(r.name, i);
    const dupPath = seenPaths.get(r.path);
    if (dupPath !== undefined) ctx.addIssue({ code: 'custom', path: ['routes', i, 'path'], message: `duplicate route path "${r.path}" (also routes[${dupPath}])` });
    seenPaths.set(r.path, i);
    if ((r.upstream === undefined) === (r.static === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['routes', i], message: 'expected exactly one of "upstream" or "static"' });
    }
    if (r.static && (r.upstreamAuth || r.websocket || r.stripPrefix !== undefined)) {
      ctx.addIssue({ code: 'custom', path: ['routes', i], message: 'upstreamAuth, websocket and stripPrefix apply only to upstream routes' });
    }
    if (r.ohif && r.static !== 'ohif') ctx.addIssue({ code: 'custom', path: ['routes', i, 'ohif'], message: 'the ohif section needs static: ohif' });
    if (r.static === 'ohif') {
      const ds = r.ohif?.dataSource ?? 'dicomweb';
      const target = cfg.routes.find((o) => o.name === ds);
      if (!target || !target.upstream) {
        ctx.addIssue({ code: 'custom', path: ['routes', i, 'ohif', 'dataSource'], message: `expected the name of an upstream route for OHIF's DICOMweb data source, got "${ds}"` });
      }
    }
    if (r.auth !== 'public') {
      // Authenticators arrive with the identity section (bearer tokens, sessions); until then only public routes exist.
      ctx.addIssue({ code: 'custom', path: ['routes', i, 'auth'], message: `unknown authenticator ${JSON.stringify(r.auth)}: expected "public"` });
    }
  });
});

export type ConfigInput = z.input<typeof ConfigSchema>;
type ParsedConfig = z.output<typeof ConfigSchema>;
export type RouteConfig = ParsedConfig['routes'][number] & { readonly stripPrefix: boolean };
export type ServerConfig = ParsedConfig['server'] & { readonly publicUrl: string };
export interface Config {
  readonly file: string;
  readonly server: ServerConfig;
  readonly routes: readonly RouteConfig[];
}
