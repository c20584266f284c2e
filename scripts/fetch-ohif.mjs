#!/usr/bin/env node
// Fetches the pinned prebuilt OHIF viewer (package.json "ohif": version + integrity) into
// .cache/ohif/<version>/dist. `npm install @ohif/app` fails (unpublished dependency), and the
// gateway needs only the built dist/, so the tarball is fetched with `npm pack`, checked against
// the pinned sha512 and unpacked atomically. A marker holding the integrity makes reruns instant.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const MARKER = '.integrity';

function pinned() {
  const { ohif } = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
  if (!ohif?.version || !/^sha512-[A-Za-z0-9+/]+={0,2}$/.test(ohif?.integrity ?? '')) {
    throw new Error('package.json must pin "ohif": { "version": "x.y.z", "integrity": "sha512-…" }');
  }
  return ohif;
}

async function sha512(file) {
  const hash = createHash('sha512');
  for await (const chunk of createReadStream(file)) hash.update(chunk);
  return `sha512-${hash.digest('base64')}`;
}

async function isComplete(versionDir, integrity) {
  try {
    return (await readFile(path.join(versionDir, MARKER), 'utf8')).trim() === integrity
      && existsSync(path.join(versionDir, 'dist', 'index.html'));
  } catch {
    return false;
  }
}

async function main() {
  const started = performance.now();
  const { version, integrity } = pinned();
  const cacheDir = path.join(ROOT, '.cache', 'ohif');
  const versionDir = path.join(cacheDir, version);
  if (await isComplete(versionDir, integrity)) {
    console.log(`fetch-ohif: @ohif/app@${version} already in ${path.relative(ROOT, versionDir)}/dist`);
    return;
  }
  await mkdir(cacheDir, { recursive: true });
  // Same filesystem as the destination, so the final rename is atomic.
  const work = await mkdtemp(path.join(cacheDir, `.tmp-${version}-`));
  try {
    const { stdout } = await run('npm', ['pack', `@ohif/app@${version}`, '--json', '--pack-destination', work, '--loglevel=error'],
      { cwd: work, maxBuffer: 64 * 1024 * 1024 });
    const tarball = path.join(work, JSON.parse(stdout)[0].filename);
    const packed = performance.now();
    const actual = await sha512(tarball);
    if (actual !== integrity) throw new Error(`@ohif/app@${version}: integrity mismatch\n  pinned ${integrity}\n  got    ${actual}`);

    const staged = path.join(work, version);
    await mkdir(staged);
    // --touch: npm pins every mtime to 1985, which would make Last-Modified and send's size+mtime
    // ETags identical across OHIF versions for same-sized unhashed files (stale 304s after an upgrade).
    await run('tar', ['-xzf', tarball, '-C', staged, '--no-same-owner', '--touch', '--strip-components=1', 'package/dist']);
    await rm(tarball);
    if (!existsSync(path.join(staged, 'dist', 'index.html'))) throw new Error(`@ohif/app@${version}: the tarball has no dist/index.html`);
    await writeFile(path.join(staged, MARKER), `${integrity}\n`);

    if (await isComplete(versionDir, integrity)) return; // a concurrent run finished first
    // A leftover (interrupted run, other version contents) is moved aside, never merged into.
    if (existsSync(versionDir)) await rename(versionDir, path.join(work, 'stale'));
    try {
      await rename(staged, versionDir);
    } catch (err) {
      // A concurrent run may have won the race; its result is as good as ours.
      if (!(await isComplete(versionDir, integrity))) throw err;
    }
    const secs = (ms) => `${(ms / 1000).toFixed(1)} s`;
    console.log(`fetch-ohif: @ohif/app@${version} → ${path.relative(ROOT, versionDir)}/dist `
      + `(pack ${secs(packed - started)}, verify + unpack ${secs(performance.now() - packed)})`);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(`fetch-ohif: ${err.message ?? err}`);
  process.exit(1);
});
