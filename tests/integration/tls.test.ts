// TLS on the gateway's own listener, with certificates made here by openssl: HTTP/1.1 over TLS 1.2+,
// HSTS, the plain listener that only redirects, a certificate replaced on disk served without a
// restart, and a refusal to start with a key that does not match.
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { parseConfig } from '../../proxy/config/load.js';
import { createGateway } from '../../proxy/server.js';
import { startGateway, type RunningGateway } from '../support/gateway.js';

const dir = mkdtempSync(path.join(tmpdir(), 'pgw-tls-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A self-signed certificate for 127.0.0.1 (ECDSA P-256, one day). */
function makeCert(name: string, cn: string): { cert: string; key: string } {
  const cert = path.join(dir, `${name}.crt`);
  const key = path.join(dir, `${name}.key`);
  const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-subj', `/CN=${cn}`, '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl: ${r.stderr}`);
  return { cert, key };
}

const first = makeCert('first', 'pacs-gateway test one');
const second = makeCert('second', 'pacs-gateway test two');
const live = { cert: path.join(dir, 'live.crt'), key: path.join(dir, 'live.key') };
copyFileSync(first.cert, live.cert);
copyFileSync(first.key, live.key);

const yaml = (extra = '') => `
server:
  listen: 127.0.0.1:0
  publicUrl: https://pacs.example.org
  admin: false
  tls: { cert: '${live.cert}', key: '${live.key}', hsts: true, redirectFrom: '127.0.0.1:0' ${extra} }
routes:
  - { name: health, path: /pub, upstream: http://127.0.0.1:9, expose: upstream, auth: public }
`;

let gw: RunningGateway;
beforeAll(async () => { gw = await startGateway(yaml()); });
afterAll(async () => { await gw?.stop(); });

/** One TLS handshake: the peer certificate's subject CN and the protocol, or the error. */
function handshake(url: string, opts: tls.ConnectionOptions = {}): Promise<{ cn?: string; protocol?: string | null; error?: string }> {
  const u = new URL(url);
  return new Promise((ok) => {
    const socket = tls.connect({ host: u.hostname, port: Number(u.port), rejectUnauthorized: false, ALPNProtocols: ['http/1.1'], ...opts }, () => {
      const cert = socket.getPeerX509Certificate();
      ok({ cn: cert ? new X509Certificate(cert.raw).subject.replace(/^CN=/, '') : undefined, protocol: socket.getProtocol() });
      socket.end();
    });
    socket.on('error', (e) => ok({ error: e.message }));
  });
}

function httpsGet(url: string, ca: string): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((ok, ko) => {
    const req = https.get(url, { ca: readFileSync(ca) }, (res) => {
      let body = '';
      res.on('data', (c) => { body += c; });
      res.on('end', () => ok({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', ko);
  });
}

test('the public listener speaks HTTPS (TLS 1.2 or newer) with the configured certificate, and sends HSTS', async () => {
  expect(gw.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
  const h = await handshake(gw.url);
  expect(h.cn).toBe('pacs-gateway test one');
  expect(['TLSv1.2', 'TLSv1.3']).toContain(h.protocol);
  const old = await handshake(gw.url, { maxVersion: 'TLSv1.1', minVersion: 'TLSv1' });
  expect(old.error).toBeDefined();
  const r = await httpsGet(`${gw.url}/healthz`, live.cert);
  expect(r.status).toBe(200);
  expect(r.headers['strict-transport-security']).toBe('max-age=15552000; includeSubDomains');
});

test('the plain listener answers every request with a redirect to the public https URL, never to the Host it was sent', async () => {
  const u = new URL(gw.redirectUrl!);
  const r = await new Promise<http.IncomingMessage>((ok, ko) => {
    http.get({ host: u.hostname, port: u.port, path: '/pacs/dicom-web/studies?PatientID=X', headers: { host: 'evil.example' } }, ok).on('error', ko);
  });
  r.resume();
  expect(r.statusCode).toBe(308);
  expect(r.headers.location).toBe('https://pacs.example.org/pacs/dicom-web/studies?PatientID=X');
});

test('a certificate replaced on disk is served without a restart', async () => {
  copyFileSync(second.key, live.key);
  copyFileSync(second.cert, live.cert);
  const until = Date.now() + 10_000;
  let cn: string | undefined;
  while (Date.now() < until) {
    cn = (await handshake(gw.url)).cn;
    if (cn === 'pacs-gateway test two') break;
    await new Promise((ok) => setTimeout(ok, 200));
  }
  expect(cn).toBe('pacs-gateway test two');
});

test('a key that does not belong to the certificate is refused at start; an http public URL with tls is a configuration error', () => {
  const mixed = yaml().replace(live.key, first.key).replace(live.cert, second.cert);
  expect(() => createGateway(parseConfig(mixed, 'r.yaml', {}))).toThrow(/key values mismatch|key|certificate/i);
  expect(() => parseConfig(yaml().replace('https://pacs.example.org', 'http://pacs.example.org'), 'r.yaml', {})).toThrow(/server\.publicUrl: with server\.tls the public URL is https/);
});
