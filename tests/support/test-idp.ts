/**
 * A real OpenID Provider for tests, built on `oidc-provider` 9, issuing Keycloak-shaped JWT access
 * tokens through the provider's own HTTP endpoints.
 *
 * How tokens are obtained
 * -----------------------
 * - `issueTokens()` / `issueAccessToken()` / `issueIdToken()` / `issueRefreshToken()` drive the
 *   authorization code flow (with PKCE S256) over HTTP against the provider: GET the authorization
 *   endpoint → the provider redirects to our interaction route → our interaction route logs the
 *   requested user in and records a Grant (no login form, no consent page) → the provider redirects
 *   back with a code → POST to the token endpoint (client_secret_basic, `resource` indicator). The
 *   provider signs the access token (JWT, RFC 9068 `typ: at+jwt`) and the ID token with its own keys.
 * - `issueAccessToken({ grant: 'client_credentials' })` uses the client_credentials grant instead
 *   (one request; a "service account" token: `sub` = client id unless `sub` is given).
 * - Refresh tokens are OPAQUE (oidc-provider's format; Keycloak's are HS-signed JWTs). `refresh()`
 *   redeems one at the token endpoint.
 *
 * Per-token claims (user, roles, audience, signing alg, lifetime) are registered under a random
 * nonce before each call; the nonce travels as the resource indicator `urn:test-idp:token:<nonce>`,
 * which `getResourceServerInfo` resolves to that token's resource server (audience, alg, TTL) and
 * `extraTokenClaims` resolves to its Keycloak claims. The nonce never appears in a token.
 *
 * Browsers: with `users` the interaction route shows a real (minimal) login form — username and
 * password, checked here — and logs the user in with their roles; `browserClient()` gives the client
 * metadata of a public browser app such as OHIF (code flow + PKCE, refresh tokens). With `issuerUrl`
 * the IdP can sit behind a reverse proxy that forwards a path unchanged (the gateway's /auth route):
 * it listens on its own port under that URL's path and always advertises the public URLs, as
 * Keycloak does with a configured hostname; `internalUrl` is the same issuer on the IdP's own port.
 * A development and test tool only: accounts and sessions live in memory, passwords in clear.
 *
 * Key rotation: oidc-provider reads `jwks` once, at construction. The provider is therefore mounted
 * behind our own `node:http` server (which also counts JWKS fetches and simulates outages) and
 * REBUILT with a new key set on `rotateKeys()` / `dropOldKeys()`, keeping the same port, issuer,
 * cookie keys and storage (sessions, grants and refresh tokens survive a rotation).
 */
import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';

import { exportJWK, generateKeyPair, type JWK } from 'jose';
import type Provider from 'oidc-provider';
import type { InteractionDetails } from 'oidc-provider';

export type SigningAlg = 'RS256' | 'ES256' | 'PS256';

export interface StartTestIdpOptions {
  /** Port on 127.0.0.1; 0 / undefined picks a free one. */
  port?: number;
  /** Signing algorithms to hold a key for. The first is the default. Default ['RS256', 'ES256', 'PS256']. */
  algs?: SigningAlg[];
  /** Default access token lifetime in seconds (Keycloak's default is 300). */
  accessTokenTtl?: number;
  /** Path of the issuer, e.g. '/auth/realms/ohif' or '/realms/ohif'. Default '' (issuer = origin). */
  issuerPath?: string;
  /**
   * The issuer as users see it through a reverse proxy that keeps the path, e.g.
   * 'http://127.0.0.1:8080/auth/realms/demo'. Replaces issuerPath (its path is used). Discovery,
   * endpoints and `iss` then name this URL however the IdP is reached.
   */
  issuerUrl?: string;
  /** Default `aud` of access tokens. Default 'pacs'. */
  defaultAudience?: string;
  /** Default client id (`azp`). Default 'ohif'. Any client id is accepted by the provider. */
  defaultClientId?: string;
  /** Extra / overriding client metadata per client id (e.g. redirect_uris for a browser client). */
  clients?: Record<string, Record<string, unknown>>;
  /**
   * User logged in automatically when an authorization request does not come from issue*() (e.g. a
   * browser driven by OHIF) and no `users` are given. Without either, such requests get 400.
   */
  defaultUser?: IssueOptions;
  /** Accounts for the browser login form. Without them browsers get defaultUser or a 400. */
  users?: readonly TestUser[];
  /**
   * Service accounts: the realm roles a confidential client's own tokens carry when it asks the token
   * endpoint with grant_type=client_credentials (as Keycloak's service-account roles).
   */
  serviceAccounts?: Record<string, { realmRoles: string[] }>;
}

/** A public client for a person at a terminal: the device authorization grant (RFC 8628) only. */
export function deviceClient(): Record<string, unknown> {
  return {
    token_endpoint_auth_method: 'none',
    grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'],
    response_types: [],
    redirect_uris: [],
  };
}

/** A confidential client for scripts (client credentials only), as registered with the IdP. */
export function scriptsClient(): Record<string, unknown> {
  return {
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
  };
}

export interface TestUser {
  username: string;
  password: string;
  realmRoles: string[];
  name?: string;
  email?: string;
}

/** The demo's accounts (`npm run demo`, tests/e2e/ohif-login.test.ts): password = username. */
export const DEMO_USERS: readonly TestUser[] = [
  { username: 'alice', password: 'alice', realmRoles: ['viewer'], name: 'Alice Viewer' },
  { username: 'bob', password: 'bob', realmRoles: ['viewer', 'uploader'], name: 'Bob Uploader' },
  { username: 'admin', password: 'admin', realmRoles: ['viewer', 'uploader', 'admin'], name: 'Ada Admin' },
  { username: 'erin', password: 'erin', realmRoles: ['external'], name: 'Erin External' },
  { username: 'carol', password: 'carol', realmRoles: [], name: 'Carol Noroles' },
];

