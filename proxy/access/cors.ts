// CORS for API routes used from another origin: preflights answered without a token, and the
// allowed origin echoed on real responses (errors included, so a browser client can read a 401).
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { RouteConfig } from '../config/schema.js';

export interface Cors {
  /** True when the request was a preflight and has been answered. */
  preflight(req: IncomingMessage, res: ServerResponse): boolean;
  /** Adds the CORS response headers for an allowed origin. */
  decorate(req: IncomingMessage, res: ServerResponse): void;
}

export function createCors(cfg: NonNullable<RouteConfig['cors']>): Cors {
  const origins = new Set(cfg.origins);
  const methods = cfg.methods.join(', ');
  const allowedHeaders = new Set(cfg.headers.map((h) => h.toLowerCase()));
  const maxAge = String(Math.floor(cfg.maxAge / 1000));
  return {
    preflight(req, res) {
      if (req.method !== 'OPTIONS' || !req.headers['access-control-request-method']) return false;
      const origin = req.headers.origin;
      const method = String(req.headers['access-control-request-method']).toUpperCase();
      const asked = String(req.headers['access-control-request-headers'] ?? '').split(',').map((h) => h.trim().toLowerCase()).filter(Boolean);
      res.setHeader('Vary', 'Origin, Access-Control-Request-Method, Access-Control-Request-Headers');
      if (!origin || !origins.has(origin) || !cfg.methods.includes(method as never) || asked.some((h) => !allowedHeaders.has(h))) {
        res.writeHead(403, { 'content-type': 'application/json', 'cache-control': 'no-store' });
        res.end(JSON.stringify({ error: 'FORBIDDEN', status: 403, message: 'CORS preflight refused for this origin, method or headers' }));
        return true;
      }
      res.writeHead(204, {
        'access-control-allow-origin': origin,
        'access-control-allow-methods': methods,
        'access-control-allow-headers': cfg.headers.join(', '),
        'access-control-max-age': maxAge,
      });
      res.end();
      return true;
    },
    decorate(req, res) {
      const origin = req.headers.origin;
      if (origin && origins.has(origin)) {
        res.setHeader('Access-Control-Allow-Origin', origin);
        res.setHeader('Access-Control-Expose-Headers', 'WWW-Authenticate, X-Request-Id, Content-Length, Content-Type');
        res.setHeader('Vary', 'Origin');
      }
    },
  };
}
