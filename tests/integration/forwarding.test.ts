// What the gateway forwards and what it refuses, observed at a loopback upstream that reports what reached it.
import http from 'node:http';
import net from 'node:net';
import { startEchoUpstream, type EchoUpstream } from '../support/echo-upstream.js';
import { accessLogFor, startGateway, type RunningGateway } from '../support/gateway.js';
import { rawExchange, request, statusOf } from '../support/http-client.js';

let echo: EchoUpstream;
let gw: RunningGateway;
let deadPort: number;

const yaml = (upstream: string, dead: string) => `
server:
  listen: 127.0.0.1:0
  publicUrl: https://pacs.example.org
  admin: { listen: 127.0.0.1:0 }
  limits: { maxHeaderSize: 8KB, maxBodySize: 1MB }
  timeouts: { shutdown: 3s }
routes:
  - { name: api, path: /api, upstream: ${upstream}, auth: public, timeout: 700ms,
      upstreamAuth: { basic: { username: gateway, password: upstream-secret } } }
  - { name: raw, path: /raw, upstream: ${upstream}, auth: public, stripPrefix: false,
      forward: { authorization: true, cookies: all } }
  - { name: named, path: /named, upstream: ${upstream}, auth: public, forward: { cookies: [theme, Other] } }
  - { name: both, path: /both, upstream: ${upstream}, auth: public, forward: { authorization: true },
      upstreamAuth: { basic: { username: gateway, password: upstream-secret } } }
  - { name: small, path: /small, upstream: ${upstream}, auth: public, maxBodySize: 1KB }
  - { name: ws, path: /ws, upstream: ${upstream}, auth: public, websocket: true }
  - { name: dead, path: /dead, upstream: ${dead}, auth: public }
  - { name: big, path: /big, upstream: ${upstream}, auth: public }
`;

beforeAll(async () => {
  echo = await startEchoUpstream();
  const probe = net.createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  deadPort = (probe.address() as net.AddressInfo).port;
  await new Promise<void>((r) => probe.close(() => r()));
  gw = await startGateway(yaml(echo.url, `http://127.0.0.1:${deadPort}`));
});
afterAll(async () => {
  await gw?.stop();
  await echo?.stop();
});

const echoed = (text: string) => JSON.parse(text) as { method: string; url: string; headers: Record<string, string>; bodyBytes: number };

