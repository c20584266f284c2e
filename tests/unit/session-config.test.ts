// routes.yaml for login sessions: what the schema demands of identity.client, session and store,
// and which routes may use the session authenticator.
import { ConfigError, parseConfig, redactConfig } from '../../proxy/config/load.js';
import { safeReturnPath } from '../../proxy/endpoints/return-path.js';

const SECRET = 's'.repeat(32);

function yaml(o: { client?: string; session?: string; store?: string; routes: string }): string {
  return `
identity:
  issuer: https://idp.example.org/realms/pacs
  audience: [pacs]
${o.client ?? "  client: { id: pacs-gateway, secret: 'client-secret' }"}
${o.session ?? `session: { secret: '${SECRET}' }`}
${o.store ? `store: ${o.store}` : ''}
routes:
${o.routes}`;
}

const ADMIN = `  - { name: admin, path: /pacs-admin, upstream: http://127.0.0.1:8042, expose: upstream, auth: [session], allow: [admin] }`;

function problemsOf(text: string): string[] {
  try {
    parseConfig(text, 'routes.yaml', {});
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return [...(e as ConfigError).problems];
  }
  throw new Error('expected the configuration to be refused');
}

test('a session route with client and secret is accepted; defaults and the client id as an audience', () => {
  const c = parseConfig(yaml({ routes: ADMIN }), 'routes.yaml', {});
  expect(c.session).toMatchObject({ secret: [SECRET], cookieName: 'pgw_session', idleTimeout: 30 * 60_000, absoluteTimeout: 10 * 3_600_000, refreshBefore: 30_000 });
  expect(c.identity?.client).toMatchObject({ id: 'pacs-gateway', redirectPath: '/_gateway/callback', postLogoutPath: '/_gateway/logged-out', scopes: ['openid', 'profile', 'email'] });
  expect(c.identity?.audience).toEqual(['pacs', 'pacs-gateway']);
  expect(c.store).toBe('memory');
  expect(c.routes[0]?.auth).toEqual(['session']);
});

test('a session secret shorter than 32 bytes is refused at its key, saying how to make one', () => {
  const problems = problemsOf(yaml({ session: "session: { secret: 'short-secret' }", routes: ADMIN }));
  expect(problems.join('\n')).toMatch(/routes\.yaml:\d+:\d+: session\.secret(\[0\])?: expected a secret of at least 32 bytes \(generate one: openssl rand -base64 32\)/);
  // 32 bytes counted as bytes, not characters: 11 three-byte characters are 33 bytes.
  expect(() => parseConfig(yaml({ session: "session: { secret: 'ééééééééééééééééé' }", routes: ADMIN }), 'r.yaml', {})).not.toThrow();
});

test('auth: [session] needs identity.client and a session section', () => {
  expect(problemsOf(yaml({ client: '', routes: ADMIN })).join('\n')).toMatch(/identity\.client: route admin logs browsers in \(auth: session\): expected identity\.client/);
  expect(problemsOf(yaml({ session: '', routes: ADMIN })).join('\n')).toMatch(/session: route admin uses auth: session: expected a session section/);
});

test('the viewer may sit behind a login, never behind bearer tokens, and takes no allow', () => {
  const viewer = (auth: string, extra = '') => `${ADMIN}\n  - { name: viewer, path: /, static: ohif, auth: ${auth}${extra}, ohif: { dataSource: admin } }`;
  expect(parseConfig(yaml({ routes: viewer('[session]') }), 'r.yaml', {}).routes[1]?.auth).toEqual(['session']);
  expect(problemsOf(yaml({ routes: viewer('[bearer]') })).join('\n')).toMatch(/routes\[1\]\.auth: a static site is public or behind a login/);
  expect(problemsOf(yaml({ routes: viewer('[session, bearer]') })).join('\n')).toMatch(/routes\[1\]\.auth/);
  expect(problemsOf(yaml({ routes: viewer('[session]', ', allow: [view]') })).join('\n')).toMatch(/routes\[1\]\.allow: a static site grants no operations/);
});

test('an authenticator listed twice, and queryToken without bearer, are refused', () => {
  expect(problemsOf(yaml({ routes: ADMIN.replace('[session]', '[session, session]') })).join('\n')).toMatch(/each authenticator at most once/);
  expect(problemsOf(yaml({ routes: ADMIN.replace('allow: [admin]', 'allow: [admin], queryToken: true') })).join('\n')).toMatch(/queryToken needs the bearer authenticator/);
});

test('store: memory or a Redis URL; a Redis password is hidden by --check', () => {
  expect(problemsOf(yaml({ store: 'postgres://x', routes: ADMIN })).join('\n')).toMatch(/store: expected memory or a Redis URL/);
  const c = parseConfig(yaml({ store: 'redis://user:hunter2-secret@redis:6379/0', routes: ADMIN }), 'r.yaml', {});
  const printed = JSON.stringify(redactConfig(c));
  expect(printed).not.toContain('hunter2-secret');
  expect(printed).toContain('redis://user:***@redis:6379/0');
  expect(printed).not.toContain(SECRET);
  expect(printed).not.toContain('client-secret');
});

test('cookie names must keep the pgw_ prefix (never forwarded upstream)', () => {
  expect(problemsOf(yaml({ session: `session: { secret: '${SECRET}', cookieName: session }`, routes: ADMIN })).join('\n')).toMatch(/session\.cookieName: expected a name starting with pgw_/);
});

describe('the return target after login is a same-origin relative path', () => {
  test.each([
    ['/viewer?StudyInstanceUIDs=1.2.3', '/viewer?StudyInstanceUIDs=1.2.3'],
    ['/pacs-admin/app/explorer.html', '/pacs-admin/app/explorer.html'],
    ['/a/b?x=%20y', '/a/b?x=%20y'],
    ['/a#fragment', '/a'],
    ['/', '/'],
  ])('%s → %s', (raw, expected) => expect(safeReturnPath(raw)).toBe(expected));

  test.each([
    '//evil.example', '/\\evil.example', '\\\\evil.example', 'https://evil.example', 'http:evil.example', 'javascript:alert(1)',
    '/%2F%2Fevil.example', '/%2f/evil.example', '/%5Cevil.example', '%2F%2Fevil.example', ' /x', '/x y', '/\t/evil.example',
    '/x\r\nLocation: http://evil', '/x%0d%0aLocation:%20http://evil', '/x%00', '', 'evil.example', '/_gateway/login?return=/',
    '/\u00e9', `/${'a'.repeat(2100)}`, '/.//evil.example', '/x/..//evil.example', '/%2e//evil.example', '/./\\evil.example',
    '/%2E%2E//evil.example', '/a/../../evil.example',
  ])('%j falls back to /', (raw) => expect(safeReturnPath(raw)).toBe('/'));

  test('non-strings fall back', () => {
    expect(safeReturnPath(undefined)).toBe('/');
    expect(safeReturnPath(['/a', '/b'])).toBe('/');
  });
});