export interface IssueOptions {
  /** Subject. Default: a random UUID (as Keycloak). */
  sub?: string;
  /** `preferred_username`. Default 'test-user' (client_credentials: 'service-account-<client>'). */
  username?: string;
  /** `realm_access.roles`. Default []. */
  realmRoles?: string[];
  /** `resource_access` as { client: roles[] }. Omitted when not given. */
  clientRoles?: Record<string, string[]>;
  /** Requesting client (`azp`, `client_id`, ID token `aud`). Default: the IdP's defaultClientId. */
  clientId?: string;
  /** Signing alg of the access token AND the ID token. Default: the IdP's first alg. */
  alg?: SigningAlg;
  /** Access token lifetime in seconds (also the ID token's). Default: accessTokenTtl. */
  ttl?: number;
  /** Requested scope. Default 'openid profile email'. Becomes the access token's `scope`. */
  scope?: string;
  /** Access token `aud`. An array yields an array `aud`. Default: the IdP's defaultAudience. */
  audience?: string | string[];
  email?: string;
  /** `name` claim (ID token / access token). */
  name?: string;
  /** Any further access token claims (cannot override iss/sub/aud/exp/iat/jti/scope/client_id). */
  extraClaims?: Record<string, unknown>;
  /**
   * 'rfc9068' (default): header `typ: at+jwt`, `client_id` claim present — what oidc-provider emits.
   * 'keycloak': header `typ: JWT` and no `client_id` claim in user tokens — what Keycloak emits.
   * Both carry payload `typ: 'Bearer'` and `azp`.
   */
  style?: 'rfc9068' | 'keycloak';
  /** 'authorization_code' (default, a user token) or 'client_credentials' (service account token). */
  grant?: 'authorization_code' | 'client_credentials';
  /**
   * Seconds added to the access token's `iat` and `exp` (e.g. -3600 gives a token that expired
   * long ago, still signed by the provider). Default 0.
   */
  timeShift?: number;
}

export interface TokenSet {
  access_token: string;
  token_type: string;
  expires_in: number;
  scope?: string;
  id_token?: string;
  refresh_token?: string;
}

export interface TestIdp {
  /** http://127.0.0.1:PORT[issuerPath], or issuerUrl */
  readonly issuer: string;
  /** The issuer on the IdP's own port (http://127.0.0.1:PORT<issuer path>); equals issuer without issuerUrl. */
  readonly internalUrl: string;
  readonly origin: string;
  readonly port: number;
  readonly jwksUri: string;
  readonly discoveryUrl: string;
  readonly authorizationEndpoint: string;
  readonly tokenEndpoint: string;
  /** `aud` of access tokens unless `audience` is given. */
  readonly defaultAudience: string;
  readonly defaultClientId: string;
  /** Secret shared by every client (client_secret_basic). */
  readonly clientSecret: string;
  /** Algorithms the IdP holds keys for; the first is the default. */
  readonly algs: readonly SigningAlg[];
  /** The redirect URI registered for every client (never actually served). */
  readonly redirectUri: string;

  /** Full token response of a real authorization code flow (or client_credentials, see IssueOptions.grant). */
  issueTokens(opts?: IssueOptions): Promise<TokenSet>;
  /** A real JWT access token issued by the provider. */
  issueAccessToken(opts?: IssueOptions): Promise<string>;
  /** A real ID token (authorization code flow; `aud` = client id, header typ JWT, alg = opts.alg). */
  issueIdToken(opts?: IssueOptions): Promise<string>;
  /** A real refresh token — OPAQUE in oidc-provider (not a JWT). */
  issueRefreshToken(opts?: IssueOptions): Promise<string>;
  /** Redeem a refresh token at the token endpoint (refresh_token grant). */
  refresh(refreshToken: string, opts?: { clientId?: string }): Promise<TokenSet>;

