import { ConfigError, parseConfig, redactConfig } from '../../proxy/config/load.js';
import { toInternal } from '../../proxy/identity/jwks.js';

const MINIMAL = `
routes:
  - name: dicomweb
    path: /pacs
    upstream: http://127.0.0.1:8042
    auth: public
`;

function problemsOf(yaml: string, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    parseConfig(yaml, 'routes.yaml', env);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return [...(e as ConfigError).problems];
  }
  throw new Error('expected the configuration to be refused');
}

describe('valid configuration', () => {
  test('defaults are applied and the result is deeply frozen', () => {
    const c = parseConfig(MINIMAL, 'routes.yaml', {});
    expect(c.server.listen).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(c.server.publicUrl).toBe('http://127.0.0.1:8080');
    expect(c.server.trustProxy).toBe(false);
    expect(c.server.timeouts.headers).toBe(20_000);
    expect(c.server.admin).toEqual({ listen: { host: '127.0.0.1', port: 9090 } });
    const [route] = c.routes;
    expect(route?.stripPrefix).toBe(true);
    expect(route?.timeout).toBe(60_000);
    expect(route?.forward).toEqual({ authorization: false, cookies: 'none', identity: false, orthancLinks: false, splitIncludeField: false });
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.routes[0])).toBe(true);
    expect(Object.isFrozen(c.server.timeouts)).toBe(true);
  });

  test('durations and sizes accept units', () => {
    const c = parseConfig(`${MINIMAL}    timeout: 2m\n    maxBodySize: 3GB\nserver:\n  timeouts: { headers: 500ms, request: 30s }\n  limits: { maxHeaderSize: 32KB }\n`, 'r.yaml', {});
    expect(c.routes[0]?.timeout).toBe(120_000);
    expect(c.routes[0]?.maxBodySize).toBe(3 * 1024 ** 3);
    expect(c.server.timeouts.headers).toBe(500);
    expect(c.server.timeouts.request).toBe(30_000);
    expect(c.server.limits.maxHeaderSize).toBe(32 * 1024);
  });

  test('${VAR} and ${VAR:-default} are interpolated from the environment, not re-parsed as YAML', () => {
    const yaml = `server:\n  listen: \${LISTEN:-127.0.0.1:0}\n  publicUrl: \${PUBLIC_URL}\nroutes:\n  - name: dicomweb\n    path: /pacs\n    upstream: \${ORTHANC}\n    auth: public\n    upstreamAuth: { basic: { username: u, password: "\${PW}" } }\n`;
    const c = parseConfig(yaml, 'r.yaml', { PUBLIC_URL: 'https://pacs.example.org', ORTHANC: 'http://orthanc:8042', PW: 'a: b\n- c' });
    expect(c.server.listen.port).toBe(0);
    expect(c.server.publicUrl).toBe('https://pacs.example.org');
    expect(c.routes[0]?.upstream).toBe('http://orthanc:8042');
    expect(c.routes[0]?.upstreamAuth?.basic.password).toBe('a: b\n- c');
  });

  test('static routes do not strip prefixes by default', () => {
    const c = parseConfig(`${MINIMAL}  - { name: viewer, path: /, static: ohif, auth: public }\n`, 'r.yaml', {});
    expect(c.routes[1]?.stripPrefix).toBe(false);
  });
});

