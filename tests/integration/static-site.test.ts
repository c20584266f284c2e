// The OHIF static site through the real gateway: cache rules, compression, ranges, SPA fallback,
// the generated app-config.js, and paths that must never reach a file outside OHIF's dist/.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import vm from 'node:vm';
import zlib from 'node:zlib';
import { createHash, randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseConfig } from '../../proxy/config/load.js';
import { sendError } from '../../proxy/errors.js';
import { createStaticSite, ohifDistDir } from '../../proxy/forward/static-site.js';
import { createGateway } from '../../proxy/server.js';
import { startGateway, type RunningGateway } from '../support/gateway.js';
import { request } from '../support/http-client.js';

const TITLE = '</script><script>alert(1)</script>"; alert(2); "\u2028';
const yaml = `
server: { listen: 127.0.0.1:0, admin: false }
routes:
  - { name: dicomweb, path: /pacs, upstream: http://127.0.0.1:9, auth: public }
  - name: viewer
    path: /
    static: ohif
    auth: public
    ohif: { title: ${JSON.stringify(TITLE)} }
`;

let gw: RunningGateway;
let dist: string;
let bundle: string; // a real content-hashed chunk, picked from the listing
let indexHtml: Buffer;

beforeAll(async () => {
  const config = parseConfig(yaml, 'test-routes.yaml', {});
  dist = ohifDistDir(config.routes[1]!, config);
  indexHtml = readFileSync(path.join(dist, 'index.html'));
  const files = readdirSync(dist);
  const size = (f: string) => statSync(path.join(dist, f)).size;
  // The largest webpack chunk under 1 MB: big enough to compress, small enough to stay quick.
  bundle = files.filter((f) => /^\d+\.bundle\.[0-9a-f]{16}\.js$/.test(f) && size(f) < 1024 ** 2)
    .sort((a, b) => size(b) - size(a))[0]!;
  gw = await startGateway(yaml);
});
afterAll(async () => { await gw?.stop(); });

const get = (p: string, headers: Record<string, string> = {}) => request(gw.url, p, { headers });

describe('caching', () => {
  test('index.html at / is revalidated on every load and carries the security headers', async () => {
    const r = await get('/');
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toMatch(/^text\/html/);
    expect(r.headers['cache-control']).toBe('no-cache');
    expect(r.headers.etag).toBeTruthy();
    expect(r.body.equals(indexHtml)).toBe(true);
    expect(r.headers['content-security-policy']).toContain("script-src 'self' 'wasm-unsafe-eval' 'sha256-");
    expect(r.headers['cross-origin-opener-policy']).toBe('same-origin');
    expect(r.headers['cross-origin-embedder-policy']).toBe('require-corp');
    expect(r.headers['x-content-type-options']).toBe('nosniff');
    expect(r.headers['x-powered-by']).toBeUndefined();
    const again = await get('/', { 'if-none-match': r.headers.etag as string });
    expect(again.status).toBe(304);
  });

  test('pages never allow eval; scripts (worker entry points) may, for the emscripten codecs', async () => {
    const page = (await get('/')).headers['content-security-policy'] as string;
    const script = (await request(gw.url, `/${bundle}`, { method: 'HEAD' })).headers['content-security-policy'] as string;
    expect(page).not.toContain("'unsafe-eval'");
    expect(script).toContain("'unsafe-eval'");
    // Every inline script of index.html and silent-refresh.html is allowed by its hash, nothing else inline.
    let hashed = 0;
    for (const file of ['index.html', 'silent-refresh.html']) {
      const html = readFileSync(path.join(dist, file), 'utf8');
      for (const m of html.matchAll(/<script(?: type="text\/javascript")?>([\s\S]*?)<\/script>/g)) {
        expect(page).toContain(`'sha256-${createHash('sha256').update(m[1]!).digest('base64')}'`);
        hashed++;
      }
    }
    expect(hashed).toBeGreaterThanOrEqual(3);
    expect(/script-src ([^;]*)/.exec(page)![1]).not.toContain('unsafe-inline');
  });

  test('a content-hashed bundle is cached for a year as immutable', async () => {
    const r = await request(gw.url, `/${bundle}`, { method: 'HEAD' });
    expect(r.status).toBe(200);
    expect(r.headers['cache-control']).toBe('public, max-age=31536000, immutable');
    expect(r.headers['content-type']).toMatch(/javascript/);
  });

  test.each(['/app.bundle.css', '/sw.js', '/init-service-worker.js', '/silent-refresh.html'])('unhashed %s is no-cache', async (p) => {
    const r = await request(gw.url, p, { method: 'HEAD' });
    expect(r.status).toBe(200);
    expect(r.headers['cache-control']).toBe('no-cache');
  });
});

