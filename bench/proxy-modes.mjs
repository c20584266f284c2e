// Which way should the gateway forward? The same harness as run.mjs (same upstream, placement,
// wrk settings) over the http-proxy-3 configurations discussed in STACK-NOTES, the gateway as
// built, and the undici baseline for scale. Figures only; compare within one run.
//
//   node bench/proxy-modes.mjs                 (after `npm run build`; same BENCH_* env as run.mjs)
//   node bench/proxy-modes.mjs --serve MODE    (internal: one proxy process, pinned by the runner)
import http from 'node:http';
import { ProxyServer } from 'http-proxy-3';
import {
  PAYLOADS, describePlacement, disturbanceNote, ensureWrk, fmt, installCleanup, markdownTable, measure, medianRun,
  pinSelf, placement, settings, startServer, toolVersions,
} from './harness.mjs';

// The gateway's own agent settings (proxy/forward/proxy.ts createUpstreamAgents), so the
// http-proxy-3 variants differ from the gateway only in what the table says.
const agentOptions = (scheduling) => ({ keepAlive: true, keepAliveMsecs: 1000, maxSockets: 256, maxFreeSockets: 64, scheduling, timeout: 120_000 });

/** http-proxy-3 options per mode; changeOrigin everywhere because the gateway uses it. */
const HP3_MODES = {
  // The README example: no agent, so every request opens (and closes) an upstream connection.
  'hp3-no-agent': (up) => ({ target: up, changeOrigin: true }),
  // String target (re-parsed into a URL on every request) + X-Forwarded-* by http-proxy-3.
  'hp3-agent-fifo': (up) => ({ target: up, changeOrigin: true, xfwd: true, agent: new http.Agent(agentOptions('fifo')) }),
  'hp3-agent-lifo': (up) => ({ target: up, changeOrigin: true, xfwd: true, agent: new http.Agent(agentOptions('lifo')) }),
  // What the gateway's forwarder configures, with none of the gateway around it.
  'hp3-object-noxfwd-lifo': (up) => ({ target: new URL(up), changeOrigin: true, xfwd: false, agent: new http.Agent(agentOptions('lifo')) }),
};

function serve(mode) {
  const proxy = new ProxyServer(HP3_MODES[mode](process.env.UPSTREAM_URL));
  const onError = (_err, _req, res) => {
    if (res instanceof http.ServerResponse && !res.headersSent) res.writeHead(502, { 'content-length': 0 }).end();
    else res?.destroy?.();
  };
  proxy.on('error', onError);
  http.createServer((req, res) => proxy.web(req, res, (err) => onError(err, req, res)))
    .listen(0, '127.0.0.1', function ready() {
      process.stdout.write(`READY ${JSON.stringify({ url: `http://127.0.0.1:${this.address().port}` })}\n`);
    });
  process.on('SIGTERM', () => process.exit(0));
}

const GATEWAY_LOG = process.env.BENCH_GATEWAY_LOG || 'info';
const SELF = new URL(import.meta.url).pathname;

const VARIANTS = [
  { id: 'baseline', label: 'Node baseline (http + undici Pool.stream)', start: (up) => startServer('baseline', placement.proxy, 'baseline.mjs', [], { UPSTREAM_URL: up }) },
  { id: 'hp3-no-agent', label: 'http-proxy-3, no agent (string target)' },
  { id: 'hp3-agent-fifo', label: 'http-proxy-3, keep-alive agent fifo, string target, xfwd' },
  { id: 'hp3-agent-lifo', label: 'http-proxy-3, keep-alive agent lifo, string target, xfwd' },
  { id: 'hp3-object-noxfwd-lifo', label: 'http-proxy-3, lifo agent, URL object target, xfwd false' },
  { id: 'gateway-silent', label: 'gateway as built (log silent)', start: (up) => startServer('gateway', placement.proxy, 'gateway.mjs', [], { UPSTREAM_URL: up, GATEWAY_LOG_LEVEL: 'silent' }) },
  ...(GATEWAY_LOG === 'silent' ? [] : [{
    id: 'gateway', label: `gateway as built (log ${GATEWAY_LOG})`,
    start: (up) => startServer('gateway', placement.proxy, 'gateway.mjs', [], { UPSTREAM_URL: up, GATEWAY_LOG_LEVEL: GATEWAY_LOG }),
  }]),
].map((v) => ({ start: (up) => startServer(v.id, placement.proxy, SELF, ['--serve', v.id], { UPSTREAM_URL: up }), ...v }));

async function main() {
  installCleanup();
  ensureWrk();
  pinSelf();
  const up = await startServer('upstream', placement.upstream, 'upstream.mjs');
  const results = new Map();
  try {
    const seconds = VARIANTS.length * PAYLOADS.length * (settings.warmup + settings.duration) * settings.rounds;
    process.stderr.write(`proxy modes: ${VARIANTS.length} variants × ${PAYLOADS.length} payloads × ${settings.rounds} round(s), ~${Math.round(seconds)} s of load\n`);
    for (let round = 1; round <= settings.rounds; round++) {
      for (const v of VARIANTS) {
        const srv = await v.start(up.info.url);
        try {
          for (const p of PAYLOADS) {
            process.stderr.write(`  [${round}/${settings.rounds}] ${v.label} · ${p.label} …`);
            const r = await measure(`${srv.info.url}/pub/${p.leaf}`, p.bytes);
            process.stderr.write(` ${fmt.int(r.rps)} req/s\n`);
            const key = `${v.id}|${p.id}`;
            results.set(key, [...(results.get(key) ?? []), r]);
          }
        } finally { await srv.stop(); }
      }
    }
  } finally { await up.stop(); }

  const cell = (id, p) => medianRun(results.get(`${id}|${p}`));
  const rows = VARIANTS.flatMap((v) => PAYLOADS.map((p) => {
    const r = cell(v.id, p.id);
    return [v.label, p.label, fmt.int(r.rps), fmt.ms(r.p50), fmt.ms(r.p99), fmt.ratio(r.rps / cell('baseline', p.id).rps),
      fmt.ratio(r.rps / cell('hp3-object-noxfwd-lifo', p.id).rps), fmt.pct(r.cpuLoad), fmt.pct(r.cpuProxy), fmt.pct(r.foreign), String(r.errors)];
  }));
  process.stdout.write([
    '',
    `## http-proxy-3 forwarding modes — ${new Date().toISOString()}`,
    '',
    `${toolVersions()}; ${describePlacement()}.`,
    `wrk: 1 thread, ${settings.connections} connections, ${settings.warmup} s warm-up + ${settings.duration} s measured per cell, ${settings.rounds} round(s). All proxies forward /pub/<payload>.`,
    '',
    markdownTable(['variant', 'payload', 'req/s:', 'p50 ms:', 'p99 ms:', 'vs baseline:', 'vs hp3 gateway-config:', `core ${placement.load} %:`, `core ${placement.proxy} %:`, 'other %:', 'errors:'], rows),
    '',
    '"vs hp3 gateway-config" = against bare http-proxy-3 configured as the gateway\'s forwarder is (lifo agent, URL object target, xfwd false):',
    'the gap between that row and "gateway as built" is the cost of everything the gateway does around http-proxy-3.',
    'other %: CPU used by processes outside the benchmark during the measured run, in % of one core (more than ~10: disturbed, rerun).',
    '',
    disturbanceNote([...results.values()].flat()),
    '',
  ].join('\n'));
}

if (process.argv[2] === '--serve') serve(process.argv[3]);
else main().catch((err) => { process.stderr.write(`proxy-modes failed: ${err instanceof Error ? err.stack : String(err)}\n`); process.exit(1); });
