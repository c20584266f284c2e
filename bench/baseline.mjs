// THE Node baseline: the fastest plain proxy we know how to write on Node 20 — node:http in front,
// an undici Pool behind, bodies streamed straight into the response, no auth, no logging.
// It still behaves like a proxy (hop-by-hop headers dropped both ways, 502 on upstream failure,
// backpressure through pool.stream), so the gateway is compared with something honest.
// env: UPSTREAM_URL (required), BASELINE_PORT (default 0 = any free port). Prints `READY {json}`.
import http from 'node:http';
import { Pool } from 'undici';

const HOP = ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'expect'];
// 128 > wrk's 50 connections: a request never queues for an upstream socket. Pipelining 1 is
// what any proxy must use with an upstream that has not promised to handle pipelining.
const pool = new Pool(process.env.UPSTREAM_URL, { connections: 128, pipelining: 1 });

http.createServer((req, res) => {
  const headers = { ...req.headers };
  for (const h of HOP) delete headers[h];
  delete headers.host; // undici sets the upstream's own, as the gateway's changeOrigin does
  pool.stream(
    { path: req.url, method: req.method, headers, body: req.method === 'GET' || req.method === 'HEAD' ? null : req },
    ({ statusCode, headers: h }) => { for (const k of HOP) delete h[k]; res.writeHead(statusCode, h); return res; },
    (err) => { if (err && !res.headersSent) res.writeHead(502, { 'content-length': 0 }).end(); else if (err) res.destroy(); },
  );
}).listen(Number(process.env.BASELINE_PORT ?? 0), '127.0.0.1', function ready() {
  process.stdout.write(`READY ${JSON.stringify({ url: `http://127.0.0.1:${this.address().port}` })}\n`);
});
process.on("SIGTERM", () => process.exit(0)); process.on("SIGINT", () => process.exit(0));