describe('compression and ranges', () => {
  test.each([
    ['gzip', zlib.gunzipSync],
    ['br', zlib.brotliDecompressSync],
  ] as const)('%s is negotiated for a JS bundle and decodes to the file on disk', async (encoding, decode) => {
    const r = await get(`/${bundle}`, { 'accept-encoding': encoding });
    expect(r.status).toBe(200);
    expect(r.headers['content-encoding']).toBe(encoding);
    expect(r.headers.vary).toMatch(/accept-encoding/i);
    const onDisk = readFileSync(path.join(dist, bundle));
    expect(r.body.length).toBeLessThan(onDisk.length);
    expect(decode(r.body).equals(onDisk)).toBe(true);
  });

  test('a byte range is answered with 206 and exactly those bytes, unencoded', async () => {
    const r = await get(`/${bundle}`, { range: 'bytes=100-1123', 'accept-encoding': 'gzip, br' });
    expect(r.status).toBe(206);
    expect(r.headers['content-range']).toMatch(/^bytes 100-1123\/\d+$/);
    expect(r.headers['content-encoding']).toBeUndefined();
    expect(r.body.equals(readFileSync(path.join(dist, bundle)).subarray(100, 1124))).toBe(true);
  });

  test('an unsatisfiable range is a 416, not a 404', async () => {
    const r = await get(`/${bundle}`, { range: 'bytes=999999999-' });
    expect(r.status).toBe(416);
    expect(r.headers['content-range']).toMatch(/^bytes \*\/\d+$/);
  });
});

