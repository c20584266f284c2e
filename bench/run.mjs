// `npm run bench`: throughput and latency of the gateway against a plain Node proxy, plus the
// gateway's memory during a large streamed download. Prints figures only — nothing here passes
// or fails on timing, because a shared 2-core machine is too noisy for thresholds. Compare only
// figures from one run (BENCH_ROUNDS=3 reports the median round of each cell).
//
// env: BENCH_DURATION (s, default 10), BENCH_WARMUP (s, 3), BENCH_CONNECTIONS (50),
//      BENCH_ROUNDS (1), BENCH_BIG_MB (200), BENCH_BIG_RATE (curl --limit-rate, '50M'),
//      BENCH_GATEWAY_LOG (log level of the main gateway row, 'info'),
//      BENCH_RETRY_DISTURBED (0: re-measure cells disturbed by other processes up to N times),
//      BENCH_PAIRED_CYCLES (40), BENCH_PAIRED_SECONDS (1): the interleaved target ratios (below);
//      BENCH_PAIRED_CYCLES=0 skips them, BENCH_PAIRED_ONLY=1 runs only them (quick A/B of two builds).
import {
  PAYLOADS, checkTarget, num, wrk, describePlacement, disturbanceNote, ensureWrk, fmt, installCleanup, markdownTable,
  measure, medianRun, pinSelf, placement, PROXY_NODE_FLAGS, rssOf, runPinned, sampleRss, settings, startServer, toolVersions,
} from './harness.mjs';

const GATEWAY_LOG = process.env.BENCH_GATEWAY_LOG || 'info';

const startUpstream = () => startServer('upstream', placement.upstream, 'upstream.mjs');
const startBaseline = (up) => startServer('baseline', placement.proxy, 'baseline.mjs', [], { UPSTREAM_URL: up.info.url }, PROXY_NODE_FLAGS);
const startGateway = (up, level, tokens = 0) => startServer(`gateway:${level}`, placement.proxy, 'gateway.mjs', [],
  { UPSTREAM_URL: up.info.url, GATEWAY_LOG_LEVEL: level, BENCH_FRESH_TOKENS: String(tokens) }, PROXY_NODE_FLAGS);

/**
 * Each scenario owns a fresh server process (started, measured on every payload, stopped) so no
 * run inherits another's heap or sockets. `target` gives wrk's URL and extras for one payload,
 * or { na } when the scenario cannot run on this build.
 */
const SCENARIOS = [
  {
    id: 'direct', label: 'direct upstream (no proxy)',
    start: async () => undefined,
    target: (_srv, up, p) => ({ url: `${up.info.url}/${p.leaf}` }),
  },
  {
    id: 'baseline', label: 'Node baseline (http + undici Pool)',
    start: startBaseline,
    target: (srv, _up, p) => ({ url: `${srv.info.url}/pub/${p.leaf}` }),
  },
  {
    id: 'gateway', label: `gateway /pub public (log ${GATEWAY_LOG})`,
    start: (up) => startGateway(up, GATEWAY_LOG),
    target: (srv, _up, p) => ({ url: `${srv.info.url}/pub/${p.leaf}` }),
  },
  ...(GATEWAY_LOG === 'silent' ? [] : [{
    // What the access log costs: the same gateway with logging off.
    id: 'gateway-silent', label: 'gateway /pub public (log silent)',
    start: (up) => startGateway(up, 'silent'),
    target: (srv, _up, p) => ({ url: `${srv.info.url}/pub/${p.leaf}` }),
  }]),
  // Issue 3: bearer-protected route. bench/gateway.mjs says whether it can run (its extension point).
  {
    // The public route again, with the request carrying the same Authorization header as the cached
    // bearer row (not checked there, not forwarded): the same bytes on the wire, so the ratio of the
    // cached bearer row to this one is the cost of the token check alone, apart from the header's size.
    id: 'gateway-token-header', label: `gateway /pub public, same token header sent (log ${GATEWAY_LOG})`,
    start: (up) => startGateway(up, GATEWAY_LOG),
    target: (srv, _up, p) => (srv.info.bearer?.cachedToken
      ? { url: `${srv.info.url}/pub/${p.leaf}`, headers: { Authorization: `Bearer ${srv.info.bearer.cachedToken}` } }
      : { na: srv.info.bearer?.unavailable ?? 'not yet implemented' }),
  },
  {
    id: 'bearer-cached', label: `gateway /sec bearer, cached token (log ${GATEWAY_LOG})`,
    start: (up) => startGateway(up, GATEWAY_LOG),
    target: (srv, _up, p) => (srv.info.bearer?.cachedToken
      ? { url: `${srv.info.url}/sec/${p.leaf}`, headers: { Authorization: `Bearer ${srv.info.bearer.cachedToken}` } }
      : { na: srv.info.bearer?.unavailable ?? 'not yet implemented' }),
  },
  {
    id: 'bearer-fresh', label: `gateway /sec bearer, fresh token per request (log ${GATEWAY_LOG})`,
    start: (up) => startGateway(up, GATEWAY_LOG, Number(process.env.BENCH_FRESH_TOKENS ?? 150_000)),
    target: (srv, _up, p) => (srv.info.bearer?.tokensFile
      ? { url: `${srv.info.url}/sec/${p.leaf}`, tokensFile: srv.info.bearer.tokensFile, headers: {} }
      : { na: srv.info.bearer?.unavailable ?? 'not yet implemented' }),
  },
];

