// `npm run bench:instructions`: the CPU work per request of each proxy, counted in instructions by
// valgrind's callgrind. Not a test and not a replacement for `npm run bench` (which measures req/s
// and latency with wrk): a complement that does not depend on how busy the machine is, for
// comparing two builds of the gateway or finding where its time goes.
//
// What it counts: user-space instructions of the proxy's main thread (JIT code, V8, Node, libuv,
// OpenSSL: where requests are handled) for N requests after a warm-up. Not counted: the JIT compiler
// and GC helper threads (a major GC landing in one run's window added ~30k per request to it, so
// they are left out), kernel time — the socket syscalls, the same per request for every proxy here
// and about 35-40 % of a request's CPU time on this machine — cache misses, and the CPU's SHA
// extensions (valgrind hashes in software). So a ratio of these counts is a ratio of user-space
// work, wider than the req/s ratio of the same two proxies.
// Repeatability: the JIT decides when and what to optimise, so counts move by a few per cent from one
// process to the next; a short warm-up leaves compiler work in the count (5000 requests: +15 %).
// Time-based caches: under callgrind a request takes over a millisecond, so work a proxy does once per
// millisecond (formatting a log timestamp) lands on every request, while at full speed it is shared by
// ~20. Such work must stay cheap or these counts overstate it: Date#toISOString per millisecond cost
// the gateway ~6,800 counted instructions per request until log times formatted the date once per second.
//
// env: BENCH_CG_REQUESTS (measured requests per scenario, default 10000), BENCH_CG_WARMUP (20000),
//      BENCH_CG_SOCKETS (keep-alive connections of the load client, 10), BENCH_CG_ONLY (scenario ids,
//      comma-separated), BENCH_CG_KEEP (keep the callgrind dumps, for callgrind_annotate).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import {
  checkTarget, describePlacement, fmt, installCleanup, markdownTable, num, pinSelf, placement, PROXY_NODE_FLAGS, PAYLOADS, startServer,
} from './harness.mjs';

const REQUESTS = num(process.env.BENCH_CG_REQUESTS, 10_000);
const WARMUP = num(process.env.BENCH_CG_WARMUP, 20_000);
const SOCKETS = num(process.env.BENCH_CG_SOCKETS, 10);
const JSON_PAYLOAD = PAYLOADS[0];
const ONLY = process.env.BENCH_CG_ONLY ? new Set(process.env.BENCH_CG_ONLY.split(',')) : undefined; // e.g. baseline,gateway

const SCENARIOS = [
  { id: 'baseline', label: 'Node baseline (http + undici Pool)', script: 'baseline.mjs', leaf: '/pub/json' },
  { id: 'gateway', label: 'gateway /pub public (log info)', script: 'gateway.mjs', leaf: '/pub/json' },
  { id: 'gateway-token-header', label: 'gateway /pub public, same token header sent (log info)', script: 'gateway.mjs', leaf: '/pub/json', token: true },
  { id: 'bearer-cached', label: 'gateway /sec bearer, cached token (log info)', script: 'gateway.mjs', leaf: '/sec/json', token: true },
];

/** N GET requests over a few keep-alive connections, from this (unmeasured) process. */
function load(url, count, headers) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: SOCKETS });
  let sent = 0;
  let done = 0;
  return new Promise((resolve, reject) => {
    const next = () => {
      if (sent >= count) return;
      sent++;
      http.get(url, { agent, headers }, (res) => {
        if (res.statusCode !== 200) { reject(new Error(`${url}: status ${res.statusCode}`)); return; }
        res.resume();
        res.on('end', () => { done++; if (done === count) { agent.destroy(); resolve(); } else next(); });
      }).on('error', reject);
    };
    for (let i = 0; i < SOCKETS; i++) next();
  });
}

const callgrindControl = (args) => {
  const r = spawnSync('callgrind_control', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`callgrind_control ${args.join(' ')} failed: ${r.stderr || r.stdout}`);
};

/** Instructions between the zeroing and the dump: the `summary:` line of the dump file. */
function dumpedInstructions(dir, pid) {
  // --separate-threads: one file per thread ("-01" is the main thread, where requests are handled).
  const dumps = readdirSync(dir).filter((f) => f.startsWith(`cg.${pid}.out.`) && f.endsWith('-01')).sort();
  if (dumps.length === 0) throw new Error(`no callgrind dump for pid ${pid}`);
  const text = readFileSync(path.join(dir, dumps[0]), 'utf8');
  const m = /^(?:summary|totals): (\d+)/m.exec(text);
  if (!m) throw new Error(`no instruction total in ${dumps[0]}`);
  return Number(m[1]);
}