  /** Publish a new key per alg first in the JWKS, keep the old ones; new tokens use the new keys. */
  rotateKeys(): Promise<void>;
  /** Stop publishing every key but the current one per alg. */
  dropOldKeys(): Promise<void>;
  /** kid of the key currently used for each alg. */
  currentKids(): Partial<Record<SigningAlg, string>>;
  /** Number of requests to the JWKS endpoint (internal requests excluded; counted while down too). */
  jwksFetchCount(): number;
  /** Number of requests to the discovery document. */
  discoveryFetchCount(): number;
  /** Refresh-token grants redeemed by outside clients (the gateway), not by issue*()/refresh(). */
  refreshGrantCount(): number;
  resetCounters(): void;
  /**
   * Simulate an outage: every request from outside (issue*() keeps working) gets its connection
   * reset (mode 'reset', default) or an HTTP 503 (mode '503').
   */
  setDown(down: boolean, mode?: 'reset' | '503'): void;
  /** The published key set WITH private parts (current keys first), for forging tokens in tests. */
  privateJwks(): { keys: JWK[] };
  /** The published key set (public parts), as served at jwksUri. */
  publicJwks(): { keys: JWK[] };
  stop(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------

const ALL_ALGS: SigningAlg[] = ['RS256', 'ES256', 'PS256'];
const TOKEN_RESOURCE_PREFIX = 'urn:test-idp:token:';
const DEFAULT_RESOURCE = 'urn:test-idp:default';
const DEFAULT_SCOPE = 'openid profile email';
const INTERNAL_HEADER = 'x-test-idp-internal';
const MAX_FORM_BYTES = 8 * 1024;

// Keycloak's endpoint layout under the realm (issuer) path.
const ROUTES = {
  authorization: '/protocol/openid-connect/auth',
  token: '/protocol/openid-connect/token',
  userinfo: '/protocol/openid-connect/userinfo',
  jwks: '/protocol/openid-connect/certs',
  end_session: '/protocol/openid-connect/logout',
  revocation: '/protocol/openid-connect/revoke',
  introspection: '/protocol/openid-connect/token/introspect',
  device_authorization: '/protocol/openid-connect/auth/device',
  code_verification: '/device',
};

type ProviderCtor = new (issuer: string, configuration?: Record<string, unknown>) => Provider;
let providerCtor: ProviderCtor | undefined;

/** Import oidc-provider once, hiding its "Unsupported runtime" warning (printed on Node < 22). */
async function loadProvider(): Promise<ProviderCtor> {
  if (providerCtor) return providerCtor;
  const warn = console.warn;
  console.warn = (...args: unknown[]) => {
    if (typeof args[0] === 'string' && args[0].includes('Unsupported runtime')) return;
    warn.apply(console, args);
  };
  try {
    const mod = await import('oidc-provider');
    providerCtor = mod.default as unknown as ProviderCtor;
  } finally {
    console.warn = warn;
  }
  return providerCtor;
}

interface KeyPair {
  alg: SigningAlg;
  kid: string;
  privateJwk: JWK;
  publicJwk: JWK;
}

async function makeKey(alg: SigningAlg): Promise<KeyPair> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const kid = randomBytes(16).toString('base64url');
  const meta = { kid, alg, use: 'sig' };
  return {
    alg,
    kid,
    privateJwk: { ...(await exportJWK(privateKey)), ...meta },
    publicJwk: { ...(await exportJWK(publicKey)), ...meta },
  };
}

/** Everything a single issue*() call asked for, with defaults applied. */
interface CallProfile {
  sub: string;
  subGiven: boolean;
  username: string;
  realmRoles: string[];
  clientRoles?: Record<string, string[]>;
  clientId: string;
  alg: SigningAlg;
  ttl: number;
  scope: string;
  audience: string | string[];
  email?: string;
  name?: string;
  extraClaims?: Record<string, unknown>;
  style: 'rfc9068' | 'keycloak';
  timeShift: number;
}

// Loose shapes of the oidc-provider objects the hooks receive.
/* eslint-disable @typescript-eslint/no-explicit-any */
type OidcCtx = any;
type OidcToken = any;
/* eslint-enable @typescript-eslint/no-explicit-any */

interface StoredEntry {
  payload: Record<string, unknown>;
  expiresAt?: number;
}

/** In-memory storage for the provider's models, shared across provider rebuilds. */
class Storage {
  readonly entries = new Map<string, StoredEntry>();
  readonly grantMembers = new Map<string, Set<string>>();
  readonly byUid = new Map<string, string>();
  readonly byUserCode = new Map<string, string>();

  get(key: string): Record<string, unknown> | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    if (e.expiresAt !== undefined && e.expiresAt <= Date.now()) {
      this.entries.delete(key);
      return undefined;
    }
    return e.payload;
  }
}

const GRANTABLE = new Set([
  'AccessToken',
  'AuthorizationCode',
  'RefreshToken',
  'DeviceCode',
  'BackchannelAuthenticationRequest',
]);

function makeAdapterClass(storage: Storage, clientMetadata: (id: string) => Record<string, unknown>) {
  return class TestIdpAdapter {
    constructor(private readonly model: string) {}

    private key(id: string): string {
      return `${this.model}:${id}`;
    }

    async upsert(id: string, payload: Record<string, unknown>, expiresIn?: number): Promise<void> {
      const key = this.key(id);
      const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : undefined;
      storage.entries.set(key, { payload, expiresAt });
      if (this.model === 'Session' && typeof payload.uid === 'string') storage.byUid.set(payload.uid, id);
      if (typeof payload.userCode === 'string') storage.byUserCode.set(payload.userCode, id);
      if (GRANTABLE.has(this.model) && typeof payload.grantId === 'string') {
        let members = storage.grantMembers.get(payload.grantId);
        if (!members) storage.grantMembers.set(payload.grantId, (members = new Set()));
        members.add(key);
      }
    }

    async find(id: string): Promise<Record<string, unknown> | undefined> {
      if (this.model === 'Client') return clientMetadata(id);
      return storage.get(this.key(id));
    }

    async findByUid(uid: string): Promise<Record<string, unknown> | undefined> {
      const id = storage.byUid.get(uid);
      return id === undefined ? undefined : this.find(id);
    }

    async findByUserCode(userCode: string): Promise<Record<string, unknown> | undefined> {
      const id = storage.byUserCode.get(userCode);
      return id === undefined ? undefined : this.find(id);
    }

    async consume(id: string): Promise<void> {
      const payload = storage.get(this.key(id));
      if (payload) payload.consumed = Math.floor(Date.now() / 1000);
    }

    async destroy(id: string): Promise<void> {
      storage.entries.delete(this.key(id));
    }

    async revokeByGrantId(grantId: string): Promise<void> {
      for (const key of storage.grantMembers.get(grantId) ?? []) storage.entries.delete(key);
      storage.grantMembers.delete(grantId);
    }
  };
}

function asStringList(value: unknown): string[] {
  if (typeof value === 'string') return [value];
  if (Array.isArray(value)) return value.filter((v): v is string => typeof v === 'string');
  return [];
}

function basicAuth(clientId: string, secret: string): string {
  // RFC 6749 §2.3.1: form-urlencode both parts before base64.
  const enc = (s: string) => encodeURIComponent(s).replace(/%20/g, '+');
  return `Basic ${Buffer.from(`${enc(clientId)}:${enc(secret)}`).toString('base64')}`;
}

class IdpRequestError extends Error {}

/**
 * Client metadata for the gateway's own confidential client at `gatewayUrl` (its login sessions):
 * code flow + PKCE, refresh tokens, RP-initiated and back-channel logout. Its secret is the IdP's
 * shared clientSecret.
 */
