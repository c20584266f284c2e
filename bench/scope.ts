// What a study scope costs per request: the same frame and metadata requests through one gateway
// (the CLI, pinned to its own core) to a real Orthanc, by an unlimited viewer and by a caller whose
// role is limited to NORTH CLINIC's studies (every request checked against the upstream's answers,
// cached). Also counts the upstream lookups the limited caller caused while measured: the caches
// must make them rare (none per frame).
// Run: npm run bench:scope   (env BENCH_DURATION per cell, default 5; BENCH_ROUNDS, default 3)
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
// @ts-expect-error plain .mjs helpers shared by every benchmark
import { describePlacement, placement, settings, wrk } from './harness.mjs';
import { freeLoopbackPort } from '../tests/support/gateway.js';
import { loadDemoData } from '../tests/support/load-studies.js';
import { startOrthanc } from '../tests/support/orthanc.js';
import { startTestIdp } from '../tests/support/test-idp.js';

const DURATION = Number(process.env.BENCH_DURATION ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

interface Wrk { rps: number; p50: number; p99: number; errors: number; requests?: number }

const orthanc = await startOrthanc();
const idp = await startTestIdp({ algs: ['ES256'] });
const dir = mkdtempSync(path.join(tmpdir(), 'pgw-bench-scope-'));
const children: ChildProcess[] = [];

async function lookups(adminUrl: string): Promise<number> {
  const text = await (await fetch(`${adminUrl}/metrics`)).text();
  return [...text.matchAll(/^pacs_gateway_scope_lookups_total\{[^}]*\} (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
}

try {
  const data = await loadDemoData(orthanc, { samples: false });
  const port = await freeLoopbackPort();
  const adminPort = await freeLoopbackPort();
  const url = `http://127.0.0.1:${port}`;
  const adminUrl = `http://127.0.0.1:${adminPort}`;
  const file = path.join(dir, 'routes.yaml');
  writeFileSync(file, `server: { listen: '127.0.0.1:${port}', admin: { listen: '127.0.0.1:${adminPort}' }, logLevel: silent, limits: { concurrencyPerUser: 1000 } }
identity: { issuer: '${idp.issuer}', internalUrl: '${idp.internalUrl}', audience: [pacs] }
permissions:
  viewer: [view]
  external: { permissions: [view], studies: { InstitutionName: [NORTH CLINIC] } }
routes:
  - name: dicomweb
    path: /pacs
    upstream: '${orthanc.url}'
    expose: dicomweb
    auth: [bearer]
    allow: [view]
    upstreamAuth: { basic: { username: '${orthanc.username}', password: '${orthanc.password}' } }
`);
  const node = [process.execPath, '--max-semi-space-size=64', 'dist/proxy/main.js', '--config', file];
  const [cmd, ...args] = placement.pinned ? ['taskset', '-c', placement.proxy, ...node] : node;
  const child = spawn(cmd!, args, { stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(child);
  for (let i = 0; i < 200; i++) {
    try { if ((await fetch(`${adminUrl}/readyz`)).ok) break; } catch { /* starting */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  const viewer = await idp.issueAccessToken({ realmRoles: ['viewer'], ttl: 3600 });
  const external = await idp.issueAccessToken({ realmRoles: ['external'], ttl: 3600 });
  const carol = data.synthetic.find((i) => i.patientId === 'PAT-0003')!; // NORTH CLINIC
  const frame = `${url}/pacs/dicom-web/studies/${carol.studyInstanceUID}/series/${carol.seriesInstanceUID}/instances/${carol.sopInstanceUID}/frames/1`;
  const metadata = `${url}/pacs/dicom-web/studies/${carol.studyInstanceUID}/series/${carol.seriesInstanceUID}/metadata`;
  const frameAccept = 'multipart/related; type="application/octet-stream"; transfer-syntax=*';

  const cells = [
    { id: 'frame', label: 'frame, unlimited viewer', url: frame, headers: { Authorization: `Bearer ${viewer}`, Accept: frameAccept } },
    { id: 'frame-s', label: 'frame, limited to NORTH CLINIC', url: frame, headers: { Authorization: `Bearer ${external}`, Accept: frameAccept } },
    { id: 'meta', label: 'series metadata, unlimited viewer', url: metadata, headers: { Authorization: `Bearer ${viewer}`, Accept: 'application/dicom+json' } },
    { id: 'meta-s', label: 'series metadata, limited to NORTH CLINIC', url: metadata, headers: { Authorization: `Bearer ${external}`, Accept: 'application/dicom+json' } },
  ];
  for (const c of cells) {
    const check = await fetch(c.url, { headers: c.headers });
    if (check.status !== 200) throw new Error(`${c.label}: HTTP ${check.status}`);
    await check.arrayBuffer();
    await wrk(c.url, { duration: 2, headers: c.headers }); // warm-up (and the scope caches)
  }
  const runs = new Map<string, Wrk[]>(cells.map((c) => [c.id, []]));
  let scopedRequests = 0;
  const before = await lookups(adminUrl);
  for (let r = 0; r < ROUNDS; r++) {
    for (const c of cells) {
      const w = await wrk(c.url, { duration: DURATION, headers: c.headers }) as Wrk;
      runs.get(c.id)!.push(w);
      if (c.id.endsWith('-s')) scopedRequests += Math.round(w.rps * DURATION);
    }
  }
  const during = (await lookups(adminUrl)) - before;
  const median = (id: string): Wrk => [...runs.get(id)!].sort((a, b) => a.rps - b.rps)[Math.floor(ROUNDS / 2)]!;
  console.log(`\nstudy scope cost, real Orthanc 1.10, ${settings.connections} connections, ${ROUNDS} rounds × ${DURATION} s, median round; ${describePlacement()}\n`);
  console.log('| cell | req/s | p50 ms | p99 ms | errors |\n|---|---:|---:|---:|---:|');
  for (const c of cells) {
    const m = median(c.id);
    console.log(`| ${c.label} | ${Math.round(m.rps)} | ${m.p50.toFixed(2)} | ${m.p99.toFixed(2)} | ${m.errors} |`);
  }
  const ratio = (a: string, b: string) => (median(a).rps / median(b).rps).toFixed(2);
  console.log(`\nratios: limited/unlimited frame ${ratio('frame-s', 'frame')}x, metadata ${ratio('meta-s', 'meta')}x`);
  console.log(`upstream lookups while measured: ${during} for about ${scopedRequests} limited requests (${(during / Math.max(1, scopedRequests) * 1000).toFixed(2)} per 1000; the caches live 30 s)`);
} finally {
  for (const c of children) c.kill('SIGTERM');
  await Promise.allSettled([idp.stop(), orthanc.stop()]);
  rmSync(dir, { recursive: true, force: true });
}
