#!/usr/bin/env node
// Type-checks the tests, runs jest (native ESM), and ends with the plain line "N passed, N failed".
//
// The counts come from scripts/jest-counts-reporter.cjs, which writes just the numbers to a file,
// not from `jest --json --outputFile`: Jest's JSON report serialises every failure's details, and a
// circular object among them (e.g. a client library's error) made it fail, so a run with real
// passes and failures ended as "0 passed, 1 failed".
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const reporter = join(dirname(fileURLToPath(import.meta.url)), 'jest-counts-reporter.cjs');

const tsc = spawnSync('npx', ['tsc', '-p', 'tests/tsconfig.json', '--noEmit'], { stdio: 'inherit' });
if (tsc.status !== 0) {
  console.log('0 passed, 1 failed');
  process.exit(1);
}
const outDir = mkdtempSync(join(tmpdir(), 'pgw-jest-'));
const out = join(outDir, 'counts.json');
const nodeOptions = [process.env.NODE_OPTIONS, '--experimental-vm-modules', '--no-warnings=ExperimentalWarning'].filter(Boolean).join(' ');
// The reporter options go last: `--reporters` is an array option and would swallow test paths
// that followed it.
const jest = spawnSync('npx', ['jest', ...process.argv.slice(2), '--reporters=default', `--reporters=${reporter}`], {
  stdio: 'inherit', env: { ...process.env, NODE_OPTIONS: nodeOptions, PGW_JEST_COUNTS_FILE: out },
});
let passed = 0; let failed = 0;
try {
  const r = JSON.parse(readFileSync(out, 'utf8'));
  passed = r.numPassedTests;
  failed = r.numFailedTests + r.numRuntimeErrorTestSuites;
} catch {
  // No counts: jest stopped before the end of the run (bad option, crash, killed).
}
rmSync(outDir, { recursive: true, force: true });
// A jest failure that no test accounts for (e.g. a crash or a failing global setup) still counts.
if (jest.status !== 0 && failed === 0) failed = 1;
console.log(`node ${process.version}: ${passed} passed, ${failed} failed`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(jest.status === 0 && failed === 0 ? 0 : 1);
