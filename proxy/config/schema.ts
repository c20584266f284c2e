// routes.yaml → typed, validated Config. One zod schema gives both the checks and the types.
import { z } from 'zod';
import { PERMISSIONS } from '../access/operations.js';
import { attributeTag, STUDY_ATTRIBUTES } from '../access/scope.js';

const UNITS_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const UNITS_BYTES: Record<string, number> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 };

/** `30s`, `500ms`, `5m`, `1h`, or a number of milliseconds. */
export const Duration = z.union([z.number(), z.string()]).transform((v, ctx) => {
  const m = /^\s*(\d+)\s*(ms|s|m|h|d)?\s*$/.exec(String(v));
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

const GatewayPath = z.string().regex(/^\/_gateway\/[A-Za-z0-9_-]+$/, { error: 'expected a path under /_gateway/ such as /_gateway/callback' });

const Name = z.string().regex(/^[a-z][a-z0-9_-]{0,62}$/, { error: 'expected a lower-case name such as dicomweb (letters, digits, - and _)' });

/** Built-in authenticators a route may list. */
export const AUTHENTICATORS = ['session', 'bearer', 'share'] as const;

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
    /** A client that reads nothing of a response for this long is cut off (and its upstream request with it). */
    send: Duration.default(30_000),
  }).prefault({}),
  limits: z.strictObject({
    maxHeaderSize: ByteSize.default(16 * 1024),
    maxBodySize: ByteSize.default(2 * 1024 ** 3),
    /** Upstream requests one authenticated user may have in flight at once (429 beyond); 0: no limit. */
    concurrencyPerUser: z.number().int().min(0).default(16),
  }).prefault({}),
  admin: z.union([z.literal(false), z.strictObject({ listen: ListenAddress.prefault('127.0.0.1:9090') })]).prefault({}),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** TLS on the public listener: PEM files, re-read when they change. */
  tls: z.strictObject({
    cert: z.string().min(1, { error: 'expected the path of a PEM certificate (chain) file' }),
    key: z.string().min(1, { error: 'expected the path of a PEM private key file' }),
    /** Strict-Transport-Security on every answer: true (180 days) or a duration. */
    hsts: z.union([z.boolean(), Duration]).default(false),
    /** A plain HTTP listener that only redirects to the public https URL (e.g. 0.0.0.0:80). */
    redirectFrom: ListenAddress.optional(),
  }).optional(),
});

/** Asymmetric JWS algorithms only: HMAC would let anyone holding the public key forge tokens. */
export const ALLOWED_ALGS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const;

const StringList = z.union([z.string().min(1).transform((s) => [s]), z.array(z.string().min(1)).min(1)]);

