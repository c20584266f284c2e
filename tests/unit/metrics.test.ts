// The per-request metrics are recorded outside prom-client's label machinery: what /metrics shows must still be exact.
import { createMetrics } from '../../proxy/ops/metrics.js';

const lines = async (m: ReturnType<typeof createMetrics>, prefix: string) => (await m.registry.metrics()).split('\n').filter((l) => l.startsWith(prefix));
const value = (all: string[], series: string) => {
  const line = all.find((l) => l.startsWith(`${series} `));
  if (!line) throw new Error(`no series ${series} in\n${all.join('\n')}`);
  return Number(line.slice(series.length + 1));
};

test('requests are counted per route, operation, method and status', async () => {
  const m = createMetrics();
  m.observeRequest('pacs', 'search-studies', 'GET', 200, 0.01);
  m.observeRequest('pacs', 'search-studies', 'GET', 200, 0.02);
  m.observeRequest('pacs', 'retrieve-frames', 'GET', 200, 0.02);
  m.observeRequest('pacs', 'store', 'POST', 403, 0.001);
  m.observeRequest('auth', '-', 'GET', 200, 0.5);
  const all = await lines(m, 'pacs_gateway_requests_total');
  expect(value(all, 'pacs_gateway_requests_total{route="pacs",operation="search-studies",method="GET",status="200"}')).toBe(2);
  expect(value(all, 'pacs_gateway_requests_total{route="pacs",operation="retrieve-frames",method="GET",status="200"}')).toBe(1);
  expect(value(all, 'pacs_gateway_requests_total{route="pacs",operation="store",method="POST",status="403"}')).toBe(1);
  expect(value(all, 'pacs_gateway_requests_total{route="auth",operation="-",method="GET",status="200"}')).toBe(1);
  expect(all).toHaveLength(4);
});

test('durations land in cumulative buckets with the right sum and count', async () => {
  const m = createMetrics();
  const seen = [0.0005, 0.001, 0.003, 0.2, 0.2, 7, 45];
  for (const s of seen) m.observeRequest('pacs', 'search-studies', 'GET', 200, s);
  const all = await lines(m, 'pacs_gateway_request_duration_seconds');
  const bucket = (le: string) => value(all, `pacs_gateway_request_duration_seconds_bucket{le="${le}",route="pacs"}`);
  expect(bucket('0.001')).toBe(2); // le is inclusive
  expect(bucket('0.0025')).toBe(2);
  expect(bucket('0.005')).toBe(3);
  expect(bucket('0.25')).toBe(5);
  expect(bucket('10')).toBe(6);
  expect(bucket('30')).toBe(6);
  expect(bucket('+Inf')).toBe(7);
  expect(value(all, 'pacs_gateway_request_duration_seconds_count{route="pacs"}')).toBe(7);
  expect(value(all, 'pacs_gateway_request_duration_seconds_sum{route="pacs"}')).toBeCloseTo(seen.reduce((a, b) => a + b, 0), 9);
});

test('client-chosen methods cannot grow the series without bound', async () => {
  const m = createMetrics();
  for (let i = 0; i < 10_050; i++) m.observeRequest('pacs', '-', `M${i}`, 405, 0.001);
  expect(await lines(m, 'pacs_gateway_requests_total{')).toHaveLength(10_000);
  // Every request is still timed.
  expect(value(await lines(m, 'pacs_gateway_request_duration_seconds_count'), 'pacs_gateway_request_duration_seconds_count{route="pacs"}')).toBe(10_050);
});