describe('paths and prefixes', () => {
  test('the route prefix is stripped and the query kept', async () => {
    const r = await request(gw.url, '/api/dicom-web/studies?PatientID=42&limit=5');
    expect(r.status).toBe(200);
    expect(echoed(r.text).url).toBe('/dicom-web/studies?PatientID=42&limit=5');
  });

  test('the bare prefix maps to the upstream root', async () => {
    expect(echoed((await request(gw.url, '/api')).text).url).toBe('/');
  });

  test('stripPrefix: false keeps the path', async () => {
    expect(echoed((await request(gw.url, '/raw/x')).text).url).toBe('/raw/x');
  });

  test('duplicate slashes are merged before forwarding', async () => {
    expect(echoed((await request(gw.url, '/api//a///b')).text).url).toBe('/a/b');
  });

  test('a prefix is matched on whole segments only', async () => {
    const r = await request(gw.url, '/apix/studies');
    expect(r.status).toBe(404);
    expect(JSON.parse(r.text)).toMatchObject({ error: 'NO_ROUTE', status: 404 });
  });

  test.each(['/api/%2e%2e/raw', '/api/..%2fraw', '/api/%252e%252e/x', '/api/a%2Fb', '/api/a%5cb', '/api/%00'])('ambiguous path %s is refused with 400 and never forwarded', async (path) => {
    const before = echo.seen.length;
    const r = await request(gw.url, path);
    expect(r.status).toBe(400);
    expect(JSON.parse(r.text)).toMatchObject({ error: 'BAD_REQUEST_PATH' });
    expect(echo.seen.length).toBe(before);
  });

  test('a raw dot-dot path sent on the wire is refused', async () => {
    const raw = await rawExchange(gw.url, 'GET /api/../raw/x HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n');
    expect(statusOf(raw)).toBe(400);
  });

  test('an absolute-form target for another host is refused; for our own host it is served', async () => {
    const host = new URL(gw.url).host;
    const evil = await rawExchange(gw.url, `GET http://evil.example/api/x HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
    expect(statusOf(evil)).toBe(400);
    const own = await rawExchange(gw.url, `GET http://${host}/api/own HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
    expect(statusOf(own)).toBe(200);
    expect(own).toContain('"url":"/own"');
  });

  test('a browser gets an HTML error page, an API client JSON; neither holds a stack trace', async () => {
    const html = await request(gw.url, '/api/%2e%2e/', { headers: { accept: 'text/html,application/xhtml+xml' } });
    expect(html.status).toBe(400);
    expect(html.headers['content-type']).toMatch(/^text\/html/);
    expect(html.text).toContain('request id:');
    const json = await request(gw.url, '/api/%2e%2e/', { headers: { accept: 'application/json' } });
    for (const r of [html, json]) {
      expect(r.text).not.toMatch(/at .*\.(ts|js):\d+/);
      expect(r.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    }
  });
});

describe('header hygiene', () => {
  test('client X-Forwarded-* and Forwarded are replaced with the gateway view (no trusted proxies)', async () => {
    const r = await request(gw.url, '/api/h', { headers: {
      'x-forwarded-for': '6.6.6.6', 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'https',
      'x-forwarded-prefix': '/evil', forwarded: 'for=6.6.6.6;host=evil.example', 'x-real-ip': '6.6.6.6',
      'x-forwarded-user': 'admin', 'x-forwarded-roles': 'admin',
    } });
    const h = echoed(r.text).headers;
    expect(h['x-forwarded-for']).toBe('127.0.0.1');
    expect(h['x-real-ip']).toBe('127.0.0.1');
    // No trusted proxy: host and protocol are server.publicUrl's, never the client's Host.
    expect(h['x-forwarded-host']).toBe('pacs.example.org');
    expect(h['x-forwarded-proto']).toBe('https');
    expect(h['x-forwarded-prefix']).toBe('/api');
    expect(h.forwarded).toBe('for=127.0.0.1;host="pacs.example.org";proto=https');
    expect(h['x-forwarded-user']).toBeUndefined();
    expect(h['x-forwarded-roles']).toBeUndefined();
  });

  test('a Host that is not a plain host[:port] never reaches forwarded headers', async () => {
    const raw = await rawExchange(gw.url, 'GET /api/h HTTP/1.1\r\nHost: evil.example;proto=https\r\nConnection: close\r\n\r\n');
    expect(statusOf(raw)).toBe(200);
    const h = echoed(raw.slice(raw.indexOf('{'), raw.lastIndexOf('}') + 1)).headers;
    expect(h['x-forwarded-host']).toBe('pacs.example.org'); // the configured public host
    expect(h.forwarded).not.toContain('evil');
  });

  test('the client Authorization is replaced by the route upstream credentials', async () => {
    const r = await request(gw.url, '/api/h', { headers: { authorization: 'Bearer client-token' } });
    expect(echoed(r.text).headers.authorization).toBe(`Basic ${Buffer.from('gateway:upstream-secret').toString('base64')}`);
  });

  test('upstream credentials replace the client Authorization even on a route that forwards it', async () => {
    await request(gw.url, '/both/h', { headers: { authorization: 'Bearer client-token' } });
    const seen = echo.seen.at(-1)!;
    const sent = seen.rawHeaders.filter((_v, i) => i % 2 === 0 && seen.rawHeaders[i]!.toLowerCase() === 'authorization');
    expect(sent).toHaveLength(1);
    expect(seen.headers.authorization).toBe(`Basic ${Buffer.from('gateway:upstream-secret').toString('base64')}`);
  });

  test('no request of a kept-alive connection gets its Host into forwarded headers', async () => {
    // The forwarding headers are kept per connection: neither the first request's Host nor the
    // second's may reach the upstream (links it writes would point wherever the client said).
    const one = (host: string) => `GET /api/h HTTP/1.1\r\nHost: ${host}\r\n\r\n`;
    const raw = await rawExchange(gw.url, `${one('first.example:8443')}${one('second.example')}`);
    const bodies = raw.split(/HTTP\/1\.1 /).slice(1).map((r) => echoed(r.slice(r.indexOf('{'), r.lastIndexOf('}') + 1)).headers);
    expect(bodies).toHaveLength(2);
    for (const b of bodies) {
      expect(b['x-forwarded-host']).toBe('pacs.example.org');
      expect(b.forwarded).toBe('for=127.0.0.1;host="pacs.example.org";proto=https');
    }
  });

  test('without upstream credentials the client Authorization is dropped unless the route forwards it', async () => {
    const small = await request(gw.url, '/small/h', { headers: { authorization: 'Bearer client-token' } });
    expect(echoed(small.text).headers.authorization).toBeUndefined();
    const raw = await request(gw.url, '/raw/h', { headers: { authorization: 'Bearer client-token' } });
    expect(echoed(raw.text).headers.authorization).toBe('Bearer client-token');
  });

  test('only the cookies a route names reach its upstream, never the gateway\'s own (any case)', async () => {
    const cookie = 'theme=dark; pgw_session=s3cr3t; __Host-pgw.sid=abc; PGW_x=1; __Secure-Pgw-y=2; other=1; Other=2';
    const h = echoed((await request(gw.url, '/api/h', { headers: { cookie } })).text).headers;
    expect(h.cookie).toBeUndefined(); // default: none
    const all = echoed((await request(gw.url, '/raw/h', { headers: { cookie } })).text).headers;
    expect(all.cookie).toBe('theme=dark; other=1; Other=2');
    const named = echoed((await request(gw.url, '/named/h', { headers: { cookie } })).text).headers;
    expect(named.cookie).toBe('theme=dark; Other=2');
    const only = echoed((await request(gw.url, '/raw/h', { headers: { cookie: 'pgw_session=s3cr3t' } })).text).headers;
    expect(only.cookie).toBeUndefined();
  });

  test('hop-by-hop request headers, and headers named in Connection, are removed', async () => {
    const h = echoed((await request(gw.url, '/api/h', { headers: {
      connection: 'keep-alive, x-secret-hop', 'x-secret-hop': '1', 'proxy-authorization': 'Basic eA==', te: 'trailers', 'keep-alive': 'timeout=1', upgrade: 'h2c',
    } })).text).headers;
    for (const name of ['x-secret-hop', 'proxy-authorization', 'te', 'keep-alive', 'upgrade']) expect(h[name]).toBeUndefined();
  });

  test('hop-by-hop response headers from the upstream are removed', async () => {
    const r = await request(gw.url, '/api/h');
    expect(r.headers['x-upstream']).toBe('echo');
    expect(r.headers['x-hop']).toBeUndefined();
    expect(r.headers['proxy-authenticate']).toBeUndefined();
    expect(r.headers['keep-alive']).toBeUndefined();
  });

  test('an upstream Basic challenge on a route with upstream credentials never reaches the client', async () => {
    const r = await request(gw.url, '/api/status/401');
    expect(r.status).toBe(401);
    expect(r.headers['www-authenticate']).toBeUndefined();
  });

  test('repeated upstream headers stay separate; the upstream request id is replaced; nosniff is never doubled', async () => {
    const r = await request(gw.url, '/big/cookies');
    expect(r.status).toBe(200);
    expect(r.headers['set-cookie']).toEqual(['a=1; Path=/', 'b=2; Path=/']);
    expect(r.headers['x-request-id']).not.toBe('upstream-chosen');
    expect(r.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    expect(r.headers['x-content-type-options']).toBe('nosniff');
    // An upstream that sends none gets one added.
    expect((await request(gw.url, '/api/h')).headers['x-content-type-options']).toBe('nosniff');
  });

  test('the request id is passed upstream and returned to the client', async () => {
    const r = await request(gw.url, '/api/h', { headers: { 'x-request-id': 'client-chosen' } });
    expect(echoed(r.text).headers['x-request-id']).toBe(r.headers['x-request-id']);
    expect(r.headers['x-request-id']).not.toBe('client-chosen');
  });
});

describe('no smuggled verbs, on any route', () => {
  const OVERRIDES = ['X-HTTP-Method-Override', 'x-http-method-override', 'X-HTTP-METHOD', 'X-Method-Override', 'X-Original-URL', 'X-Rewrite-URL'];
  test.each(OVERRIDES.flatMap((h) => ['/api/h', '/raw/h'].map((p) => [h, p] as const)))('%s on %s: 400 METHOD_OVERRIDE, nothing forwarded', async (header, path) => {
    const before = echo.seen.length;
    const r = await request(gw.url, path, { headers: { [header]: header.endsWith('URL') ? '/admin' : 'DELETE', accept: 'application/json' } });
    expect(r.status).toBe(400);
    expect(JSON.parse(r.text).error).toBe('METHOD_OVERRIDE');
    expect(echo.seen.length).toBe(before);
  });

  test.each(['_method=DELETE', '_METHOD=PUT', '%5Fmethod=DELETE', '%5fmethod=DELETE', '_m%65thod=DELETE', 'a=1&_method=DELETE', '_method'])('query %s: 400, nothing forwarded', async (query) => {
    const before = echo.seen.length;
    const r = await request(gw.url, `/api/h?${query}`, { headers: { accept: 'application/json' } });
    expect(r.status).toBe(400);
    expect(JSON.parse(r.text).error).toBe('METHOD_OVERRIDE');
    expect(echo.seen.length).toBe(before);
  });

  test('look-alike parameters and headers pass', async () => {
    const r = await request(gw.url, '/api/h?method=x&my_method=y&_methods=z', { headers: { 'x-http-method-overrides': 'x' } });
    expect(r.status).toBe(200);
    expect(echoed(r.text).url).toBe('/h?method=x&my_method=y&_methods=z');
  });

  test.each(['GET', 'HEAD', 'DELETE'])('a body on %s is refused and never forwarded', async (method) => {
    const before = echo.seen.length;
    const r = await request(gw.url, '/api/h', { method, body: 'smuggled', headers: { 'content-type': 'text/plain', 'content-length': '8' } });
    expect(r.status).toBe(400);
    expect(echo.seen.length).toBe(before);
    const chunked = await rawExchange(gw.url, `${method} /api/h HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n8\r\nsmuggled\r\n0\r\n\r\n`);
    expect(statusOf(chunked)).toBe(400);
    expect(echo.seen.length).toBe(before);
  });

  test('the refusal is logged with its code', async () => {
    const r = await request(gw.url, '/api/h', { headers: { 'x-http-method-override': 'DELETE' } });
    expect(await accessLogFor(gw, r.headers['x-request-id'] as string)).toMatchObject({ status: 400, error: 'METHOD_OVERRIDE', method: 'GET' });
  });
});

describe('bodies and limits', () => {
  test('a request body is streamed to the upstream', async () => {
    const body = Buffer.alloc(512 * 1024, 1);
    const r = await request(gw.url, '/api/upload', { method: 'POST', body, headers: { 'content-type': 'application/octet-stream' } });
    expect(echoed(r.text).bodyBytes).toBe(body.length);
  });

  test('a chunked body under the limit is streamed to the upstream intact', async () => {
    const u = new URL(gw.url);
    const seen = await new Promise<string>((resolve, reject) => {
      const req = http.request({ host: u.hostname, port: u.port, path: '/api/chunked-ok', method: 'POST', headers: { 'transfer-encoding': 'chunked' }, agent: false }, (res) => {
        let text = '';
        res.on('data', (d: Buffer) => { text += d.toString(); });
        res.on('end', () => resolve(text));
      });
      req.on('error', reject);
      for (let i = 0; i < 64; i++) req.write(Buffer.alloc(8192, i));
      req.end();
    });
    expect(echoed(seen)).toMatchObject({ method: 'POST', url: '/chunked-ok', bodyBytes: 64 * 8192 });
  });

  test('a declared body over the route limit gets 413 and is not forwarded', async () => {
    const before = echo.seen.length;
    const r = await request(gw.url, '/small/upload', { method: 'POST', body: Buffer.alloc(2048, 1) });
    expect(r.status).toBe(413);
    expect(JSON.parse(r.text)).toMatchObject({ error: 'PAYLOAD_TOO_LARGE' });
    expect(echo.seen.length).toBe(before);
  });

  test('a chunked body over the limit is cut off', async () => {
    const u = new URL(gw.url);
    const outcome = await new Promise<string>((resolve) => {
      const req = http.request({ host: u.hostname, port: u.port, path: '/small/chunked-upload', method: 'POST', headers: { 'transfer-encoding': 'chunked' }, agent: false }, (res) => {
        res.resume();
        res.on('end', () => resolve(String(res.statusCode)));
        res.on('error', () => resolve('reset'));
      });
      req.on('error', () => resolve('reset'));
      for (let i = 0; i < 8; i++) req.write(Buffer.alloc(512, 2));
      req.end();
    });
    expect(['413', 'reset']).toContain(outcome);
    const last = echo.seen.filter((s) => s.url === '/chunked-upload').at(-1);
    // whatever reached the upstream never exceeded the limit
    if (last) expect(last.bodyBytes).toBeLessThanOrEqual(1024 + 512);
  });

  test('headers over maxHeaderSize get 431 and the gateway keeps serving', async () => {
    const raw = await rawExchange(gw.url, `GET /api/h HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(10 * 1024)}\r\n\r\n`);
    expect(statusOf(raw)).toBe(431);
    expect((await request(gw.url, '/api/h')).status).toBe(200);
  });

  test('a 20 MB download streams through intact', async () => {
    const r = await request(gw.url, '/api/bytes/20971520');
    expect(r.status).toBe(200);
    expect(r.body.length).toBe(20971520);
  });
});

test('trusted proxies: their X-Forwarded-* are kept and extended, nobody else\'s', async () => {
  const trusting = await startGateway(`server: { listen: 127.0.0.1:0, admin: false, trustProxy: [loopback] }
routes:
  - { name: api, path: /api, upstream: ${echo.url}, auth: public }
`);
  try {
    const r = await request(trusting.url, '/api/h', { headers: {
      'x-forwarded-for': '203.0.113.7', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'pacs.example.org',
    } });
    const h = echoed(r.text).headers;
    expect(h['x-forwarded-for']).toBe('203.0.113.7, 127.0.0.1');
    expect(h['x-real-ip']).toBe('203.0.113.7');
    expect(h['x-forwarded-proto']).toBe('https');
    expect(h['x-forwarded-host']).toBe('pacs.example.org');
    expect(h.forwarded).toBe('for=203.0.113.7;host="pacs.example.org";proto=https');
    // A trusted proxy carries many clients over one kept-alive connection: each request's own
    // X-Forwarded-* count, never those of the request before it on the connection.
    const one = (client: string, proto: string) => `GET /api/h HTTP/1.1\r\nHost: pacs.example.org\r\nX-Forwarded-For: ${client}\r\nX-Forwarded-Proto: ${proto}\r\n\r\n`;
    const raw = await rawExchange(trusting.url, `${one('203.0.113.7', 'https')}${one('198.51.100.9', 'http')}`);
    const seen = raw.split(/HTTP\/1\.1 /).slice(1).map((x) => echoed(x.slice(x.indexOf('{'), x.lastIndexOf('}') + 1)).headers);
    expect(seen.map((x) => x['x-real-ip'])).toEqual(['203.0.113.7', '198.51.100.9']);
    expect(seen.map((x) => x['x-forwarded-proto'])).toEqual(['https', 'http']);
    expect(seen[1]!.forwarded).toBe('for=198.51.100.9;host="pacs.example.org";proto=http');
  } finally {
    await trusting.stop();
  }
});

describe('upstream failures', () => {
  test('a refused upstream is a 502 with a request id and no stack', async () => {
    const r = await request(gw.url, '/dead/x', { headers: { accept: 'application/json' } });
    expect(r.status).toBe(502);
    expect(JSON.parse(r.text)).toMatchObject({ error: 'UPSTREAM_UNAVAILABLE', status: 502, requestId: r.headers['x-request-id'] });
    const m = await request(gw.adminUrl!, '/metrics');
    expect(m.text).toMatch(/pacs_gateway_upstream_errors_total\{route="dead",kind="refused"\} [1-9]/);
  });

  test('an upstream that does not answer within the route timeout is a 504', async () => {
    const r = await request(gw.url, '/api/stall');
    expect(r.status).toBe(504);
    expect(JSON.parse(r.text)).toMatchObject({ error: 'UPSTREAM_TIMEOUT' });
  });

  test('a client that goes away aborts the upstream request', async () => {
    const u = new URL(gw.url);
    const before = echo.seen.filter((s) => s.url === '/raw/stall' && s.aborted).length;
    await new Promise<void>((resolve) => {
      const req = http.request({ host: u.hostname, port: u.port, path: '/raw/stall', agent: false });
      req.on('error', () => resolve());
      req.end();
      setTimeout(() => { req.destroy(); resolve(); }, 150);
    });
    const until = Date.now() + 3000;
    while (Date.now() < until && echo.seen.filter((s) => s.url === '/raw/stall' && s.aborted).length === 0) await new Promise((r) => setTimeout(r, 20));
    expect(echo.seen.filter((s) => s.url === '/raw/stall' && s.aborted).length).toBeGreaterThan(before);
  });

  test('a client that goes away mid-download aborts the upstream response', async () => {
    const path = `/bytes/${256 * 2 ** 20}?abort-mid-body`;
    const u = new URL(gw.url);
    await new Promise<void>((resolve, reject) => {
      const req = http.get({ host: u.hostname, port: u.port, path: `/big${path}`, agent: false }, (res) => {
        expect(res.statusCode).toBe(200);
        res.once('data', () => { req.destroy(); resolve(); });
      });
      req.on('error', () => { /* destroyed on purpose */ });
      setTimeout(() => reject(new Error('no body within 3 s')), 3000);
    });
    const until = Date.now() + 3000;
    const aborted = () => echo.seen.some((s) => s.url === path && s.aborted);
    while (Date.now() < until && !aborted()) await new Promise((r) => setTimeout(r, 20));
    expect(aborted()).toBe(true);
    expect(echo.written(path)).toBeLessThan(256 * 2 ** 20);
  });

  test('a client that stops reading stops the upstream too (backpressure), and then gets every byte', async () => {
    const total = 256 * 2 ** 20;
    const path = `/bytes/${total}?backpressure`;
    const u = new URL(gw.url);
    const received = await new Promise<number>((resolve, reject) => {
      const req = http.get({ host: u.hostname, port: u.port, path: `/big${path}`, agent: false }, (res) => {
        res.pause();
        // Not reading for a while: only socket buffers' worth may leave the upstream meanwhile.
        setTimeout(() => {
          try {
            expect(echo.written(path)).toBeGreaterThan(0);
            expect(echo.written(path)).toBeLessThan(total / 4);
          } catch (err) { req.destroy(); reject(err); return; }
          let n = 0;
          res.on('data', (c: Buffer) => { n += c.length; });
          res.on('end', () => resolve(n));
          res.resume();
        }, 800);
      });
      req.on('error', reject);
    });
    expect(received).toBe(total);
  }, 30_000);

  test('the gateway keeps serving after every failure above', async () => {
    expect((await request(gw.url, '/healthz')).status).toBe(200);
    expect((await request(gw.url, '/api/h')).status).toBe(200);
  });
});

describe('websocket', () => {
  const upgrade = (path: string) => rawExchange(gw.url, `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\nping-bytes`, 400);

  test('an upgrade is passed through on a route that allows it', async () => {
    const raw = await upgrade('/ws/socket');
    expect(statusOf(raw)).toBe(101);
    expect(raw).toContain('ping-bytes');
    expect(echo.seen.at(-1)?.url).toBe('/socket');
  });

  test('an upgrade is refused on a route that does not', async () => {
    expect(statusOf(await upgrade('/api/socket'))).toBe(400);
  });

  test.each(['/ws/socket?_method=DELETE', '/ws/socket?%5Fmethod=PUT'])('an upgrade carrying a method override (%s) is refused and never forwarded', async (path) => {
    const before = echo.seen.length;
    const raw = await upgrade(path);
    expect(statusOf(raw)).toBe(400);
    expect(raw).toContain('_method');
    expect(echo.seen.length).toBe(before);
  });

  test('an upgrade carrying an override header is refused and never forwarded', async () => {
    const before = echo.seen.length;
    const raw = await rawExchange(gw.url, 'GET /ws/socket HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nX-HTTP-Method-Override: DELETE\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n', 400);
    expect(statusOf(raw)).toBe(400);
    expect(echo.seen.length).toBe(before);
  });
});

describe('ops', () => {
  test('the access log records the exchange but never credentials or cookies', async () => {
    const r = await request(gw.url, '/api/logged?access_token=leaky-query-token&PatientID=7', {
      headers: { authorization: 'Bearer leaky-bearer-token', cookie: 'pgw_session=leaky-cookie' },
    });
    const line = await accessLogFor(gw, r.headers['x-request-id'] as string);
    expect(line).toMatchObject({ route: 'api', status: 200, method: 'GET', path: '/api/logged' });
    expect(line.query).toBe('access_token=[redacted]&PatientID=7');
    expect(typeof line.ms).toBe('number');
    expect(line.bytes).toBeGreaterThan(0);
    const all = gw.rawLogs();
    for (const secret of ['leaky-query-token', 'leaky-bearer-token', 'leaky-cookie', 'upstream-secret']) expect(all).not.toContain(secret);
  });

  test('metrics are on the admin listener only', async () => {
    const m = await request(gw.adminUrl!, '/metrics');
    expect(m.status).toBe(200);
    expect(m.text).toMatch(/pacs_gateway_requests_total\{route="api",operation="upstream-rest",method="GET",status="200"\} [1-9]/);
    expect(m.text).toContain('pacs_gateway_request_duration_seconds_bucket');
    expect((await request(gw.url, '/metrics')).status).toBe(404);
  });

  test('readiness reports an unreachable upstream', async () => {
    const r = await request(gw.adminUrl!, '/readyz');
    expect(r.status).toBe(503);
    const body = JSON.parse(r.text) as { checks: Record<string, { ok: boolean }> };
    expect(body.checks[`upstream ${echo.url}`]?.ok).toBe(true);
    expect(body.checks[`upstream http://127.0.0.1:${deadPort}`]?.ok).toBe(false);
    expect((await request(gw.url, '/healthz')).status).toBe(200);
  });
});
