// scripts/jest-counts-reporter.cjs: the counts behind run-tests.mjs's closing "N passed, N failed"
// line must survive failures whose details hold circular objects (which broke `jest --json`).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';

interface CountsReporterClass {
  new (globalConfig: unknown, reporterOptions?: { file?: string }): { onRunComplete(contexts: unknown, results: unknown): void };
  ENV_VAR: string;
}
const CountsReporter = createRequire(import.meta.url)('../../scripts/jest-counts-reporter.cjs') as CountsReporterClass;

function circularRunResult() {
  const error: Error & { status?: number; request?: unknown; self?: unknown } = new Error('request failed');
  error.status = 500;
  const request: Record<string, unknown> = { url: 'http://orthanc/dicom-web/studies', error };
  error.request = request; // as a client library's error carries its request, which points back
  error.self = error;
  const received: Record<string, unknown> = { a: 1 };
  received.self = received;
  return {
    numPassedTests: 3,
    numFailedTests: 2,
    numPendingTests: 1,
    numTodoTests: 0,
    numTotalTests: 6,
    numRuntimeErrorTestSuites: 1,
    numFailedTestSuites: 2,
    numTotalTestSuites: 3,
    success: false,
    wasInterrupted: false,
    testResults: [
      {
        testResults: [
          { status: 'failed', failureDetails: [error] },
          { status: 'failed', failureDetails: [{ matcherResult: { actual: received, pass: false } }] },
        ],
      },
    ],
  };
}

const tempDirs: string[] = [];
/** A path in a fresh temporary folder (removed after the file's tests). */
const tempFile = () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'pgw-counts-'));
  tempDirs.push(dir);
  return path.join(dir, 'sub', 'counts.json');
};
afterAll(() => { for (const d of tempDirs) rmSync(d, { recursive: true, force: true }); });

test('writes only the counts of a run whose failure details are circular', () => {
  const results = circularRunResult();
  expect(() => JSON.stringify(results)).toThrow(/circular/i); // what broke `jest --json`
  const file = tempFile();
  new CountsReporter({}, { file }).onRunComplete(new Set(), results);
  expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual({
    numPassedTests: 3,
    numFailedTests: 2,
    numPendingTests: 1,
    numTodoTests: 0,
    numTotalTests: 6,
    numRuntimeErrorTestSuites: 1,
    numFailedTestSuites: 2,
    numTotalTestSuites: 3,
    success: false,
    wasInterrupted: false,
  });
});

test('takes the file from the environment variable run-tests.mjs sets, and writes nothing without one', () => {
  const file = tempFile();
  const saved = process.env[CountsReporter.ENV_VAR];
  try {
    process.env[CountsReporter.ENV_VAR] = file;
    new CountsReporter({}, {}).onRunComplete(new Set(), { numPassedTests: 7, numFailedTests: 0 });
    expect(JSON.parse(readFileSync(file, 'utf8'))).toMatchObject({ numPassedTests: 7, numFailedTests: 0, numRuntimeErrorTestSuites: 0 });

    delete process.env[CountsReporter.ENV_VAR];
    expect(() => new CountsReporter({}, {}).onRunComplete(new Set(), circularRunResult())).not.toThrow();
  } finally {
    if (saved === undefined) delete process.env[CountsReporter.ENV_VAR];
    else process.env[CountsReporter.ENV_VAR] = saved;
  }
});