/** Starts a server only to ask whether a scenario can run, so n/a costs no load time. */
async function scenarioAvailable(s, up) {
  if (!s.id.startsWith('bearer') && s.id !== 'gateway-token-header') return { ok: true };
  const srv = await s.start(up);
  try {
    const t = s.target(srv, up, PAYLOADS[0]);
    return t.na ? { ok: false, na: t.na } : { ok: true };
  } finally { await srv.stop(); }
}

async function throughput(up) {
  const results = new Map(); // `${scenario}|${payload}` → runs
  const na = new Map(); // scenario → reason
  const runnable = [];
  for (const s of SCENARIOS) {
    const a = await scenarioAvailable(s, up);
    if (a.ok) runnable.push(s); else na.set(s.id, a.na);
  }
  const seconds = runnable.length * PAYLOADS.length * (settings.warmup + settings.duration) * settings.rounds;
  process.stderr.write(`throughput: ${runnable.length} scenarios × ${PAYLOADS.length} payloads × ${settings.rounds} round(s), ~${Math.round(seconds)} s of load\n`);

  for (let round = 1; round <= settings.rounds; round++) {
    // Odd rounds run the scenarios in order, even rounds in reverse, so a machine that slows down
    // or speeds up during the run does not always favour the same side of a ratio.
    const order = round % 2 === 1 ? runnable : [...runnable].reverse();
    for (const s of order) {
      const srv = await s.start(up);
      try {
        for (const p of PAYLOADS) {
          const t = s.target(srv, up, p);
          process.stderr.write(`  [${round}/${settings.rounds}] ${s.label} · ${p.label} …`);
          const r = await measure(t.url, p.bytes, t);
          process.stderr.write(` ${fmt.int(r.rps)} req/s\n`);
          const key = `${s.id}|${p.id}`;
          results.set(key, [...(results.get(key) ?? []), r]);
        }
      } finally { await srv?.stop(); }
    }
  }
  return { results, na };
}

