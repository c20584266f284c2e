// Shared machinery for bench/run.mjs and bench/proxy-modes.mjs: CPU placement, child processes,
// wrk runs and their parsing, CPU and RSS sampling, markdown tables. Importing it has no side
// effects (upstream.mjs imports the payload sizes from here); call installCleanup() in a runner.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

export const JSON_BYTES = 2048;
export const FRAME_BYTES = 512 * 1024;
export const BIG_BYTES = 200 * 1024 * 1024;

export const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));

/** A numeric environment setting, or the fallback when it is unset or not a number. */
export const num = (v, fallback) => (v !== undefined && v !== '' && Number.isFinite(Number(v)) ? Number(v) : fallback);

/** Everything tunable comes from the environment so `npm run bench` needs no arguments. */
export const settings = Object.freeze({
  duration: num(process.env.BENCH_DURATION, 10), // seconds measured per scenario × payload
  warmup: num(process.env.BENCH_WARMUP, 3), // seconds of discarded load first (JIT, pools, agents)
  connections: num(process.env.BENCH_CONNECTIONS, 50),
  rounds: Math.max(1, num(process.env.BENCH_ROUNDS, 1)), // >1: report the median round per cell
  bigBytes: num(process.env.BENCH_BIG_MB, BIG_BYTES / 2 ** 20) * 2 ** 20,
  bigRate: process.env.BENCH_BIG_RATE ?? '50M', // curl --limit-rate: a client slower than the upstream
  // Shared machine: re-measure a cell up to N more times while other processes used more than
  // `disturbedAt` % of a core during it, keeping the least disturbed run. Off by default (time).
  retryDisturbed: Math.max(0, num(process.env.BENCH_RETRY_DISTURBED, 0)),
  disturbedAt: num(process.env.BENCH_DISTURBED_AT, 10),
});

export const PAYLOADS = [
  { id: 'json', label: '2 KB json', leaf: 'json', bytes: JSON_BYTES },
  { id: 'frame', label: '512 KB frame', leaf: 'frame', bytes: FRAME_BYTES },
];

// Placement. On this 2-core machine the proxy under test gets core 1 to itself; wrk and the
// upstream share core 0. That is fair to every proxy (identical placement for baseline, gateway
// and http-proxy-3 variants), and the "direct upstream" row measures exactly what core 0 can
// sustain on its own (wrk + upstream, the same per-request work as when a proxy sits between
// them). A proxy row well below the direct row with core 1 near 100 % busy is proxy-bound; a row
// close to the direct row would mean core 0 is the limit and the ratio understates the gap.
// With three or more cores the upstream moves to core 2 and core 0 is wrk's alone.
const CORES = os.availableParallelism();
const HAS_TASKSET = spawnSync('taskset', ['-V'], { stdio: 'ignore' }).status === 0;
export const placement = Object.freeze({
  pinned: CORES >= 2 && HAS_TASKSET,
  load: '0',
  proxy: '1',
  upstream: CORES >= 3 ? '2' : '0',
  cores: CORES,
});

export function describePlacement() {
  if (!placement.pinned) return `NOT pinned (${CORES} core(s)${HAS_TASKSET ? '' : ', no taskset'}): figures are indicative only`;
  return `wrk + curl on core ${placement.load}, upstream on core ${placement.upstream}, proxy under test alone on core ${placement.proxy} (${CORES} cores)`;
}

/** Keeps the orchestrator itself (idle but for RSS polling) off the proxy's core. */
export function pinSelf() {
  if (placement.pinned) spawnSync('taskset', ['-p', '-c', placement.load, String(process.pid)], { stdio: 'ignore' });
}

const pinnedCommand = (core, cmd, args) => (placement.pinned ? ['taskset', ['-c', core, cmd, ...args]] : [cmd, args]);

// ---- child processes -------------------------------------------------------------------------

const children = new Set();

function track(child) {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

let cleanupInstalled = false;
/** Every child dies with the runner: normal exit, error, Ctrl-C or SIGTERM. */
export function installCleanup() {
  if (cleanupInstalled) return;
  cleanupInstalled = true;
  // taskset execs its command, so each child's pid is the pid of the server or wrk itself.
  process.on('exit', () => { for (const c of children) c.kill('SIGKILL'); });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => {
      process.stderr.write(`\n${sig}: stopping ${children.size} child process(es)\n`);
      process.exit(130);
    });
  }
}

