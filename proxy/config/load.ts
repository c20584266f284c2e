// Reads routes.yaml, interpolates ${VAR} / ${VAR:-default}, validates, and freezes the result.
// Every problem is reported with the file, its line, the key path and what was expected.
import { readFileSync } from 'node:fs';
import { isNode, LineCounter, parseDocument, type Document } from 'yaml';
import { DEFAULT_PERMISSIONS } from '../access/permissions.js';
import { ConfigSchema, DICOMWEB_DEFAULTS, type Config, type RouteConfig, type RoleGrantConfig, type ServerConfig } from './schema.js';

export class ConfigError extends Error {
  constructor(readonly file: string, readonly problems: readonly string[]) {
    super(`${file}: invalid configuration\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

type PathKey = string | number;
export const formatPath = (path: readonly PathKey[]): string =>
  path.reduce<string>((acc, k) => (typeof k === 'number' ? `${acc}[${k}]` : acc ? `${acc}.${k}` : k), '') || '(root)';

const VAR = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

/** Replaces ${VAR} and ${VAR:-default} in every string value. Values are never re-parsed as YAML. */
export interface Problem { readonly path: readonly PathKey[]; readonly message: string }

export function interpolate(value: unknown, env: NodeJS.ProcessEnv, path: PathKey[] = [], problems: Problem[] = []): unknown {
  if (typeof value === 'string') {
    return value.replace(VAR, (_m, name: string, fallback: string | undefined) => {
      const v = env[name];
      if (v !== undefined && v !== '') return v;
      if (fallback !== undefined) return fallback;
      problems.push({ path, message: `environment variable ${name} is not set (use \${${name}:-default} for a default)` });
      return '';
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => interpolate(v, env, [...path, i], problems));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, interpolate(v, env, [...path, k], problems)]));
  }
  return value;
}

function lineOf(doc: Document, lines: LineCounter, path: readonly PathKey[]): string {
  for (let n = path.length; n >= 0; n--) {
    const node = doc.getIn(path.slice(0, n), true);
    if (isNode(node) && node.range) {
      const { line, col } = lines.linePos(node.range[0]);
      return `:${line}:${col}`;
    }
  }
  return '';
}

/** The value at a key path of the interpolated document (zod 4 does not report the input it refused). */
function valueAt(root: unknown, path: readonly PathKey[]): unknown {
  let v = root;
  for (const k of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PathKey, unknown>)[k];
  }
  return v;
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}

export function parseConfig(text: string, file: string, env: NodeJS.ProcessEnv = process.env): Config {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(file, doc.errors.map((e) => {
      const { line, col } = lines.linePos(e.pos[0]);
      return `${file}:${line}:${col}: YAML syntax: ${e.message.split('\n')[0]}`;
    }));
  }
  const problems: Problem[] = [];
  const raw = interpolate(doc.toJS() ?? {}, env, [], problems);
  const parsed = ConfigSchema.safeParse(raw);
  if (!parsed.success) {
    const reported = new Set(problems.map((p) => formatPath(p.path)));
    for (const issue of parsed.error.issues) {
      const path = issue.path.filter((k): k is PathKey => typeof k !== 'symbol');
      if (reported.has(formatPath(path))) continue; // already explained by a missing variable
      let message = issue.message;
      if (issue.code === 'unrecognized_keys') message = `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}`;
      else if (issue.code === 'invalid_type' && valueAt(raw, path) === undefined) message = `missing required key (expected ${issue.expected})`;
      problems.push({ path, message });
    }
  }
  if (problems.length > 0 || !parsed.success) {
    throw new ConfigError(file, problems.map((p) => `${file}${lineOf(doc, lines, p.path)}: ${formatPath(p.path)}: ${p.message}`));
  }
  const { server, routes, identity, permissions, session, store, shares } = parsed.data;
  const listenHost = server.listen.host.includes(':') ? `[${server.listen.host}]` : server.listen.host;
  const warnings: string[] = [];
  routes.forEach((r, i) => {
    if (r.upstream && r.auth !== 'public' && r.expose === undefined) {
      warnings.push(`${file}${lineOf(doc, lines, ['routes', i])}: routes[${i}] (${r.name}): exposes every path of ${r.upstream} to callers with the admin permission; `
        + 'set expose: upstream to confirm, or expose: dicomweb to forward only DICOMweb');
    }
  });
  const compiled: Config = {
    file,
    server: { ...server, publicUrl: server.publicUrl ?? `http://${listenHost}:${server.listen.port}` } as ServerConfig,
    // Every entry was checked against its form by the schema (PermissionTable).
    permissions: (permissions as Record<string, RoleGrantConfig> | undefined) ?? DEFAULT_PERMISSIONS,
    store,
    ...(session ? { session } : {}),
    ...(shares ? { shares } : {}),
    warnings,
    routes: routes.map((r) => ({
      ...r,
      stripPrefix: r.stripPrefix ?? r.upstream !== undefined,
      expose: r.upstream ? r.expose ?? 'upstream' : undefined,
      dicomweb: r.expose === 'dicomweb' ? r.dicomweb ?? DICOMWEB_DEFAULTS : undefined,
    }) as RouteConfig),
    ...(identity ? {
      identity: {
        ...identity,
        // Tokens the gateway's own client obtains name it in azp (Keycloak) or aud: they are the gateway's.
        audience: identity.client && !identity.audience.includes(identity.client.id) ? [...identity.audience, identity.client.id] : identity.audience,
        roleClaims: identity.roleClaims ?? ['realm_access.roles', ...identity.audience.map((a) => `resource_access.${a}.roles`)],
      },
    } : {}),
  };
  return deepFreeze(compiled);
}

export function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, [`${file}: cannot read the file (${(err as NodeJS.ErrnoException).code ?? String(err)})`]);
  }
  return parseConfig(text, file, env);
}

const SECRET_KEYS = /^(password|secret|token|clientSecret)$/i;

/** A copy of the config fit for printing: every secret replaced by "***". */
export function redactConfig(value: unknown, key = ''): unknown {
  if (SECRET_KEYS.test(key) && value !== undefined) return '***';
  if (key === 'store' && typeof value === 'string') return value.replace(/\/\/([^/@]*):[^/@]*@/, '//$1:***@');
  if (Array.isArray(value)) return value.map((v) => redactConfig(v));
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, redactConfig(v, k)]));
  return value;
}