export function gatewayClient(gatewayUrl: string): Record<string, unknown> {
  const base = gatewayUrl.replace(/\/+$/, '');
  return {
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    redirect_uris: [`${base}/_gateway/callback`],
    post_logout_redirect_uris: [`${base}/_gateway/logged-out`],
    backchannel_logout_uri: `${base}/_gateway/backchannel-logout`,
    backchannel_logout_session_required: true,
  };
}

/** Client metadata for a public browser app such as OHIF at `appUrl`: code flow + PKCE, refresh tokens, no secret. */
export function browserClient(appUrl: string): Record<string, unknown> {
  const base = appUrl.replace(/\/+$/, '');
  return {
    token_endpoint_auth_method: 'none',
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    redirect_uris: [`${base}/callback`, `${base}/silent-refresh.html`],
    post_logout_redirect_uris: [`${base}/`],
  };
}

function stableSub(username: string): string {
  const h = createHash('sha256').update(`test-idp:${username}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

function samePassword(given: string, expected: string): boolean {
  const digest = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(digest(given), digest(expected));
}

/** The urlencoded body, or undefined when it is larger than a login form can be. */
async function readForm(req: http.IncomingMessage): Promise<URLSearchParams | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_FORM_BYTES) return undefined;
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

const escapeHtml = (s: string): string =>
  s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function loginPage(action: string, clientId: string, username = '', error?: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Sign in — development IdP</title>
<style>body{font:16px system-ui,sans-serif;max-width:22rem;margin:4rem auto;padding:0 1rem}label,input,button{display:block;width:100%;box-sizing:border-box}input{margin:.25rem 0 1rem;padding:.5rem}button{padding:.6rem}.error{color:#b00020}small{color:#666}</style>
</head><body>
<h1>Sign in</h1>
<p>to <strong>${escapeHtml(clientId)}</strong></p>
${error ? `<p class="error" role="alert">${escapeHtml(error)}</p>` : ''}
<form method="post" action="${escapeHtml(action)}">
<label for="username">Username</label><input id="username" name="username" autocomplete="username" value="${escapeHtml(username)}" required autofocus>
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>
<p><small>Development identity provider (oidc-provider) — for demos and tests only.</small></p>
</body></html>`;
}

function sendHtml(res: http.ServerResponse, status: number, html: string): void {
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'",
    'referrer-policy': 'no-referrer',
  });
  res.end(html);
}

function sendText(res: http.ServerResponse, status: number, text: string): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
  res.end(text);
}

