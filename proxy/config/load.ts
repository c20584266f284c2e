// Reads routes.yaml, interpolates ${VAR} / ${VAR:-default}, validates, and freezes the result.
// Every problem is reported with the file, its line, the key path and what was expected.
import { readFileSync } from 'node:fs';
import { isMap, isNode, isScalar, LineCounter, parseDocument, type Document } from 'yaml';
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

/** Line and column of a key itself (not its value) in the mapping at `parent`, when the document has it. */
function keyPosition(doc: Document, lines: LineCounter, parent: readonly PathKey[], key: string): { line: number; col: number } | undefined {
  const map = parent.length ? doc.getIn(parent, true) : doc.contents;
  if (!isMap(map)) return undefined;
  for (const pair of map.items) {
    const k = pair.key;
    if (isScalar(k) && String(k.value) === key && k.range) return lines.linePos(k.range[0]);
  }
  return undefined;
}

// ------------------------------------------------------------------------------------------------
// "Did you mean": the keys the schema knows at a path

interface ZodLike { _zod: { def: Record<string, unknown> & { type: string } } }

/** The keys a strict object accepts at `path` of the schema (through optionals, defaults, pipes, arrays, records, unions). */
export function knownKeysAt(schema: unknown, path: readonly PathKey[]): string[] {
  const out = new Set<string>();
  const walk = (node: unknown, rest: readonly PathKey[], depth: number): void => {
    if (!node || typeof node !== 'object' || !('_zod' in node) || depth > 40) return;
    const def = (node as ZodLike)._zod.def;
    switch (def.type) {
      case 'optional': case 'default': case 'prefault': case 'nullable': case 'readonly': case 'catch':
        walk(def.innerType, rest, depth + 1); return;
      case 'pipe': walk(def.in, rest, depth + 1); walk(def.out, rest, depth + 1); return;
      case 'union': for (const o of def.options as unknown[]) walk(o, rest, depth + 1); return;
      case 'array': if (rest.length && typeof rest[0] === 'number') walk(def.element, rest.slice(1), depth + 1); return;
      case 'record': if (rest.length) walk(def.valueType, rest.slice(1), depth + 1); return;
      case 'object': {
        const shape = def.shape as Record<string, unknown>;
        if (rest.length === 0) { for (const k of Object.keys(shape)) out.add(k); return; }
        const next = shape[String(rest[0])];
        if (next) walk(next, rest.slice(1), depth + 1);
        return;
      }
      default:
    }
  };
  walk(schema, path, 0);
  return [...out];
}

function editDistance(a: string, b: string): number {
  const x = a.toLowerCase();
  const y = b.toLowerCase();
  let prev = Array.from({ length: y.length + 1 }, (_, j) => j);
  for (let i = 1; i <= x.length; i++) {
    const cur = [i];
    for (let j = 1; j <= y.length; j++) cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (x[i - 1] === y[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[y.length]!;
}

/** The known key nearest to `key` (within a third of its length, at least 2 edits), or undefined. */
export function nearestKey(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(key.length / 3)) + 1;
  for (const k of known) {
    const d = editDistance(key, k);
    if (d < bestDistance) { best = k; bestDistance = d; }
  }
  return best;
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
  /** Problems with where they are: each unknown key on its own line, not its parent's. */
  const located: Array<{ line: number; col: number; text: string }> = [];
  const at = (path: readonly PathKey[]): { line: number; col: number } => {
    const where = /^:(\d+):(\d+)$/.exec(lineOf(doc, lines, path));
    return where ? { line: Number(where[1]), col: Number(where[2]) } : { line: 0, col: 0 };
  };
  const where = (p: { line: number; col: number }) => (p.line ? `:${p.line}:${p.col}` : '');
  for (const p of problems) {
    const pos = at(p.path);
    located.push({ ...pos, text: `${file}${where(pos)}: ${formatPath(p.path)}: ${p.message}` });
  }
  if (!parsed.success) {
    const reported = new Set(problems.map((p) => formatPath(p.path)));
    for (const issue of parsed.error.issues) {
      const path = issue.path.filter((k): k is PathKey => typeof k !== 'symbol');
      if (reported.has(formatPath(path))) continue; // already explained by a missing variable
      if (issue.code === 'unrecognized_keys') {
        const known = knownKeysAt(ConfigSchema, path);
        for (const key of issue.keys) {
          const pos = keyPosition(doc, lines, path, key) ?? at(path);
          const near = nearestKey(key, known);
          const hint = near ? ` (did you mean ${near}?)` : known.length ? ` (known here: ${known.join(', ')})` : '';
          located.push({ ...pos, text: `${file}${where(pos)}: ${formatPath([...path, key])}: unknown key${hint}` });
        }
        continue;
      }
      let message = issue.message;
      if (issue.code === 'invalid_type' && valueAt(raw, path) === undefined) message = `missing required key (expected ${issue.expected})`;
      else if (issue.code === 'invalid_union' && valueAt(raw, path) === undefined) message = 'missing required key';
      const pos = at(path);
      located.push({ ...pos, text: `${file}${where(pos)}: ${formatPath(path)}: ${message}` });
    }
  }
  if (located.length > 0 || !parsed.success) {
    located.sort((a, b) => a.line - b.line || a.col - b.col);
    throw new ConfigError(file, located.map((p) => p.text));
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
    server: { ...server, publicUrl: server.publicUrl ?? `${server.tls ? 'https' : 'http'}://${listenHost}:${server.listen.port}` } as ServerConfig,
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
