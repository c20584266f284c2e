// The access log is batched before it is written: nothing may be lost, reordered or held back for long.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createAccessLog, createLogger, isoTimeOf, LineBatcher } from '../../proxy/ops/log.js';

test('lines are handed on in order, in batches of at least the batch size, and flush() writes the rest', () => {
  const writes: string[] = [];
  const batch = new LineBatcher({ write: (s: string) => writes.push(s) }, 100);
  for (let i = 0; i < 10; i++) batch.write(`${String(i).padStart(29, '-')}\n`); // 30 chars each
  expect(writes).toHaveLength(2); // 4 lines (120 chars) per write
  expect(writes.every((w) => w.length >= 100)).toBe(true);
  batch.flush();
  expect(writes).toHaveLength(3);
  expect(writes.join('').split('\n').filter(Boolean).map((l) => Number(l.replace(/-/g, '')))).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  batch.flush(); // nothing pending: no empty write
  expect(writes).toHaveLength(3);
});

const tempDirs: string[] = [];
afterAll(() => { for (const d of tempDirs) rmSync(d, { recursive: true, force: true }); });

test('the sink writes idle lines within the flush interval, and what is pending when the process exits', () => {
  const logModule = path.resolve('dist/proxy/ops/log.js');
  const dir = mkdtempSync(path.join(tmpdir(), 'pgw-log-'));
  tempDirs.push(dir);
  const file = path.join(dir, 'gateway.log');
  const script = `
    import { readFileSync } from 'node:fs';
    const { createLogger, createLogSink, createAccessLog } = await import(${JSON.stringify(logModule)});
    const log = createLogger('info', createLogSink(${JSON.stringify(file)}));
    log.info({ n: 1 }, 'first');
    createAccessLog(log)({ reqId: 'r1', method: 'GET', path: '/p', query: undefined, route: 'x', status: 200, ms: 1, bytes: 2, sub: undefined, error: undefined, aborted: false });
    const before = readFileSync(${JSON.stringify(file)}, 'utf8').split('\\n').filter(Boolean).length;
    await new Promise((r) => setTimeout(r, 500));
    const after = readFileSync(${JSON.stringify(file)}, 'utf8').split('\\n').filter(Boolean).length;
    process.stdout.write(JSON.stringify({ before, after }));
    log.info({ n: 2 }, 'at-exit');`;
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  expect(run.stderr).toBe('');
  expect(run.status).toBe(0);
  expect(JSON.parse(run.stdout)).toEqual({ before: 0, after: 2 }); // batched at first, written by the timer
  const lines = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  expect(lines.map((l) => l.msg)).toEqual(['first', 'request', 'at-exit']);
});

test('an access-log line is valid JSON in pino\'s shape whatever the path or subject hold', () => {
  const out: string[] = [];
  const log = createLogger('info', { write: (s: string) => out.push(s) });
  const access = createAccessLog(log)!;
  access({ reqId: 'r', method: 'GET', path: '/a"b\\c\u0001', query: 'x=%22', route: 'r', operation: 'retrieve-frames', status: 499, ms: 0.5, bytes: 0, sub: 'ü"}', error: 'UPSTREAM_TIMEOUT', aborted: true });
  const line = JSON.parse(out[0] as string) as Record<string, unknown>;
  expect(line).toMatchObject({ level: 30, svc: 'pacs-gateway', path: '/a"b\\c\u0001', query: 'x=%22', op: 'retrieve-frames', sub: 'ü"}', status: 499, aborted: true, error: 'UPSTREAM_TIMEOUT', msg: 'request' });
  expect(typeof line.time).toBe('string');
  expect(new Date(line.time as string).getTime()).toBeGreaterThan(Date.now() - 60_000);
  // A byte count the socket could not tell (NaN) is null, never a broken line.
  access({ reqId: 'r2', method: 'GET', path: '/p', query: undefined, route: 'r', operation: '-', status: 200, ms: 1, bytes: Number.NaN, sub: undefined, error: undefined, aborted: false });
  expect(JSON.parse(out[1] as string)).toMatchObject({ reqId: 'r2', bytes: null });
  expect(createAccessLog(createLogger('warn', { write: () => undefined }))).toBeUndefined();
});

test('access-log times are milliseconds rounded to a tenth; methods and routes are quoted like any string', () => {
  const out: string[] = [];
  const access = createAccessLog(createLogger('info', { write: (s: string) => out.push(s) }))!;
  const line = (ms: number, method = 'GET', route = 'r') => {
    access({ reqId: 'r', method, path: '/p', query: undefined, route, operation: '-', status: 200, ms, bytes: 1, sub: undefined, error: undefined, aborted: false });
    return JSON.parse(out[out.length - 1] as string) as { ms: unknown; method: unknown; route: unknown };
  };
  expect([0, 0.04, 0.05, 1.96, 12.345, 1234.56, 60_000].map((ms) => line(ms).ms)).toEqual([0, 0, 0.1, 2, 12.3, 1234.6, 60_000]);
  expect([Number.NaN, Number.POSITIVE_INFINITY].map((ms) => line(ms).ms)).toEqual([null, null]);
  // The same odd values twice: the second line comes from the quoting cache and must be as valid as the first.
  for (let i = 0; i < 2; i++) expect(line(1, 'G"ET\\', 'ü"}')).toMatchObject({ method: 'G"ET\\', route: 'ü"}' });
  // More distinct methods than the cache keeps: every line stays valid JSON with its own method.
  for (let i = 0; i < 300; i++) expect(line(1, `M${i}"`).method).toBe(`M${i}"`);
});

test('log times are written exactly as Date#toISOString writes them, across milliseconds, seconds and years', () => {
  const base = Date.UTC(2026, 10, 25, 23, 59, 59, 0);
  const times = [
    base, base + 1, base + 9, base + 10, base + 99, base + 100, base + 999, base + 1000, base + 1001, // digits and the second's rollover
    base + 1000, base + 5, // back in time, and a repeat
    Date.UTC(1969, 11, 31, 23, 59, 59, 7), 0, -1, // before the epoch
    Date.UTC(10000, 0, 1, 0, 0, 0, 42), // a six-digit year
    base + 0.5, // not a whole millisecond
  ];
  for (const t of times) expect(isoTimeOf(t)).toBe(new Date(t).toISOString());
  const now = Date.now();
  expect(isoTimeOf(now)).toBe(new Date(now).toISOString());
});