function throughputTable({ results, na }) {
  const cell = (sid, pid) => medianRun(results.get(`${sid}|${pid}`) ?? []);
  const rows = [];
  for (const s of SCENARIOS) {
    for (const p of PAYLOADS) {
      if (na.has(s.id)) {
        rows.push([s.label, p.label, 'n/a', 'n/a', 'n/a', 'n/a', '–', '–', '–', '–']);
        continue;
      }
      const r = cell(s.id, p.id);
      const base = cell('baseline', p.id);
      rows.push([
        s.label, p.label, fmt.int(r.rps), fmt.ms(r.p50), fmt.ms(r.p99), fmt.ratio(r.rps / base.rps),
        fmt.pct(r.cpuLoad), fmt.pct(r.cpuProxy), fmt.pct(r.foreign), String(r.errors),
      ]);
    }
  }
  const table = markdownTable(
    ['scenario', 'payload', 'req/s:', 'p50 ms:', 'p99 ms:', 'vs baseline:', `core ${placement.load} %:`, `core ${placement.proxy} %:`, 'other %:', 'errors:'],
    rows,
  );

  // A ratio is taken within each round (both cells measured minutes apart at most) and the median of
  // those is reported: steadier on a shared machine than the ratio of two medians from different rounds.
  const roundRatios = (num, den, pid) => {
    const a = results.get(`${num}|${pid}`) ?? [];
    const b = results.get(`${den}|${pid}`) ?? [];
    return a.map((r, i) => r.rps / b[i].rps).filter(Number.isFinite).sort((x, y) => x - y);
  };
  const ratioLine = (what, num, den, target) => PAYLOADS.map((p) => {
    if (na.has(num) || na.has(den)) return `- ${what}, ${p.label}: n/a (${na.get(num) ?? na.get(den)})`;
    const all = roundRatios(num, den, p.id);
    const x = all[Math.floor((all.length - 1) / 2)];
    const spread = all.length > 1 ? `, rounds ${fmt.ratio(all[0])}–${fmt.ratio(all[all.length - 1])}` : '';
    const goal = target ? `; target ≥ ${target.toFixed(2)}×${x >= target ? '' : ', below target'}` : '';
    return `- ${what}, ${p.label}: **${fmt.ratio(x)}** (median of ${all.length} round${all.length === 1 ? '' : 's'}${spread}${goal})`;
  }).join('\n');
  const targets = [
    ratioLine('gateway public ÷ Node baseline', 'gateway', 'baseline', 0.85),
    ratioLine('cached bearer ÷ gateway public', 'bearer-cached', 'gateway', 0.9),
    ratioLine('cached bearer ÷ gateway public with the same token header (the token check alone)', 'bearer-cached', 'gateway-token-header'),
  ].join('\n');
  return `${table}\n\nRatios (req/s, informative only; each taken within a round, median over rounds):\n${targets}\n\n${disturbanceNote([...results.values()].flat())}`;
}

const PAIRED_CYCLES = Math.max(0, num(process.env.BENCH_PAIRED_CYCLES, 40));
const PAIRED_SECONDS = Math.max(1, num(process.env.BENCH_PAIRED_SECONDS, 1));

/** The q-quantile of sorted numbers (linear interpolation). */
const quantile = (sorted, q) => {
  const at = (sorted.length - 1) * q;
  const lo = Math.floor(at);
  return sorted[lo] + (sorted[Math.min(lo + 1, sorted.length - 1)] - sorted[lo]) * (at - lo);
};

/**
 * A distribution-free 95 % confidence interval for the median of sorted samples: the order
 * statistics around n/2 that a binomial(n, ½) count reaches with 95 % probability (normal
 * approximation, ranks n/2 ∓ 0.98·√n). Needs about 10 samples to say anything.
 */
function medianInterval(sorted) {
  const n = sorted.length;
  const half = 0.98 * Math.sqrt(n);
  const lo = Math.max(1, Math.floor(n / 2 - half));
  const hi = Math.min(n, Math.ceil(n / 2 + 1 + half));
  return [sorted[lo - 1], sorted[hi - 1]];
}

/**
 * The two target ratios, measured so that a shared machine's drift cancels out: the baseline and one
 * gateway (serving /pub and /sec) run side by side, both warm, and each cycle loads them one after
 * the other for BENCH_PAIRED_SECONDS each (baseline /pub, gateway /pub, gateway /sec with the cached
 * token; the order rotates every cycle). A ratio is taken within each cycle, whose three slices
 * lie seconds apart instead of minutes, and the median over cycles is reported with its
 * interquartile range and a 95 % interval of that median. A target counts as met in a run only when
 * the whole interval is at or above it. Only one server has load at any moment; the idle one costs
 * nothing.
 */