const Identity = z.strictObject({
  /** The issuer exactly as it appears in tokens' iss claim. */
  issuer: HttpUrl,
  /** How the gateway itself reaches the IdP, when not by the issuer URL (e.g. http://keycloak:8080/auth/realms/x). */
  internalUrl: z.union([z.literal('').transform(() => undefined), HttpUrl]).optional(),
  /** A token's aud or azp must contain one of these (Keycloak puts the client in azp). */
  audience: StringList,
  algorithms: z.array(z.enum(ALLOWED_ALGS, { error: `expected one of ${ALLOWED_ALGS.join(', ')} (HMAC and none are never accepted)` })).min(1).default(['RS256', 'PS256', 'ES256']),
  clockTolerance: Duration.default(30_000),
  /** Which token profiles count as access tokens: RFC 9068 (typ at+jwt), Keycloak (typ Bearer claim), plain JWT. */
  tokenTypes: z.array(z.enum(['at+jwt', 'keycloak', 'jwt'])).min(1).default(['at+jwt', 'keycloak']),
  /** Dot paths to string arrays of roles; default realm_access.roles and resource_access.<audience>.roles. */
  roleClaims: z.array(z.string().regex(/^[A-Za-z0-9_:-]+(\.[A-Za-z0-9_:-]+)*$/)).min(1).optional(),
  usernameClaim: z.string().min(1).default('preferred_username'),
  maxTokenSize: ByteSize.default(8 * 1024),
  realm: z.string().regex(/^[^"\\]*$/, { error: 'expected a realm without quotes or backslashes' }).default('pacs'),
  jwks: z.strictObject({
    cooldown: Duration.default(30_000),
    timeout: Duration.default(5_000),
    refreshInterval: Duration.default(600_000),
  }).prefault({}),
  tokenCache: z.strictObject({
    maxEntries: z.number().int().min(0).default(10_000),
    maxBytes: ByteSize.default(32 * 1024 * 1024),
  }).prefault({}),
  /** OHIF's own public OIDC client id (written into app-config.js) when OHIF logs users in itself. */
  viewerClientId: z.string().min(1).optional(),
  /** The gateway's own confidential client: browser sessions log in with it (code flow + PKCE). */
  client: z.strictObject({
    id: z.string().min(1),
    secret: z.string().min(1, { error: 'expected the client secret (from the environment, e.g. ${OIDC_CLIENT_SECRET})' }),
    /** Where the IdP sends the browser back; register <publicUrl><redirectPath> at the IdP. */
    redirectPath: GatewayPath.default('/_gateway/callback'),
    /** Where the IdP sends the browser after logout; register <publicUrl><postLogoutPath> at the IdP. */
    postLogoutPath: GatewayPath.default('/_gateway/logged-out'),
    scopes: z.array(z.string().regex(/^[!#-\[\]-~]+$/)).min(1).default(['openid', 'profile', 'email']),
  }).optional(),
});

/** A session signing secret: at least 32 bytes, so the cookie's HMAC cannot be brute-forced. */
const SessionSecret = z.string().refine((s) => Buffer.byteLength(s) >= 32, {
  error: 'expected a secret of at least 32 bytes (generate one: openssl rand -base64 32)',
});

const Session = z.strictObject({
  /** Signs the session cookie. A list rotates: the first signs, every one verifies. */
  secret: z.preprocess((v) => (typeof v === 'string' ? [v] : v), z.array(SessionSecret, { error: 'expected a secret (or a list of secrets) of at least 32 bytes' }).min(1)),
  /** Cookie name; gets the __Host- prefix (and Secure) when the public URL is https. */
  cookieName: z.string().regex(/^pgw_[A-Za-z0-9_]{1,32}$/, { error: 'expected a name starting with pgw_ (the gateway never forwards pgw_ cookies upstream)' }).default('pgw_session'),
  /** A session unused for this long ends. */
  idleTimeout: Duration.default(30 * 60_000),
  /** A session ends this long after login, however active. */
  absoluteTimeout: Duration.default(10 * 3_600_000),
  /** The access token is refreshed when less than this is left of it. */
  refreshBefore: Duration.default(30_000),
});

/** Share links: POST /_gateway/shares makes them; a route lists `share` among its authenticators to admit their visitors. */
const Shares = z.strictObject({
  /** The DICOMweb route whose studies are shared (and checked: the caller must be able to read each). */
  route: Name.default('dicomweb'),
  /** The longest a link may live; every link names its own expiry, up to this. */
  maxExpiry: Duration.default(30 * 86_400_000),
  /** Where a redeemed link sends the browser: OHIF's viewer, with the shared studies in its query. */
  viewerPath: z.string().regex(/^\/[A-Za-z0-9/_-]*$/, { error: 'expected a path such as /viewer' }).default('/viewer'),
});

/** Where shared state lives: memory (one gateway process) or Redis (several). */
const StoreUrl = z.string().refine((s) => s === 'memory' || /^rediss?:\/\/[^\s]+$/.test(s), {
  error: 'expected memory or a Redis URL such as redis://127.0.0.1:6379/0',
});

const Cors = z.strictObject({
  origins: z.array(z.string().regex(/^https?:\/\/[^/\s]+$/, { error: 'expected an origin such as https://viewer.example.org (scheme://host[:port], no path)' })).min(1),
  methods: z.array(z.enum(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'])).default(['GET', 'HEAD', 'POST', 'PUT', 'DELETE']),
  headers: z.array(z.string().regex(/^[A-Za-z0-9-]+$/)).default(['Authorization', 'Accept', 'Content-Type', 'X-Requested-With']),
  maxAge: Duration.default(600_000),
});

const Permission = z.enum(PERMISSIONS, { error: `expected a permission: one of ${PERMISSIONS.join(', ')} (roles map to permissions in the top-level permissions table)` });

/** Which permissions a route grants at most. */
const Allow = z.array(Permission, {
  error: `expected a list of permissions such as [view, upload] (one of ${PERMISSIONS.join(', ')}); method → roles rules were replaced by permissions, see README § Permissions`,
}).min(1);

const DicomwebPath = z.string().regex(/^\/[A-Za-z0-9._~-]+(\/[A-Za-z0-9._~-]+)*$/, { error: 'expected a path below the route such as /dicom-web (no trailing slash)' });

const Dicomweb = z.strictObject({
  /** DICOMweb roots below the route path: QIDO-RS, WADO-RS and STOW-RS live there. */
  roots: z.array(DicomwebPath).min(1).default(['/dicom-web']),
  /** The WADO-URI endpoint below the route path, or false. */
  wadoUri: z.union([z.literal(false), DicomwebPath]).default('/wado'),
  /** Forward DELETE on studies/series/instances (the upstream must support it; Orthanc's DICOMweb plugin does not). */
  delete: z.boolean().default(false),
});

export const DICOMWEB_DEFAULTS = Object.freeze(Dicomweb.parse({}));

/** Cookies a route passes upstream: none (default), all (but the gateway's own), or the names listed. */
const Cookies = z.union([z.literal('none'), z.literal('all'), z.array(z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/)).min(1)], {
  error: 'expected none, all, or a list of cookie names',
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
  auth: z.union([z.literal('public'), z.array(z.enum(AUTHENTICATORS)).min(1)], { error: `expected "public" or a list of authenticators from [${AUTHENTICATORS.join(', ')}]` }),
  /** What of the upstream the route exposes: the DICOMweb operation table, or every path (admins only). */
  expose: z.enum(['dicomweb', 'upstream'], { error: 'expected dicomweb (the DICOMweb operation table) or upstream (every path of the upstream, admins only)' }).optional(),
  dicomweb: Dicomweb.optional(),
  /** The permissions this route grants at most; a caller's roles must grant the operation's permission too. */
  allow: Allow.optional(),
  cors: Cors.optional(),
  /** Accept ?access_token= (RFC 6750 §2.3) for clients that cannot send headers (WADO-URI); it is removed before forwarding. */
  queryToken: z.boolean().default(false),
  stripPrefix: z.boolean().optional(),
  websocket: z.boolean().default(false),
  timeout: Duration.default(60_000),
  maxBodySize: ByteSize.optional(),
  upstreamAuth: UpstreamAuth.optional(),
  forward: z.strictObject({
    /** Pass the client's own Authorization header upstream (off: upstream gets the gateway's credentials). */
    authorization: z.boolean().default(false),
    /** Cookies passed upstream: none, all (never the gateway's own pgw_* cookies), or the names listed. */
    cookies: Cookies.default('none'),
    /**
     * Orthanc's DICOMweb plugin builds absolute links (BulkDataURI, RetrieveURL) from the Forwarded
     * header's host and knows nothing of the route prefix: put the prefix into that host (unquoted,
     * as Orthanc reads it) so the links point back through the gateway.
     */
    orthancLinks: z.boolean().default(false),
    /**
     * Rewrite includefield=a,b (what OHIF sends) into includefield=a&includefield=b, the only form
     * Orthanc's DICOMweb plugin 1.7 understands (otherwise studies show "No Description").
     */
    splitIncludeField: z.boolean().default(false),
    /** Send X-Forwarded-User / X-Forwarded-Roles (set by the gateway; client copies are always dropped). */
    identity: z.boolean().default(false),
  }).prefault({}),
});

const RoleName = z.string().regex(/^[^\s]{1,128}$/, { error: 'expected a role name as it appears in tokens' });

const ClaimPath = z.string().regex(/^[A-Za-z0-9_:-]+(\.[A-Za-z0-9_:-]+)*$/, { error: 'expected a claim path such as institution or groups.site' });

/** A limited role's rule for one attribute: the values allowed, listed or taken from the caller's token. */
const StudyRuleValues = z.union([
  z.array(z.string().min(1).max(256)).min(1, { error: 'expected at least one value, e.g. [NORTH CLINIC]' }),
  z.strictObject({ claim: ClaimPath }),
], { error: 'expected a list of values such as [NORTH CLINIC], or { claim: <token claim path> }' });

/** A role that holds its permissions for some studies only: those whose attributes match. */
const LimitedRole = z.strictObject({
  permissions: z.array(Permission).min(1, { error: 'expected at least one permission, e.g. [view]' }),
  /** Attribute (keyword or 8-digit hex tag) → allowed values; a study must match every attribute listed. */
  /** Studies the caller stored through the gateway are in scope too ("my uploads"). */
  ownUploads: z.boolean().default(false),
  studies: z.record(z.string(), StudyRuleValues).optional().superRefine((rules, ctx) => {
    if (rules === undefined) return;
    if (Object.keys(rules).length === 0) ctx.addIssue({ code: 'custom', message: 'expected at least one attribute, e.g. InstitutionName: [NORTH CLINIC]' });
    for (const key of Object.keys(rules)) {
      if (/^[0-9]{1,7}$/.test(key)) {
        ctx.addIssue({ code: 'custom', path: [key], message: `YAML reads an unquoted tag of digits as a number (here ${key}): quote the tag, e.g. '${key.padStart(8, '0')}'` });
      } else if (!attributeTag(key)) {
        ctx.addIssue({ code: 'custom', path: [key], message: `expected a study attribute: an 8-digit hex tag (e.g. 00091010) or one of ${Object.keys(STUDY_ATTRIBUTES).join(', ')}` });
      }
    }
  }),
});

const LimitedRoleChecked = LimitedRole.superRefine((g, ctx) => {
  if (!g.studies && !g.ownUploads) ctx.addIssue({ code: 'custom', message: 'a limited role names its studies (studies: { InstitutionName: [...] }), ownUploads: true, or both' });
});

/**
 * Role → a list of permissions, or permissions limited to some studies. Each entry is checked
 * against the form its shape announces, so a mistake is reported at its own key (a union would
 * report only that neither form fits).
 */
const PermissionTable = z.record(RoleName, z.unknown()).superRefine((table, ctx) => {
  for (const [role, grant] of Object.entries(table)) {
    const form = Array.isArray(grant) ? z.array(Permission)
      : grant !== null && typeof grant === 'object' ? LimitedRoleChecked : undefined;
    if (!form) {
      ctx.addIssue({ code: 'custom', path: [role], message: 'expected a list of permissions such as [view], or { permissions: [view], studies: { InstitutionName: [NORTH CLINIC] } }' });
      continue;
    }
    const r = form.safeParse(grant);
    if (!r.success) for (const issue of r.error.issues) ctx.addIssue({ code: 'custom', path: [role, ...issue.path], message: issue.message });
  }
});

export const ConfigSchema = z.strictObject({
  server: Server.prefault({}),
  identity: Identity.optional(),
  session: Session.optional(),
  store: StoreUrl.default('memory'),
  shares: Shares.optional(),
  /** Role → permissions (or permissions limited to some studies). Absent: the built-in table for the demo roles (viewer, uploader, admin). */
  permissions: PermissionTable.optional(),
  routes: z.array(Route).min(1, { error: 'expected at least one route' }),
}).superRefine((cfg, ctx) => {
  if (cfg.server.tls && cfg.server.publicUrl && !cfg.server.publicUrl.startsWith('https:')) {
    ctx.addIssue({ code: 'custom', path: ['server', 'publicUrl'], message: 'with server.tls the public URL is https://…' });
  }
  if (cfg.shares) {
    if (!cfg.session) ctx.addIssue({ code: 'custom', path: ['shares'], message: 'share links need a session section: its secret signs their cookies' });
    const target = cfg.routes.find((r) => r.name === cfg.shares!.route);
    if (!target || !target.upstream || target.expose !== 'dicomweb') {
      ctx.addIssue({ code: 'custom', path: ['shares', 'route'], message: `expected the name of a DICOMweb route (expose: dicomweb), got "${cfg.shares.route}"` });
    }
  }
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
    if (r.static && (r.upstreamAuth || r.websocket || r.stripPrefix !== undefined || r.expose || r.dicomweb)) {
      ctx.addIssue({ code: 'custom', path: ['routes', i], message: 'upstreamAuth, websocket, stripPrefix, expose and dicomweb apply only to upstream routes' });
    }
    if (r.static && r.auth !== 'public' && r.auth.includes('bearer')) {
      // A browser navigating to the viewer carries no bearer token: only a login session (or a redeemed share link) can guard it.
      ctx.addIssue({ code: 'custom', path: ['routes', i, 'auth'], message: 'a static site is public or behind a login: expected auth: public, [session] or [session, share]' });
    }
    if (r.auth !== 'public' && r.auth.includes('share')) {
      if (!cfg.shares) ctx.addIssue({ code: 'custom', path: ['routes', i, 'auth'], message: 'the share authenticator needs a shares section (share links)' });
      if (r.upstream && r.expose !== 'dicomweb') ctx.addIssue({ code: 'custom', path: ['routes', i, 'auth'], message: 'share links open studies: the share authenticator belongs on DICOMweb routes (expose: dicomweb) and the viewer' });
    }
    if (r.static && r.allow) {
      ctx.addIssue({ code: 'custom', path: ['routes', i, 'allow'], message: 'a static site grants no operations (any permission opens it): remove allow' });
    }
    if (r.dicomweb && r.expose !== 'dicomweb') ctx.addIssue({ code: 'custom', path: ['routes', i, 'dicomweb'], message: 'the dicomweb section needs expose: dicomweb' });
    if (r.expose === 'dicomweb' && r.websocket) ctx.addIssue({ code: 'custom', path: ['routes', i, 'websocket'], message: 'a DICOMweb route carries no WebSocket upgrades' });
    if (r.upstream && r.auth !== 'public' && r.expose !== 'dicomweb' && r.allow && !r.allow.includes('admin')) {
      ctx.addIssue({ code: 'custom', path: ['routes', i, 'allow'], message: 'every request on a route exposing the whole upstream is the upstream-rest operation, which needs the admin permission: add admin here, or set expose: dicomweb' });
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
      if (!cfg.identity) ctx.addIssue({ code: 'custom', path: ['routes', i, 'auth'], message: `authenticator ${r.auth.join(', ')} needs an identity section (issuer, audience)` });
      if (new Set(r.auth).size !== r.auth.length) ctx.addIssue({ code: 'custom', path: ['routes', i, 'auth'], message: 'each authenticator at most once' });
      if (r.auth.includes('session')) {
        if (cfg.identity && !cfg.identity.client) ctx.addIssue({ code: 'custom', path: ['identity', 'client'], message: `route ${r.name} logs browsers in (auth: session): expected identity.client (the gateway's confidential client: id, secret)` });
        if (!cfg.session) ctx.addIssue({ code: 'custom', path: ['session'], message: `route ${r.name} uses auth: session: expected a session section with a secret of at least 32 bytes` });
      }
      if (r.queryToken && !r.auth.includes('bearer')) ctx.addIssue({ code: 'custom', path: ['routes', i, 'queryToken'], message: 'queryToken needs the bearer authenticator' });
      if (r.static) return;
      if (!r.allow) ctx.addIssue({ code: 'custom', path: ['routes', i, 'allow'], message: 'an authenticated route needs allow: the permissions it grants, e.g. [view, upload]' });
    } else {
      if (r.allow) ctx.addIssue({ code: 'custom', path: ['routes', i, 'allow'], message: 'allow needs an authenticated route (auth: [bearer])' });
      if (r.queryToken) ctx.addIssue({ code: 'custom', path: ['routes', i, 'queryToken'], message: 'queryToken needs auth: [bearer]' });
      if (r.forward.identity) ctx.addIssue({ code: 'custom', path: ['routes', i, 'forward', 'identity'], message: 'forward.identity needs an authenticated route' });
    }
  });
});

export type ConfigInput = z.input<typeof ConfigSchema>;
type ParsedConfig = z.output<typeof ConfigSchema>;
export type RouteConfig = ParsedConfig['routes'][number] & {
  readonly stripPrefix: boolean;
  /** Resolved: upstream routes default to the whole upstream; static routes have none. */
  readonly expose: 'dicomweb' | 'upstream' | undefined;
  readonly dicomweb: z.output<typeof Dicomweb> | undefined;
};
export type ServerConfig = ParsedConfig['server'] & { readonly publicUrl: string };
export type IdentityConfig = NonNullable<ParsedConfig['identity']> & { readonly roleClaims: readonly string[] };
export type SessionConfig = NonNullable<ParsedConfig['session']>;
export type SharesConfig = NonNullable<ParsedConfig['shares']>;
/** A role's entry in the permissions table: its permissions, or permissions limited to some studies. */
export type RoleGrantConfig = readonly z.output<typeof Permission>[] | {
  readonly permissions: readonly z.output<typeof Permission>[];
  readonly studies?: Readonly<Record<string, readonly string[] | { readonly claim: string }>>;
  readonly ownUploads?: boolean;
};
export interface Config {
  readonly file: string;
  readonly server: ServerConfig;
  readonly identity?: IdentityConfig;
  readonly session?: SessionConfig;
  /** memory, or a Redis URL: sessions (and later shares, revocations) live there. */
  readonly store: string;
  /** Share links, when enabled. */
  readonly shares?: SharesConfig;
  /** Role → permissions, or permissions limited to some studies (the built-in table when routes.yaml has none). */
  readonly permissions: Readonly<Record<string, RoleGrantConfig>>;
  readonly routes: readonly RouteConfig[];
  /** Things that work but deserve a look (printed by --check and logged at start). */
  readonly warnings: readonly string[];
}
