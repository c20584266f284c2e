// The share authenticator: a browser that redeemed a share link carries a signed share-session
// cookie; it becomes a principal whose permissions (those of the share's kind) hold for the shared
// studies only. The share is read from the store at most every half second per cookie, so a
// revocation reaches every gateway process sharing the store within a second.
import { LRUCache } from 'lru-cache';
import type { Permission } from '../access/operations.js';
import { makeScope, type StudyScope } from '../access/scope.js';
import { GatewayError, wantsHtml } from '../errors.js';
import type { Exchange } from '../exchange.js';
import { sameOrigin, storeError } from './session.js';
import type { Authenticator, Principal } from './principal.js';
import { KIND_PERMISSIONS, type ShareEnd, type ShareRecord, type Shares } from './shares.js';

/** How long one process trusts what the store said about a share session (ms). */
export const SHARE_RECHECK_MS = 500;

export const SHARE_ENDED_REASONS: Readonly<Record<ShareEnd, string>> = Object.freeze({
  expired: 'This share link has expired.',
  revoked: 'This share link was revoked by the person who shared it.',
  used: 'This share link could be opened once, and it has been opened already.',
  invalid: 'This share link is not valid: it may have been mistyped or cut short.',
});

/** The friendly page for a link or share session that opens nothing, and the cookie that goes with it. */
export function shareEnded(ended: ShareEnd, clearCookie?: string): GatewayError {
  return new GatewayError(ended === 'invalid' ? 'NOT_FOUND' : 'SHARE_ENDED', SHARE_ENDED_REASONS[ended], {
    page: { name: 'share-ended', vars: { ended } },
    ...(clearCookie ? { headers: { 'Set-Cookie': clearCookie } } : {}),
  });
}

export function sharePrincipal(share: ShareRecord): Principal {
  const permissions = new Set<Permission>(KIND_PERMISSIONS[share.kind]);
  const scope: StudyScope = makeScope([{ kind: 'studies', uids: new Set(share.studies) }]);
  const limited = new Map<Permission, StudyScope>([...permissions].map((p) => [p, scope]));
  return Object.freeze({
    subject: `share:${share.id}`,
    username: `share link ${share.id}`,
    roles: new Set<string>(),
    scopes: new Set<string>(),
    permissions,
    limited,
    via: 'share' as const,
    expiresAt: share.expiresAt,
  });
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

export function createShareAuthenticator(shares: Shares, publicOrigin: string): Authenticator {
  const recent = new LRUCache<string, { principal?: Principal; ended?: ShareEnd }>({ max: 10_000, ttl: SHARE_RECHECK_MS });
  return {
    name: 'share',
    via: 'share',
    async authenticate(ex: Exchange) {
      const header = ex.req.headers.cookie;
      if (!header || !header.includes('pgw_share')) return null;
      const key = /(?:^|;\s*)(?:__Host-)?pgw_share=([^;]*)/.exec(header)?.[1];
      if (key === undefined) return null;
      let known = recent.get(key);
      if (!known) {
        let found;
        try {
          found = await shares.sessionShare(ex.req);
        } catch (err) {
          throw storeError(err);
        }
        if (found === undefined) return null;
        known = 'ended' in found ? { ended: found.ended } : { principal: sharePrincipal(found) };
        recent.set(key, known);
      }
      if (known.ended) throw shareEnded(known.ended, shares.clearCookie());
      // The cookie rides along on any request to this site: a store by a contribute link must come from its pages.
      if (!SAFE_METHODS.has(ex.req.method ?? 'GET') && !sameOrigin(ex, publicOrigin)) {
        throw new GatewayError('CROSS_ORIGIN', 'a request that changes data with a share link must come from this site (Origin or Sec-Fetch-Site)');
      }
      const p = known.principal!;
      if (p.expiresAt <= Date.now()) throw shareEnded('expired', shares.clearCookie());
      return p;
    },
    // A share link is opened, not asked for: without one, the next authenticator (the login) answers.
    challenge: () => null,
    refuse(ex, _p, reason) {
      return new GatewayError('FORBIDDEN', wantsHtml(ex.req) ? `${reason}. This share link does not open it.` : reason);
    },
  };
}
