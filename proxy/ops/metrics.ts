// Prometheus metrics, one registry per gateway instance (tests run several in one process).
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

export interface Metrics {
  readonly registry: Registry;
  readonly upstreamErrors: Counter<'route' | 'kind'>;
  readonly denials: Counter<'route' | 'operation' | 'code'>;
  readonly jwksFetches: Counter<'result'>;
  readonly jwksStale: Gauge;
  /** Login-session events: login, login_failed, logout, backchannel_logout, refresh, refresh_refused, expired. */
  readonly sessionEvents: Counter<'event'>;
  readonly scopeLookups: Counter<'kind'>;
  /**
   * Reports a verified-token cache's lookups as pacs_gateway_token_cache_total{result="hit"|"miss"}.
   * The cache counts in plain numbers; they are read only when /metrics is scraped.
   */
  trackTokenCache(stats: () => { readonly hits: number; readonly misses: number }): void;
  /** Counts and times one answered request (pacs_gateway_requests_total, pacs_gateway_request_duration_seconds). */
  observeRequest(route: string, operation: string, method: string, status: number, seconds: number): void;
}

const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** Distinct (route, method, status) series kept: methods are client-chosen, so the map is bounded. */
const MAX_SERIES = 10_000;

interface Timing { readonly route: string; readonly buckets: Float64Array; sum: number; count: number }
interface Tally { readonly route: string; readonly operation: string; readonly method: string; readonly status: string; n: number }

/**
 * The two per-request metrics, recorded into plain counters and rendered by prom-client only when
 * scraped. prom-client's own Counter/Histogram re-validate and re-hash their labels on every call
 * (~0.6 µs per request even through cached children, bench/), which the hot path does not need.
 * Both are registered as prom-client metrics, so /metrics shows them in the usual exposition format.
 */
function requestMetrics(registry: Registry) {
  const tallies: Tally[] = [];
  const timings = new Map<string, Timing>();
  const requestsName = 'pacs_gateway_requests_total';
  const durationName = 'pacs_gateway_request_duration_seconds';
  const counter = {
    name: requestsName, help: 'Requests answered, by route, operation, method and status', type: 'counter', aggregator: 'sum',
    get: async () => ({
      name: requestsName, help: counter.help, type: 'counter', aggregator: 'sum',
      values: tallies.map((t) => ({ labels: { route: t.route, operation: t.operation, method: t.method, status: t.status }, value: t.n })),
    }),
  };
  const histogram = {
    name: durationName, help: 'Time from request to the end of the response, by route', type: 'histogram', aggregator: 'sum',
    get: async () => ({
      name: durationName, help: histogram.help, type: 'histogram', aggregator: 'sum',
      values: [...timings.values()].flatMap((t) => {
        let cumulative = 0;
        const buckets = DURATION_BUCKETS.map((le, i) => {
          cumulative += t.buckets[i] as number;
          return { labels: { le, route: t.route }, value: cumulative, metricName: `${durationName}_bucket` };
        });
        return [
          ...buckets,
          { labels: { le: '+Inf', route: t.route }, value: t.count, metricName: `${durationName}_bucket` },
          { labels: { route: t.route }, value: t.sum, metricName: `${durationName}_sum` },
          { labels: { route: t.route }, value: t.count, metricName: `${durationName}_count` },
        ];
      }),
    }),
  };
  registry.registerMetric(counter as never);
  registry.registerMetric(histogram as never);
  // route → operation → method → status → tally: each step looks up a value that is usually the very
  // same string (route and operation names, Node's method strings) or a small integer, so no key is
  // built per request.
  const byRoute = new Map<string, Map<string, Map<string, Map<number, Tally>>>>();
  const tallyFor = (route: string, operation: string, method: string, status: number): Tally | undefined => {
    const known = byRoute.get(route)?.get(operation)?.get(method)?.get(status);
    if (known || tallies.length >= MAX_SERIES) return known; // past the bound nothing new is kept, not even a map
    let byOperation = byRoute.get(route);
    if (!byOperation) { byOperation = new Map(); byRoute.set(route, byOperation); }
    let byMethod = byOperation.get(operation);
    if (!byMethod) { byMethod = new Map(); byOperation.set(operation, byMethod); }
    let byStatus = byMethod.get(method);
    if (!byStatus) { byStatus = new Map(); byMethod.set(method, byStatus); }
    const tally: Tally = { route, operation, method, status: String(status), n: 0 };
    byStatus.set(status, tally);
    tallies.push(tally);
    return tally;
  };
  return (route: string, operation: string, method: string, status: number, seconds: number): void => {
    const tally = tallyFor(route, operation, method, status);
    if (tally) tally.n++;
    let timing = timings.get(route);
    if (!timing) { timing = { route, buckets: new Float64Array(DURATION_BUCKETS.length), sum: 0, count: 0 }; timings.set(route, timing); }
    timing.sum += seconds;
    timing.count++;
    for (let i = 0; i < DURATION_BUCKETS.length; i++) {
      if (seconds <= (DURATION_BUCKETS[i] as number)) { (timing.buckets[i] as number)++; break; }
    }
  };
}

export function createMetrics(opts: { defaultMetrics?: boolean } = {}): Metrics {
  const registry = new Registry();
  if (opts.defaultMetrics) collectDefaultMetrics({ register: registry, prefix: 'pacs_gateway_' });
  const observeRequest = requestMetrics(registry);
  const tokenCaches: (() => { readonly hits: number; readonly misses: number })[] = [];
  new Counter({
    name: 'pacs_gateway_token_cache_total', help: 'Verified-token cache lookups (hit, miss)', labelNames: ['result'], registers: [registry],
    collect() {
      let hits = 0;
      let misses = 0;
      for (const stats of tokenCaches) { const s = stats(); hits += s.hits; misses += s.misses; }
      this.reset();
      this.inc({ result: 'hit' }, hits);
      this.inc({ result: 'miss' }, misses);
    },
  });
  return {
    registry,
    upstreamErrors: new Counter({ name: 'pacs_gateway_upstream_errors_total', help: 'Upstream failures, by route and kind (refused, timeout, reset, auth, status: a 5xx answer)', labelNames: ['route', 'kind'], registers: [registry] }),
    denials: new Counter({ name: 'pacs_gateway_denials_total', help: 'Requests refused by the gateway, by route, operation and error code', labelNames: ['route', 'operation', 'code'], registers: [registry] }),
    jwksFetches: new Counter({ name: 'pacs_gateway_jwks_fetches_total', help: 'Key set fetches from the identity provider (ok, error, suppressed by the cooldown)', labelNames: ['result'], registers: [registry] }),
    sessionEvents: new Counter({ name: 'pacs_gateway_session_events_total', help: 'Login-session and share-link events: login, login_failed, logout, backchannel_logout, refresh, refresh_refused, expired, share_created, share_revoked, share_redeemed, share_refused', labelNames: ['event'], registers: [registry] }),
    scopeLookups: new Counter({ name: 'pacs_gateway_scope_lookups_total', help: 'Upstream lookups made for callers limited to some studies (studies, series, instances, owned), cache misses only', labelNames: ['kind'], registers: [registry] }),
    jwksStale: new Gauge({ name: 'pacs_gateway_jwks_stale', help: '1 while the last key set fetch failed and cached keys are used (stale-if-error)', registers: [registry] }),
    observeRequest,
    trackTokenCache: (stats) => { tokenCaches.push(stats); },
  };
}
