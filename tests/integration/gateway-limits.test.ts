// What one caller can make the gateway and its upstream do: unread bodies, oversized bodies, upstream
// error texts, concurrent upstream requests, clients that stop reading, and readiness probes.
import net from 'node:net';
import { startEchoUpstream, UPSTREAM_FAILURE_TEXT, type EchoUpstream } from '../support/echo-upstream.js';
import { startGateway, type RunningGateway } from '../support/gateway.js';
import { request } from '../support/http-client.js';
import { startTestIdp, type TestIdp } from '../support/test-idp.js';

let idp: TestIdp;
let echo: EchoUpstream;
let gw: RunningGateway;
let alice: string;
let bob: string;
let admin: string;

beforeAll(async () => {
  [idp, echo] = await Promise.all([startTestIdp(), startEchoUpstream()]);
  gw = await startGateway(`
server:
  listen: 127.0.0.1:0
  admin: { listen: 127.0.0.1:0 }
  limits: { concurrencyPerUser: 3 }
  timeouts: { send: 1s }
identity: { issuer: ${idp.issuer}, audience: pacs }
routes:
  - { name: dicomweb, path: /pacs, upstream: ${echo.url}, expose: dicomweb, auth: [bearer], allow: [view, download, upload], maxBodySize: 1MB }
  - { name: admin, path: /pacs-admin, upstream: ${echo.url}, expose: upstream, auth: [bearer], allow: [admin] }
  - { name: open, path: /open, upstream: ${echo.url}, expose: upstream, auth: public }
`);
  [alice, bob, admin] = await Promise.all([
    idp.issueAccessToken({ username: 'alice', realmRoles: ['viewer'] }),
    idp.issueAccessToken({ username: 'bob', realmRoles: ['viewer', 'uploader'] }),
    idp.issueAccessToken({ username: 'admin', realmRoles: ['admin'] }),
  ]);
  const until = Date.now() + 10_000;
  while (!(await gw.gateway.readiness()).ready) {
    if (Date.now() > until) throw new Error('gateway never became ready');
    await new Promise((r) => setTimeout(r, 50));
  }
}, 30_000);

afterAll(async () => {
  await gw?.stop();
  await Promise.all([echo?.stop(), idp?.stop()]);
});

const auth = (token: string) => ({ authorization: `Bearer ${token}` });
const QIDO = '/pacs/dicom-web/studies';

/**
 * Sends a request head announcing `declared` body bytes, then body chunks every few milliseconds,
 * and reports what the server answered, whether it closed the connection and how much was sent.
 */
function sendLargeBody(path: string, declared: number, headers = '', forMs = 3000): Promise<{ head: string; closed: boolean; sent: number }> {
  const u = new URL(gw.url);
  return new Promise((resolve) => {
    const socket = net.connect(Number(u.port), u.hostname);
    let head = '';
    let sent = 0;
    let closed = false;
    const chunk = Buffer.alloc(16 * 1024, 1);
    const pump = setInterval(() => {
      if (closed || socket.destroyed) return;
      socket.write(chunk, () => undefined);
      sent += chunk.length;
    }, 5);
    const finish = () => { clearInterval(pump); socket.destroy(); resolve({ head, closed, sent }); };
    const timer = setTimeout(finish, forMs);
    socket.on('data', (d) => { head += d.toString('latin1'); });
    socket.on('error', () => undefined);
    socket.on('close', () => { closed = true; clearTimeout(timer); finish(); });
    socket.write(`POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/related; type="application/dicom"\r\nContent-Length: ${declared}\r\n${headers}\r\n`);
  });
}

