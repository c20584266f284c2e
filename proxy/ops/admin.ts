// The private admin listener: Prometheus metrics, liveness and readiness with their reasons.
import http from 'node:http';
import type { runChecks } from './health.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';

export interface AdminDeps {
  readonly metrics: Metrics;
  readonly readiness: () => ReturnType<typeof runChecks>;
  readonly shuttingDown: () => boolean;
  readonly log: Logger;
}

const json = (res: http.ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
};

export function createAdminServer({ metrics, readiness, shuttingDown, log }: AdminDeps): http.Server {
  return http.createServer(async (req, res) => {
    try {
      if (req.url === '/metrics') {
        const body = await metrics.registry.metrics();
        res.writeHead(200, { 'content-type': metrics.registry.contentType });
        res.end(body);
      } else if (req.url === '/readyz') {
        const r = await readiness();
        const ready = r.ready && !shuttingDown();
        json(res, ready ? 200 : 503, { status: ready ? 'ready' : 'unavailable', shuttingDown: shuttingDown(), ...r });
      } else if (req.url === '/healthz') {
        json(res, shuttingDown() ? 503 : 200, { status: shuttingDown() ? 'unavailable' : 'alive' });
      } else {
        json(res, 404, { error: 'NO_ROUTE', status: 404 });
      }
    } catch (err) {
      log.error({ err }, 'admin endpoint failed');
      if (!res.headersSent) res.writeHead(500);
      res.end();
    }
  });
}
