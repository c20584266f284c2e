// The docker/ deployment, checked without a Docker engine: the compose file as docker compose
// resolves it (who publishes what, which secrets are required, that the services agree on URLs,
// users and passwords), the gateway's routes.yaml against the compose environment, the Keycloak
// realm (and its pacs-gateway client against the gateway's endpoints), the Dockerfile and its build
// context, the container probe and the PostgreSQL init script.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, chmodSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';
import { parseConfig } from '../../proxy/config/load.js';
import { BACKCHANNEL_LOGOUT_PATH } from '../../proxy/endpoints/gateway.js';
import { gatewayPackage, ohifDistDir } from '../../proxy/forward/static-site.js';

const ROOT = path.resolve('.');
const COMPOSE_FILE = 'docker/docker-compose.yml';
const ENV_EXAMPLE = 'docker/.env.example';
const read = (file: string) => readFileSync(path.join(ROOT, file), 'utf8');
const SECRETS = ['ORTHANC_PASSWORD', 'POSTGRES_PASSWORD', 'KEYCLOAK_DB_PASSWORD', 'ORTHANC_DB_PASSWORD', 'KEYCLOAK_ADMIN_PASSWORD',
  'OIDC_CLIENT_SECRET', 'SESSION_SECRET', 'SCRIPTS_CLIENT_SECRET'] as const;
// Stand-ins, distinct per variable so a mix-up between services shows (the session secret needs 32 bytes).
const STAND_INS: Record<string, string> = Object.fromEntries(SECRETS.map((s) => [s, `standin-${s.toLowerCase()}`.padEnd(40, '-x')]));

// ---- the Keycloak realm, shared by the compose checks and the realm's own ---------------------------

interface RealmClient {
  clientId: string; publicClient: boolean; clientAuthenticatorType?: string; secret?: string;
  standardFlowEnabled: boolean; implicitFlowEnabled: boolean; directAccessGrantsEnabled: boolean;
  serviceAccountsEnabled?: boolean; frontchannelLogout?: boolean; fullScopeAllowed?: boolean;
  defaultClientScopes?: string[]; redirectUris: string[]; webOrigins?: string[];
  attributes: Record<string, string>; protocolMappers: { protocolMapper: string; config: Record<string, string> }[];
}
const REALM_TEXT = read('docker/keycloak/realm-pacs.json');
const REALM = JSON.parse(REALM_TEXT) as { realm: string; clients: RealmClient[] };
/** The gateway's own confidential client (routes.yaml: identity.client; compose: OIDC_CLIENT_ID). */
const GATEWAY_CLIENT_ID = 'pacs-gateway';
// Keycloak's import placeholders: ${VAR} or ${VAR:default}, resolved from Keycloak's environment.
const resolvePlaceholders = (s: string, env: Record<string, string>) =>
  s.replace(/\$\{([A-Z_]+)(?::([^}]*))?\}/g, (_, name: string, dflt?: string) => env[name] ?? dflt ?? `\${${name}}`);

// ---- docker compose (v2 plugin or Debian's docker-compose 1.29) ----------------------------------

function findCompose(): string[] | undefined {
  if (spawnSync('docker', ['compose', 'version'], { stdio: 'ignore' }).status === 0) return ['docker', 'compose'];
  if (spawnSync('docker-compose', ['version'], { stdio: 'ignore' }).status === 0) return ['docker-compose'];
  return undefined;
}
const COMPOSE = findCompose();

/** `config` with the example env file and a clean environment (the caller's shell would override it). */
function composeConfig(env: Record<string, string>) {
  const [cmd, ...pre] = COMPOSE!;
  return spawnSync(cmd!, [...pre, '-f', COMPOSE_FILE, '--env-file', ENV_EXAMPLE, 'config'], {
    cwd: ROOT, encoding: 'utf8', env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
  });
}

interface Service {
  image?: string; build?: unknown; command?: string[]; ports?: unknown[]; expose?: unknown[];
  environment?: Record<string, string | null>; networks?: Record<string, unknown> | string[];
  depends_on?: Record<string, { condition?: string }>; healthcheck?: { test?: unknown; disable?: boolean };
  volumes?: unknown[]; network_mode?: string; user?: string; init?: boolean;
}
interface Resolved { services: Record<string, Service>; networks?: Record<string, { internal?: boolean } | null> }

/** A published port as { host, published, target } from compose's short ("127.0.0.1:9090:9090/tcp") or long form. */
function portOf(p: unknown): { host: string; published: string; target: number } {
  if (typeof p === 'string' || typeof p === 'number') {
    const parts = String(p).replace(/\/\w+$/, '').split(':');
    const target = Number(parts.pop());
    const published = parts.pop() ?? '';
    return { host: parts.join(':'), published, target };
  }
  const o = p as { host_ip?: string; published?: string | number; target: number };
  return { host: o.host_ip ?? '', published: String(o.published ?? ''), target: Number(o.target) };
}
const networksOf = (s: Service) => (Array.isArray(s.networks) ? s.networks : Object.keys(s.networks ?? {})).sort();
const envOf = (s: Service) => Object.fromEntries(Object.entries(s.environment ?? {}).map(([k, v]) => [k, v ?? ''])) as Record<string, string>;

const composeDescribe = COMPOSE ? describe : describe.skip;
if (!COMPOSE) {
  // eslint-disable-next-line no-console
  console.warn('docker-files.test: SKIPPING the docker compose checks: neither `docker compose` nor `docker-compose` is installed (apt-get install docker-compose)');
}