describe('refusals before the body is read', () => {
  test('a 401 to a large upload closes the connection instead of reading the body', async () => {
    const r = await sendLargeBody(QIDO, 1000 * 1000);
    expect(r.head).toMatch(/^HTTP\/1\.1 401 /);
    expect(r.head).toMatch(/\r\nconnection: close\r\n/i);
    expect(r.closed).toBe(true);
    expect(r.sent).toBeLessThan(1000 * 1000); // the gateway did not wait for the declared body
  });

  test('a 403 (viewer storing) closes the connection too', async () => {
    const r = await sendLargeBody(QIDO, 1000 * 1000, `Authorization: Bearer ${alice}\r\n`);
    expect(r.head).toMatch(/^HTTP\/1\.1 403 /);
    expect(r.closed).toBe(true);
  });

  test('a declared length over the route limit gets 413 before authentication, and the connection closes', async () => {
    const r = await sendLargeBody(QIDO, 4_000_000_000);
    expect(r.head).toMatch(/^HTTP\/1\.1 413 /);
    expect(r.head).toContain('PAYLOAD_TOO_LARGE');
    expect(r.closed).toBe(true);
    expect(r.sent).toBeLessThan(10 * 1024 * 1024);
  });

  test('the close after such a refusal is orderly: the answer is never lost to a reset', async () => {
    // The client goes on sending its body after the answer, as an upload tool does: it must read the
    // whole answer and then see the connection end, not a reset.
    const u = new URL(gw.url);
    const outcome = await new Promise<{ head: string; ended: boolean; error?: string }>((resolve) => {
      const socket = net.connect(Number(u.port), u.hostname);
      let head = '';
      let ended = false;
      const chunk = Buffer.alloc(64 * 1024, 1);
      const pump = setInterval(() => { if (!socket.destroyed) socket.write(chunk, () => undefined); }, 2);
      const done = (error?: string) => { clearInterval(pump); socket.destroy(); resolve({ head, ended, ...(error ? { error } : {}) }); };
      socket.on('data', (d) => { head += d.toString('latin1'); });
      socket.on('end', () => { ended = true; setTimeout(() => done(), 100); });
      socket.on('error', (e: NodeJS.ErrnoException) => done(e.code));
      setTimeout(() => done('timeout'), 5000);
      socket.write(`POST ${QIDO} HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/related\r\nContent-Length: 900000000\r\n\r\n`);
    });
    expect(outcome.head).toMatch(/^HTTP\/1\.1 413 /);
    expect(outcome).toMatchObject({ ended: true });
    expect(outcome.error).toBeUndefined();
  });

  test('after closing such connections the gateway keeps serving', async () => {
    expect((await request(gw.url, QIDO, { headers: auth(alice) })).status).toBe(200);
  });
});

describe('upstream failures', () => {
  test('a non-admin caller gets the gateway\'s 502, never the upstream\'s error text, which goes to the log', async () => {
    const r = await request(gw.url, `${QIDO}?PatientID=fail500`, { headers: { ...auth(alice), accept: 'application/json' } });
    expect(r.status).toBe(502);
    const body = JSON.parse(r.text) as { error: string; requestId: string };
    expect(body.error).toBe('UPSTREAM_ERROR');
    expect(r.text).not.toContain('10.20.30.40');
    expect(r.text).not.toContain('HttpError');
    const id = r.headers['x-request-id'] as string;
    expect(body.requestId).toBe(id);
    const until = Date.now() + 2000;
    let logged: Record<string, unknown> | undefined;
    while (!logged && Date.now() < until) {
      logged = gw.logs.find((l) => l.reqId === id && l.msg === 'upstream failed');
      if (!logged) await new Promise((res) => setTimeout(res, 20));
    }
    expect(logged).toMatchObject({ status: 500, route: 'dicomweb', operation: 'search-studies' });
    expect(String(logged?.upstreamBody)).toContain(UPSTREAM_FAILURE_TEXT);
  });

  test('anonymous callers on a public route get the gateway\'s 502 as well', async () => {
    const r = await request(gw.url, '/open/fail500');
    expect(r.status).toBe(502);
    expect(r.text).not.toContain('10.20.30.40');
  });

  test('credentials an upstream echoes in its error text are redacted in the log', async () => {
    const secret = `s3cr3t${Date.now()}`;
    const jwt = `eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.${secret}sig`;
    const r = await request(gw.url, `/open/fail500?code=${secret}&id_token_hint=${jwt}&PatientID=P1`);
    expect(r.status).toBe(502);
    const id = r.headers['x-request-id'] as string;
    const until = Date.now() + 2000;
    let logged: Record<string, unknown> | undefined;
    while (!logged && Date.now() < until) {
      logged = gw.logs.find((l) => l.reqId === id && l.msg === 'upstream failed');
      if (!logged) await new Promise((res) => setTimeout(res, 20));
    }
    expect(String(logged?.upstreamBody)).toContain('PatientID=P1'); // the echoed URI is there…
    expect(gw.rawLogs()).not.toContain(secret); // …without the credentials in it
  });

  test('an admin sees the upstream\'s own answer', async () => {
    const r = await request(gw.url, '/pacs-admin/tools/fail500', { headers: auth(admin) });
    expect(r.status).toBe(500);
    expect(r.text).toContain(UPSTREAM_FAILURE_TEXT);
  });
});