describe('invalid configuration names file, line, key path and expectation', () => {
  test('a non-URL upstream', () => {
    const p = problemsOf(MINIMAL.replace('http://127.0.0.1:8042', 'orthanc:8042'));
    expect(p).toEqual(['routes.yaml:5:15: routes[0].upstream: expected an http(s) URL without credentials, got "orthanc:8042"']);
  });

  test('unknown keys at every level', () => {
    const p = problemsOf(`server:\n  listn: 1\n${MINIMAL}    upstreem: x\n`);
    // Each on the line of the key itself, with the nearest known key; sorted by line.
    expect(p).toEqual([
      'routes.yaml:2:3: server.listn: unknown key (did you mean listen?)',
      expect.stringMatching(/^routes\.yaml:9:5: routes\[0\]\.upstreem: unknown key \(did you mean upstream\?\)$/),
    ]);
  });

  test('a port alone listens on loopback only (never every interface by accident)', () => {
    const c = parseConfig(`server: { listen: 8080 }\n${MINIMAL}`, 'r.yaml', {});
    expect(c.server.listen).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(parseConfig(`server: { listen: '0.0.0.0:8080' }\n${MINIMAL}`, 'r.yaml', {}).server.listen).toEqual({ host: '0.0.0.0', port: 8080 });
  });

  test('an unknown key far from every known one lists the keys known there; problems come sorted by line', () => {
    const p = problemsOf(`routes:
  - name: dicomweb
    path: /pacs
    upstream: orthanc:8042
    auth: public
    zzzqqq: 1
server:
  trustProxi: false
`);
    expect(p).toEqual([
      expect.stringMatching(/^routes\.yaml:4:15: routes\[0\]\.upstream: expected an http\(s\) URL/),
      expect.stringMatching(/^routes\.yaml:6:5: routes\[0\]\.zzzqqq: unknown key \(known here: name, path, upstream, .*forward\)$/),
      'routes.yaml:8:3: server.trustProxi: unknown key (did you mean trustProxy?)',
    ]);
  });

  test('a missing environment variable', () => {
    const p = problemsOf(MINIMAL.replace('http://127.0.0.1:8042', '${ORTHANC_URL}'));
    expect(p).toEqual(['routes.yaml:5:15: routes[0].upstream: environment variable ORTHANC_URL is not set (use ${ORTHANC_URL:-default} for a default)']);
  });

  test.each([
    ['path without leading slash', MINIMAL.replace('path: /pacs', 'path: pacs'), 'routes[0].path'],
    ['path with trailing slash', MINIMAL.replace('path: /pacs', 'path: /pacs/'), 'routes[0].path'],
    ['path with dot segment', MINIMAL.replace('path: /pacs', 'path: /pacs/../x'), 'routes[0].path'],
    ['upstream with credentials', MINIMAL.replace('http://127.0.0.1:8042', 'http://u:p@127.0.0.1:8042'), 'routes[0].upstream'],
    ['bad duration', `${MINIMAL}    timeout: soon\n`, 'routes[0].timeout'],
    ['bad size', `${MINIMAL}    maxBodySize: huge\n`, 'routes[0].maxBodySize'],
    ['bad listen', `server: { listen: "localhost" }\n${MINIMAL}`, 'server.listen'],
    ['port out of range', `server: { listen: "127.0.0.1:70000" }\n${MINIMAL}`, 'server.listen'],
    ['trustProxy true', `server: { trustProxy: true }\n${MINIMAL}`, 'server.trustProxy'],
    ['unknown authenticator', MINIMAL.replace('auth: public', 'auth: [magic]'), 'routes[0].auth'],
    ['both upstream and static', `${MINIMAL}    static: ohif\n`, 'routes[0]'],
    ['neither upstream nor static', MINIMAL.replace('    upstream: http://127.0.0.1:8042\n', ''), 'routes[0]'],
    ['bad route name', MINIMAL.replace('name: dicomweb', 'name: Dicom Web'), 'routes[0].name'],
    ['no routes', 'routes: []\n', 'routes'],
    ['ohif data source that is not an upstream route', `${MINIMAL}  - { name: viewer, path: /, static: ohif, auth: public, ohif: { dataSource: nope } }\n`, 'routes[1].ohif.dataSource'],
    ['unknown expose', MINIMAL.replace('auth: public', 'auth: public\n    expose: rest'), 'routes[0].expose'],
    ['dicomweb section without expose: dicomweb', `${MINIMAL}    dicomweb: { roots: [/dicom-web] }\n`, 'routes[0].dicomweb'],
    ['dicomweb root with a trailing slash', `${MINIMAL}    expose: dicomweb\n    dicomweb: { roots: [/dicom-web/] }\n`, 'routes[0].dicomweb.roots[0]'],
    ['unknown cookie policy', `${MINIMAL}    forward: { cookies: some }\n`, 'routes[0].forward.cookies'],
    ['gatewayCookies is gone', `${MINIMAL}    forward: { gatewayCookies: true }\n`, 'routes[0].forward.gatewayCookies'],
    ['a static site behind bearer tokens', `identity: { issuer: https://idp.example/x, audience: pacs }\n${MINIMAL}  - { name: viewer, path: /, static: ohif, auth: [bearer], allow: [view] }\n`, 'routes[1].auth'],
    ['unknown permission in the table', `permissions: { viewer: [view, peek] }\n${MINIMAL}`, 'permissions.viewer[1]'],
  ])('%s', (_name, yaml, keyPath) => {
    const p = problemsOf(yaml);
    expect(p.some((line) => line.includes(`: ${keyPath}: `))).toBe(true);
  });

  test('duplicate names and paths', () => {
    const p = problemsOf(`${MINIMAL}  - { name: dicomweb, path: /pacs, upstream: http://127.0.0.1:1, auth: public }\n`);
    expect(p).toEqual(expect.arrayContaining([
      expect.stringContaining('routes[1].name: duplicate route name "dicomweb" (also routes[0])'),
      expect.stringContaining('routes[1].path: duplicate route path "/pacs" (also routes[0])'),
    ]));
  });

  test('every problem is reported, not just the first', () => {
    const p = problemsOf(`server: { listen: nope, bogus: 1 }\nroutes:\n  - { name: a, path: x, upstream: y, auth: public }\n`);
    expect(p.length).toBeGreaterThanOrEqual(4);
  });

  test('YAML syntax errors carry the line', () => {
    const p = problemsOf('routes:\n  - name: a\n   path: /x\n');
    expect(p[0]).toMatch(/^routes\.yaml:\d+:\d+: YAML syntax: /);
  });

  test('duplicate YAML keys are refused', () => {
    const p = problemsOf(`${MINIMAL}    auth: public\n`);
    expect(p[0]).toMatch(/YAML syntax: .*[Uu]nique|duplicate/);
  });
});

