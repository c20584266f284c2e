// A 200 MB WADO-RS study download from a real Orthanc through the real gateway (the CLI, as
// operators run it), with the gateway's RSS sampled every 50 ms: streaming must keep it flat.
// Run: npm run bench:wado   (env WADO_MB, default 200; WADO_RATE for curl --limit-rate, default 50M)
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { uploadInstances } from '../tests/support/load-studies.js';
import { startOrthanc } from '../tests/support/orthanc.js';
import { largeStudy } from '../tests/support/synthetic-dicom.js';

const MB = Number(process.env.WADO_MB ?? 200);
const RATE = process.env.WADO_RATE ?? '50M';
const rssMb = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;

const orthanc = await startOrthanc();
const study = largeStudy({ megabytes: MB });
await uploadInstances(orthanc, study.map((i) => i.file));
const uid = study[0]!.studyInstanceUID;
const dir = mkdtempSync(path.join(tmpdir(), 'pgw-wado-'));
const config = path.join(dir, 'routes.yaml');
writeFileSync(config, `server: { listen: 127.0.0.1:0, admin: false }
routes:
  - { name: dicomweb, path: /pacs, upstream: ${orthanc.url}, auth: public, forward: { orthancLinks: true },
      upstreamAuth: { basic: { username: ${orthanc.username}, password: '${orthanc.password}' } } }
`);
const gateway = spawn(process.execPath, ['--max-semi-space-size=64', 'dist/proxy/main.js', '--config', config], { stdio: ['ignore', 'pipe', 'inherit'] });
const url = await new Promise<string>((resolve) => {
  let out = '';
  gateway.stdout.on('data', (d: Buffer) => {
    out += d.toString();
    const line = out.split('\n').find((l) => l.includes('"listening"'));
    if (line) resolve(JSON.parse(line).url as string);
  });
});
try {
  const accept = 'Accept: multipart/related; type="application/dicom"';
  const curl = (target: string, auth?: string) => spawnSync('curl', ['-s', '-o', '/dev/null', '-w', '%{size_download} %{time_total}', '--limit-rate', RATE, '-H', accept,
    ...(auth ? ['-H', `Authorization: ${auth}`] : []), target], { encoding: 'utf8' }).stdout.split(' ').map(Number);
  const [directBytes] = curl(`${orthanc.url}/dicom-web/studies/${uid}`, orthanc.authHeader);
  // warm the gateway's code paths once with a small request, then measure the big one
  spawnSync('curl', ['-s', '-o', '/dev/null', `${url}/pacs/dicom-web/studies?limit=1`]);
  const before = rssMb(gateway.pid!);
  let peak = before;
  const timer = setInterval(() => { peak = Math.max(peak, rssMb(gateway.pid!)); }, 50);
  const child = spawn('curl', ['-s', '-o', '/dev/null', '-w', '%{size_download} %{time_total}', '--limit-rate', RATE, '-H', accept, `${url}/pacs/dicom-web/studies/${uid}`]);
  let result = '';
  child.stdout.on('data', (d: Buffer) => { result += d.toString(); });
  await new Promise((r) => child.on('exit', r));
  clearInterval(timer);
  const [bytes, seconds] = result.split(' ').map(Number);
  console.log(`| WADO-RS study (${study.length} instances) | direct ${(directBytes! / 1e6).toFixed(1)} MB | via gateway ${(bytes! / 1e6).toFixed(1)} MB in ${seconds!.toFixed(1)} s | gateway RSS before ${before.toFixed(1)} MB, peak ${peak.toFixed(1)} MB, delta ${(peak - before).toFixed(1)} MB |`);
  if (bytes !== directBytes) { console.error('the gateway delivered a different number of bytes than Orthanc'); process.exitCode = 1; }
} finally {
  gateway.kill('SIGTERM');
  await orthanc.stop();
}
