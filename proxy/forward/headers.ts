// Header hygiene for forwarded requests: what the client may not send, and what the gateway sets.
// The upstream headers are built as a fresh object (copy what may pass, then add the gateway's):
// deleting from Node's header object costs more than the whole copy on the hot path.
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import proxyAddr from 'proxy-addr';
import { util as undiciUtil } from 'undici';
import { OVERRIDE_HEADERS } from '../access/request-checks.js';

/** Hop-by-hop headers (RFC 9110 §7.6.1) plus ones a proxy must never pass on. */
const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'proxy-authenticate', 'te', 'trailer', 'upgrade', 'expect', 'transfer-encoding'];
/** Headers the gateway sets itself; a client-sent copy is always dropped. */
export const GATEWAY_SET = ['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-port', 'x-forwarded-prefix', 'forwarded', 'x-real-ip', 'x-forwarded-user', 'x-forwarded-roles', 'x-request-id'];
/** Cookie names the gateway owns (sessions, login state, shares): never shown to a backend. Any case. */
export const GATEWAY_COOKIE = /^(?:__Host-|__Secure-)?pgw[._-]/i;

/**
 * Method and path overrides: requests carrying them are refused before routing (request-checks.ts);
 * dropping them here as well keeps them from an upstream should that check ever be bypassed.
 */
const NEVER_FORWARDED = new Set<string>([...HOP_BY_HOP, ...GATEWAY_SET, ...OVERRIDE_HEADERS, 'host']);

/** Which cookies a route passes upstream: none, all but the gateway's own, or those named. */
export type CookiePolicy = 'none' | 'all' | ReadonlySet<string>;

/** The Cookie header an upstream gets under `policy`, or undefined for none. */
export function upstreamCookies(cookie: string, policy: CookiePolicy): string | undefined {
  if (policy === 'none') return undefined;
  const kept = cookie.split(';').map((c) => c.trim()).filter((c) => {
    if (!c || GATEWAY_COOKIE.test(c)) return false;
    if (policy === 'all') return true;
    const eq = c.indexOf('=');
    return policy.has(eq < 0 ? c : c.slice(0, eq));
  });
  return kept.length === 0 ? undefined : kept.join('; ');
}

export interface ForwardedFacts { readonly clientChain: readonly string[]; readonly proto: string; readonly host: string }

export type TrustFn = ((addr: string, i: number) => boolean) & { readonly none?: boolean };

/** Compiles server.trustProxy: false trusts no hop, a number trusts that many hops, a list names them. */
export function compileTrust(trust: false | number | readonly string[]): TrustFn {
  if (trust === false || trust === 0) return Object.assign(() => false, { none: true });
  if (typeof trust === 'number') return (_a, i) => i < trust;
  return proxyAddr.compile([...trust]);
}

const HOST_SYNTAX = /^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

const firstValue = (v: string | string[] | undefined): string | undefined => {
  const s = Array.isArray(v) ? v[0] : v;
  if (!s) return undefined;
  const first = s.split(',')[0]?.trim();
  return first || undefined;
};

/**
 * The client address chain (nearest first), protocol and host as the gateway believes them. Only
 * a trusted proxy may name the host and protocol (X-Forwarded-Host/-Proto, else its Host header);
 * for a client that reached the gateway directly they are server.publicUrl's: the client's own Host
 * header never ends up in links an upstream writes (BulkDataURI, RetrieveURL) or in its logs.
 */
export function forwardedFacts(req: IncomingMessage, trust: TrustFn, publicUrl: URL): ForwardedFacts {
  const peer = req.socket.remoteAddress ?? '';
  const peerTrusted = !trust.none && trust(peer, 0);
  if (!peerTrusted) return { clientChain: [peer], proto: publicUrl.protocol === 'https:' ? 'https' : 'http', host: publicUrl.host };
  const chain = proxyAddr.all(req, trust);
  const encrypted = 'encrypted' in req.socket && Boolean(req.socket.encrypted);
  const proto = firstValue(req.headers['x-forwarded-proto']) || (encrypted ? 'https' : 'http');
  const claimed = firstValue(req.headers['x-forwarded-host']) || req.headers.host || '';
  // The host ends up in links and in Forwarded: only a plain host[:port] passes, anything else is replaced.
  const host = HOST_SYNTAX.test(claimed) ? claimed : publicUrl.host;
  return { clientChain: chain, proto: proto.toLowerCase() === 'https' ? 'https' : 'http', host };
}

const quoteNode = (addr: string): string => (addr.includes(':') ? `"[${addr}]"` : addr);

export interface UpstreamHeaderOptions {
  readonly prefix: string | undefined;
  /** Orthanc reads Forwarded's host verbatim (quotes included) and appends its own root to it. */
  readonly orthancLinks: boolean;
  readonly forwardAuthorization: boolean;
  readonly cookies: CookiePolicy;
  /** Keep Connection/Upgrade (WebSocket handshakes). */
  readonly upgrade: boolean;
}