/**
 * Starts `node <script>` pinned to `core` and resolves once it prints `READY {json}` on stdout.
 * Its stdout keeps being drained afterwards (a full pipe would stall the server); its stderr is
 * passed through, prefixed, so crashes are visible.
 */
/**
 * The Node flags the gateway is shipped with (docker/Dockerfile's ENTRYPOINT, `npm start`, the demo):
 * a 64 MB young-generation semi-space, so short-lived per-request objects die before a scavenge
 * copies them (measured: ~+10 % requests/s on 2 KB replies for the gateway, none for the baseline).
 * Every proxy under test runs with them, baseline included, so the comparison stays like for like.
 */
export const PROXY_NODE_FLAGS = Object.freeze(['--max-semi-space-size=64']);

export function startServer(name, core, script, args = [], env = {}, nodeFlags = [], { wrapper = [], readyMs = 20_000 } = {}) {
  // `wrapper`: a command the node process runs under (bench/instructions.mjs: valgrind).
  const command = [...wrapper, process.execPath, ...nodeFlags, path.resolve(BENCH_DIR, script), ...args];
  const [cmd, argv] = pinnedCommand(core, command[0], command.slice(1));
  const child = track(spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } }));
  readline.createInterface({ input: child.stderr }).on('line', (l) => process.stderr.write(`[${name}] ${l}\n`));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name}: not ready after ${readyMs / 1000} s`)), readyMs);
    const early = (code, signal) => { clearTimeout(timer); reject(new Error(`${name}: exited (${code ?? signal}) before it was ready`)); };
    child.once('exit', early);
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      if (!line.startsWith('READY ')) return;
      clearTimeout(timer);
      child.off('exit', early);
      resolve({ name, pid: child.pid, info: JSON.parse(line.slice(6)), stop: () => stopChild(child) });
    });
  });
}

export function stopChild(child, graceMs = 3000) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const kill = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => { clearTimeout(kill); resolve(); });
    child.kill('SIGTERM');
  });
}

/** Runs a pinned command to completion; rejects on a non-zero exit with its output attached. */
export function runPinned(core, cmd, args) {
  const [c, argv] = pinnedCommand(core, cmd, args);
  const child = track(spawn(c, argv, { stdio: ['ignore', 'pipe', 'pipe'] }));
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { err += d; });
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      if (code === 0) resolve({ stdout: out, stderr: err });
      else reject(new Error(`${cmd} ${args.join(' ')} failed (${code ?? signal})\n${out}${err}`));
    });
  });
}

// ---- wrk -------------------------------------------------------------------------------------

let luaDir;
function luaScript(tokensFile) {
  if (!luaDir) {
    luaDir = mkdtempSync(path.join(os.tmpdir(), 'pgw-bench-'));
    process.once('exit', () => rmSync(luaDir, { recursive: true, force: true }));
  }
  // A `done` hook alone keeps wrk on its fast path (a static request, no Lua per request); it
  // prints raw counters that we parse instead of wrk's rounded, unit-suffixed text.
  let lua = `done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH_RESULT %.0f %.0f %.0f %.0f %.0f %.0f %.0f %.0f %.0f %.0f %.0f\\n",
    summary.requests, summary.duration, summary.bytes, latency:percentile(50), latency:percentile(99),
    latency.mean, e.connect, e.read, e.write, e.status, e.timeout))
end
`;
  if (tokensFile) {
    // One distinct token per request, cycling through the file: forces a full verification per
    // request as long as the file holds more tokens than the run sends requests.
    lua += `local tokens = {}
for line in io.lines(${JSON.stringify(tokensFile)}) do if #line > 0 then tokens[#tokens + 1] = line end end
local i = 0
request = function()
  i = i + 1
  if i > #tokens then i = 1 end
  return wrk.format(nil, nil, { ["Authorization"] = "Bearer " .. tokens[i] })