export async function startTestIdp(opts: StartTestIdpOptions = {}): Promise<TestIdp> {
  const Provider = await loadProvider();

  const algs: SigningAlg[] = opts.algs?.length ? [...new Set(opts.algs)] : [...ALL_ALGS];
  for (const alg of algs) {
    if (!ALL_ALGS.includes(alg)) throw new Error(`test IdP: unsupported alg ${alg}`);
  }
  const defaultAlg = algs[0]!;
  const accessTokenTtl = opts.accessTokenTtl ?? 300;
  const publicIssuer = opts.issuerUrl === undefined ? undefined : new URL(opts.issuerUrl);
  if (publicIssuer && (!/^https?:$/.test(publicIssuer.protocol) || publicIssuer.search || publicIssuer.hash)) {
    throw new Error(`test IdP: issuerUrl must be an http(s) URL without query or fragment, got ${opts.issuerUrl}`);
  }
  let issuerPath = publicIssuer?.pathname ?? opts.issuerPath ?? '';
  if (issuerPath && !issuerPath.startsWith('/')) issuerPath = `/${issuerPath}`;
  issuerPath = issuerPath.replace(/\/+$/, '');
  const defaultAudience = opts.defaultAudience ?? 'pacs';
  const defaultClientId = opts.defaultClientId ?? 'ohif';
  const clientSecret = randomBytes(24).toString('base64url');
  const internalSecret = randomBytes(24).toString('base64url');
  const cookieKeys = [randomBytes(32).toString('base64url')];

  // Keys: `current` (one per alg, used to sign) and `previous` (still published until dropOldKeys).
  let current: KeyPair[] = await Promise.all(algs.map(makeKey));
  let previous: KeyPair[] = [];
  const published = () => [...current, ...previous];

  // Per-call state.
  const calls = new Map<string, CallProfile>(); // nonce -> profile
  const grantProfiles = new Map<string, CallProfile>(); // grantId -> profile
  const latestBySub = new Map<string, CallProfile>();
  const idTokenAlgByClient = new Map<string, SigningAlg>();
  const clientLocks = new Map<string, Promise<void>>();

  const defaultUserProfile = opts.defaultUser ? makeProfile(opts.defaultUser) : undefined;
  // A stable subject per account, so a user is the same `sub` across logins and IdP restarts.
  const users = new Map((opts.users ?? []).map((u) => [u.username, { ...u, sub: stableSub(u.username) }]));

  // Counters / outage simulation.
  let jwksFetches = 0;
  let discoveryFetches = 0;
  let refreshGrants = 0;
  let down: false | 'reset' | '503' = false;
  let lastServerError: unknown;

  const server = http.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const origin = `http://127.0.0.1:${port}`;
  const internalUrl = `${origin}${issuerPath}`;
  const issuer = publicIssuer ? `${publicIssuer.origin}${issuerPath}` : internalUrl;
  const advertised = new URL(issuer);
  // issue*() talks to the IdP's own port: it must work before (and without) any proxy in front.
  const direct = (url: string) => (url.startsWith(issuer) ? internalUrl + url.slice(issuer.length) : url);
  const redirectUri = `${origin}/test-idp/callback`;
  const jwksUri = `${issuer}${ROUTES.jwks}`;
  const discoveryUrl = `${issuer}/.well-known/openid-configuration`;
  const authorizationEndpoint = `${issuer}${ROUTES.authorization}`;
  const tokenEndpoint = `${issuer}${ROUTES.token}`;
  const interactionPrefix = `${issuerPath}/interaction/`;

  function makeProfile(o: IssueOptions): CallProfile {
    const clientId = o.clientId ?? defaultClientId;
    const alg = o.alg ?? defaultAlg;
    if (!algs.includes(alg)) throw new Error(`test IdP: no key for alg ${alg} (configured: ${algs.join(', ')})`);
    const ttl = o.ttl ?? accessTokenTtl;
    if (!Number.isSafeInteger(ttl) || ttl <= 0) throw new Error('test IdP: ttl must be a positive integer');
    const ccDefaultName = o.grant === 'client_credentials' ? `service-account-${clientId}` : 'test-user';
    return {
      sub: o.sub ?? randomUUID(),
      subGiven: o.sub !== undefined,
      username: o.username ?? ccDefaultName,
      realmRoles: o.realmRoles ?? [],
      clientRoles: o.clientRoles,
      clientId,
      alg,
      ttl,
      scope: o.scope ?? DEFAULT_SCOPE,
      audience: o.audience ?? defaultAudience,
      email: o.email,
      name: o.name,
      extraClaims: o.extraClaims,
      style: o.style ?? 'rfc9068',
      timeShift: o.timeShift ?? 0,
    };
  }

  function profileForResource(indicator: string | undefined): CallProfile | undefined {
    if (!indicator?.startsWith(TOKEN_RESOURCE_PREFIX)) return undefined;
    return calls.get(indicator.slice(TOKEN_RESOURCE_PREFIX.length));
  }

  function profileForToken(token: OidcToken): CallProfile | undefined {
    const indicator: string | undefined = token?.resourceServer?.identifier?.();
    return (
      profileForResource(indicator) ??
      (typeof token?.grantId === 'string' ? grantProfiles.get(token.grantId) : undefined) ??
      defaultUserProfile
    );
  }

  function clientMetadata(clientId: string): Record<string, unknown> {
    const meta: Record<string, unknown> = {
      client_id: clientId,
      client_secret: clientSecret,
      grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
      response_types: ['code'],
      redirect_uris: [redirectUri],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: idTokenAlgByClient.get(clientId) ?? defaultAlg,
      ...opts.clients?.[clientId],
    };
    // issue*() acts as any client, so its own (never served) callback is always registered.
    meta.redirect_uris = [...new Set([redirectUri, ...asStringList(meta.redirect_uris)])];
    if (isPublic(clientId)) delete meta.client_secret;
    return meta;
  }

  const isPublic = (clientId: string) => opts.clients?.[clientId]?.token_endpoint_auth_method === 'none';

  const Adapter = makeAdapterClass(new Storage(), clientMetadata);

  function accountClaims(sub: string, p: CallProfile | undefined, use: string): Record<string, unknown> {
    const username = p?.username ?? sub;
    const name = p?.name ?? username;
    const [given, ...family] = name.split(' ');
    return {
      sub,
      // Keycloak marks its ID tokens with payload `typ: 'ID'` and names the client in `azp`.
      ...(use === 'id_token' ? { typ: 'ID', azp: p?.clientId } : {}),
      preferred_username: username,
      name,
      given_name: given,
      family_name: family.join(' ') || undefined,
      email: p?.email,
      email_verified: p?.email ? true : undefined,
    };
  }

  function buildConfiguration(): Record<string, unknown> {
    return {
      adapter: Adapter,
      jwks: { keys: published().map((k) => k.privateJwk) },
      cookies: { keys: cookieKeys },
      routes: ROUTES,
      claims: {
        openid: ['sub', 'typ', 'azp'], // typ/azp: only ever returned for ID tokens
        profile: ['preferred_username', 'name', 'given_name', 'family_name'],
        email: ['email', 'email_verified'],
      },
      scopes: ['openid', 'offline_access'],
      clientDefaults: { id_token_signed_response_alg: defaultAlg },
      conformIdTokenClaims: false, // profile claims in the ID token, as Keycloak does
      pkce: { required: () => true },
      features: {
        devInteractions: { enabled: false },
        clientCredentials: { enabled: true },
        // RFC 8628, for a person at a terminal: the CLI shows a code, the person signs in in a browser.
        deviceFlow: {
          enabled: true,
          successSource: async (ctx: OidcCtx) => {
            ctx.body = '<!doctype html><html><body><p>Signed in. You may go back to your terminal.</p></body></html>';
          },
        },
        // OpenID Connect Back-Channel Logout 1.0 (Keycloak supports it too): clients that register a
        // backchannel_logout_uri get a signed logout token when the user's IdP session ends.
        backchannelLogout: { enabled: true },
        revocation: { enabled: true },
        introspection: { enabled: false },
        rpInitiatedLogout: {
          enabled: true,
          logoutSource: async (ctx: OidcCtx, form: string) => {
            ctx.body = `<!doctype html><html><body>${form}<script>document.forms[0].submit()</script></body></html>`;
          },
          postLogoutSuccessSource: async (ctx: OidcCtx) => {
            ctx.body = '<!doctype html><html><body>signed out</body></html>';
          },
        },
        resourceIndicators: {
          enabled: true,
          defaultResource: async (_ctx: OidcCtx, _client: unknown, oneOf?: string[]) =>
            oneOf ? oneOf[0] : DEFAULT_RESOURCE,
          useGrantedResource: async () => true,
          getResourceServerInfo: async (_ctx: OidcCtx, indicator: string) => {
            const p = profileForResource(indicator);
            if (indicator.startsWith(TOKEN_RESOURCE_PREFIX) && !p) {
              throw new Error(`test IdP: unknown per-token resource ${indicator}`);
            }
            const audience = p
              ? p.audience
              : indicator === DEFAULT_RESOURCE
                ? (defaultUserProfile?.audience ?? defaultAudience)
                : indicator;
            return {
              scope: p?.scope ?? defaultUserProfile?.scope ?? DEFAULT_SCOPE,
              audience: Array.isArray(audience) ? audience[0] : audience,
              accessTokenTTL: p?.ttl ?? defaultUserProfile?.ttl ?? accessTokenTtl,
              accessTokenFormat: 'jwt',
              jwt: { sign: { alg: p?.alg ?? defaultUserProfile?.alg ?? defaultAlg } },
            };
          },
        },
      },
      interactions: {
        url: (_ctx: OidcCtx, interaction: { uid: string }) => `${interactionPrefix}${interaction.uid}`,
      },
      findAccount: async (ctx: OidcCtx, sub: string) => {
        const grantId: unknown = ctx?.oidc?.entities?.Grant?.jti;
        const p = (typeof grantId === 'string' ? grantProfiles.get(grantId) : undefined) ?? latestBySub.get(sub);
        return { accountId: sub, claims: async (use: string) => accountClaims(sub, p, use) };
      },
      extraTokenClaims: async (_ctx: OidcCtx, token: OidcToken) => {
        // A service account's own token (the token endpoint, not issue*()): its registered roles.
        const account = token.kind === 'ClientCredentials' && !profileForResource(token?.resourceServer?.identifier?.())
          ? opts.serviceAccounts?.[token.clientId as string] : undefined;
        if (account) {
          return { typ: 'Bearer', azp: token.clientId, preferred_username: `service-account-${token.clientId}`, realm_access: { roles: account.realmRoles } };
        }
        const p = profileForToken(token);
        const clientId: string = token.clientId ?? p?.clientId;
        const claims: Record<string, unknown> = {
          ...p?.extraClaims,
          typ: 'Bearer',
          azp: clientId,
          preferred_username: p?.username ?? (token.accountId as string | undefined) ?? `service-account-${clientId}`,
          realm_access: { roles: p?.realmRoles ?? [] },
        };
        if (p?.clientRoles) {
          claims.resource_access = Object.fromEntries(
            Object.entries(p.clientRoles).map(([client, roles]) => [client, { roles }]),
          );
        }
        if (p?.email) {
          claims.email = p.email;
          claims.email_verified = true;
        }
        if (p?.name) claims.name = p.name;
        if (token.kind === 'AccessToken' && typeof token.sessionUid === 'string') claims.sid = token.sessionUid;
        return claims;
      },
      formats: {
        customizers: {
          jwt: async (_ctx: OidcCtx, token: OidcToken, jwt: { header?: Record<string, unknown>; payload: Record<string, unknown> }) => {
            const p = profileForToken(token);
            if (!p) return;
            if (p.style === 'keycloak') {
              jwt.header = { ...jwt.header, typ: 'JWT' };
              if (token.kind === 'AccessToken') delete jwt.payload.client_id;
            }
            if (Array.isArray(p.audience)) jwt.payload.aud = p.audience;
            if (token.kind === 'ClientCredentials' && p.subGiven) jwt.payload.sub = p.sub;
            if (p.timeShift) {
              jwt.payload.iat = (jwt.payload.iat as number) + p.timeShift;
              jwt.payload.exp = (jwt.payload.exp as number) + p.timeShift;
            }
          },
        },
      },
      issueRefreshToken: async (_ctx: OidcCtx, client: { grantTypeAllowed(t: string): boolean }) =>
        client.grantTypeAllowed('refresh_token'), // Keycloak always issues one
      ttl: {
        DeviceCode: 600,
        AccessToken: (_ctx: OidcCtx, token: OidcToken) => token.resourceServer?.accessTokenTTL ?? accessTokenTtl,
        ClientCredentials: (_ctx: OidcCtx, token: OidcToken) => token.resourceServer?.accessTokenTTL ?? accessTokenTtl,
        AuthorizationCode: 60,
        IdToken: (ctx: OidcCtx) => {
          const grantId: unknown = ctx?.oidc?.entities?.Grant?.jti;
          const p = typeof grantId === 'string' ? grantProfiles.get(grantId) : undefined;
          return p?.ttl ?? accessTokenTtl;
        },
        RefreshToken: 30 * 60,
        Interaction: 10 * 60,
        Session: 60 * 60,
        Grant: 60 * 60,
      },
      clientBasedCORS: () => true,
      // oidc-provider refuses outgoing requests to loopback addresses (SSRF protection): its
      // back-channel logout calls must reach a gateway on 127.0.0.1 in tests and the demo.
      fetch: (url: string | URL, { dispatcher: _ssrf, ...options }: RequestInit & { dispatcher?: unknown }) => fetch(url, options),
      renderError: async (ctx: OidcCtx, out: Record<string, unknown>) => {
        ctx.type = 'text/plain';
        ctx.body = `test IdP error: ${JSON.stringify(out)}`;
      },
    };
  }

  function buildProvider(): { provider: Provider; handle: (req: http.IncomingMessage, res: http.ServerResponse) => unknown } {
    const provider = new Provider(issuer, buildConfiguration());
    // Endpoint URLs come from the request's host and protocol; the request handler sets them to the
    // public issuer's through X-Forwarded-*, which this makes the provider read.
    provider.proxy = true;
    provider.on('server_error', (_ctx: unknown, err: unknown) => {
      lastServerError = err;
    });
    provider.on('grant.success', (ctx: OidcCtx) => {
      if (ctx?.oidc?.params?.grant_type === 'refresh_token' && ctx.get(INTERNAL_HEADER) !== internalSecret) refreshGrants++;
    });
    provider.on('backchannel.error', (_ctx: unknown, err: unknown) => {
      lastServerError = err;
    });
    return { provider, handle: provider.callback() };
  }

  let mounted = buildProvider();

  async function handleInteraction(req: http.IncomingMessage, res: http.ServerResponse, uid: string): Promise<void> {
    const { provider } = mounted;
    const details: InteractionDetails = await provider.interactionDetails(req, res);
    // The interaction cookie (SameSite=Lax) names the uid: a form posted from elsewhere has neither.
    if (details.uid !== uid) {
      sendText(res, 400, 'test IdP: this login page belongs to another sign-in attempt; start again');
      return;
    }
    const requested = asStringList(details.params.resource);
    const resources = requested.length ? requested : [DEFAULT_RESOURCE];
    const scripted = resources.map(profileForResource).find((p) => p !== undefined);
    if (scripted) return finishInteraction(req, res, details, resources, scripted);
    if (users.size > 0) return loginForm(req, res, details, resources);
    if (defaultUserProfile) return finishInteraction(req, res, details, resources, defaultUserProfile);
    sendText(res, 400, 'test IdP: no login form; use issueTokens() or start the IdP with users or defaultUser');
  }

  async function finishInteraction(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    details: InteractionDetails,
    resources: string[],
    profile: CallProfile,
  ): Promise<void> {
    const { provider } = mounted;
    const params = details.params;
    const scope = typeof params.scope === 'string' ? params.scope : profile.scope;
    const grant = new provider.Grant({ accountId: profile.sub, clientId: String(params.client_id) });
    grant.addOIDCScope(scope);
    for (const resource of resources) grant.addResourceScope(resource, scope);
    const grantId = await grant.save();
    grantProfiles.set(grantId, profile);
    latestBySub.set(profile.sub, profile);
    await provider.interactionFinished(
      req,
      res,
      { login: { accountId: profile.sub }, consent: { grantId } },
      { mergeWithLastSubmission: false },
    );
  }

  /** GET: the form. POST: check the password; the user with their roles, or the form again with an error. */
  async function loginForm(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    details: InteractionDetails,
    resources: string[],
  ): Promise<void> {
    const clientId = String(details.params.client_id);
    const action = `${interactionPrefix}${details.uid}`;
    if (req.method !== 'POST') {
      sendHtml(res, 200, loginPage(action, clientId));
      return;
    }
    const form = await readForm(req);
    if (!form) {
      sendText(res, 413, 'test IdP: form too large');
      return;
    }
    const username = form.get('username') ?? '';
    const user = users.get(username);
    if (!user || !samePassword(form.get('password') ?? '', user.password)) {
      sendHtml(res, 200, loginPage(action, clientId, username, 'Invalid username or password.'));
      return;
    }
    const profile = makeProfile({ sub: user.sub, username, realmRoles: user.realmRoles, name: user.name, email: user.email, clientId });
    await finishInteraction(req, res, details, resources, profile);
  }

  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    const internal = req.headers[INTERNAL_HEADER] === internalSecret;
    const path = (req.url ?? '/').split('?')[0]!;
    if (!internal) {
      if (path === `${issuerPath}${ROUTES.jwks}`) jwksFetches++;
      if (path === `${issuerPath}/.well-known/openid-configuration`) discoveryFetches++;
      if (down === 'reset') {
        req.socket.destroy();
        return;
      }
      if (down === '503') {
        res.writeHead(503, { 'content-type': 'text/plain', connection: 'close' });
        res.end('test IdP is down');
        return;
      }
    }
    if (issuerPath && path !== issuerPath && !path.startsWith(`${issuerPath}/`)) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found');
      return;
    }
    // Whoever asks (a browser through the proxy, the gateway directly), the documents name the public issuer.
    req.headers['x-forwarded-host'] = advertised.host;
    req.headers['x-forwarded-proto'] = advertised.protocol.slice(0, -1);
    // Mount like express does: originalUrl keeps the prefix, url is relative to the mount point.
    const mountedReq = req as http.IncomingMessage & { originalUrl?: string };
    mountedReq.originalUrl = req.url;
    req.url = (req.url ?? '/').slice(issuerPath.length) || '/';
    if (path.startsWith(interactionPrefix)) {
      handleInteraction(req, res, path.slice(interactionPrefix.length)).catch((err: unknown) => {
        lastServerError = err;
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(`test IdP interaction failed: ${String(err)}`);
      });
      return;
    }
    void mounted.handle(req, res);
  });

  // --- HTTP client side (used by issue*(); bypasses setDown and the counters) ----------------

  async function internalFetch(url: string, init: RequestInit & { cookies?: Map<string, string> } = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    headers.set(INTERNAL_HEADER, internalSecret);
    if (init.cookies?.size) {
      headers.set('cookie', [...init.cookies].map(([k, v]) => `${k}=${v}`).join('; '));
    }
    const res = await fetch(direct(url), { ...init, headers, redirect: 'manual' });
    if (init.cookies) {
      for (const c of res.headers.getSetCookie()) {
        const [pair] = c.split(';');
        const eq = pair!.indexOf('=');
        const name = pair!.slice(0, eq).trim();
        const value = pair!.slice(eq + 1).trim();
        if (/expires=Thu, 01 Jan 1970/i.test(c) || value === '') init.cookies.delete(name);
        else init.cookies.set(name, value);
      }
    }
    return res;
  }

  async function tokenRequest(clientId: string, body: Record<string, string>): Promise<TokenSet> {
    const res = await internalFetch(tokenEndpoint, {
      method: 'POST',
      headers: {
        ...(isPublic(clientId) ? {} : { authorization: basicAuth(clientId, clientSecret) }),
        'content-type': 'application/x-www-form-urlencoded',
        accept: 'application/json',
      },
      body: new URLSearchParams(isPublic(clientId) ? { ...body, client_id: clientId } : body).toString(),
    });
    const text = await res.text();
    if (res.status !== 200) {
      throw new IdpRequestError(`test IdP token endpoint answered ${res.status}: ${text}${errorHint()}`);
    }
    return JSON.parse(text) as TokenSet;
  }

  function errorHint(): string {
    return lastServerError ? ` (last provider error: ${String((lastServerError as Error).stack ?? lastServerError)})` : '';
  }

  async function withClientLock<T>(clientId: string, fn: () => Promise<T>): Promise<T> {
    const prev = clientLocks.get(clientId) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const chained = prev.then(() => mine);
    clientLocks.set(clientId, chained);
    await prev;
    try {
      return await fn();
    } finally {
      release();
      if (clientLocks.get(clientId) === chained) clientLocks.delete(clientId);
    }
  }

  async function authorizationCodeFlow(p: CallProfile, resource: string): Promise<TokenSet> {
    const verifier = randomBytes(32).toString('base64url');
    const challenge = createHash('sha256').update(verifier).digest('base64url');
    const state = randomBytes(12).toString('base64url');
    const url = new URL(authorizationEndpoint);
    url.search = new URLSearchParams({
      client_id: p.clientId,
      response_type: 'code',
      redirect_uri: redirectUri,
      scope: p.scope,
      state,
      nonce: randomBytes(12).toString('base64url'),
      code_challenge: challenge,
      code_challenge_method: 'S256',
      resource,
    }).toString();

    const cookies = new Map<string, string>();
    let next = url.href;
    for (let hop = 0; hop < 6; hop++) {
      const res = await internalFetch(next, { cookies });
      await res.arrayBuffer();
      const location = res.headers.get('location');
      if (res.status < 300 || res.status >= 400 || !location) {
        throw new IdpRequestError(`test IdP: authorization flow stopped at ${next} with HTTP ${res.status}${errorHint()}`);
      }
      const target = new URL(location, next);
      if (target.href.startsWith(redirectUri)) {
        const error = target.searchParams.get('error');
        if (error) {
          throw new IdpRequestError(
            `test IdP: authorization error ${error}: ${target.searchParams.get('error_description') ?? ''}${errorHint()}`,
          );
        }
        if (target.searchParams.get('state') !== state) throw new IdpRequestError('test IdP: state mismatch');
        const code = target.searchParams.get('code');
        if (!code) throw new IdpRequestError(`test IdP: no code in ${target.href}`);
        return tokenRequest(p.clientId, {
          grant_type: 'authorization_code',
          code,
          redirect_uri: redirectUri,
          code_verifier: verifier,
          resource,
        });
      }
      next = target.href;
    }
    throw new IdpRequestError('test IdP: too many redirects in the authorization flow');
  }

  async function issueTokens(o: IssueOptions = {}): Promise<TokenSet> {
    const p = makeProfile(o);
    lastServerError = undefined;
    const nonce = randomBytes(16).toString('base64url');
    calls.set(nonce, p);
    const resource = `${TOKEN_RESOURCE_PREFIX}${nonce}`;
    if (o.grant === 'client_credentials') {
      const scope = p.scope
        .split(' ')
        .filter((s) => s && s !== 'openid' && s !== 'offline_access')
        .join(' ');
      return tokenRequest(p.clientId, { grant_type: 'client_credentials', resource, ...(scope ? { scope } : {}) });
    }
    return withClientLock(p.clientId, async () => {
      idTokenAlgByClient.set(p.clientId, p.alg);
      try {
        return await authorizationCodeFlow(p, resource);
      } finally {
        idTokenAlgByClient.delete(p.clientId);
      }
    });
  }

  async function rebuild(): Promise<void> {
    mounted = buildProvider();
  }

  const idp: TestIdp = {
    issuer,
    internalUrl,
    origin,
    port,
    jwksUri,
    discoveryUrl,
    authorizationEndpoint,
    tokenEndpoint,
    defaultAudience,
    defaultClientId,
    clientSecret,
    algs,
    redirectUri,

    issueTokens,
    async issueAccessToken(o = {}) {
      return (await issueTokens(o)).access_token;
    },
    async issueIdToken(o = {}) {
      if (o.grant === 'client_credentials') throw new Error('test IdP: no ID token with client_credentials');
      const set = await issueTokens({ ...o, scope: ensureScope(o.scope ?? DEFAULT_SCOPE, 'openid') });
      if (!set.id_token) throw new Error('test IdP: token response had no id_token');
      return set.id_token;
    },
    async issueRefreshToken(o = {}) {
      if (o.grant === 'client_credentials') throw new Error('test IdP: no refresh token with client_credentials');
      const set = await issueTokens(o);
      if (!set.refresh_token) throw new Error('test IdP: token response had no refresh_token');
      return set.refresh_token;
    },
    async refresh(refreshToken, o = {}) {
      return tokenRequest(o.clientId ?? defaultClientId, { grant_type: 'refresh_token', refresh_token: refreshToken });
    },

    async rotateKeys() {
      const fresh = await Promise.all(algs.map(makeKey));
      previous = [...current, ...previous];
      current = fresh;
      await rebuild();
    },
    async dropOldKeys() {
      previous = [];
      await rebuild();
    },
    currentKids() {
      return Object.fromEntries(current.map((k) => [k.alg, k.kid]));
    },
    jwksFetchCount: () => jwksFetches,
    discoveryFetchCount: () => discoveryFetches,
    refreshGrantCount: () => refreshGrants,
    resetCounters() {
      jwksFetches = 0;
      discoveryFetches = 0;
      refreshGrants = 0;
    },
    setDown(isDown, mode = 'reset') {
      // Checked per request, so requests on kept-alive sockets are refused (and counted) too.
      down = isDown ? mode : false;
    },
    privateJwks: () => ({ keys: published().map((k) => structuredClone(k.privateJwk)) }),
    publicJwks: () => ({ keys: published().map((k) => structuredClone(k.publicJwk)) }),
    async stop() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
  return idp;
}

function ensureScope(scope: string, needed: string): string {
  const parts = scope.split(' ').filter(Boolean);
  return parts.includes(needed) ? parts.join(' ') : [needed, ...parts].join(' ');
}