describe('upstream requests per user', () => {
  const slow = (token: string, ms = 1500) => request(gw.url, `${QIDO}?PatientID=/delay/${ms}`, { headers: auth(token) });

  test('one user past the limit gets 429 while other users go on; the slots come back', async () => {
    const held = [slow(alice), slow(alice), slow(alice)];
    await new Promise((r) => setTimeout(r, 300));
    const over = await request(gw.url, QIDO, { headers: { ...auth(alice), accept: 'application/json' } });
    expect(over.status).toBe(429);
    expect(over.headers['retry-after']).toBe('1');
    expect(JSON.parse(over.text).error).toBe('TOO_MANY_REQUESTS');
    expect((await request(gw.url, QIDO, { headers: auth(bob) })).status).toBe(200);
    expect((await Promise.all(held)).map((r) => r.status)).toEqual([200, 200, 200]);
    expect((await request(gw.url, QIDO, { headers: auth(alice) })).status).toBe(200);
  });

  test('requests whose client went away give their slot back', async () => {
    const u = new URL(gw.url);
    const sockets = Array.from({ length: 3 }, () => {
      const s = net.connect(Number(u.port), u.hostname);
      s.on('error', () => undefined);
      s.write(`GET ${QIDO}?PatientID=/delay/5000 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${alice}\r\n\r\n`);
      return s;
    });
    await new Promise((r) => setTimeout(r, 300));
    expect((await request(gw.url, QIDO, { headers: auth(alice) })).status).toBe(429);
    for (const s of sockets) s.destroy();
    await new Promise((r) => setTimeout(r, 200));
    expect((await request(gw.url, QIDO, { headers: auth(alice) })).status).toBe(200);
  });
});

test('a client that stops reading is cut off after the send timeout, and the upstream request with it', async () => {
  const u = new URL(gw.url);
  const path = '/open/bytes/500000000';
  const socket = net.connect(Number(u.port), u.hostname);
  socket.on('error', () => undefined);
  socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
  socket.pause(); // never reads: the kernel buffers fill, then the gateway waits for 'drain' in vain
  try {
    // A paused socket does not notice the close; the gateway's access log and the upstream do.
    const started = Date.now();
    let line: Record<string, unknown> | undefined;
    while (!line && Date.now() - started < 15_000) {
      line = gw.logs.find((l) => l.msg === 'request' && l.path === path);
      if (!line) await new Promise((r) => setTimeout(r, 50));
    }
    expect(line).toMatchObject({ aborted: true, error: 'SEND_TIMEOUT' });
    const until = Date.now() + 3000;
    while (!echo.seen.some((s) => s.url === '/bytes/500000000') && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    const upstream = echo.seen.find((s) => s.url === '/bytes/500000000');
    expect(upstream?.aborted).toBe(true);
    expect(echo.written('/bytes/500000000')).toBeLessThan(500_000_000);
  } finally {
    socket.destroy();
  }
}, 30_000);

test('the public /readyz shares one round of upstream checks per second; the admin one checks afresh', async () => {
  const probes = () => echo.seen.filter((s) => s.method === 'HEAD' && s.url === '/').length;
  await new Promise((r) => setTimeout(r, 1100)); // let any earlier round expire
  const before = probes();
  const answers = await Promise.all(Array.from({ length: 20 }, () => request(gw.url, '/readyz')));
  for (let i = 0; i < 10; i++) answers.push(await request(gw.url, '/readyz'));
  expect(answers.every((a) => a.status === 200)).toBe(true);
  // Every route here targets the same upstream origin: one probe per round, at most two rounds in this burst.
  expect(probes() - before).toBeGreaterThanOrEqual(1);
  expect(probes() - before).toBeLessThanOrEqual(2);
  const adminBefore = probes();
  for (let i = 0; i < 3; i++) expect((await request(gw.adminUrl!, '/readyz')).status).toBe(200);
  expect(probes() - adminBefore).toBe(3);
});
