// A loopback HTTP server that reports what reached it: the tool to test what the gateway forwards.
// (Orthanc cannot echo headers; everything Orthanc can show is tested against the real Orthanc.)
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface SeenRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: http.IncomingHttpHeaders;
  readonly rawHeaders: readonly string[];
  readonly bodyBytes: number;
  readonly aborted: boolean;
}

export interface EchoUpstream {
  readonly url: string;
  readonly seen: SeenRequest[];
  /** Requests currently held open by /stall or /slow-body. */
  inFlight(): number;
  /** Bytes a /bytes/N answer has handed to its socket so far, by request URL (backpressure shows here). */
  written(url: string): number;
  stop(): Promise<void>;
}

/** What the upstream says when it fails: the kind of detail Orthanc gives (it maps the PACS's network). */
export const UPSTREAM_FAILURE_TEXT = 'TCP Initialization Error: Connection refused (10.20.30.40:104)';

/**
 * GET /stall never answers; /slow-body sends headers then stalls; /bytes/N streams N bytes; /delay/MS answers late;
 * /status/N answers with that status; a URL holding "fail500" answers 500 with an internal-looking
 * error text (UPSTREAM_FAILURE_TEXT); /cookies sets two cookies and its own X-Request-Id and
 * X-Content-Type-Options; anything else echoes the request as JSON.
 * WebSocket upgrades are accepted and echo raw bytes back.
 */
export async function startEchoUpstream(): Promise<EchoUpstream> {
  const seen: SeenRequest[] = [];
  let open = 0;
  const written = new Map<string, number>();
  const server = http.createServer((req, res) => {
    let bodyBytes = 0;
    let finished = false;
    open++;
    req.on('data', (c: Buffer) => { bodyBytes += c.length; });
    const record = (aborted: boolean) => {
      if (finished) return;
      finished = true;
      open--;
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, bodyBytes, aborted });
    };
    res.on('close', () => record(!res.writableFinished));
    const url = req.url ?? '/';
    if (url.includes('/stall')) return;
    if (url.includes('/slow-body')) { res.writeHead(200, { 'content-type': 'text/plain' }); res.write('partial'); return; }
    const delay = /\/delay\/(\d+)/.exec(url);
    if (delay) {
      setTimeout(() => { res.writeHead(200, { 'content-type': 'text/plain' }); res.end('late'); }, Number(delay[1]));
      return;
    }
    if (url.includes('fail500')) {
      res.writeHead(500, { 'content-type': 'application/json' });
      // Like Orthanc's error JSON, it names the request (here with its query, as other servers do).
      res.end(JSON.stringify({ HttpError: 'Internal Server Error', Details: UPSTREAM_FAILURE_TEXT, Uri: url }));
      return;
    }
    const status = /^\/status\/(\d{3})/.exec(url);
    if (status) {
      res.writeHead(Number(status[1]), { 'www-authenticate': 'Basic realm="upstream"', 'content-type': 'text/plain' });
      res.end('status');
      return;
    }
    if (url.startsWith('/cookies')) {
      res.writeHead(200, [
        'Set-Cookie', 'a=1; Path=/', 'Set-Cookie', 'b=2; Path=/', 'X-Request-Id', 'upstream-chosen',
        'X-Content-Type-Options', 'nosniff', 'Content-Type', 'text/plain', 'Content-Length', '2',
      ]);
      res.end('ok');
      return;
    }
    const bytes = /^\/bytes\/(\d+)/.exec(url);
    if (bytes) {
      let left = Number(bytes[1]);
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': left });
      const chunk = Buffer.alloc(64 * 1024, 7);
      const pump = () => {
        while (left > 0) {
          const n = Math.min(left, chunk.length);
          left -= n;
          written.set(url, (written.get(url) ?? 0) + n);
          if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) { res.once('drain', pump); return; }
        }
        res.end();
      };
      pump();
      return;
    }
    req.on('end', () => {
      const body = JSON.stringify({ method: req.method, url, headers: req.headers, bodyBytes });
      res.writeHead(200, {
        'content-type': 'application/json', 'keep-alive': 'timeout=5', 'x-upstream': 'echo',
        connection: 'keep-alive, x-hop', 'x-hop': 'should-not-pass', 'proxy-authenticate': 'Basic',
      });
      res.end(body);
    });
  });
  server.on('upgrade', (req, socket) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, bodyBytes: 0, aborted: false });
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
    socket.pipe(socket);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    inFlight: () => open,
    written: (u) => written.get(u) ?? 0,
    stop: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}
