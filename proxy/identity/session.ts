// The session authenticator: a signed session cookie → the session's access token (refreshed once,
// shortly before it expires, even under concurrent requests on several processes) → a Principal
// with the same claim paths and permissions as a bearer token. Browsers get login redirects and
// pages; state-changing requests must come from the gateway's own origin.
import { randomUUID } from 'node:crypto';
import { GatewayError, wantsHtml } from '../errors.js';
import type { Exchange } from '../exchange.js';
import type { Logger } from '../ops/log.js';
import { StoreUnavailableError } from '../store/store.js';
import type { TokenVerifier } from './bearer.js';
import { GrantRefused, type OidcClient } from './oidc-client.js';
import type { Authenticator, Principal } from './principal.js';
import type { SessionRecord, Sessions } from './sessions.js';

export interface SessionAuthenticatorDeps {
  readonly sessions: Sessions;
  readonly oidc: OidcClient;
  readonly verifier: TokenVerifier;
  /** The gateway's public origin: the only one state-changing session requests may come from. */
  readonly publicOrigin: string;
  readonly refreshBefore: number;
  readonly log: Logger;
  /** Where the gateway's login and logout live. */
  readonly loginPath: string;
  readonly logoutPath: string;
  /** Counts session events (metrics). */
  readonly count?: (event: 'refresh' | 'refresh_refused' | 'expired') => void;
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
const REFRESH_WAIT_MS = 10_000;

/** A top-level browser navigation: the only request a login redirect helps. */
export function isNavigation(ex: Exchange): boolean {
  return (ex.req.method === 'GET' || ex.req.method === 'HEAD') && wantsHtml(ex.req);
}

/**
 * A request that may change state must show it comes from the gateway's own pages: its Origin, or
 * without one, Sec-Fetch-Site. Neither: refused (fail closed; browsers send one or the other).
 * `Origin: null` is what a browser sends for a form POST from a page served with
 * `Referrer-Policy: no-referrer` (the gateway's pages and OHIF's) — and also from sandboxed frames
 * and data: URLs; Sec-Fetch-Site, which no page can set, tells them apart.
 */
export function sameOrigin(ex: Exchange, publicOrigin: string): boolean {
  const origin = ex.req.headers.origin;
  if (origin !== undefined && origin !== 'null') return origin === publicOrigin;
  return ex.req.headers['sec-fetch-site'] === 'same-origin';
}

export function storeError(err: unknown): unknown {
  return err instanceof StoreUnavailableError
    ? new GatewayError('STORE_UNAVAILABLE', 'sessions are unavailable right now (the session store cannot be reached); try again shortly', { headers: { 'Retry-After': '5' }, cause: err })
    : err;
}

export function createSessionAuthenticator(deps: SessionAuthenticatorDeps): Authenticator {
  const { sessions, oidc, verifier, log } = deps;
  const asSession = new WeakMap<Principal, Principal>();
  // One refresh per session in this process; the store lock makes it one across processes.
  const refreshing = new Map<string, Promise<SessionRecord | undefined>>();

  const loginRedirect = (ex: Exchange): GatewayError => {
    const t = ex.target!;
    const back = `${t.path}${t.query ? `?${t.query}` : ''}`;
    return new GatewayError('LOGIN_REQUIRED', 'sign in to continue', {
      headers: { Location: `${deps.loginPath}?return=${encodeURIComponent(back)}` },
    });
  };

  /** The session is over (expired, logged out, refresh refused): the cookie goes too. */
  const ended = (ex: Exchange, why: string): GatewayError => {
    ex.res.setHeader('Set-Cookie', sessions.clearCookie());
    if (isNavigation(ex)) {
      const r = loginRedirect(ex);
      return new GatewayError('LOGIN_REQUIRED', why, { headers: { ...r.headers, 'Set-Cookie': sessions.clearCookie() } });
    }
    return new GatewayError('SESSION_EXPIRED', `${why}; sign in again`, { headers: { 'Set-Cookie': sessions.clearCookie() } });
  };

  function toSessionPrincipal(p: Principal): Principal {
    let s = asSession.get(p);
    if (!s) {
      s = Object.freeze({ ...p, via: 'session' as const });
      asSession.set(p, s);
    }
    return s;
  }

  async function waitForOtherRefresh(id: string, before: SessionRecord): Promise<SessionRecord | undefined> {
    const deadline = Date.now() + REFRESH_WAIT_MS;
    while (Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      const now = await sessions.load(id);
      if (!now || now.accessToken !== before.accessToken) return now;
    }
    return before; // the other process is stuck: carry on with what we have (it may still be valid)
  }

  async function refreshOnce(id: string, record: SessionRecord): Promise<SessionRecord | undefined> {
    const owner = randomUUID();
    if (!(await sessions.lock(id, owner, REFRESH_WAIT_MS + 5000))) return waitForOtherRefresh(id, record);
    try {
      // Another process may have refreshed between our read and our lock.
      const current = await sessions.load(id);
      if (!current || current.accessToken !== record.accessToken) return current;
      if (!current.refreshToken) return current.accessExpiresAt > Date.now() ? current : undefined;
      let tokens;
      try {
        tokens = await oidc.refresh(current.refreshToken);
      } catch (err) {
        if (err instanceof GrantRefused) {
          log.info({ sub: current.sub, error: err.error }, 'session refresh refused by the IdP: session ended');
          deps.count?.('refresh_refused');
          await sessions.destroy(id);
          return undefined;
        }
        // The IdP is unreachable: keep going on the current token while it lasts.
        log.warn({ sub: current.sub, err: (err as Error).message }, 'session refresh failed');
        if (current.accessExpiresAt > Date.now()) return current;
        throw err;
      }
      const principal = await verifier.verify(tokens.accessToken);
      const next: SessionRecord = {
        ...current,
        accessToken: tokens.accessToken,
        accessExpiresAt: principal.expiresAt,
        ...(tokens.refreshToken ? { refreshToken: tokens.refreshToken } : {}),
        ...(tokens.idToken ? { idToken: tokens.idToken } : {}),
      };
      await sessions.update(id, next);
      deps.count?.('refresh');
      return next;
    } finally {
      await sessions.unlock(id, owner).catch(() => undefined);
    }
  }

  function refreshShared(id: string, record: SessionRecord): Promise<SessionRecord | undefined> {
    let p = refreshing.get(id);
    if (!p) {
      p = refreshOnce(id, record).finally(() => refreshing.delete(id));
      refreshing.set(id, p);
    }
    return p;
  }

  async function authenticateSession(ex: Exchange, id: string): Promise<Principal | null> {
    let record = await sessions.load(id);
    if (!record) {
      // A stale cookie beside a bearer token (a script's cookie jar): the token decides.
      if (ex.req.headers.authorization !== undefined) return null;
      deps.count?.('expired');
      throw ended(ex, 'your session has ended');
    }
    if (!SAFE_METHODS.has(ex.req.method ?? 'GET') && !sameOrigin(ex, deps.publicOrigin)) {
      throw new GatewayError('CROSS_ORIGIN', 'a request that changes data with a session cookie must come from this site (Origin or Sec-Fetch-Site)');
    }
    if (record.accessExpiresAt - Date.now() < deps.refreshBefore) {
      record = await refreshShared(id, record);
      if (!record) throw ended(ex, 'your session has ended (the identity provider did not renew it)');
    }
    try {
      const p = verifier.verify(record.accessToken);
      return toSessionPrincipal(p instanceof Promise ? await p : p);
    } catch (err) {
      if (err instanceof GatewayError && err.code === 'CREDENTIALS_INVALID') {
        log.warn({ sub: record.sub, reason: err.reason }, 'session access token refused: session ended');
        await sessions.destroy(id);
        throw ended(ex, 'your session has ended');
      }
      throw err;
    }
  }

  return {
    name: 'session',
    via: 'session',
    authenticate(ex) {
      const id = sessions.idFrom(ex.req);
      if (id === undefined) return null;
      if (id === null) {
        // A cookie of ours that we did not sign (tampered, or an old secret): as if there were none.
        if (ex.req.headers.authorization !== undefined) return null;
        throw ended(ex, 'your session is not valid');
      }
      return authenticateSession(ex, id).catch((err: unknown) => { throw storeError(err); });
    },
    challenge: (ex) => (isNavigation(ex) ? loginRedirect(ex) : null),
    refuse(_ex, principal, reason) {
      const noRole = principal.permissions.size === 0;
      return new GatewayError('FORBIDDEN', reason, {
        page: {
          name: noRole ? 'no-role' : 'forbidden',
          vars: {
            username: principal.username ?? principal.subject,
            roles: principal.roles.size ? [...principal.roles].sort() : [],
            logoutUrl: deps.logoutPath,
          },
        },
      });
    },
  };
}