end
`;
  }
  const file = path.join(luaDir, tokensFile ? 'tokens.lua' : 'done.lua');
  writeFileSync(file, lua);
  return file;
}

const UNIT_MS = { us: 1e-3, ms: 1, s: 1000, m: 60_000 };

/** Fallback for a wrk without Lua: the `--latency` text output. */
function parseWrkText(text) {
  const rps = /Requests\/sec:\s*([\d.]+)/.exec(text);
  const pct = (p) => {
    const m = new RegExp(`^\\s*${p}%\\s+([\\d.]+)(us|ms|s|m)\\s*$`, 'm').exec(text);
    return m ? Number(m[1]) * UNIT_MS[m[2]] : NaN;
  };
  if (!rps) return undefined;
  const non2xx = /Non-2xx or 3xx responses:\s*(\d+)/.exec(text);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  return {
    rps: Number(rps[1]), p50: pct(50), p99: pct(99),
    errors: (non2xx ? Number(non2xx[1]) : 0) + (sock ? sock.slice(1).reduce((a, b) => a + Number(b), 0) : 0),
  };
}

export function parseWrk(text) {
  const m = /^BENCH_RESULT ((?:[\d.]+ ?){11})$/m.exec(text);
  if (m) {
    const [requests, durationUs, , p50us, p99us, , connect, read, write, status, timeout] = m[1].trim().split(' ').map(Number);
    return { rps: requests / (durationUs / 1e6), p50: p50us / 1000, p99: p99us / 1000, errors: connect + read + write + status + timeout, requests };
  }
  const fallback = parseWrkText(text);
  if (!fallback) throw new Error(`could not parse wrk output:\n${text}`);
  return fallback;
}

export async function wrk(url, { duration, headers = {}, tokensFile } = {}) {
  const args = ['-t1', `-c${settings.connections}`, `-d${duration}s`, '--latency', '--timeout', '10s', '-s', luaScript(tokensFile)];
  for (const [k, v] of Object.entries(headers)) args.push('-H', `${k}: ${v}`);
  args.push(url);
  const { stdout } = await runPinned(placement.load, 'wrk', args);
  return parseWrk(stdout);
}

// ---- CPU and memory --------------------------------------------------------------------------

/** Per-core and whole-machine jiffies from /proc/stat. */
export function cpuSnapshot() {
  const snap = {};
  for (const line of readFileSync('/proc/stat', 'utf8').split('\n')) {
    const m = /^cpu(\d*)\s+(.*)$/.exec(line);
    if (!m) continue;
    const v = m[2].trim().split(/\s+/).map(Number);
    // `tasks` leaves out irq/softirq time: loopback traffic's softirq work is the bench's own but
    // is charged to no process, so counting it would make every heavy run look disturbed.
    snap[m[1] || 'all'] = { idle: v[3] + (v[4] ?? 0), total: v.slice(0, 8).reduce((a, b) => a + b, 0), tasks: v[0] + v[1] + v[2] + (v[7] ?? 0) };
  }
  return snap;
}

export function cpuBusy(before, after, core) {
  const a = before[core];
  const b = after[core];
  if (!a || !b || b.total === a.total) return NaN;
  return 100 * (1 - (b.idle - a.idle) / (b.total - a.total));
}

/** utime+stime (and, for ourselves, reaped children's) of a process, in jiffies. */
function procTicks(pid, withReaped) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number); // f[0] is field 3
    return f[11] + f[12] + (withReaped ? f[13] + f[14] : 0);
  } catch { return 0; }
}

/**
 * Jiffies spent by the bench itself: this runner, its live servers, and (through cutime, once
 * reaped) every wrk that has finished. The rest of the machine's busy time is someone else's.
 */
function benchTicks(pids) {
  return procTicks(process.pid, true) + pids.reduce((sum, pid) => sum + procTicks(pid, false), 0);
}

/** VmRSS of a process in bytes (NaN once it is gone). */
export function rssOf(pid) {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : NaN;
  } catch { return NaN; }
}

/** Polls VmRSS every `everyMs`; stop() returns the peak and the sample count. */
export function sampleRss(pid, everyMs = 50) {
  let peak = rssOf(pid);
  let samples = 1;
  const timer = setInterval(() => {
    const r = rssOf(pid);
    if (r > peak) peak = r;
    samples += 1;
  }, everyMs);
  return { stop() { clearInterval(timer); const r = rssOf(pid); if (r > peak) peak = r; return { peak, samples: samples + 1 }; } };
}

// ---- measuring -------------------------------------------------------------------------------

/** One request before loading: a proxy that answers 502 quickly must never look fast. */
export async function checkTarget(url, expectedBytes, headers = {}) {
  const res = await fetch(url, { headers });
  const body = Buffer.from(await res.arrayBuffer());
  if (res.status !== 200 || body.length !== expectedBytes) {
    throw new Error(`${url}: expected 200 with ${expectedBytes} bytes, got ${res.status} with ${body.length} bytes`);
  }
}

/** One measured wrk run with per-core CPU use and the CPU other processes took meanwhile. */
async function measuredRun(url, opts) {
  const servers = [...children].map((c) => c.pid);
  const before = cpuSnapshot();
  const oursBefore = benchTicks(servers);
  const r = await wrk(url, { duration: settings.duration, ...opts });
  const oursAfter = benchTicks(servers);
  const after = cpuSnapshot();
  // Other processes' CPU (and VM steal) during the run, in % of one core: the machine is
  // shared, and a row measured while something else ran is worth less than its neighbours.
  const cores = Object.keys(after).length - 1;
  const perCore = (after.all.total - before.all.total) / cores;
  const foreign = Math.max(0, (after.all.tasks - before.all.tasks - (oursAfter - oursBefore)) / perCore * 100);
  return { ...r, cpuLoad: cpuBusy(before, after, placement.load), cpuProxy: cpuBusy(before, after, placement.proxy), foreign };
}

/** Sanity check, discarded warm-up, then the measured run (retried if disturbed, when asked). */
export async function measure(url, expectedBytes, { headers = {}, tokensFile } = {}) {
  // With a token file the check sends its first token, as wrk's script will.
  const first = tokensFile ? readFileSync(tokensFile, 'utf8').split('\n', 1)[0] : undefined;
  await checkTarget(url, expectedBytes, first ? { ...headers, Authorization: `Bearer ${first}` } : headers);
  if (settings.warmup > 0) await wrk(url, { duration: settings.warmup, headers, tokensFile });
  let best = await measuredRun(url, { headers, tokensFile });
  for (let i = 0; i < settings.retryDisturbed && best.foreign > settings.disturbedAt; i++) {
    process.stderr.write(` (disturbed: ${Math.round(best.foreign)} % other CPU, again)`);
    const again = await measuredRun(url, { headers, tokensFile });
    if (again.foreign < best.foreign) best = again;
  }
  return best;
}

/** Of several rounds of one cell, the round with the median req/s (its latencies go with it). */
export function medianRun(runs) {
  if (runs.length === 0) return undefined;
  const sorted = [...runs].sort((a, b) => a.rps - b.rps);
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

/** A closing warning when other processes competed for the CPU during measured runs. */
export function disturbanceNote(runs, limit = settings.disturbedAt) {
  const hit = runs.filter((r) => r.foreign > limit);
  if (hit.length === 0) return `No measured run saw more than ${limit} % of a core used by other processes.`;
  const worst = Math.max(...hit.map((r) => r.foreign));
  return `WARNING: ${hit.length} of ${runs.length} measured runs shared the machine with other processes (> ${limit} % of a core, worst ${Math.round(worst)} %): `
    + 'these figures and ratios are unreliable — rerun on a quiet machine (BENCH_RETRY_DISTURBED=3 re-measures such cells; BENCH_ROUNDS=3 gives medians).';
}

// ---- printing --------------------------------------------------------------------------------

export const fmt = {
  int: (n) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '–'),
  ms: (n) => (Number.isFinite(n) ? (n < 10 ? n.toFixed(2) : n.toFixed(1)) : '–'),
  pct: (n) => (Number.isFinite(n) ? `${Math.round(n)}` : '–'),
  ratio: (n) => (Number.isFinite(n) ? `${n.toFixed(2)}×` : '–'),
  mb: (n) => (Number.isFinite(n) ? (n / 2 ** 20).toFixed(1) : '–'),
};

/** A markdown table with padded columns; columns whose header ends in ':' are right-aligned. */
export function markdownTable(header, rows) {
  const right = header.map((h) => h.endsWith(':'));
  const head = header.map((h) => h.replace(/:$/, ''));
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length), 3));
  const cell = (v, i) => (right[i] ? String(v).padStart(widths[i]) : String(v).padEnd(widths[i]));
  return [
    `| ${head.map(cell).join(' | ')} |`,
    `| ${widths.map((w, i) => (right[i] ? `${'-'.repeat(w - 1)}:` : '-'.repeat(w))).join(' | ')} |`,
    ...rows.map((r) => `| ${r.map(cell).join(' | ')} |`),
  ].join('\n');
}

export function toolVersions() {
  const w = spawnSync('wrk', ['-v'], { encoding: 'utf8' });
  const wrkVersion = /wrk (\S+)/.exec(`${w.stdout}${w.stderr}`)?.[1] ?? 'unknown';
  return `node ${process.version}, wrk ${wrkVersion}`;
}

export function ensureWrk() {
  if (spawnSync('wrk', ['-v'], { stdio: 'ignore' }).error) {
    throw new Error('wrk is not installed (Debian: apt-get install wrk)');
  }
}