/**
 * The header names a Connection value declares hop-by-hop (lower case), or undefined for the
 * common "keep-alive" / "close", which name none. Used for requests and responses alike.
 */
function namedInConnection(value: string | undefined): Set<string> | undefined {
  if (!value || value === 'keep-alive' || value === 'close' || /^\s*(keep-alive|close)\s*$/i.test(value)) return undefined;
  return new Set(value.toLowerCase().split(',').map((n) => n.trim()));
}

/** A header list as undici takes it: name, value, name, value… (a value may repeat as an array). */
export type HeaderList = (string | string[])[];

/**
 * The forwarding headers the gateway sets itself (X-Forwarded-*, X-Real-IP, Forwarded) for the
 * client, protocol and host in `facts`, as a flat [name, value…] list.
 */
export function forwardingHeaders(facts: ForwardedFacts, opts: Pick<UpstreamHeaderOptions, 'prefix' | 'orthancLinks'>): readonly string[] {
  const chain = facts.clientChain;
  const client = chain[chain.length - 1] ?? '';
  const out = [
    'x-forwarded-for', chain.length === 1 ? client : [...chain].reverse().join(', '),
    'x-forwarded-proto', facts.proto,
    'x-forwarded-host', facts.host,
  ];
  if (opts.prefix) out.push('x-forwarded-prefix', opts.prefix);
  out.push('x-real-ip', client, 'forwarded', opts.orthancLinks
    ? `for=${quoteNode(client)};host=${facts.host}${opts.prefix ?? ''};proto=${facts.proto}`
    : `for=${quoteNode(client)};host="${facts.host}";proto=${facts.proto}`);
  return out;
}

/**
 * The headers an upstream receives, as a flat [name, value…] list (undici's cheapest form): the
 * client's, minus what may not pass, then the gateway's own forwarding headers (forwardingHeaders).
 */
export function upstreamHeaders(src: IncomingHttpHeaders, forwarding: readonly string[], opts: UpstreamHeaderOptions): HeaderList {
  const named = namedInConnection(src.connection);
  const out: HeaderList = [];
  for (const name in src) {
    if (NEVER_FORWARDED.has(name) || (named && named.has(name))) continue;
    const value = src[name];
    if (value === undefined) continue;
    if (name === 'authorization' && !opts.forwardAuthorization) continue;
    if (name === 'cookie') {
      const kept = upstreamCookies(value as string, opts.cookies);
      if (kept !== undefined) out.push('cookie', kept);
      continue;
    }
    out.push(name, value);
  }
  if (opts.upgrade) {
    out.push('connection', 'Upgrade');
    if (src.upgrade) out.push('upgrade', src.upgrade);
  }
  for (let i = 0; i < forwarding.length; i++) out.push(forwarding[i]!);
  return out;
}

/** A flat header list as a header object (for http-proxy-3's WebSocket path); names are unique. */
export function headerObject(list: HeaderList): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (let i = 0; i < list.length; i += 2) out[list[i] as string] = list[i + 1];
  return out;
}

const HOP_BY_HOP_SET = new Set(HOP_BY_HOP);

export interface ResponseHeaderOptions {
  /** Drop WWW-Authenticate (the upstream refused the gateway's own Basic credentials). */
  readonly dropChallenge: boolean;
  readonly requestId: string;
}

/**
 * The headers the client receives, from an upstream response's raw header list (name, value,
 * name, value… as undici hands them over): hop-by-hop headers and those named in Connection
 * removed, repeated headers (Set-Cookie) kept as separate lines, the gateway's X-Request-Id set and
 * X-Content-Type-Options added where the upstream sent none. Returned as the flat [name, value…]
 * list that res.writeHead takes without building a header object.
 */
export function responseHeaderList(raw: readonly (Buffer | string)[], opts: ResponseHeaderOptions): string[] {
  const out: string[] = [];
  let named: Set<string> | undefined;
  let nosniff = false;
  for (let i = 0; i < raw.length; i += 2) {
    // undici's lookup table gives well-known names in lower case without building a string.
    const name = undiciUtil.headerNameToString(raw[i]!);
    if (name === 'connection') {
      const more = namedInConnection(raw[i + 1]!.toString('latin1')); // several Connection lines add up
      if (more) named = named ? new Set([...named, ...more]) : more;
      continue;
    }
    if (HOP_BY_HOP_SET.has(name) || name === 'x-request-id' || (opts.dropChallenge && name === 'www-authenticate')) continue;
    if (name === 'x-content-type-options') nosniff = true;
    out.push(name, raw[i + 1]!.toString('latin1'));
  }
  if (named) {
    for (let i = out.length - 2; i >= 0; i -= 2) if (named.has(out[i]!)) out.splice(i, 2);
    // An upstream's nosniff that its own Connection header declared hop-by-hop is gone: add ours.
    if (named.has('x-content-type-options')) nosniff = false;
  }
  if (!nosniff) out.push('x-content-type-options', 'nosniff');
  out.push('x-request-id', opts.requestId);
  return out;
}
