// A Jest reporter that writes only the run's counts, as JSON, to the file named by the
// PGW_JEST_COUNTS_FILE environment variable (nothing is written when it is unset).
//
// scripts/run-tests.mjs used `jest --json --outputFile` for its closing "N passed, N failed" line,
// but Jest serialises the whole aggregated result for that, including each failure's details
// (matcher results, thrown values, whatever a client library hung on its errors). One circular
// object there and JSON.stringify throws, no file is written, and the real counts are lost. The
// counts themselves are plain numbers, so this reporter copies just those.
// CommonJS (.cjs) because Jest loads reporters with require or import alike and this needs no
// transform.
'use strict';

const { mkdirSync, writeFileSync } = require('node:fs');
const path = require('node:path');

const ENV_VAR = 'PGW_JEST_COUNTS_FILE';
const FIELDS = ['numPassedTests', 'numFailedTests', 'numPendingTests', 'numTodoTests', 'numTotalTests',
  'numRuntimeErrorTestSuites', 'numFailedTestSuites', 'numTotalTestSuites'];

/** The numeric counts of an aggregated result; anything missing or not a finite number is 0. */
function countsOf(results) {
  const counts = {};
  for (const field of FIELDS) {
    const n = results == null ? undefined : results[field];
    counts[field] = typeof n === 'number' && Number.isFinite(n) ? n : 0;
  }
  counts.success = Boolean(results && results.success === true);
  counts.wasInterrupted = Boolean(results && results.wasInterrupted === true);
  return counts;
}

class CountsReporter {
  constructor(globalConfig, reporterOptions) {
    this.file = (reporterOptions && reporterOptions.file) || process.env[ENV_VAR] || undefined;
  }

  onRunComplete(_testContexts, results) {
    if (!this.file) return;
    mkdirSync(path.dirname(this.file), { recursive: true });
    writeFileSync(this.file, `${JSON.stringify(countsOf(results))}\n`);
  }

  getLastError() {
    return undefined;
  }
}

module.exports = CountsReporter;
module.exports.CountsReporter = CountsReporter;
module.exports.countsOf = countsOf;
module.exports.ENV_VAR = ENV_VAR;