describe('SPA fallback and missing files', () => {
  test.each(['/viewer?StudyInstanceUIDs=1.2.3', '/callback?code=x&state=y', '/login', '/viewer/dicomweb', '/viewer/1.2.840.113619.2.55'])(
    '%s gets index.html', async (p) => {
      const r = await get(p, { accept: 'text/html' });
      expect(r.status).toBe(200);
      expect(r.headers['cache-control']).toBe('no-cache');
      expect(r.body.equals(indexHtml)).toBe(true);
    },
  );

  test('a missing file with an extension is a 404 without internals', async () => {
    const r = await get('/missing.js');
    expect(r.status).toBe(404);
    expect(JSON.parse(r.text)).toMatchObject({ error: 'NO_ROUTE', status: 404 });
    expect(r.text).not.toMatch(/at \w+ \(|node_modules|\.cache|ENOENT/);
  });

  test('a browser asking for a missing file gets an HTML 404 page', async () => {
    const r = await get('/missing.png', { accept: 'text/html' });
    expect(r.status).toBe(404);
    expect(r.headers['content-type']).toMatch(/^text\/html/);
    expect(r.text).not.toMatch(/ENOENT|node_modules/);
  });

  test('the viewer is read-only', async () => {
    const r = await request(gw.url, '/viewer', { method: 'POST', body: 'x' });
    expect(r.status).toBe(405);
    expect(r.headers.allow).toBe('GET, HEAD');
  });
});

describe('app-config.js', () => {
  test('is generated by the gateway, points OHIF at /pacs, and is revalidated', async () => {
    const r = await get('/app-config.js');
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toMatch(/^text\/javascript/);
    expect(r.headers['cache-control']).toBe('no-cache');
    expect(r.body.equals(readFileSync(path.join(dist, 'app-config.js')))).toBe(false);
    expect(r.text).not.toContain('cloudfront.net');
    const again = await get('/app-config.js', { 'if-none-match': r.headers.etag as string });
    expect(again.status).toBe(304);

    const sandbox = { window: {} as { config?: any }, document: { title: '' } };
    vm.runInNewContext(r.text, sandbox);
    const ds = sandbox.window.config.dataSources[0];
    expect(ds.configuration).toMatchObject({ qidoRoot: '/pacs/dicom-web', wadoRoot: '/pacs/dicom-web', wadoUriRoot: '/pacs/wado' });
    expect(sandbox.window.config.showStudyList).toBe(true);
    expect(sandbox.window.config.oidc).toBeUndefined();
  });

  test('with identity.viewerClientId, OHIF gets its OIDC client (code flow, no token revocation)', async () => {
    const withIdp = await startGateway(`
server: { listen: 127.0.0.1:0, admin: false, publicUrl: 'http://pacs.example:8080' }
identity: { issuer: 'http://pacs.example:8080/auth/realms/ohif', internalUrl: 'http://127.0.0.1:1/auth/realms/ohif', audience: [ohif-viewer], viewerClientId: ohif-viewer }
routes:
  - { name: dicomweb, path: /pacs, upstream: 'http://127.0.0.1:1', expose: dicomweb, auth: [bearer], allow: [view] }
  - { name: viewer, path: /, static: ohif, auth: public }
`);
    try {
      const r = await request(withIdp.url, '/app-config.js');
      const sandbox = { window: {} as { config?: any }, document: { title: '' } };
      vm.runInNewContext(r.text, sandbox);
      expect(sandbox.window.config.oidc).toEqual([expect.objectContaining({
        authority: 'http://pacs.example:8080/auth/realms/ohif', client_id: 'ohif-viewer', response_type: 'code',
        redirect_uri: '/callback', revokeAccessTokenOnSignout: false,
      })]);
      // Same-origin IdP: no extra connect-src needed.
      expect(String(r.headers['content-security-policy'])).toMatch(/connect-src 'self' data: blob:;/);
    } finally {
      await withIdp.stop();
    }
  });

  test('a hostile title stays a string: no markup, no statement break', async () => {
    const r = await get('/app-config.js');
    expect(r.text).not.toContain('</script>');
    expect(r.text).not.toContain('<script>');
    expect(r.text).not.toContain('\u2028');
    // Evaluating the file sets the title verbatim and runs nothing else.
    const alerts: unknown[] = [];
    const sandbox = { window: {} as { config?: any }, document: { title: '' }, alert: (x: unknown) => alerts.push(x) };
    vm.runInNewContext(r.text, sandbox);
    expect(alerts).toEqual([]);
    expect(sandbox.document.title).toBe(TITLE);
    expect(sandbox.window.config.dataSources[0].configuration.friendlyName).toBe(TITLE);
    const logo = sandbox.window.config.whiteLabeling.createLogoComponentFn({ createElement: (...args: unknown[]) => args });
    expect(logo[2]).toBe(TITLE);
  });
});

describe('paths never leave dist/', () => {
  test.each([
    '/..%2fpackage.json',
    '/%2e%2e/%2e%2e/etc/passwd',
    '/static/../../package.json',
    '/%2e%2e%2f%2e%2e%2fpackage.json',
    '/..%5c..%5cpackage.json',
    '/%252e%252e/package.json',
    '/.integrity',
    '/..',
  ])('%s', async (p) => {
    const r = await get(p);
    expect([400, 404]).toContain(r.status);
    expect(r.text).not.toContain('"name": "pacs-gateway"');
    expect(r.text).not.toContain('root:');
  });
});

describe('the static site holds its own line without the gateway normaliser', () => {
  // Requests reach the site with the raw path as target, as if routing.ts had let them through.
  let server: http.Server;
  let base: string;
  beforeAll(async () => {
    const config = parseConfig(yaml, 'test-routes.yaml', {});
    const site = createStaticSite(config.routes[1]!, config, { onError: (ex, err) => sendError(ex.req, ex.res, err, ex.id) });
    server = http.createServer((req, res) => {
      const [p = '/', q = ''] = (req.url ?? '/').split('?');
      site.forward({ id: randomUUID(), req, res, startedAt: 0, target: { path: p, query: q } });
    });
    await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => { await new Promise((ok) => server.close(ok)); });

  test.each(['/../package.json', '/..%2fpackage.json', '/%2e%2e/%2e%2e/package.json', '/static/../../package.json',
    '/..%5cpackage.json', '/%2e%2e%2f.integrity', '/x/..%2f..%2f..%2fpackage.json'])('%s', async (p) => {
    const r = await request(base, p);
    expect([400, 403, 404]).toContain(r.status);
    expect(r.text).not.toContain('"name": "pacs-gateway"');
    expect(r.text).not.toContain('sha512-');
  });

  test('a sane path still works here', async () => {
    expect((await request(base, `/${bundle}`, { method: 'HEAD' })).status).toBe(200);
  });
});

describe('start-up', () => {
  test('a missing OHIF build stops the gateway from starting, with the fix in the message', () => {
    const config = parseConfig(yaml.replace('ohif: {', 'ohif: { root: ./no-such-ohif-build,'), '/etc/pacs/routes.yaml', {});
    expect(() => createGateway(config)).toThrow(/OHIF viewer not found: \/etc\/pacs\/no-such-ohif-build has no index.html; check routes "viewer" ohif.root/);
  });
});