async function measure(scenario, upstream, dir) {
  const srv = await startServer(`${scenario.id}`, placement.proxy, scenario.script, [], {
    UPSTREAM_URL: upstream.info.url, GATEWAY_LOG_LEVEL: 'info', BENCH_FRESH_TOKENS: '0',
  }, PROXY_NODE_FLAGS, {
    wrapper: ['valgrind', '-q', '--tool=callgrind', '--smc-check=all-non-file', '--separate-threads=yes', `--callgrind-out-file=${dir}/cg.%p.out`],
    readyMs: 180_000,
  });
  try {
    const url = `${srv.info.url}${scenario.leaf}`;
    const headers = scenario.token ? { authorization: `Bearer ${srv.info.bearer.cachedToken}` } : {};
    await checkTarget(url, JSON_PAYLOAD.bytes, headers);
    await load(url, WARMUP, headers); // JIT tiers, pools, caches
    callgrindControl(['-z', String(srv.pid)]);
    await load(url, REQUESTS, headers);
    callgrindControl(['-d', String(srv.pid)]);
    return dumpedInstructions(dir, srv.pid) / REQUESTS;
  } finally { await srv.stop(); }
}

async function main() {
  if (spawnSync('valgrind', ['--version'], { stdio: 'ignore' }).status !== 0) {
    process.stderr.write('bench:instructions needs valgrind (Debian: apt-get install valgrind)\n');
    process.exit(2);
  }
  installCleanup();
  pinSelf();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pgw-callgrind-'));
  const upstream = await startServer('upstream', placement.upstream, 'upstream.mjs');
  const perRequest = new Map();
  try {
    for (const s of SCENARIOS.filter((x) => !ONLY || ONLY.has(x.id))) {
      process.stderr.write(`  ${s.label} under callgrind: ${WARMUP} warm-up + ${REQUESTS} measured requests …`);
      perRequest.set(s.id, await measure(s, upstream, dir));
      process.stderr.write(` ${fmt.int(perRequest.get(s.id))} instructions/request\n`);
    }
  } finally {
    await upstream.stop();
    if (process.env.BENCH_CG_KEEP) process.stderr.write(`callgrind dumps kept in ${dir}\n`);
    else rmSync(dir, { recursive: true, force: true });
  }
  const ir = (id) => perRequest.get(id);
  // Fewer instructions per request = more requests per second for the same CPU: ratios are inverted
  // so that they read like the req/s ratios of `npm run bench` (above 1 = cheaper than the reference).
  const rows = SCENARIOS.filter((s) => perRequest.has(s.id)).map((s) => [s.label, fmt.int(ir(s.id)), fmt.ratio(ir('baseline') / ir(s.id))]);
  const out = [
    '',
    `## pacs-gateway instruction counts — ${new Date().toISOString()}`,
    '',
    `node ${process.version}, ${spawnSync('valgrind', ['--version'], { encoding: 'utf8' }).stdout.trim()} (callgrind); ${describePlacement()}.`,
    `Main thread of the proxy only. Proxy Node flags: ${PROXY_NODE_FLAGS.join(' ')}. Load: ${SOCKETS} keep-alive connections, ${WARMUP} warm-up + ${REQUESTS} counted GET requests of the ${JSON_PAYLOAD.label} reply.`,
    '',
    markdownTable(['scenario', 'instructions/request:', 'baseline ÷ this:'], rows),
    '',
    'Ratios of user-space work (reference ÷ scenario: below 1.00× = more work than the reference):',
    `- gateway public vs Node baseline: **${fmt.ratio(ir('baseline') / ir('gateway'))}**`,
    `- cached bearer vs gateway public: **${fmt.ratio(ir('gateway') / ir('bearer-cached'))}**`,
    `- cached bearer vs gateway public with the same token header (the token check alone): **${fmt.ratio(ir('gateway-token-header') / ir('bearer-cached'))}**`,
    `- gateway public with the token header vs without (receiving the header alone): **${fmt.ratio(ir('gateway') / ir('gateway-token-header'))}**`,
    '',
    'User-space instructions only: the kernel\'s socket work (the same for every proxy), cache misses and the CPU\'s SHA extensions are not in these counts.',
    '',
  ];
  process.stdout.write(out.join('\n'));
}

main().catch((err) => {
  process.stderr.write(`bench:instructions failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
