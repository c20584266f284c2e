// The gateway's own endpoints under /_gateway/: login (code flow + PKCE), the IdP's callback, logout
// (local and RP-initiated), back-channel logout, the session's identity, and the pages' stylesheet.
import { createHash, randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { parse as parseCookies, serialize as serializeCookie } from 'cookie';
import express, { type NextFunction, type Request, type Response } from 'express';
import { errors as joseErrors, jwtVerify } from 'jose';
import type { Config } from '../config/schema.js';
import { GatewayError, toGatewayError } from '../errors.js';
import type { Exchange } from '../exchange.js';
import type { TokenVerifier } from '../identity/bearer.js';
import type { KeySet } from '../identity/jwks.js';
import { GrantRefused, type OidcClient } from '../identity/oidc-client.js';
import { sameOrigin, storeError } from '../identity/session.js';
import type { Sessions } from '../identity/sessions.js';
import type { Logger } from '../ops/log.js';
import type { Store } from '../store/store.js';
import type { Pages } from './pages.js';
import { safeReturnPath } from './return-path.js';
import { shareRouter, type ShareEndpointsDeps } from './shares.js';

export const GATEWAY_PREFIX = '/_gateway/';
export const LOGIN_PATH = '/_gateway/login';
export const LOGOUT_PATH = '/_gateway/logout';
export const BACKCHANNEL_LOGOUT_PATH = '/_gateway/backchannel-logout';
export const ME_PATH = '/_gateway/me';

const LOGIN_TTL_MS = 10 * 60_000;
/** Wrong passwords allowed per share link in the window, on all processes together. */
const SHARE_PASSWORD_ATTEMPTS = 5;
const SHARE_PASSWORD_WINDOW_MS = 15 * 60_000;
const BACKCHANNEL_EVENT = 'http://schemas.openid.net/event/backchannel-logout';
const CALLBACK_PARAMS = ['state', 'code', 'error', 'error_description', 'error_uri', 'iss', 'session_state'];

export interface LoginDeps {
  readonly sessions: Sessions;
  readonly oidc: OidcClient;
  readonly verifier: TokenVerifier;
  readonly keySet: KeySet;
}

export interface GatewayEndpointsDeps {
  readonly config: Config;
  readonly pages: Pages;
  readonly log: Logger;
  readonly store: Store;
  readonly login: LoginDeps | undefined;
  readonly fail: (ex: Exchange, err: GatewayError) => void;
  readonly count?: (event: 'login' | 'login_failed' | 'logout' | 'backchannel_logout') => void;
  /** Share links, when routes.yaml enables them. */
  readonly shares?: Omit<ShareEndpointsDeps, 'exchangeOf' | 'log' | 'pages' | 'publicOrigin' | 'attempts'>;
}

export interface GatewayEndpoints { handle(ex: Exchange): void }

const sha = (s: string): string => createHash('sha256').update(s).digest('base64url');

interface LoginTransaction { readonly codeVerifier: string; readonly nonce: string; readonly returnTo: string; readonly binding: string }

const EXCHANGE = Symbol('pacs-gateway.endpoint-exchange');
type Tagged = IncomingMessage & { [EXCHANGE]?: Exchange };
const exchangeOf = (req: IncomingMessage): Exchange => (req as Tagged)[EXCHANGE] as Exchange;

export function createGatewayEndpoints(deps: GatewayEndpointsDeps): GatewayEndpoints {
  const { config, pages, log, store, login } = deps;
  const publicUrl = config.server.publicUrl;
  const publicOrigin = new URL(publicUrl).origin;
  const https = publicUrl.startsWith('https:');
  const client = config.identity?.client;
  const bindingCookie = https ? '__Host-pgw_login' : 'pgw_login';
  const cookieOpts = { httpOnly: true, sameSite: 'lax' as const, secure: https, path: '/' };

  const page = (res: Response, status: number, name: Parameters<Pages['send']>[2], vars: Record<string, string> & { title: string }) =>
    pages.send(res, status, name, { ...vars, requestId: exchangeOf(res.req).id });

  const loginError = (res: Response, status: number, reason: string, returnTo = '/') => {
    exchangeOf(res.req).errorCode = 'LOGIN_FAILED';
    deps.count?.('login_failed');
    page(res, status, 'login-error', { title: 'Sign-in did not complete', reason, retryUrl: `${LOGIN_PATH}?return=${encodeURIComponent(returnTo)}` });
  };

  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  app.set('query parser', false); // the callback reads the raw query: duplicated parameters are refused, not merged

  app.get('/_gateway/static/:file', (req, res, next) => {
    if (!pages.serveAsset(req, res, req.path)) next();
  });

  if (login && client) {
    const { sessions, oidc, verifier, keySet } = login;
    const redirectUri = `${publicUrl}${client.redirectPath}`;
    const postLogoutUri = `${publicUrl}${client.postLogoutPath}`;
    const identity = config.identity!;

    app.get(LOGIN_PATH, async (req, res) => {
      const params = new URLSearchParams(req.url.split('?')[1] ?? '');
      const returnTo = safeReturnPath(params.get('return'));
      const existing = parseCookies(req.headers.cookie ?? '')[bindingCookie];
      const binding = existing && /^[A-Za-z0-9_-]{43}$/.test(existing) ? existing : randomBytes(32).toString('base64url');
      const request = await oidc.beginLogin(redirectUri);
      const tx: LoginTransaction = { codeVerifier: request.codeVerifier, nonce: request.nonce, returnTo, binding: sha(binding) };
      await store.set(`login:${sha(request.state)}`, JSON.stringify(tx), LOGIN_TTL_MS);
      res.setHeader('Set-Cookie', serializeCookie(bindingCookie, binding, { ...cookieOpts, maxAge: LOGIN_TTL_MS / 1000 }));
      res.setHeader('Cache-Control', 'no-store');
      res.setHeader('Referrer-Policy', 'no-referrer');
      res.redirect(302, request.url.href);
    });

    app.get(client.redirectPath, async (req, res) => {
      const query = req.url.split('?')[1] ?? '';
      const params = new URLSearchParams(query);
      res.setHeader('Referrer-Policy', 'no-referrer');
      const repeated = CALLBACK_PARAMS.find((n) => params.getAll(n).length > 1);
      if (repeated) { loginError(res, 400, `The sign-in response carries the parameter "${repeated}" more than once.`); return; }
      const state = params.get('state');
      if (!state) { loginError(res, 400, 'The sign-in response has no state: it was not started here.'); return; }
      const txKey = `login:${sha(state)}`;
      const raw = await store.get(txKey);
      // Deleting first makes every state single-use, even when two requests race with the same one.
      if (raw === undefined || !(await store.delete(txKey))) {
        loginError(res, 400, 'This sign-in attempt is unknown, has expired or was already used.');
        return;
      }
      const tx = JSON.parse(raw) as LoginTransaction;
      const binding = parseCookies(req.headers.cookie ?? '')[bindingCookie];
      res.setHeader('Set-Cookie', serializeCookie(bindingCookie, '', { ...cookieOpts, expires: new Date(0) }));
      if (!binding || sha(binding) !== tx.binding) {
        loginError(res, 400, 'This sign-in was started in another browser (or its cookie was lost).', tx.returnTo);
        return;
      }
      const error = params.get('error');
      if (error) {
        const description = params.get('error_description');
        loginError(res, error === 'access_denied' ? 403 : 400, `The identity provider did not sign you in: ${error}${description ? ` (${description})` : ''}.`, tx.returnTo);
        return;
      }
      let tokens;
      try {
        tokens = await oidc.finishLogin(new URL(`${redirectUri}?${query}`), { state, nonce: tx.nonce, codeVerifier: tx.codeVerifier });
      } catch (err) {
        if (err instanceof GrantRefused) {
          log.info({ reqId: exchangeOf(req).id, error: err.error }, 'login refused');
          loginError(res, 400, `The sign-in could not be completed: ${err.message}.`, tx.returnTo);
          return;
        }
        throw err;
      }
      let principal;
      try {
        principal = await verifier.verify(tokens.accessToken);
      } catch (err) {
        const reason = err instanceof GatewayError ? err.reason : 'unreadable token';
        log.warn({ reqId: exchangeOf(req).id, reason }, 'login: the IdP\'s access token is not accepted');
        loginError(res, 502, `The identity provider's access token is not accepted by this gateway (${reason}); an administrator must check the client's audience.`, tx.returnTo);
        return;
      }
      const claims = tokens.claims ?? {};
      if (claims.sub !== principal.subject) {
        loginError(res, 502, 'The identity provider\'s ID token and access token name different users.', tx.returnTo);
        return;
      }
      // A session cookie from before the login is never reused (fixation): its session ends, a new one starts.
      const before = sessions.idFrom(req);
      if (before) await sessions.destroy(before);
      const id = await sessions.create({
        sub: principal.subject,
        ...(typeof claims.sid === 'string' ? { sid: claims.sid } : {}),
        ...(principal.username ? { username: principal.username } : {}),
        createdAt: Date.now(),
        ...(tokens.idToken ? { idToken: tokens.idToken } : {}),
        accessToken: tokens.accessToken,
        ...(tokens.refreshToken ? { refreshToken: tokens.refreshToken } : {}),
        accessExpiresAt: principal.expiresAt,
      });
      log.info({ reqId: exchangeOf(req).id, sub: principal.subject }, 'login');
      deps.count?.('login');
      res.append('Set-Cookie', sessions.setCookie(id));
      res.setHeader('Cache-Control', 'no-store');
      res.redirect(302, tx.returnTo);
    });

    const logout = async (req: Request, res: Response) => {
      const ex = exchangeOf(req);
      // A logout started by another site is refused: only this site's pages (or a typed URL) may end a session.
      const site = req.headers['sec-fetch-site'];
      const allowed = req.method === 'POST' ? sameOrigin(ex, publicOrigin) : site === undefined || site === 'same-origin' || site === 'none';
      if (!allowed) throw new GatewayError('CROSS_ORIGIN', 'logout must be started from this site');
      const id = sessions.idFrom(req);
      const record = id ? await sessions.load(id) : undefined;
      if (id) await sessions.destroy(id);
      res.setHeader('Set-Cookie', sessions.clearCookie());
      res.setHeader('Cache-Control', 'no-store');
      res.setHeader('Referrer-Policy', 'no-referrer');
      if (record) {
        log.info({ reqId: ex.id, sub: record.sub }, 'logout');
        deps.count?.('logout');
      }
      let target: string = client.postLogoutPath;
      if (record) {
        try {
          target = (await oidc.logoutUrl(record.idToken, postLogoutUri))?.href ?? target;
        } catch (err) {
          log.warn({ reqId: ex.id, err: (err as Error).message }, 'logout: the IdP cannot be reached; local session ended only');
        }
      }
      res.redirect(303, target);
    };
    app.get(LOGOUT_PATH, logout);
    app.post(LOGOUT_PATH, express.urlencoded({ extended: false, limit: '4kb' }), logout);

    app.get(client.postLogoutPath, (_req, res) => {
      page(res, 200, 'logged-out', { title: 'Signed out', loginUrl: `${LOGIN_PATH}?return=%2F` });
    });

    app.get(ME_PATH, async (req, res) => {
      res.setHeader('Cache-Control', 'no-store');
      const id = sessions.idFrom(req);
      const record = id ? await sessions.load(id) : undefined;
      if (!record) throw new GatewayError('UNAUTHENTICATED', 'no session');
      const p = await Promise.resolve().then(() => verifier.verify(record.accessToken)).catch(() => undefined);
      res.json({
        subject: record.sub, username: record.username ?? null, roles: p ? [...p.roles].sort() : [], permissions: p ? [...p.permissions].sort() : [],
        sessionStartedAt: new Date(record.createdAt).toISOString(), accessTokenExpiresAt: new Date(record.accessExpiresAt).toISOString(),
      });
    });

    // OpenID Connect Back-Channel Logout 1.0: the IdP posts a signed logout token; every session of
    // its sid (or, without one, of its sub) ends, on every gateway process sharing the store.
    app.post(BACKCHANNEL_LOGOUT_PATH, express.urlencoded({ extended: false, limit: '16kb' }), async (req, res) => {
      res.setHeader('Cache-Control', 'no-store');
      const refuse = (description: string) => {
        exchangeOf(req).errorCode = 'LOGOUT_TOKEN_INVALID';
        log.warn({ reqId: exchangeOf(req).id, reason: description }, 'back-channel logout refused');
        res.status(400).json({ error: 'invalid_request', error_description: description });
      };
      const body = req.body as Record<string, unknown> | undefined;
      const token = body?.logout_token;
      if (typeof token !== 'string' || token === '') { refuse('logout_token is required'); return; }
      const getKey = keySet.getKey;
      if (!getKey) throw new GatewayError('IDP_UNAVAILABLE', 'the identity provider keys are not available yet', { headers: { 'Retry-After': '5' } });
      let payload;
      try {
        ({ payload } = await jwtVerify(token, getKey, {
          issuer: identity.issuer, audience: client.id, algorithms: [...identity.algorithms],
          clockTolerance: Math.ceil(identity.clockTolerance / 1000), requiredClaims: ['iat', 'jti'], maxTokenAge: '10m',
        }));
      } catch (err) {
        refuse(err instanceof joseErrors.JOSEError ? `logout token not accepted (${err.code})` : 'logout token not accepted');
        return;
      }
      const events = payload.events as Record<string, unknown> | undefined;
      if (!events || typeof events !== 'object' || typeof events[BACKCHANNEL_EVENT] !== 'object' || events[BACKCHANNEL_EVENT] === null) { refuse('not a logout token (events)'); return; }
      if ('nonce' in payload) { refuse('a logout token carries no nonce'); return; }
      const sid = typeof payload.sid === 'string' ? payload.sid : undefined;
      const sub = typeof payload.sub === 'string' ? payload.sub : undefined;
      if (!sid && !sub) { refuse('a logout token names a sid or a sub'); return; }
      if (!(await store.setIfAbsent(`bcl-jti:${sha(`${payload.iss}|${payload.jti}`)}`, '1', 15 * 60_000))) { refuse('logout token replayed (jti seen before)'); return; }
      const ended = await sessions.destroyWhere(sid ? { sid } : { sub: sub! });
      log.info({ reqId: exchangeOf(req).id, sub, sessions: ended }, 'back-channel logout');
      deps.count?.('backchannel_logout');
      res.status(200).end();
    });
  }

  if (deps.shares) {
    app.use(shareRouter({
      ...deps.shares, log, pages, publicOrigin, exchangeOf: (req) => exchangeOf(req),
      attempts: store.limiter('share-password', SHARE_PASSWORD_ATTEMPTS, SHARE_PASSWORD_WINDOW_MS),
    }));
  }

  app.use((req: Request) => {
    throw new GatewayError('NO_ROUTE', `no gateway endpoint ${req.method} ${req.path}`);
  });
  app.use((err: unknown, req: Request, _res: Response, _next: NextFunction) => {
    const status = (err as { status?: number; type?: string }).status;
    const ex = exchangeOf(req);
    if (err instanceof GatewayError) deps.fail(ex, err);
    else if (status === 413) deps.fail(ex, new GatewayError('PAYLOAD_TOO_LARGE', 'the form is too large'));
    else if (status !== undefined && status >= 400 && status < 500) deps.fail(ex, new GatewayError('BAD_REQUEST', 'the form could not be read'));
    else deps.fail(ex, toGatewayError(storeError(err)));
  });
  const handle = app as unknown as (req: IncomingMessage, res: ServerResponse, done: (err?: unknown) => void) => void;

  return {
    handle(ex) {
      (ex.req as Tagged)[EXCHANGE] = ex;
      ex.res.setHeader('X-Request-Id', ex.id);
      handle(ex.req, ex.res, (err) => deps.fail(ex, err ? toGatewayError(storeError(err)) : new GatewayError('NO_ROUTE', 'no gateway endpoint')));
    },
  };
}
