// Authorization: Bearer <JWT> → Principal. Verification with jose against the issuer's key set;
// verified tokens are kept in a bounded LRU (keyed by a hash of the token, never beyond its expiry)
// so the hot path verifies each token once. RFC 6750 answers for everything refused.
import crypto, { createHash } from 'node:crypto';
import { errors as joseErrors, jwtVerify, type JWTPayload, type JWTHeaderParameters } from 'jose';
import { LRUCache } from 'lru-cache';
import type { IdentityConfig } from '../config/schema.js';
import { GatewayError } from '../errors.js';
import { decodeQueryComponent } from '../query.js';
import type { Exchange } from '../exchange.js';
import { compileClaimPath, principalFromClaims, type ClaimReaders } from './claims.js';
import type { KeySet } from './jwks.js';
import type { Authenticator, Principal } from './principal.js';

export type BearerErrorCode = 'invalid_request' | 'invalid_token' | 'insufficient_scope';

const quote = (s: string) => s.replace(/["\\]/g, '');

/** The WWW-Authenticate value of RFC 6750 §3. */
export function bearerChallenge(realm: string, error?: BearerErrorCode, description?: string): string {
  let v = `Bearer realm="${quote(realm)}"`;
  if (error) v += `, error="${error}"`;
  if (description) v += `, error_description="${quote(description)}"`;
  return v;
}

export interface TokenVerifier {
  /** A cached token answers synchronously (no promise on the hot path); others after verification. */
  verify(token: string): Principal | Promise<Principal>;
  /**
   * The principal of a token verified before and not yet expired, or undefined. Any string may be
   * looked up: only a byte-identical copy of a token that passed verification can match. With a
   * `connection` (the client's socket), the last token found on it is remembered there, so the
   * next request on that connection presenting the same token skips even the hash.
   */
  cached(token: string, connection?: object): Principal | undefined;
  readonly realm: string;
  readonly cacheSize: () => number;
  /** Cache lookups so far, for the metrics (counted here, not per request in prom-client). */
  readonly cacheStats: () => { readonly hits: number; readonly misses: number };
}

// crypto.hash (one-shot, Node 20.12+ and 22+) skips the Hash object; createHash is the fallback.
const oneShot = (crypto as { hash?: (alg: string, data: string, enc: 'base64url') => string }).hash;
const sha256 = oneShot
  ? (s: string): string => oneShot('sha256', s, 'base64url')
  : (s: string): string => createHash('sha256').update(s).digest('base64url');

const JWS_COMPACT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

interface Cached { readonly principal: Principal; readonly size: number }

export function createTokenVerifier(identity: IdentityConfig, keys: KeySet, grantsOf: ClaimReaders['grantsOf']): TokenVerifier {
  const realm = identity.realm;
  const audiences = new Set(identity.audience);
  const allowedTypes = new Set(identity.tokenTypes);
  const readers: ClaimReaders = { roles: identity.roleClaims.map(compileClaimPath), username: identity.usernameClaim, grantsOf };
  const toleranceSec = Math.ceil(identity.clockTolerance / 1000);
  const cache = identity.tokenCache.maxEntries > 0
    ? new LRUCache<string, Cached>({ max: identity.tokenCache.maxEntries, maxSize: identity.tokenCache.maxBytes, sizeCalculation: (v) => v.size })
    : undefined;

  const invalid = (description: string, cause?: unknown) => new GatewayError('CREDENTIALS_INVALID', description, {
    headers: { 'WWW-Authenticate': bearerChallenge(realm, 'invalid_token', description) }, cause,
  });

  /** Access token, not an ID token, refresh token or logout token dressed as one. */
  function checkTokenType(header: JWTHeaderParameters, claims: JWTPayload): void {
    const htyp = typeof header.typ === 'string' ? header.typ.toLowerCase().replace(/^application\//, '') : undefined;
    const ptyp = typeof claims.typ === 'string' ? claims.typ.toLowerCase() : undefined;
    if (ptyp !== undefined && ptyp !== 'bearer') throw invalid(`not an access token (typ ${ptyp})`);
    if ('nonce' in claims || 'at_hash' in claims || 'events' in claims) throw invalid('not an access token (ID or logout token)');
    const ok = (allowedTypes.has('at+jwt') && htyp === 'at+jwt')
      || (allowedTypes.has('keycloak') && ptyp === 'bearer' && (htyp === undefined || htyp === 'jwt'))
      || (allowedTypes.has('jwt') && (htyp === undefined || htyp === 'jwt'));
    if (!ok) throw invalid('not an access token (token type)');
  }

  function checkAudience(claims: JWTPayload): void {
    const aud = claims.aud;
    const auds = Array.isArray(aud) ? aud : typeof aud === 'string' ? [aud] : [];
    if (auds.some((a) => audiences.has(a))) return;
    const azp = (claims as { azp?: unknown }).azp;
    if (typeof azp === 'string' && audiences.has(azp)) return;
    throw invalid('token audience not accepted');
  }

  function mapJoseError(err: unknown): GatewayError {
    if (err instanceof GatewayError) return err;
    if (err instanceof joseErrors.JWTExpired) return invalid('token expired', err);
    if (err instanceof joseErrors.JWTClaimValidationFailed) {
      const reasons: Record<string, string> = { nbf: 'token not yet valid', iss: 'wrong issuer', iat: 'token issued in the future', sub: 'token has no subject', exp: 'token has no valid expiry' };
      return invalid(reasons[err.claim] ?? `invalid ${err.claim} claim`, err);
    }
    if (err instanceof joseErrors.JOSEAlgNotAllowed) return invalid('signing algorithm not allowed', err);
    if (err instanceof joseErrors.JWSSignatureVerificationFailed) return invalid('signature verification failed', err);
    if (err instanceof joseErrors.JWKSNoMatchingKey || err instanceof joseErrors.JWKSMultipleMatchingKeys) return invalid('signing key not found', err);
    if (err instanceof joseErrors.JWSInvalid || err instanceof joseErrors.JWTInvalid || err instanceof joseErrors.JOSENotSupported) return invalid('malformed token', err);
    if (keys.status().keys > 0) return invalid('signing key not found', err); // a refetch for an unknown kid failed or was cooling down
    return new GatewayError('IDP_UNAVAILABLE', 'the identity provider keys are not available yet', { headers: { 'Retry-After': '5' }, cause: err });
  }

  async function verifyUncached(token: string): Promise<Principal> {
    // Strict JWS compact form: base64url without padding. Lenient decoders accept "sig==", which
    // would make one token many strings (and many cache entries).
    if (!JWS_COMPACT.test(token)) throw invalid('malformed token');
    const getKey = keys.getKey;
    if (!getKey) throw new GatewayError('IDP_UNAVAILABLE', 'the identity provider keys are not available yet', { headers: { 'Retry-After': '5' } });
    let result;
    try {
      result = await jwtVerify(token, getKey, {
        issuer: identity.issuer, algorithms: [...identity.algorithms], clockTolerance: toleranceSec, requiredClaims: ['exp', 'sub'],
      });
    } catch (err) {
      throw mapJoseError(err);
    }
    const { payload, protectedHeader } = result;
    // jose checks that sub is present; the subject keys logs, limits and (later) ownership, so it
    // must be a real string: null, a number or blanks would merge unrelated callers into one.
    if (typeof payload.sub !== 'string' || payload.sub.trim() === '') throw invalid('token has no subject');
    checkTokenType(protectedHeader, payload);
    checkAudience(payload);
    return principalFromClaims(payload, readers, (payload.exp as number) * 1000);
  }

  let hits = 0;
  let misses = 0;
  // One entry per open client connection (a weak key: gone with the socket). A DICOMweb client or a
  // viewer sends the same token on every request of a keep-alive connection; comparing strings costs
  // a fraction of hashing them.
  const lastOnConnection = new WeakMap<object, { readonly token: string; readonly principal: Principal }>();
  /** The cached principal under `key` while its token is still valid. */
  function lookup(key: string): Principal | undefined {
    const hit = cache?.get(key);
    return hit && hit.principal.expiresAt > Date.now() ? hit.principal : undefined;
  }

  return {
    realm,
    cacheSize: () => cache?.size ?? 0,
    cacheStats: () => ({ hits, misses }),
    cached(token, connection) {
      if (!cache) return undefined;
      const last = connection && lastOnConnection.get(connection);
      // The same string as the token last found in the cache on this connection, still unexpired.
      if (last && last.token === token && last.principal.expiresAt > Date.now()) { hits++; return last.principal; }
      const principal = lookup(sha256(token));
      if (principal) {
        hits++;
        if (connection) lastOnConnection.set(connection, { token, principal });
      }
      return principal;
    },
    verify(token) {
      if (!cache) { misses++; return verifyUncached(token); }
      const key = sha256(token);
      const principal = lookup(key);
      if (principal) { hits++; return principal; }
      misses++;
      return verifyUncached(token).then((verified) => {
        const ttl = verified.expiresAt - Date.now();
        // Never kept past the token's own expiry (the clock tolerance is for verifying, not for caching).
        if (ttl > 0) cache.set(key, { principal: verified, size: 256 + key.length + verified.roles.size * 32 }, { ttl });
        return verified;
      });
    },
  };
}

const BEARER = /^bearer +([A-Za-z0-9\-._~+/]+=*) *$/i;

/** The Authorization header's value; undefined when absent; null when sent more than once. */
function authorizationHeader(ex: Exchange): string | undefined | null {
  const raw = ex.req.rawHeaders;
  let found: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    if (name.length === 13 && name.toLowerCase() === 'authorization') {
      if (found !== undefined) return null;
      found = raw[i + 1] as string;
    }
  }
  return found;
}

/**
 * The token of an Authorization value of the usual form "Bearer <token>" (scheme in any case, one
 * space), without checking its characters; undefined for any other form, which the full parser
 * then judges. Used only to look the token up in the cache of verified tokens: a string that is not
 * byte for byte a token verified before cannot be found there, whatever it holds.
 */
function plainBearerToken(value: string): string | undefined {
  if (value.length < 8 || value.charCodeAt(6) !== 32 || value.charCodeAt(7) === 32) return undefined;
  // "bearer" with any letter in either case: ASCII letters differ from their capitals only in bit 0x20.
  if ((value.charCodeAt(0) | 0x20) !== 98 || (value.charCodeAt(1) | 0x20) !== 101 || (value.charCodeAt(2) | 0x20) !== 97
    || (value.charCodeAt(3) | 0x20) !== 114 || (value.charCodeAt(4) | 0x20) !== 101 || (value.charCodeAt(5) | 0x20) !== 114) return undefined;
  return value.slice(7);
}

function takeQueryToken(ex: Exchange): string | undefined {
  const t = ex.target;
  if (!t || !t.query.includes('access_token')) return undefined;
  const params = t.query.split('&');
  const kept: string[] = [];
  let token: string | undefined;
  for (const p of params) {
    if (p.startsWith('access_token=')) {
      if (token !== undefined) throw new Error('more than one access_token parameter');
      token = decodeQueryComponent(p.slice(13));
      if (token === undefined) throw new Error('malformed access_token parameter');
    } else kept.push(p);
  }
  // The token never travels further: not upstream, not into a log line.
  ex.target = { path: t.path, query: kept.join('&') };
  return token;
}

export interface BearerOptions { readonly queryToken: boolean; readonly maxTokenSize: number }

export function createBearerAuthenticator(verifier: TokenVerifier, opts: BearerOptions): Authenticator {
  const realm = verifier.realm;
  const malformed = (description: string) => new GatewayError('CREDENTIALS_MALFORMED', description, {
    headers: { 'WWW-Authenticate': bearerChallenge(realm, 'invalid_request', description) },
  });
  return {
    name: 'bearer',
    via: 'bearer',
    challenge: () => new GatewayError('UNAUTHENTICATED', 'a bearer token is required', { headers: { 'WWW-Authenticate': bearerChallenge(realm) } }),
    refuse: (_ex, _p, reason) => new GatewayError('FORBIDDEN', reason, { headers: { 'WWW-Authenticate': bearerChallenge(realm, 'insufficient_scope', reason) } }),
    authenticate(ex) {
      const header = authorizationHeader(ex);
      let queryToken: string | undefined;
      try {
        queryToken = opts.queryToken ? takeQueryToken(ex) : undefined;
      } catch (err) {
        throw malformed((err as Error).message);
      }
      if (header === null) throw malformed('more than one Authorization header');
      if (header === undefined && queryToken === undefined) return null;
      // Hot path: a token verified before, sent alone in the usual form, is answered from the cache
      // without running the full header grammar (which it passed when it was first verified).
      if (queryToken === undefined) {
        const plain = plainBearerToken(header as string);
        const known = plain !== undefined && plain.length <= opts.maxTokenSize ? verifier.cached(plain, ex.req.socket) : undefined;
        if (known) return known;
      }
      if (header !== undefined && queryToken !== undefined) throw malformed('token sent in both header and query');
      let token: string;
      if (header !== undefined) {
        if (!/^bearer(\s|$)/i.test(header)) return null; // another scheme: not ours
        if (header.length > opts.maxTokenSize + 16) throw new GatewayError('CREDENTIALS_INVALID', 'token too large', { headers: { 'WWW-Authenticate': bearerChallenge(realm, 'invalid_token', 'token too large') } });
        const m = BEARER.exec(header);
        if (!m) throw malformed('malformed Authorization header');
        token = m[1] as string;
      } else {
        token = queryToken as string;
        if (token.length > opts.maxTokenSize) throw new GatewayError('CREDENTIALS_INVALID', 'token too large', { headers: { 'WWW-Authenticate': bearerChallenge(realm, 'invalid_token', 'token too large') } });
        if (!/^[A-Za-z0-9\-._~+/]+=*$/.test(token)) throw malformed('malformed access_token parameter');
      }
      return verifier.verify(token);
    },
  };
}