async function pairedRatios(up) {
  const base = await startBaseline(up);
  const gw = await startGateway(up, GATEWAY_LOG);
  try {
    const token = gw.info.bearer?.cachedToken;
    if (!token) return `Interleaved ratios: n/a (${gw.info.bearer?.unavailable ?? 'no bearer route'}).`;
    const lanes = [
      { id: 'baseline', url: (p) => `${base.info.url}/pub/${p.leaf}`, headers: {} },
      { id: 'public', url: (p) => `${gw.info.url}/pub/${p.leaf}`, headers: {} },
      { id: 'bearer', url: (p) => `${gw.info.url}/sec/${p.leaf}`, headers: { Authorization: `Bearer ${token}` } },
    ];
    const slice = async (l, p) => (await wrk(l.url(p), { duration: PAIRED_SECONDS, headers: l.headers })).rps;
    const lines = [];
    for (const p of PAYLOADS) {
      for (const l of lanes) {
        await checkTarget(l.url(p), p.bytes, l.headers);
        await wrk(l.url(p), { duration: Math.max(settings.warmup, 1), headers: l.headers }); // JIT, pools, sockets
      }
      const ratios = { pub: [], bearer: [] };
      const rpsOf = { baseline: [], public: [], bearer: [] };
      for (let c = 0; c < PAIRED_CYCLES; c++) {
        const r = {};
        const order = lanes.map((_, i) => lanes[(i + c) % lanes.length]);
        for (const l of order) r[l.id] = await slice(l, p);
        for (const l of lanes) rpsOf[l.id].push(r[l.id]);
        ratios.pub.push(r.public / r.baseline);
        ratios.bearer.push(r.bearer / r.public);
        process.stderr.write(`  paired ${p.label} [${c + 1}/${PAIRED_CYCLES}] ${lanes.map((l) => `${l.id} ${fmt.int(r[l.id])}`).join(', ')} req/s\n`);
      }
      const sorted = (xs) => xs.filter(Number.isFinite).sort((a, b) => a - b);
      const line = (what, xs, target) => {
        const s = sorted(xs);
        const med = quantile(s, 0.5);
        const [lo, hi] = medianInterval(s);
        const verdict = s.length < 10 ? `too few cycles to judge (${s.length}; 10 or more give an interval)`
          : lo >= target ? 'met: the whole interval is at or above it'
          : med >= target ? 'median at or above it, interval reaches below' : 'below target';
        return `- ${what}, ${p.label}: **${fmt.ratio(med)}** (95 % interval of the median ${fmt.ratio(lo)}–${fmt.ratio(hi)}; `
          + `interquartile ${fmt.ratio(quantile(s, 0.25))}–${fmt.ratio(quantile(s, 0.75))}, cycles ${fmt.ratio(s[0])}–${fmt.ratio(s[s.length - 1])}; `
          + `target ≥ ${target.toFixed(2)}×: ${verdict})`;
      };
      const medRps = (id) => fmt.int(quantile(sorted(rpsOf[id]), 0.5));
      lines.push(
        `- median slice, ${p.label}: baseline ${medRps('baseline')} req/s, gateway public ${medRps('public')}, cached bearer ${medRps('bearer')}`,
        line('gateway public ÷ Node baseline', ratios.pub, 0.85),
        line('cached bearer ÷ gateway public', ratios.bearer, 0.9),
      );
    }
    return [
      `Interleaved target ratios: ${PAIRED_CYCLES} cycles × ${PAIRED_SECONDS} s per slice, baseline and gateway (log ${GATEWAY_LOG}) running side by side, `
        + 'order rotated every cycle; each ratio taken within a cycle, median over cycles:',
      ...lines,
    ].join('\n');
  } finally {
    await gw.stop();
    await base.stop();
  }
}

/**
 * Peak RSS while a large body streams through a proxy to a client slower than the upstream:
 * if backpressure were lost somewhere, the difference would pile up in the proxy's memory.
 */