composeDescribe(`docker compose config (${COMPOSE?.join(' ') ?? 'not installed'})`, () => {
  let resolved: Resolved;
  let svc: Record<string, Service>;
  const realm = REALM;
  const gatewayClient = REALM.clients.find((c) => c.clientId === GATEWAY_CLIENT_ID)!;
  /** routes.yaml as the gateway container reads it. */
  const gatewayConfig = (s: Record<string, Service>) => parseConfig(read('routes.yaml'), 'routes.yaml', envOf(s.gateway!));
  const sharedNetworks = (a: Service, b: Service) => networksOf(a).filter((n) => networksOf(b).includes(n));

  beforeAll(() => {
    const r = composeConfig(STAND_INS);
    if (r.status !== 0) throw new Error(`compose config failed:\n${r.stderr}`);
    resolved = parse(r.stdout) as Resolved;
    svc = resolved.services;
  });

  test('the stack is the gateway, Keycloak, Orthanc, PostgreSQL and Redis', () => {
    expect(Object.keys(svc).sort()).toEqual(['gateway', 'keycloak', 'orthanc', 'postgres', 'redis']);
  });

  test('only the gateway publishes ports: 8080 publicly, the admin port on 127.0.0.1 only', () => {
    for (const [name, s] of Object.entries(svc)) {
      if (name === 'gateway') continue;
      expect({ name, ports: s.ports ?? [] }).toEqual({ name, ports: [] });
      expect(s.network_mode).toBeUndefined();
    }
    const ports = (svc.gateway!.ports ?? []).map(portOf).sort((a, b) => a.target - b.target);
    expect(ports).toEqual([
      { host: expect.stringMatching(/^(|0\.0\.0\.0)$/), published: '8080', target: 8080 },
      { host: '127.0.0.1', published: '9090', target: 9090 },
    ]);
  });

  test('Orthanc and the other back ends sit only on the internal network', () => {
    expect(resolved.networks?.backend?.internal).toBe(true);
    for (const name of ['orthanc', 'keycloak', 'postgres', 'redis']) expect({ name, nets: networksOf(svc[name]!) }).toEqual({ name, nets: ['backend'] });
    expect(networksOf(svc.gateway!)).toEqual(['backend', 'edge']);
    expect(resolved.networks?.edge?.internal ?? false).toBe(false);
  });

  test('every secret is required: config is refused, naming the variable, when one is missing', () => {
    for (const secret of SECRETS) {
      const env = { ...STAND_INS };
      delete env[secret];
      const r = composeConfig(env);
      expect(r.status).not.toBe(0);
      expect(r.stderr).toContain(`set ${secret} in docker/.env`);
    }
  });

  test('Orthanc requires authentication and knows exactly the gateway\'s user and password', () => {
    const gw = envOf(svc.gateway!);
    const orthanc = envOf(svc.orthanc!);
    expect(new URL(gw.ORTHANC_URL!).host).toBe('orthanc:8042');
    expect(gw.ORTHANC_PASSWORD).toBe(STAND_INS.ORTHANC_PASSWORD);
    expect(orthanc.ORTHANC__AUTHENTICATION_ENABLED).toBe('true');
    expect(orthanc.ORTHANC__REMOTE_ACCESS_ALLOWED).toBe('true'); // the gateway is a remote peer
    expect(JSON.parse(orthanc.ORTHANC__REGISTERED_USERS!)).toEqual({ [gw.ORTHANC_USER!]: gw.ORTHANC_PASSWORD });
    expect(orthanc.DICOM_WEB_PLUGIN_ENABLED).toBe('true');
  });

  test('each service reaches PostgreSQL with the password its database user was created with', () => {
    const pg = envOf(svc.postgres!);
    expect(envOf(svc.keycloak!).KC_DB_PASSWORD).toBe(pg.KEYCLOAK_DB_PASSWORD);
    expect(envOf(svc.keycloak!).KC_DB_PASSWORD).toBe(STAND_INS.KEYCLOAK_DB_PASSWORD);
    expect(envOf(svc.orthanc!).ORTHANC__POSTGRESQL__PASSWORD).toBe(pg.ORTHANC_DB_PASSWORD);
    expect(envOf(svc.orthanc!).ORTHANC__POSTGRESQL__PASSWORD).toBe(STAND_INS.ORTHANC_DB_PASSWORD);
    expect(pg.POSTGRES_PASSWORD).toBe(STAND_INS.POSTGRES_PASSWORD);
    expect(envOf(svc.keycloak!).KC_DB_URL).toBe('jdbc:postgresql://postgres:5432/keycloak');
    expect(envOf(svc.orthanc!).ORTHANC__POSTGRESQL__DATABASE).toBe('orthanc');
  });

  test('the gateway and Keycloak agree on the public issuer, the /auth prefix and OHIF\'s client', () => {
    const gw = envOf(svc.gateway!);
    const kc = envOf(svc.keycloak!);
    expect(gw.PUBLIC_URL).toBe('http://localhost:8080');
    expect(gw.OIDC_ISSUER).toBe(`${gw.PUBLIC_URL}/auth/realms/${realm.realm}`);
    expect(kc.KC_HOSTNAME).toBe(`${gw.PUBLIC_URL}/auth`);
    expect(kc.PUBLIC_URL).toBe(gw.PUBLIC_URL); // the realm import's redirect URIs
    expect(kc.KC_HTTP_RELATIVE_PATH).toBe('/auth');
    expect(kc.KC_PROXY_HEADERS).toBe('xforwarded');
    expect(kc.KC_HTTP_ENABLED).toBe('true');
    expect(new URL(gw.OIDC_UPSTREAM!).host).toBe('keycloak:8080');
    expect(gw.OIDC_INTERNAL_URL).toBe(`${gw.OIDC_UPSTREAM}/auth/realms/${realm.realm}`);
    expect(realm.clients.map((c) => c.clientId)).toContain(gw.OHIF_CLIENT_ID);
    expect(svc.keycloak!.command).toEqual(['start', '--import-realm']);
    expect(JSON.stringify(svc.keycloak!.volumes)).toContain('/opt/keycloak/data/import/realm-pacs.json');
  });

  test('PUBLIC_URL moves the issuer and Keycloak\'s hostname together', () => {
    const r = composeConfig({ ...STAND_INS, PUBLIC_URL: 'https://pacs.example.org' });
    expect(r.status).toBe(0);
    const s = (parse(r.stdout) as Resolved).services;
    expect(envOf(s.gateway!).OIDC_ISSUER).toBe('https://pacs.example.org/auth/realms/pacs');
    expect(envOf(s.keycloak!).KC_HOSTNAME).toBe('https://pacs.example.org/auth');
    expect(envOf(s.keycloak!).PUBLIC_URL).toBe('https://pacs.example.org');
  });

  test('start order: databases healthy first; every back end has a health check', () => {
    expect(svc.keycloak!.depends_on?.postgres?.condition).toBe('service_healthy');
    expect(svc.orthanc!.depends_on?.postgres?.condition).toBe('service_healthy');
    expect(svc.gateway!.depends_on?.orthanc?.condition).toBe('service_healthy');
    expect(svc.gateway!.depends_on?.keycloak).toBeDefined();
    for (const name of ['keycloak', 'orthanc', 'postgres', 'redis']) {
      expect({ name, test: Array.isArray(svc[name]!.healthcheck?.test) }).toEqual({ name, test: true });
    }
  });

  test('the gateway runs unprivileged, read-only, with an init process', () => {
    const gw = svc.gateway! as Service & { read_only?: boolean; cap_drop?: string[] };
    expect(gw.init).toBe(true);
    expect(gw.read_only).toBe(true);
    expect(gw.cap_drop).toEqual(['ALL']);
    expect(svc.orthanc!.user).toBe('999:999');
  });

  test('routes.yaml accepts the compose environment of the gateway (pacs-gateway --check)', () => {
    const main = path.join(ROOT, 'dist/proxy/main.js');
    expect(existsSync(main)).toBe(true); // built by scripts/setup.sh
    const r = spawnSync(process.execPath, [main, '--check', '--config', 'routes.yaml'], {
      cwd: ROOT, encoding: 'utf8', env: { PATH: process.env.PATH ?? '', ...envOf(svc.gateway!) },
    });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('listen 0.0.0.0:8080  public http://localhost:8080');
    expect(r.stdout).toContain('admin 0.0.0.0:9090');
    expect(r.stdout).toMatch(/\/pacs\s+→ http:\/\/orthanc:8042 \(prefix stripped\)/);
    expect(r.stdout).toMatch(/\/auth\s+→ http:\/\/keycloak:8080 /);
    expect(r.stdout).toContain('"store": "redis://redis:6379"');
    for (const secret of ['ORTHANC_PASSWORD', 'OIDC_CLIENT_SECRET', 'SESSION_SECRET']) expect(r.stdout).not.toContain(STAND_INS[secret]);
  });

  test('the gateway\'s own client: compose, routes.yaml and the realm agree on its id and secret', () => {
    const gw = envOf(svc.gateway!);
    const kc = envOf(svc.keycloak!);
    const config = gatewayConfig(svc);
    expect(gw.OIDC_CLIENT_ID).toBe(GATEWAY_CLIENT_ID);
    expect(config.identity?.client?.id).toBe(GATEWAY_CLIENT_ID);
    expect(gatewayClient).toBeDefined();
    expect(gatewayClient.publicClient).toBe(false);
    // The secret Keycloak imports into the client is exactly the one the gateway authenticates with.
    expect(gw.OIDC_CLIENT_SECRET).toBe(STAND_INS.OIDC_CLIENT_SECRET);
    expect(kc.OIDC_CLIENT_SECRET).toBe(gw.OIDC_CLIENT_SECRET);
    expect(resolvePlaceholders(gatewayClient.secret!, kc)).toBe(config.identity!.client!.secret);
    expect(config.session?.secret).toEqual([STAND_INS.SESSION_SECRET]);
    // Its tokens pass the gateway's checks: aud "pacs" (the client's audience mapper), roles from realm_access.
    expect(config.identity!.audience).toContain('pacs');
    expect(config.identity!.roleClaims).toContain('realm_access.roles');
  });

  test('Keycloak sends browsers back exactly to the gateway\'s callback and logged-out pages, for any PUBLIC_URL', () => {
    const moved = composeConfig({ ...STAND_INS, PUBLIC_URL: 'https://pacs.example.org' });
    expect(moved.status).toBe(0);
    for (const s of [svc, (parse(moved.stdout) as Resolved).services]) {
      const kc = envOf(s.keycloak!);
      const config = gatewayConfig(s);
      const { publicUrl } = config.server;
      expect(publicUrl).toBe(envOf(s.gateway!).PUBLIC_URL);
      expect({ publicUrl, redirect: gatewayClient.redirectUris.map((u) => resolvePlaceholders(u, kc)) })
        .toEqual({ publicUrl, redirect: [`${publicUrl}${config.identity!.client!.redirectPath}`] });
      expect({ publicUrl, logout: resolvePlaceholders(gatewayClient.attributes['post.logout.redirect.uris']!, kc) })
        .toEqual({ publicUrl, logout: `${publicUrl}${config.identity!.client!.postLogoutPath}` });
    }
    expect(gatewayConfig(svc).identity!.client!.redirectPath).toBe('/_gateway/callback');
  });

  test('Keycloak reaches the gateway\'s back-channel logout on the compose network, with the sid required', () => {
    const url = new URL(gatewayClient.attributes['backchannel.logout.url']!);
    const listen = gatewayConfig(svc).server.listen;
    expect(url.protocol).toBe('http:');                        // inside the network, no TLS
    expect(url.hostname).toBe('gateway');                      // the compose service
    expect(svc[url.hostname]).toBeDefined();
    expect(Number(url.port || 80)).toBe(listen.port);          // the gateway's listener, not the host port
    expect(listen.host).toBe('0.0.0.0');
    expect(url.pathname).toBe(BACKCHANNEL_LOGOUT_PATH);
    expect(url.search + url.hash + url.username).toBe('');
    expect(sharedNetworks(svc.keycloak!, svc.gateway!)).toEqual(['backend']);
    expect(gatewayClient.attributes['backchannel.logout.session.required']).toBe('true');
    expect(gatewayClient.frontchannelLogout).toBe(false);
  });

  test('login sessions live in the compose Redis, which the gateway waits for', () => {
    const gw = envOf(svc.gateway!);
    expect(gatewayConfig(svc).store).toBe(gw.STORE_URL);
    const url = new URL(gw.STORE_URL!);
    expect(url.protocol).toBe('redis:');
    expect(url.hostname).toBe('redis');
    expect(svc[url.hostname]!.image).toMatch(/^redis:/);
    expect(Number(url.port || 6379)).toBe(6379);
    expect(svc.redis!.command?.join(' ')).not.toMatch(/--port\b/); // Redis listens on its default port
    expect(sharedNetworks(svc.redis!, svc.gateway!)).toEqual(['backend']);
    expect(svc.gateway!.depends_on?.redis?.condition).toBe('service_healthy');
  });
});