test('redactConfig hides every secret', () => {
  const c = parseConfig(`${MINIMAL}    upstreamAuth: { basic: { username: gw, password: s3cret-value } }\n`, 'r.yaml', {});
  const printed = JSON.stringify(redactConfig(c));
  expect(printed).not.toContain('s3cret-value');
  expect(printed).toContain('"password":"***"');
  expect(printed).toContain('"username":"gw"');
});

describe('permissions, exposure and their checks', () => {
  const AUTHED = (allow: string, extra = '') => `identity: { issuer: https://idp.example/realms/x, audience: pacs }
routes:
  - name: dicomweb
    path: /pacs
    upstream: http://127.0.0.1:8042
    auth: [bearer]
    allow: ${allow}
${extra}`;

  test('without a permissions table the demo roles get the built-in one', () => {
    const c = parseConfig(AUTHED('[view]', '    expose: dicomweb\n'), 'r.yaml', {});
    expect(c.permissions).toEqual({ viewer: ['view'], uploader: ['view', 'upload'], admin: ['view', 'download', 'upload', 'delete', 'share', 'admin'] });
    expect(c.routes[0]?.dicomweb).toEqual({ roots: ['/dicom-web'], wadoUri: '/wado', delete: false });
    expect(c.warnings).toEqual([]);
  });

  test('a permissions table replaces the built-in one whole', () => {
    const c = parseConfig(`permissions: { radiologist: [view, download] }\n${AUTHED('[view, download]', '    expose: dicomweb\n')}`, 'r.yaml', {});
    expect(c.permissions).toEqual({ radiologist: ['view', 'download'] });
  });

  test('the old method → roles form is refused with a pointer to permissions', () => {
    const p = problemsOf(AUTHED('{ GET: [viewer], POST: [uploader] }', '    expose: dicomweb\n'));
    expect(p).toEqual([expect.stringMatching(/routes\.yaml:\d+:\d+: routes\[0\]\.allow: expected a list of permissions such as \[view, upload\].*method → roles rules were replaced/)]);
  });

  test('a role name where a permission belongs is refused', () => {
    const p = problemsOf(AUTHED('[viewer]', '    expose: dicomweb\n'));
    expect(p.some((l) => l.includes('routes[0].allow[0]: expected a permission: one of view, download, upload, delete, share, admin'))).toBe(true);
  });

  test('a route exposing the whole upstream must grant admin, the permission of upstream-rest', () => {
    const p = problemsOf(AUTHED('[view]', '    expose: upstream\n'));
    expect(p.some((l) => l.includes('routes[0].allow: every request on a route exposing the whole upstream is the upstream-rest operation'))).toBe(true);
    expect(problemsOf(AUTHED('[view]')).some((l) => l.includes('upstream-rest'))).toBe(true); // exposing the whole upstream is the default
  });

  test('an authenticated route that exposes the whole upstream without saying so is warned about, with its line', () => {
    const c = parseConfig(AUTHED('[admin]'), 'r.yaml', {});
    expect(c.routes[0]?.expose).toBe('upstream');
    expect(c.warnings).toEqual([expect.stringMatching(/^r\.yaml:3:\d+: routes\[0\] \(dicomweb\): exposes every path of http:\/\/127\.0\.0\.1:8042 .*set expose: upstream to confirm/)]);
    expect(parseConfig(AUTHED('[admin]', '    expose: upstream\n'), 'r.yaml', {}).warnings).toEqual([]);
    expect(parseConfig(MINIMAL, 'r.yaml', {}).warnings).toEqual([]); // public routes expose what they expose
  });
});

describe('toInternal rewrites IdP URLs from the public issuer to the internal base', () => {
  test.each([
    ['https://pacs.example/auth/realms/x/protocol/openid-connect/certs', 'https://pacs.example/auth/realms/x', 'http://keycloak:8080/auth/realms/x', 'http://keycloak:8080/auth/realms/x/protocol/openid-connect/certs'],
    ['https://pacs.example/auth/realms/x/certs', 'https://pacs.example/auth/realms/x', undefined, 'https://pacs.example/auth/realms/x/certs'],
    ['https://other.example/certs', 'https://pacs.example/auth/realms/x', 'http://keycloak:8080/auth/realms/x', 'https://other.example/certs'],
  ])('%s', (url, issuer, internal, expected) => {
    expect(toInternal(url, issuer, internal)).toBe(expected);
  });
});