async function bigTransfer(up, name, start) {
  const srv = await start(up);
  try {
    // Warm the route (JIT, agent sockets, metrics) so the delta is the transfer's, not start-up's.
    for (let i = 0; i < 50; i++) await checkTarget(`${srv.info.url}/pub/json`, PAYLOADS[0].bytes);
    await new Promise((r) => setTimeout(r, 500));
    const before = rssOf(srv.pid);
    const sampler = sampleRss(srv.pid, 50);
    const { stdout } = await runPinned(placement.load, 'curl', [
      '-sS', '-o', '/dev/null', '--limit-rate', settings.bigRate,
      '-w', '%{http_code} %{size_download} %{time_total}', `${srv.info.url}/pub/big?bytes=${settings.bigBytes}`,
    ]);
    const { peak, samples } = sampler.stop();
    const [status, size, secs] = stdout.trim().split(' ').map(Number);
    if (status !== 200 || size !== settings.bigBytes) throw new Error(`${name}: big transfer got ${status} with ${size} bytes`);
    return [name, `${fmt.mb(size)} MB in ${secs.toFixed(1)} s (${fmt.mb(size / secs)} MB/s)`, fmt.mb(before), fmt.mb(peak), fmt.mb(peak - before), String(samples)];
  } finally { await srv.stop(); }
}

async function main() {
  installCleanup();
  ensureWrk();
  pinSelf();
  const started = Date.now();
  const up = await startUpstream();
  try {
    for (const p of PAYLOADS) await checkTarget(`${up.info.url}/${p.leaf}`, p.bytes);
    if (process.env.BENCH_PAIRED_ONLY === '1') {
      process.stdout.write(`${toolVersions()}; ${describePlacement()}.\n${await pairedRatios(up)}\n`);
      return;
    }
    const tp = await throughput(up);
    let paired = '';
    if (PAIRED_CYCLES > 0) {
      process.stderr.write(`paired: ${PAIRED_CYCLES} cycles × 3 slices × ${PAIRED_SECONDS} s × ${PAYLOADS.length} payloads\n`);
      paired = await pairedRatios(up);
    }
    process.stderr.write(`memory: ${fmt.mb(settings.bigBytes)} MB through each proxy at ${settings.bigRate}B/s …\n`);
    const memRows = [
      await bigTransfer(up, `gateway (log ${GATEWAY_LOG})`, (u) => startGateway(u, GATEWAY_LOG)),
      await bigTransfer(up, 'Node baseline', startBaseline),
    ];

    const out = [
      '',
      `## pacs-gateway benchmark — ${new Date().toISOString()}`,
      '',
      `${toolVersions()}; ${describePlacement()}.`,
      `Node flags of both proxies (baseline and gateway, as docker/Dockerfile ships the gateway): ${PROXY_NODE_FLAGS.join(' ')}.`,
      `wrk: 1 thread, ${settings.connections} connections, ${settings.warmup} s warm-up + ${settings.duration} s measured per cell, ${settings.rounds} round(s)${settings.rounds > 1 ? ' (median round shown; scenario order reversed every other round)' : ''}.`,
      `Gateway: dist/ build, route /pub → upstream (public, prefix stripped), admin listener off; access log: ${GATEWAY_LOG === 'silent' ? 'off' : `'${GATEWAY_LOG}' JSON lines → /dev/null (4 KB batches, synchronous writes, as in production)`}.`,
      '',
      '### Throughput and latency',
      '',
      throughputTable(tp),
      '',
      ...(paired ? [paired, ''] : []),
      `core ${placement.load} % / core ${placement.proxy} %: busy share of each core during the measured run (core ${placement.proxy} near 100 % = the proxy is the bottleneck).`,
      'other %: CPU used by processes outside the benchmark during the measured run, in % of one core — a row with more than ~10 was disturbed; rerun before trusting it.',
      'errors: wrk socket errors + non-2xx answers.',
      '',
      `### Memory: ${fmt.mb(settings.bigBytes)} MB streamed download, client limited to ${settings.bigRate}B/s`,
      '',
      markdownTable(['proxy', 'transfer', 'RSS before MB:', 'RSS peak MB:', 'peak delta MB:', 'samples:'], memRows),
      '',
      `RSS = VmRSS from /proc/<pid>/status, polled every 50 ms during the transfer. Total time ${Math.round((Date.now() - started) / 1000)} s.`,
      '',
    ];
    process.stdout.write(out.join('\n'));
  } finally { await up.stop(); }
}

main().catch((err) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
