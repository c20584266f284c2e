// Starts the real gateway in-process on a free loopback port from a routes.yaml text.
import { Writable } from 'node:stream';
import { parseConfig } from '../../proxy/config/load.js';
import { createGateway, type Gateway } from '../../proxy/server.js';
import { createLogger } from '../../proxy/ops/log.js';

export interface RunningGateway {
  readonly url: string;
  readonly adminUrl?: string;
  /** With server.tls.redirectFrom: the plain listener that redirects to https. */
  readonly redirectUrl?: string;
  readonly gateway: Gateway;
  /** Every log line the gateway wrote, parsed. */
  readonly logs: Array<Record<string, unknown>>;
  /** The raw log text, to search for leaked secrets. */
  rawLogs(): string;
  stop(): Promise<void>;
}

export async function startGateway(yaml: string, env: NodeJS.ProcessEnv = {}): Promise<RunningGateway> {
  const config = parseConfig(yaml, 'test-routes.yaml', env);
  const logs: Array<Record<string, unknown>> = [];
  let raw = '';
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      const text = chunk.toString();
      raw += text;
      for (const line of text.split('\n')) if (line.trim()) logs.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const gateway = createGateway(config, { logger: createLogger('debug', sink) });
  const { url, adminUrl, redirectUrl } = await gateway.listen();
  return { url, ...(adminUrl ? { adminUrl } : {}), ...(redirectUrl ? { redirectUrl } : {}), gateway, logs, rawLogs: () => raw, stop: () => gateway.close() };
}

/** Waits until the gateway reports ready (the IdP's keys fetched, upstreams reachable), or fails after `timeoutMs`. */
export async function waitReady(gw: RunningGateway, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const r = await gw.gateway.readiness();
    if (r.ready) return;
    if (Date.now() > until) throw new Error(`gateway not ready: ${JSON.stringify(r.checks)}`);
    await new Promise((ok) => setTimeout(ok, 50));
  }
}

/** Waits until the access log holds a line for the given request id (it is written on response close). */
export async function accessLogFor(gw: RunningGateway, requestId: string, timeoutMs = 2000): Promise<Record<string, unknown>> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const line = gw.logs.find((l) => l.reqId === requestId && l.msg === 'request');
    if (line) return line;
    if (Date.now() > until) throw new Error(`no access log line for ${requestId}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A TCP port free on 127.0.0.1 right now (for a gateway whose public URL must be known before it starts). */
export async function freeLoopbackPort(): Promise<number> {
  const net = await import('node:net');
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}
