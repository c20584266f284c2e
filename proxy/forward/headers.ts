// Header hygiene for forwarded requests: what the client may not send, and what the gateway sets.
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import proxyAddr from 'proxy-addr';

/** Hop-by-hop headers (RFC 9110 §7.6.1) plus ones a proxy must never pass on. */
const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'proxy-authenticate', 'te', 'trailer', 'upgrade', 'expect'];
/** Headers the gateway sets itself; a client-sent copy is always dropped first. */
export const GATEWAY_SET = ['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-port', 'x-forwarded-prefix', 'forwarded', 'x-real-ip', 'x-forwarded-user', 'x-forwarded-roles', 'x-request-id'];
/** Cookie names the gateway owns (sessions, login state); never shown to a backend unless asked. */
export const GATEWAY_COOKIE = /^(__Host-)?pgw[._-]/;

export function removeHopByHop(headers: IncomingHttpHeaders, keepUpgrade: boolean): void {
  const connection = headers.connection;
  if (connection) {
    for (const name of connection.toLowerCase().split(',')) {
      const n = name.trim();
      if (n && !(keepUpgrade && n === 'upgrade')) delete headers[n];
    }
  }
  for (const h of HOP_BY_HOP) {
    if (keepUpgrade && (h === 'connection' || h === 'upgrade')) continue;
    delete headers[h];
  }
}

export function stripGatewayCookies(headers: IncomingHttpHeaders): void {
  const cookie = headers.cookie;
  if (!cookie || !cookie.includes('pgw')) return;
  const kept = cookie.split(';').filter((c) => !GATEWAY_COOKIE.test(c.trim()));
  if (kept.length === 0) delete headers.cookie;
  else headers.cookie = kept.join(';').trim();
}

export interface ForwardedFacts { readonly clientChain: readonly string[]; readonly proto: string; readonly host: string }

export type TrustFn = (addr: string, i: number) => boolean;

/** Compiles server.trustProxy: false trusts no hop, a number trusts that many hops, a list names them. */
export function compileTrust(trust: false | number | readonly string[]): TrustFn {
  if (trust === false || trust === 0) return () => false;
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
 * The client address chain (nearest first), protocol and host as the gateway believes them:
 * client-sent X-Forwarded-* count only when they arrive through trusted hops.
 */
export function forwardedFacts(req: IncomingMessage, trust: TrustFn, fallbackHost: string): ForwardedFacts {
  const peer = req.socket.remoteAddress ?? '';
  const peerTrusted = trust(peer, 0);
  const chain = peerTrusted ? proxyAddr.all(req, trust) : [peer];
  const encrypted = 'encrypted' in req.socket && Boolean(req.socket.encrypted);
  const proto = (peerTrusted && firstValue(req.headers['x-forwarded-proto'])) || (encrypted ? 'https' : 'http');
  const claimed = (peerTrusted && firstValue(req.headers['x-forwarded-host'])) || req.headers.host || '';
  // The host ends up in links and in Forwarded: only a plain host[:port] passes, anything else is replaced.
  const host = HOST_SYNTAX.test(claimed) ? claimed : fallbackHost;
  return { clientChain: chain, proto: proto.toLowerCase() === 'https' ? 'https' : 'http', host };
}

const quoteNode = (addr: string): string => (addr.includes(':') ? `"[${addr}]"` : addr);

export interface ForwardedStyle {
  readonly prefix: string | undefined;
  /** Orthanc reads Forwarded's host verbatim (quotes included) and appends its own root to it. */
  readonly orthancLinks: boolean;
}

/** Replaces every forwarding header with the gateway's own, consistent view. */
export function setForwardedHeaders(headers: IncomingHttpHeaders, facts: ForwardedFacts, style: ForwardedStyle): void {
  const { prefix } = style;
  for (const h of GATEWAY_SET) delete headers[h];
  const client = facts.clientChain[facts.clientChain.length - 1] ?? '';
  headers['x-forwarded-for'] = [...facts.clientChain].reverse().join(', ');
  headers['x-forwarded-proto'] = facts.proto;
  headers['x-forwarded-host'] = facts.host;
  if (prefix) headers['x-forwarded-prefix'] = prefix;
  headers['x-real-ip'] = client;
  headers.forwarded = style.orthancLinks
    ? `for=${quoteNode(client)};host=${facts.host}${prefix ?? ''};proto=${facts.proto}`
    : `for=${quoteNode(client)};host="${facts.host}";proto=${facts.proto}`;
}