// ---- files as written -----------------------------------------------------------------------------

describe('docker-compose.yml and .env.example as written', () => {
  // Without comment lines (they may quote the ${VAR:?…} syntax itself).
  const compose = read(COMPOSE_FILE).split('\n').filter((l) => !/^\s*#/.test(l)).join('\n');
  const example = read(ENV_EXAMPLE);

  test('secrets are read only as ${VAR:?message} and left empty in the example', () => {
    for (const secret of SECRETS) {
      const uses = [...compose.matchAll(new RegExp(`\\$\\{${secret}([^}]*)\\}`, 'g'))];
      expect({ secret, used: uses.length > 0 }).toEqual({ secret, used: true });
      for (const u of uses) expect({ secret, form: u[1]!.slice(0, 2) }).toEqual({ secret, form: ':?' });
      expect(example).toMatch(new RegExp(`^${secret}=$`, 'm'));
    }
  });

  test('no literal password in the compose file', () => {
    for (const m of compose.matchAll(/^\s*([A-Z_]*PASSWORD[A-Z_]*):\s*(.*)$/gm)) {
      expect({ key: m[1], value: m[2] }).toEqual({ key: m[1], value: expect.stringMatching(/^\$\{[A-Z_]+:\?/) });
    }
  });

  test('every variable the compose file reads is listed in .env.example', () => {
    const used = new Set([...compose.matchAll(/\$\{([A-Z_][A-Z0-9_]*)/g)].map((m) => m[1]!));
    const listed = new Set([...example.matchAll(/^([A-Z_][A-Z0-9_]*)=/gm)].map((m) => m[1]!));
    expect([...used].filter((v) => !listed.has(v))).toEqual([]);
    expect(listed.has('PUBLIC_URL')).toBe(true);
    expect(example).toMatch(/^PUBLIC_URL=http:\/\/localhost:8080$/m);
  });

  test('the repository root .env.example lists every variable routes.yaml reads', () => {
    const routes = read('routes.yaml').split('\n').filter((l) => !/^\s*#/.test(l)).join('\n');
    const used = new Set([...routes.matchAll(/\$\{([A-Z_][A-Z0-9_]*)/g)].map((m) => m[1]!));
    const listed = new Set([...read('.env.example').matchAll(/^([A-Z_][A-Z0-9_]*)=/gm)].map((m) => m[1]!));
    expect([...used].filter((v) => !listed.has(v))).toEqual([]);
    for (const v of ['OIDC_CLIENT_ID', 'OIDC_CLIENT_SECRET', 'SESSION_SECRET', 'STORE_URL']) expect(used.has(v)).toBe(true);
  });

  test('both .env.example files read the same in compose --env-file, systemd EnvironmentFile and a shell: comments on their own lines, no quotes, no placeholder secrets', () => {
    for (const file of ['.env.example', 'docker/.env.example']) {
      const lines = read(file).split('\n').filter((l) => l.trim() !== '' && !l.startsWith('#'));
      const bad = lines.filter((l) => !/^[A-Z_][A-Z0-9_]*=[^\s#'"]*$/.test(l));
      expect({ file, bad }).toEqual({ file, bad: [] });
      // The shell reads the values as systemd and compose do: each exactly as written after "=".
      const sourced = spawnSync('bash', ['-c', `set -a; . ./${file}; set +a; env`], { cwd: ROOT, encoding: 'utf8', env: {} });
      for (const l of lines) {
        const [name, value] = [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)];
        expect({ file, name, value: new RegExp(`^${name}=(.*)$`, 'm').exec(sourced.stdout)?.[1] }).toEqual({ file, name, value });
      }
      const secrets = lines.filter((l) => /(PASSWORD|SECRET)=/.test(l));
      expect({ file, placeholders: secrets.filter((l) => !/=$/.test(l)) }).toEqual({ file, placeholders: [] });
    }
  });

  test('one realm name everywhere: pacs', () => {
    for (const file of ['.env.example', 'README.md', 'routes.yaml', 'docker/docker-compose.yml', 'scripts/demo.ts']) {
      const realms = [...read(file).matchAll(/\/realms\/([a-z0-9_-]+)/g)].map((m) => m[1]);
      expect({ file, others: realms.filter((r) => r !== 'pacs') }).toEqual({ file, others: [] });
    }
  });

  test('docker/.env (real secrets) is git-ignored and kept out of the build context', () => {
    const check = spawnSync('git', ['check-ignore', '-q', 'docker/.env'], { cwd: ROOT });
    expect(check.status).toBe(0);
    expect(dockerIgnored('docker/.env')).toBe(true);
  });
});

describe('Keycloak realm (docker/keycloak/realm-pacs.json)', () => {
  interface User { username: string; realmRoles: string[]; credentials?: { type: string; temporary: boolean }[] }
  const text = REALM_TEXT;
  const realm = REALM as typeof REALM & { accessTokenLifespan: number; roles: { realm: { name: string }[] }; users: User[] };
  const ohif = realm.clients.find((c) => c.clientId === 'ohif-viewer')!;
  const gateway = realm.clients.find((c) => c.clientId === GATEWAY_CLIENT_ID)!;
  const resolve = resolvePlaceholders;

  test('realm "pacs" with the roles the routes use, 5-minute access tokens', () => {
    expect(realm.realm).toBe('pacs');
    expect(realm.roles.realm.map((r) => r.name).sort()).toEqual(['admin', 'external', 'uploader', 'viewer']);
    expect(realm.accessTokenLifespan).toBe(300);
  });

  test('ohif-viewer: public client, code flow only, PKCE S256 required', () => {
    expect(ohif).toBeDefined();
    expect(ohif.publicClient).toBe(true);
    expect(ohif.standardFlowEnabled).toBe(true);
    expect(ohif.implicitFlowEnabled).toBe(false);
    expect(ohif.directAccessGrantsEnabled).toBe(false);
    expect(ohif.attributes['pkce.code.challenge.method']).toBe('S256');
    expect(ohif.webOrigins).toEqual(['+']);
  });

  test('redirect and logout URIs follow PUBLIC_URL, with http://localhost:8080 as the default', () => {
    const uris = (env: Record<string, string>) => ({
      redirect: ohif.redirectUris.map((u) => resolve(u, env)).sort(),
      logout: resolve(ohif.attributes['post.logout.redirect.uris']!, env),
    });
    expect(uris({})).toEqual({ redirect: ['http://localhost:8080/callback', 'http://localhost:8080/silent-refresh.html'], logout: 'http://localhost:8080/' }); // exact, no wildcard
    expect(uris({ PUBLIC_URL: 'https://pacs.example.org' }).redirect).toEqual(['https://pacs.example.org/callback', 'https://pacs.example.org/silent-refresh.html']);
    // No placeholder other than PUBLIC_URL and the gateway client's secret (each is resolved from
    // Keycloak's environment, which compose must then set).
    expect([...text.matchAll(/\$\{([^}:]+)/g)].map((m) => m[1]).filter((n) => n !== 'PUBLIC_URL')).toEqual(['OIDC_CLIENT_SECRET', 'SCRIPTS_CLIENT_SECRET']);
  });

  test('pacs-gateway: confidential client, code flow only, PKCE S256', () => {
    expect(gateway).toBeDefined();
    expect(gateway.publicClient).toBe(false);
    expect(gateway.clientAuthenticatorType).toBe('client-secret');
    expect(gateway.standardFlowEnabled).toBe(true);
    expect(gateway.implicitFlowEnabled).toBe(false);
    expect(gateway.directAccessGrantsEnabled).toBe(false);
    expect(gateway.serviceAccountsEnabled).toBe(false);
    expect(gateway.attributes['pkce.code.challenge.method']).toBe('S256');
    expect(gateway.webOrigins ?? []).toEqual([]); // the code exchange is server-side: no CORS
  });

  test('no literal client secret: every confidential client takes its secret from the environment', () => {
    expect(gateway.secret).toBe('${OIDC_CLIENT_SECRET}');
    for (const c of realm.clients) {
      if (c.publicClient) expect({ client: c.clientId, secret: c.secret }).toEqual({ client: c.clientId, secret: undefined });
      else expect({ client: c.clientId, secret: c.secret }).toEqual({ client: c.clientId, secret: expect.stringMatching(/^\$\{[A-Z_]+\}$/) });
    }
    expect([...text.matchAll(/"secret"\s*:\s*"([^"]*)"/g)].map((m) => m[1])).toEqual(['${OIDC_CLIENT_SECRET}', '${SCRIPTS_CLIENT_SECRET}']);
  });

  test('pacs-gateway: one exact redirect URI and one exact logout URI, no wildcard; back-channel logout only', () => {
    expect(gateway.redirectUris.map((u) => resolve(u, {}))).toEqual(['http://localhost:8080/_gateway/callback']);
    expect(resolve(gateway.attributes['post.logout.redirect.uris']!, {})).toBe('http://localhost:8080/_gateway/logged-out');
    expect(gateway.redirectUris.map((u) => resolve(u, { PUBLIC_URL: 'https://pacs.example.org' }))).toEqual(['https://pacs.example.org/_gateway/callback']);
    for (const uri of [...gateway.redirectUris, gateway.attributes['post.logout.redirect.uris']!]) {
      expect({ uri, wildcard: uri.includes('*'), list: uri.includes('##') }).toEqual({ uri, wildcard: false, list: false });
    }
    expect(gateway.attributes['backchannel.logout.url']).toBe(`http://gateway:8080${BACKCHANNEL_LOGOUT_PATH}`);
    expect(gateway.attributes['backchannel.logout.session.required']).toBe('true'); // sid in ID and logout tokens
    expect(gateway.frontchannelLogout).toBe(false);
  });

  test('pacs-gateway: access tokens carry aud "pacs" and the realm roles, exactly as ohif-viewer\'s do', () => {
    const audience = (c: RealmClient) => c.protocolMappers.filter((m) => m.protocolMapper === 'oidc-audience-mapper');
    expect(audience(gateway)).toEqual(audience(ohif));
    expect(audience(gateway)[0]?.config['id.token.claim']).toBe('false'); // ID tokens stay addressed to the client
    // Realm roles (realm_access.roles) come from the realm's default "roles" scope, with the full scope.
    expect(gateway.fullScopeAllowed).toBe(true);
    expect(gateway.fullScopeAllowed).toBe(ohif.fullScopeAllowed);
    expect(gateway.defaultClientScopes).toEqual(ohif.defaultClientScopes);
  });

  test('access tokens carry aud "pacs" (audience mapper), which the gateway accepts', () => {
    const mapper = ohif.protocolMappers.find((m) => m.protocolMapper === 'oidc-audience-mapper');
    expect(mapper?.config['included.custom.audience']).toBe('pacs');
    expect(mapper?.config['access.token.claim']).toBe('true');
    expect(read('routes.yaml')).toMatch(/audience:\s*\n\s*- pacs\b/);
  });

  test('demo users: alice views, bob views and uploads, admin has all three; passwords are temporary', () => {
    const roles = Object.fromEntries(realm.users.map((u) => [u.username, [...u.realmRoles].sort()]));
    expect(roles).toEqual({
      'service-account-pacs-scripts': ['uploader', 'viewer'], alice: ['viewer'], bob: ['uploader', 'viewer'], erin: ['external'], admin: ['admin', 'uploader', 'viewer'],
    });
    // People sign in with temporary passwords; the scripts' service account has none (its client's secret).
    for (const u of realm.users) for (const c of u.credentials ?? []) expect({ user: u.username, temporary: c.temporary }).toEqual({ user: u.username, temporary: true });
    expect(realm.users.find((u) => u.username === 'service-account-pacs-scripts')?.credentials).toBeUndefined();
  });
});

// ---- Dockerfile and build context -----------------------------------------------------------------

/** Whether .dockerignore keeps `file` out of the build context (Docker's rules: last match wins, `!` re-includes, a matching parent excludes its children). */
function dockerIgnored(file: string): boolean {
  const rules = read('.dockerignore').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const negate = l.startsWith('!');
      const pattern = (negate ? l.slice(1) : l).replace(/^\/+|\/+$/g, '');
      const re = new RegExp(`^${pattern.split('**').map((part) => part.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]'))
        .join('.*').replace(/\.\*\//g, '(?:.*/)?')}$`);
      return { negate, re };
    });
  const parts = file.split('/');
  let ignored = false;
  for (const { negate, re } of rules) {
    // A rule matches the file or any of its parent folders.
    if (parts.some((_, i) => re.test(parts.slice(0, i + 1).join('/')))) ignored = !negate;
  }
  return ignored;
}

describe('the README\'s Keycloak recipe and the realm export agree', () => {
  const readme = read('README.md');
  const between = (name: string) => {
    const m = new RegExp(`<!-- keycloak-recipe:${name} -->([\\s\\S]*?)<!-- /keycloak-recipe:${name} -->`).exec(readme);
    if (!m) throw new Error(`README has no keycloak-recipe:${name} block`);
    return m[1]!;
  };
  const realm = REALM as typeof REALM & { roles: { realm: { name: string }[] } };
  const codes = (cell: string) => [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);
  const uri = (u: string) => u.replace('${PUBLIC_URL:http://localhost:8080}', '<PUBLIC_URL>');

  test('the same clients, kinds, redirect and post-logout URIs (no wildcard), audience mappers', () => {
    const rows = between('clients').split('\n').filter((l) => l.startsWith('| `'));
    const described = rows.map((r) => {
      const cells = r.split('|').slice(1, -1).map((c) => c.trim());
      return { id: codes(cells[0]!)[0], public: cells[1] === 'public', redirects: codes(cells[3]!).sort(), logout: codes(cells[4]!), audience: codes(cells[5]!) };
    });
    const exported = realm.clients.map((c) => ({
      id: c.clientId, public: c.publicClient === true, redirects: c.redirectUris.map(uri).sort(),
      logout: c.attributes['post.logout.redirect.uris'] ? [uri(c.attributes['post.logout.redirect.uris'])] : [],
      audience: (c.protocolMappers ?? []).filter((m) => m.protocolMapper === 'oidc-audience-mapper').map((m) => m.config['included.custom.audience']!),
    }));
    expect(described).toEqual(exported);
    for (const c of exported) for (const u of [...c.redirects, ...c.logout]) expect(u).not.toContain('*');
    const routes = read('routes.yaml');
    for (const c of exported) for (const a of c.audience) expect(routes).toMatch(new RegExp(`audience:[\\s\\S]*- ${a}\\b`));
  });

  test('the same realm roles, each a key of the shipped permissions table', () => {
    const roles = codes(between('roles')).sort();
    expect(roles).toEqual(realm.roles.realm.map((r) => r.name).sort());
    const table = /\npermissions:\n((?:  .*\n|\s*\n)+)/.exec(read('routes.yaml'))![1]!;
    const keys = [...table.matchAll(/^  ([a-z][\w-]*):/gm)].map((m) => m[1]);
    for (const r of roles) expect(keys).toContain(r);
  });
});

describe('docker/validate.sh, the check the README names', () => {
  test('passes on the files as shipped (the suite and the script cannot drift apart)', () => {
    const r = spawnSync('bash', ['docker/validate.sh'], { cwd: ROOT, encoding: 'utf8' });
    expect({ status: r.status, failures: `${r.stdout}${r.stderr}`.split('\n').filter((l) => l.includes('FAIL')) }).toEqual({ status: 0, failures: [] });
    expect(r.stdout).toContain('validate: docker/ OK');
  });
});

describe('Dockerfile', () => {
  const dockerfile = read('docker/Dockerfile');
  const lines = dockerfile.split('\n');
  const instructions = (name: string) => lines.filter((l) => l.startsWith(`${name} `)).map((l) => l.slice(name.length + 1).trim());

  test('every stage is Node 24 (bookworm-slim)', () => {
    const arg = /^ARG NODE_IMAGE=(\S+)$/m.exec(dockerfile)?.[1];
    expect(arg).toBe('node:24-bookworm-slim');
    const froms = instructions('FROM');
    expect(froms.length).toBe(2);
    for (const f of froms) expect(f.split(' ')[0]).toMatch(/^(\$\{NODE_IMAGE\}|node:24[.-])/);
  });

  test('the runtime stage runs as a non-root user', () => {
    const runtime = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
    const users = runtime.split('\n').filter((l) => l.startsWith('USER ')).map((l) => l.slice(5).trim());
    expect(users.length).toBeGreaterThan(0);
    expect(users.at(-1)).not.toMatch(/^(root|0)(:|$)/);
  });

  test('build steps, runtime defaults, probe and entrypoint', () => {
    expect(instructions('RUN').join('\n')).toMatch(/npm ci[\s\S]*node scripts\/fetch-ohif\.mjs[\s\S]*npm run build && npm prune --omit=dev/);
    expect(dockerfile).toMatch(/ENV NODE_ENV=production \\\n\s+GATEWAY_LISTEN=0\.0\.0\.0:8080 \\\n\s+GATEWAY_ADMIN_LISTEN=0\.0\.0\.0:9090/);
    expect(instructions('EXPOSE')).toEqual(['8080']);
    expect(dockerfile).toMatch(/^HEALTHCHECK [^\n]*\\\n\s+CMD \["node", "docker\/healthcheck\.mjs"\]$/m);
    expect(instructions('ENTRYPOINT')).toEqual(['["node", "--max-semi-space-size=64", "dist/proxy/main.js"]']);
    expect(instructions('CMD')).toEqual(['["--config", "routes.yaml"]']);
  });

  test('OHIF is copied to where the gateway looks for it: <package root>/.cache/ohif/<version>/dist', () => {
    const config = parseConfig(`routes:
  - { name: dicomweb, path: /pacs, upstream: http://orthanc:8042, auth: public }
  - { name: viewer, path: /, static: ohif, auth: public }
`, 'routes.yaml', {});
    const { root, pkg } = gatewayPackage();
    const rel = path.relative(root, ohifDistDir(config.routes[1]!, config)).split(path.sep).join('/');
    expect(rel).toBe(`.cache/ohif/${pkg.ohif!.version}/dist`);
    expect(instructions('COPY')).toContain('--from=build /app/.cache/ohif/ .cache/ohif/');
    expect(instructions('COPY')).toContain('--from=build /app/package.json ./'); // the gateway finds its root by it
  });

  test('every file copied from the build context exists and is not excluded by .dockerignore', () => {
    const sources = instructions('COPY').filter((c) => !c.startsWith('--from')).flatMap((c) => c.split(/\s+/).slice(0, -1));
    expect(sources.length).toBeGreaterThan(4);
    for (const src of sources) {
      const rel = src.replace(/\/$/, '');
      expect({ src, exists: existsSync(path.join(ROOT, rel)) }).toEqual({ src, exists: true });
      expect({ src, ignored: dockerIgnored(rel) }).toEqual({ src, ignored: false });
    }
  });

  test('.dockerignore keeps dependencies, outputs, caches, git and secrets out', () => {
    for (const f of ['node_modules/x/index.js', 'dist/proxy/main.js', '.cache/ohif/3/dist/index.html', '.git/HEAD', '.env', 'docker/.env',
      'coverage/lcov.info', 'test-results/a.json', 'docker/docker-compose.yml', 'proxy/server.js']) {
      expect({ f, ignored: dockerIgnored(f) }).toEqual({ f, ignored: true });
    }
    expect(dockerIgnored('proxy/server.ts')).toBe(false);
  });
});

describe('container probe (docker/healthcheck.mjs)', () => {
  const probe = (env: Record<string, string>) => new Promise<number | null>((resolve) => {
    const child = spawn(process.execPath, [path.join(ROOT, 'docker/healthcheck.mjs')], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: 'ignore' });
    child.on('exit', (code) => resolve(code));
  });
  const serve = (status: number) => new Promise<http.Server>((resolve) => {
    const server = http.createServer((req, res) => { res.statusCode = req.url === '/healthz' ? status : 404; res.end(); });
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
  const portOfServer = (s: http.Server) => (s.address() as AddressInfo).port;

  test('exit 0 when /healthz answers 200 on the GATEWAY_LISTEN port, 1 otherwise', async () => {
    const up = await serve(200);
    const failing = await serve(503);
    const closed = portOfServer(up);
    try {
      expect(await probe({ GATEWAY_LISTEN: `0.0.0.0:${portOfServer(up)}` })).toBe(0);
      expect(await probe({ GATEWAY_LISTEN: `0.0.0.0:${portOfServer(failing)}` })).toBe(1);
    } finally {
      up.close();
      failing.close();
    }
    expect(await probe({ GATEWAY_LISTEN: `127.0.0.1:${closed}` })).toBe(1); // nothing listening any more
  });
});

// ---- PostgreSQL init script, against a real server when this machine has one ------------------------

function findPgBin(): string | undefined {
  const onPath = spawnSync('sh', ['-c', 'command -v initdb'], { encoding: 'utf8' }).stdout.trim();
  if (onPath) return path.dirname(onPath);
  const base = '/usr/lib/postgresql';
  if (!existsSync(base)) return undefined;
  const versions = readdirSync(base).filter((v) => existsSync(path.join(base, v, 'bin/initdb'))).sort((a, b) => Number(b) - Number(a));
  return versions[0] ? path.join(base, versions[0], 'bin') : undefined;
}
const PG_BIN = findPgBin();
const pgDescribe = PG_BIN ? describe : describe.skip;
if (!PG_BIN) {
  // eslint-disable-next-line no-console
  console.warn('docker-files.test: SKIPPING the init-databases.sh check: no PostgreSQL server binaries (apt-get install postgresql)');
}

pgDescribe('docker/postgres/init-databases.sh on a real PostgreSQL', () => {
  // initdb refuses root: as root, run the server and the script as the "postgres" (or "nobody") user.
  const asUser = process.getuid?.() === 0
    ? (spawnSync('id', ['postgres']).status === 0 ? 'postgres' : 'nobody')
    : undefined;
  const dir = mkdtempSync(path.join(tmpdir(), 'pgw-pg-'));
  chmodSync(dir, 0o777);
  const data = path.join(dir, 'data');
  const run = (cmd: string, args: string[], env: Record<string, string> = {}) => {
    const full = asUser ? ['runuser', ['-u', asUser, '--', 'env', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), cmd, ...args]] as const
      : [cmd, args] as const;
    return spawnSync(full[0], [...full[1]], { encoding: 'utf8', env: { ...process.env, ...env }, cwd: dir });
  };
  const psql = (user: string, db: string, sql: string) => run('psql', ['-h', dir, '-U', user, '-d', db, '-qtAc', sql], { PGCONNECT_TIMEOUT: '5' });
  let started = false;

  beforeAll(() => {
    const init = run(path.join(PG_BIN!, 'initdb'), ['-D', data, '-U', 'postgres', '--auth=trust']);
    if (init.status !== 0) throw new Error(`initdb: ${init.stderr}`);
    const start = run(path.join(PG_BIN!, 'pg_ctl'), ['-D', data, '-w', '-l', path.join(dir, 'log'), '-o', `-k ${dir} -c listen_addresses=''`, 'start']);
    if (start.status !== 0) throw new Error(`pg_ctl start: ${start.stderr}`);
    started = true;
  });
  afterAll(() => {
    if (started) run(path.join(PG_BIN!, 'pg_ctl'), ['-D', data, '-m', 'fast', 'stop']);
    rmSync(dir, { recursive: true, force: true });
  });

  test('creates one database per service, owned by its own user, closed to the other', () => {
    const r = run('bash', [path.join(ROOT, 'docker/postgres/init-databases.sh')], {
      PGHOST: dir, POSTGRES_USER: 'postgres',
      KEYCLOAK_DB_PASSWORD: "kc'pw; DROP DATABASE postgres; --", ORTHANC_DB_PASSWORD: 'orthanc-pw',
    });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    // The owners can create tables in their own database's public schema (PostgreSQL 15+ rule).
    expect(psql('keycloak', 'keycloak', 'CREATE TABLE t (x int); SELECT current_user').stdout.trim()).toBe('keycloak');
    expect(psql('orthanc', 'orthanc', 'CREATE TABLE t (x int); SELECT current_user').stdout.trim()).toBe('orthanc');
    // Neither may even connect to the other's database.
    expect(psql('keycloak', 'orthanc', 'SELECT 1').stderr).toMatch(/CONNECT privilege/);
    expect(psql('orthanc', 'keycloak', 'SELECT 1').stderr).toMatch(/CONNECT privilege/);
    // The password with quotes and a semicolon was stored as a value, not run as SQL.
    expect(psql('postgres', 'postgres', "SELECT count(*) FROM pg_database WHERE datname = 'postgres'").stdout.trim()).toBe('1');
    expect(psql('postgres', 'postgres', "SELECT rolname FROM pg_authid WHERE rolname IN ('keycloak', 'orthanc') AND rolpassword IS NOT NULL ORDER BY 1").stdout.trim()).toBe('keycloak\northanc');
  });
});
