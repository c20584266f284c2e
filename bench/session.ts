// What a login session costs per request, against the public route and a cached bearer token on
// the same gateway, in one run: the session cookie is unsigned (HMAC), its record read from the
// store (memory, or Redis on loopback), the token inside checked in the verified-token cache.
// Real parts: the gateway CLI (pinned to its own core), the dev IdP's real login, redis-server.
// Run: npm run bench:session   (env BENCH_DURATION per cell, default 5; BENCH_ROUNDS, default 3)
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
// @ts-expect-error plain .mjs helpers shared by every benchmark
import { describePlacement, placement, settings, startServer, wrk } from './harness.mjs';
import { freeLoopbackPort } from '../tests/support/gateway.js';
import { HttpBrowser } from '../tests/support/http-browser.js';
import { startRedis } from '../tests/support/redis.js';
import { DEMO_USERS, gatewayClient, startTestIdp } from '../tests/support/test-idp.js';

const DURATION = Number(process.env.BENCH_DURATION ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SECRET = 'bench-session-secret-of-at-least-32-bytes';

interface Wrk { rps: number; p50: number; p99: number; errors: number }

const upstream = await startServer('upstream', placement.upstream, 'upstream.mjs') as { info: { url: string }; stop(): Promise<void> };
const redis = await startRedis();
const clients: Record<string, Record<string, unknown>> = {};
const idp = await startTestIdp({ algs: ['RS256'], users: DEMO_USERS, clients, accessTokenTtl: 3600 });
const dir = mkdtempSync(path.join(tmpdir(), 'pgw-bench-session-'));
const children: ChildProcess[] = [];

async function startGateway(store: string): Promise<string> {
  const port = await freeLoopbackPort();
  const url = `http://127.0.0.1:${port}`;
  const file = path.join(dir, `routes-${port}.yaml`);
  writeFileSync(file, `server: { listen: '127.0.0.1:${port}', admin: false, logLevel: silent, limits: { concurrencyPerUser: 1000 } }
identity: { issuer: '${idp.issuer}', audience: [pacs], client: { id: pacs-gateway, secret: '${idp.clientSecret}' } }
session: { secret: '${SECRET}' }
store: '${store}'
routes:
  - { name: pub, path: /pub, upstream: '${upstream.info.url}', expose: upstream, auth: public }
  - { name: sec, path: /sec, upstream: '${upstream.info.url}', expose: upstream, auth: [session, bearer], allow: [admin] }
`);
  const node = [process.execPath, '--max-semi-space-size=64', 'dist/proxy/main.js', '--config', file];
  const [cmd, ...args] = placement.pinned ? ['taskset', '-c', placement.proxy, ...node] : node;
  const child = spawn(cmd!, args, { stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(child);
  for (let i = 0; i < 200; i++) {
    try {
      if ((await fetch(`${url}/readyz`)).ok) break;
    } catch { /* starting */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  return url;
}

try {
  const memoryUrl = await startGateway('memory');
  const redisUrl = await startGateway(redis.url);
  clients['pacs-gateway'] = { ...gatewayClient(memoryUrl), redirect_uris: [`${memoryUrl}/_gateway/callback`, `${redisUrl}/_gateway/callback`] };
  const cookieOf = async (base: string): Promise<string> => {
    const b = new HttpBrowser();
    const page = await b.loginThrough(`${base}/sec/json`, 'admin');
    if (page.status !== 200) throw new Error(`login through ${base} ended with HTTP ${page.status}`);
    return b.cookieHeader(base)!;
  };
  const memoryCookie = await cookieOf(memoryUrl);
  const redisCookie = await cookieOf(redisUrl);
  const token = await idp.issueAccessToken({ realmRoles: ['admin'], ttl: 3600 });

  const cells: Array<{ id: string; label: string; url: string; headers: Record<string, string> }> = [
    { id: 'public', label: 'memory gateway: /pub public', url: `${memoryUrl}/pub/json`, headers: {} },
    { id: 'bearer', label: 'memory gateway: /sec bearer (cached)', url: `${memoryUrl}/sec/json`, headers: { Authorization: `Bearer ${token}` } },
    { id: 'session', label: 'memory gateway: /sec session cookie', url: `${memoryUrl}/sec/json`, headers: { Cookie: memoryCookie } },
    { id: 'public-r', label: 'redis gateway: /pub public', url: `${redisUrl}/pub/json`, headers: {} },
    { id: 'session-r', label: 'redis gateway: /sec session cookie', url: `${redisUrl}/sec/json`, headers: { Cookie: redisCookie } },
  ];
  for (const c of cells) {
    const check = await fetch(c.url, { headers: c.headers });
    if (check.status !== 200) throw new Error(`${c.label}: HTTP ${check.status}`);
    await check.arrayBuffer();
    await wrk(c.url, { duration: 2, headers: c.headers }); // warm-up
  }
  const runs = new Map<string, Wrk[]>(cells.map((c) => [c.id, []]));
  // Interleaved rounds: a disturbance of the shared machine hits every cell alike.
  for (let r = 0; r < ROUNDS; r++) for (const c of cells) runs.get(c.id)!.push(await wrk(c.url, { duration: DURATION, headers: c.headers }) as Wrk);
  const median = (id: string): Wrk => [...runs.get(id)!].sort((a, b) => a.rps - b.rps)[Math.floor(ROUNDS / 2)]!;
  console.log(`\nsession cost, 2 KB replies, ${settings.connections} connections, ${ROUNDS} rounds × ${DURATION} s, median round; ${describePlacement()}\n`);
  console.log('| cell | req/s | p50 ms | p99 ms | errors |\n|---|---:|---:|---:|---:|');
  for (const c of cells) {
    const m = median(c.id);
    console.log(`| ${c.label} | ${Math.round(m.rps)} | ${m.p50.toFixed(2)} | ${m.p99.toFixed(2)} | ${m.errors} |`);
  }
  const ratio = (a: string, b: string) => (median(a).rps / median(b).rps).toFixed(2);
  console.log(`\nratios: bearer/public ${ratio('bearer', 'public')}x, session(memory)/public ${ratio('session', 'public')}x, `
    + `session(memory)/bearer ${ratio('session', 'bearer')}x, session(redis)/public(same gateway) ${ratio('session-r', 'public-r')}x`);
} finally {
  for (const c of children) c.kill('SIGTERM');
  await Promise.allSettled([idp.stop(), redis.stop(), upstream.stop()]);
  rmSync(dir, { recursive: true, force: true });
}
