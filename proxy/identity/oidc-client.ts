// The gateway's own OpenID Connect client (openid-client v6): discovery once (retried until it
// works), authorization URLs with PKCE, the code grant, refresh, and the IdP's logout URL.
import * as oidc from 'openid-client';
import type { IdentityConfig } from '../config/schema.js';
import { GatewayError } from '../errors.js';
import type { ReadinessCheck } from '../ops/health.js';
import type { Logger } from '../ops/log.js';

export interface LoginRequest { readonly url: URL; readonly state: string; readonly nonce: string; readonly codeVerifier: string }

export interface Tokens {
  readonly accessToken: string;
  readonly idToken?: string;
  readonly refreshToken?: string;
  /** ID token claims (code grant; a refresh may not return a new ID token). */
  readonly claims?: Readonly<Record<string, unknown>>;
}

/** The IdP refused a grant (bad or replayed code, revoked refresh token): the user must log in again. */
export class GrantRefused extends Error {
  constructor(readonly error: string, readonly description: string | undefined) {
    super(description ? `${error}: ${description}` : error);
    this.name = 'GrantRefused';
  }
}

export interface OidcClient {
  readonly readiness: ReadinessCheck;
  start(): void;
  close(): void;
  /** An authorization request for a new login (state, nonce and a PKCE S256 challenge). */
  beginLogin(redirectUri: string): Promise<LoginRequest>;
  /** Redeems the code of `callbackUrl` (its query as the IdP sent it) with the login's checks. */
  finishLogin(callbackUrl: URL, checks: { state: string; nonce: string; codeVerifier: string }): Promise<Tokens>;
  refresh(refreshToken: string): Promise<Tokens>;
  /** RP-initiated logout at the IdP, or undefined when it has no end_session_endpoint. */
  logoutUrl(idTokenHint: string | undefined, postLogoutRedirectUri: string): Promise<URL | undefined>;
}

const unavailable = (cause?: unknown) => new GatewayError('IDP_UNAVAILABLE', 'the identity provider cannot be reached; try again shortly', { headers: { 'Retry-After': '5' }, cause });

/** Errors the IdP answered (OAuth error responses, failed ID token checks) versus not reaching it. */
function classify(err: unknown): Error {
  if (err instanceof oidc.ResponseBodyError) return new GrantRefused(err.error, err.error_description);
  if (err instanceof oidc.AuthorizationResponseError) return new GrantRefused(err.error, err.error_description);
  const code = (err as { code?: unknown }).code;
  if (err instanceof TypeError || code === 'OAUTH_TIMEOUT' || code === 'ECONNREFUSED' || (err as Error).name === 'AbortError' || (err as Error).name === 'TimeoutError') return unavailable(err);
  if (err instanceof oidc.ClientError) return new GrantRefused('invalid_response', (err as Error).message);
  return unavailable(err);
}

export function createOidcClient(identity: IdentityConfig, log: Logger): OidcClient {
  const client = identity.client;
  if (!client) throw new Error('identity.client is required for login sessions');
  const issuer = new URL(identity.issuer);
  // The gateway may reach the IdP by another URL (a container name): every request to the public
  // issuer's URLs goes there instead, while the documents keep naming the public issuer.
  const internal = identity.internalUrl;
  const publicPrefix = identity.issuer;
  const rewrite = (url: string): string => (internal && url.startsWith(publicPrefix) ? internal + url.slice(publicPrefix.length) : url);
  const customFetch: oidc.CustomFetch = (url, options) => fetch(rewrite(url), { ...options, signal: AbortSignal.timeout(10_000) } as RequestInit);

  let config: oidc.Configuration | undefined;
  let discovering: Promise<oidc.Configuration> | undefined;
  let lastError: string | undefined;
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  let delay = 1000;

  function discover(): Promise<oidc.Configuration> {
    discovering ??= oidc.discovery(issuer, client!.id, { client_secret: client!.secret }, oidc.ClientSecretBasic(client!.secret), {
      [oidc.customFetch]: customFetch,
      // Plain http only where the operator configured it (loopback development, tests): openid-client refuses it otherwise.
      ...(issuer.protocol === 'http:' ? { execute: [oidc.allowInsecureRequests] } : {}),
      timeout: 10,
    }).then((c) => {
      config = c;
      lastError = undefined;
      log.info({ issuer: identity.issuer }, 'OIDC discovery done');
      return c;
    }, (err: unknown) => {
      discovering = undefined;
      lastError = err instanceof Error ? err.message : String(err);
      throw err;
    });
    return discovering;
  }

  function retryLater(): void {
    if (closed || config) return;
    timer = setTimeout(() => {
      discover().catch((err: unknown) => {
        log.warn({ issuer: identity.issuer, err: (err as Error).message }, 'OIDC discovery failed; retrying');
        delay = Math.min(delay * 2, 30_000);
        retryLater();
      });
    }, delay);
    timer.unref();
  }

  async function configuration(): Promise<oidc.Configuration> {
    if (config) return config;
    try {
      return await discover();
    } catch (err) {
      throw unavailable(err);
    }
  }

  return {
    readiness: {
      name: 'oidc-client',
      check: async () => ({ ok: config !== undefined, detail: config ? `discovered ${identity.issuer}` : `discovery pending${lastError ? `: ${lastError}` : ''}` }),
    },
    start() {
      discover().catch((err: unknown) => {
        log.warn({ issuer: identity.issuer, err: (err as Error).message }, 'OIDC discovery failed; retrying');
        retryLater();
      });
    },
    close() {
      closed = true;
      if (timer) clearTimeout(timer);
    },
    async beginLogin(redirectUri) {
      const c = await configuration();
      const codeVerifier = oidc.randomPKCECodeVerifier();
      const state = oidc.randomState();
      const nonce = oidc.randomNonce();
      const url = oidc.buildAuthorizationUrl(c, {
        redirect_uri: redirectUri,
        scope: client.scopes.join(' '),
        response_type: 'code',
        code_challenge: await oidc.calculatePKCECodeChallenge(codeVerifier),
        code_challenge_method: 'S256',
        state,
        nonce,
      });
      return { url, state, nonce, codeVerifier };
    },
    async finishLogin(callbackUrl, checks) {
      const c = await configuration();
      try {
        const t = await oidc.authorizationCodeGrant(c, callbackUrl, {
          pkceCodeVerifier: checks.codeVerifier, expectedState: checks.state, expectedNonce: checks.nonce, idTokenExpected: true,
        });
        return {
          accessToken: t.access_token,
          ...(t.id_token ? { idToken: t.id_token } : {}),
          ...(t.refresh_token ? { refreshToken: t.refresh_token } : {}),
          ...(t.claims() ? { claims: t.claims() as Record<string, unknown> } : {}),
        };
      } catch (err) {
        throw classify(err);
      }
    },
    async refresh(refreshToken) {
      const c = await configuration();
      try {
        const t = await oidc.refreshTokenGrant(c, refreshToken);
        return {
          accessToken: t.access_token,
          ...(t.id_token ? { idToken: t.id_token } : {}),
          ...(t.refresh_token ? { refreshToken: t.refresh_token } : {}),
        };
      } catch (err) {
        throw classify(err);
      }
    },
    async logoutUrl(idTokenHint, postLogoutRedirectUri) {
      const c = await configuration();
      if (!c.serverMetadata().end_session_endpoint) return undefined;
      return oidc.buildEndSessionUrl(c, {
        post_logout_redirect_uri: postLogoutRedirectUri,
        client_id: client.id,
        ...(idTokenHint ? { id_token_hint: idTokenHint } : {}),
      });
    },
  };
}
