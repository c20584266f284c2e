// Request-target normalisation and longest-prefix route matching on whole path segments.
// Anything a backend could read differently from the gateway is refused rather than guessed at.
import { GatewayError } from './errors.js';

export interface Target {
  /** The normalised path, still percent-encoded as the client sent it (duplicate slashes merged). */
  readonly path: string;
  /** The raw query string without the leading "?", or "" when there is none. */
  readonly query: string;
}

const bad = (reason: string): GatewayError => new GatewayError('BAD_REQUEST_PATH', reason);

// Control bytes, backslash, and characters a valid request-target never holds raw.
const FORBIDDEN_RAW = /[\u0000-\u001f\u007f\\#\s]/;
const PCT = /%(?![0-9A-Fa-f]{2})/;
// After full decoding, these must not appear inside a segment: they would change the path's shape.
const FORBIDDEN_DECODED = /[\u0000-\u001f\u007f/\\]/;

/** Decodes percent-escapes repeatedly (double/triple encoding) until stable; undefined if malformed. */
function decodeFully(segment: string): string | undefined {
  let s = segment;
  for (let i = 0; i < 4 && s.includes('%'); i++) {
    if (PCT.test(s)) return i === 0 ? undefined : s; // "%zz" in the raw path is malformed; after a decode it is literal
    let next: string;
    try { next = decodeURIComponent(s); } catch { return i === 0 ? undefined : s; }
    if (next === s) break;
    s = next;
  }
  return s;
}

/**
 * Splits and checks a request target. `ownHosts` are the Host values the gateway answers to;
 * an absolute-form target naming any other host is refused (no open-proxy behaviour).
 */
export function normaliseTarget(rawUrl: string | undefined, hostHeader: string | undefined): Target {
  if (!rawUrl) throw bad('empty request target');
  let url = rawUrl;
  if (url[0] !== '/') {
    const m = /^https?:\/\/([^/?#]*)(.*)$/i.exec(url);
    if (!m) throw bad('request target must be an absolute path');
    if (!hostHeader || (m[1] ?? '').toLowerCase() !== hostHeader.toLowerCase()) throw bad('absolute-form request target for another host');
    url = m[2] || '/';
    if (url[0] !== '/') throw bad('request target must be an absolute path');
  }
  const q = url.indexOf('?');
  const rawPath = q < 0 ? url : url.slice(0, q);
  const query = q < 0 ? '' : url.slice(q + 1);
  if (FORBIDDEN_RAW.test(rawPath)) throw bad('control character, backslash or fragment in path');
  if (/[\u0000-\u001f\u007f]/.test(query)) throw bad('control character in query');
  // No "//" to merge, no escape to decode and no segment starting with a dot: already normal.
  if (!rawPath.includes('%') && !rawPath.includes('//') && !rawPath.includes('/.')) return { path: rawPath, query };

  const segments = rawPath.split('/');
  const kept: string[] = [];
  for (let i = 1; i < segments.length; i++) {
    const seg = segments[i] as string;
    if (seg === '' && i < segments.length - 1) continue; // "//" merged, as nginx does
    if (seg.includes('%') || seg.includes('.')) {
      const decoded = decodeFully(seg);
      if (decoded === undefined) throw bad('malformed percent-encoding in path');
      if (decoded === '.' || decoded === '..') throw bad('dot segment in path');
      if (FORBIDDEN_DECODED.test(decoded)) throw bad('encoded slash, backslash or control character in path');
    }
    kept.push(seg);
  }
  return { path: `/${kept.join('/')}`, query };
}

export interface Matchable { readonly path: string }

/** Precompiled route table: longest prefix first, matching whole segments only. */
export class RouteTable<R extends Matchable> {
  private readonly ordered: readonly R[];
  constructor(routes: readonly R[]) {
    this.ordered = [...routes].sort((a, b) => b.path.length - a.path.length);
  }

  match(path: string): R | undefined {
    for (const r of this.ordered) {
      const p = r.path;
      if (p === '/' || path === p || (path.startsWith(p) && path.charCodeAt(p.length) === 47 /* / */)) return r;
    }
    return undefined;
  }
}

/** The path the upstream sees once the route's prefix is removed. */
export function stripRoutePrefix(path: string, prefix: string): string {
  if (prefix === '/') return path;
  return path.length === prefix.length ? '/' : path.slice(prefix.length);
}
