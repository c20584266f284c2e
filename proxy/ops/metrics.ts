// Prometheus metrics, one registry per gateway instance (tests run several in one process).
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface Metrics {
  readonly registry: Registry;
  readonly requests: Counter<'route' | 'method' | 'status'>;
  readonly duration: Histogram<'route'>;
  readonly upstreamErrors: Counter<'route' | 'kind'>;
  readonly denials: Counter<'route' | 'code'>;
  readonly jwksFetches: Counter<'result'>;
  readonly tokenCache: Counter<'result'>;
  readonly jwksStale: Gauge;
  /** Counts and times one answered request; label children are cached (prom-client hashes labels on every call otherwise). */
  observeRequest(route: string, method: string, status: number, seconds: number): void;
}

export function createMetrics(opts: { defaultMetrics?: boolean } = {}): Metrics {
  const registry = new Registry();
  if (opts.defaultMetrics) collectDefaultMetrics({ register: registry, prefix: 'pacs_gateway_' });
  const counters = new Map<string, { inc(): void }>();
  const timers = new Map<string, { observe(v: number): void }>();
  const metrics: Omit<Metrics, 'observeRequest'> = {
    registry,
    requests: new Counter({ name: 'pacs_gateway_requests_total', help: 'Requests answered, by route, method and status', labelNames: ['route', 'method', 'status'], registers: [registry] }),
    duration: new Histogram({
      name: 'pacs_gateway_request_duration_seconds', help: 'Time from request to the end of the response, by route',
      labelNames: ['route'], buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers: [registry],
    }),
    upstreamErrors: new Counter({ name: 'pacs_gateway_upstream_errors_total', help: 'Upstream failures, by route and kind (refused, timeout, reset)', labelNames: ['route', 'kind'], registers: [registry] }),
    denials: new Counter({ name: 'pacs_gateway_denials_total', help: 'Requests refused by the gateway, by route and error code', labelNames: ['route', 'code'], registers: [registry] }),
    jwksFetches: new Counter({ name: 'pacs_gateway_jwks_fetches_total', help: 'Key set fetches from the identity provider (ok, error, suppressed by the cooldown)', labelNames: ['result'], registers: [registry] }),
    tokenCache: new Counter({ name: 'pacs_gateway_token_cache_total', help: 'Verified-token cache lookups (hit, miss)', labelNames: ['result'], registers: [registry] }),
    jwksStale: new Gauge({ name: 'pacs_gateway_jwks_stale', help: '1 while the last key set fetch failed and cached keys are used (stale-if-error)', registers: [registry] }),
  };
  return {
    ...metrics,
    observeRequest(route, method, status, seconds) {
      const key = `${route} ${method} ${status}`;
      let counter = counters.get(key);
      if (!counter) {
        counter = metrics.requests.labels(route, method, String(status));
        if (counters.size < 10_000) counters.set(key, counter); // methods are client-chosen: bound the map
      }
      counter.inc();
      let timer = timers.get(route);
      if (!timer) { timer = metrics.duration.labels(route); timers.set(route, timer); }
      timer.observe(seconds);
    },
  };
}
