// A fixed, deliberately cheap upstream so that the proxy under test, not the upstream, is what
// the benchmark measures. Bodies are built once at start-up; every answer is a single write.
//
//   GET …/json            2 KB DICOM JSON (the size of a small QIDO-RS reply)
//   GET …/frame           512 KB binary (a WADO-RS frame)
//   GET …/big[?bytes=N]   N bytes (default 200 MB) generated on the fly with backpressure
//
// Only the last path segment is looked at, so /json, /pub/json and /sec/json all work: proxies
// under test may forward the path with or without their route prefix.
//
// usage: node bench/upstream.mjs [port]   (or UPSTREAM_PORT; 0 = any free port)
// Prints `READY {"url":…,"port":…}` on stdout once listening.
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { BIG_BYTES, FRAME_BYTES, JSON_BYTES } from './harness.mjs';

/** A QIDO-like study list padded to exactly `size` bytes, so every proxy moves the same bytes. */
function qidoBody(size) {
  const study = (i) => ({
    '00080020': { vr: 'DA', Value: ['20240101'] },
    '00080050': { vr: 'SH', Value: [`ACC${i}`] },
    '00100010': { vr: 'PN', Value: [{ Alphabetic: `DOE^PATIENT${i}` }] },
    '0020000D': { vr: 'UI', Value: [`1.2.826.0.1.3680043.8.498.${1000 + i}`] },
    '00081030': { vr: 'LO', Value: [''] },
  });
  const list = [study(1), study(2), study(3), study(4)];
  const pad = size - Buffer.byteLength(JSON.stringify(list));
  if (pad < 0) throw new Error('qido template larger than the target size');
  list[0]['00081030'].Value[0] = 'x'.repeat(pad);
  const buf = Buffer.from(JSON.stringify(list));
  if (buf.length !== size) throw new Error(`qido body is ${buf.length} bytes, expected ${size}`);
  return buf;
}

const JSON_BODY = qidoBody(JSON_BYTES);
const FRAME_BODY = randomBytes(FRAME_BYTES);
// 64 KB matches the socket high-water marks well enough; reused for every write (never mutated).
const CHUNK = randomBytes(64 * 1024);

// Header arrays skip Node's per-request header object handling: the cheapest writeHead there is.
const JSON_HEADERS = ['Content-Type', 'application/dicom+json', 'Content-Length', String(JSON_BYTES)];
const FRAME_HEADERS = ['Content-Type', 'application/octet-stream', 'Content-Length', String(FRAME_BYTES)];

/** Streams `total` bytes, writing only while the socket accepts more: memory stays flat. */
function sendBig(res, total) {
  res.writeHead(200, ['Content-Type', 'application/octet-stream', 'Content-Length', String(total)]);
  let left = total;
  const pump = () => {
    while (left > 0) {
      if (res.destroyed) return; // client (or proxy) went away: stop generating
      const n = Math.min(CHUNK.length, left);
      left -= n;
      if (!res.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) {
        res.once('drain', pump);
        return;
      }
    }
    res.end();
  };
  pump();
}

function onRequest(req, res) {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  const leaf = path.slice(path.lastIndexOf('/') + 1);
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, ['Content-Length', '0']).end();
  } else if (leaf === 'json') {
    res.writeHead(200, JSON_HEADERS).end(JSON_BODY);
  } else if (leaf === 'frame') {
    res.writeHead(200, FRAME_HEADERS).end(FRAME_BODY);
  } else if (leaf === 'big') {
    const asked = q < 0 ? NaN : Number(new URLSearchParams(url.slice(q + 1)).get('bytes'));
    sendBig(res, Number.isSafeInteger(asked) && asked > 0 ? asked : BIG_BYTES);
  } else {
    res.writeHead(404, ['Content-Length', '0']).end();
  }
}

const port = Number(process.argv[2] ?? process.env.UPSTREAM_PORT ?? 0);
const server = http.createServer(onRequest);
// Longer than any gap between warm-up and measurement, so proxies never race a keep-alive close.
server.keepAliveTimeout = 65_000;
server.headersTimeout = 66_000;
server.listen(port, '127.0.0.1', () => {
  const { port: actual } = server.address();
  process.stdout.write(`READY ${JSON.stringify({ url: `http://127.0.0.1:${actual}`, port: actual })}\n`);
});
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
