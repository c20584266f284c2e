// The pacs-gateway command as an operator runs it: --check, exit codes, SIGTERM.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { startEchoUpstream, type EchoUpstream } from '../support/echo-upstream.js';
import { request } from '../support/http-client.js';
import { startGateway } from '../support/gateway.js';

const MAIN = resolve('dist/proxy/main.js');
const dir = mkdtempSync(join(tmpdir(), 'pgw-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, text: string) => { const p = join(dir, name); writeFileSync(p, text); return p; };
const run = (args: string[], env: NodeJS.ProcessEnv = {}) => spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', env: { PATH: process.env.PATH, ...env } });

const GOOD = `
server: { listen: 127.0.0.1:0, admin: false }
routes:
  - name: dicomweb
    path: /pacs
    upstream: \${ORTHANC_URL:-http://127.0.0.1:8042}
    auth: public
    upstreamAuth: { basic: { username: gateway, password: '\${ORTHANC_PASSWORD}' } }
`;

test('--check validates, prints the routes and hides secrets', () => {
  const r = run(['--check', '--config', file('good.yaml', GOOD)], { ORTHANC_PASSWORD: 'very-secret-pw-2024x' });
  expect(r.status).toBe(0);
  expect(r.stdout).toMatch(/\/pacs\s+→ http:\/\/127\.0\.0\.1:8042 \(prefix stripped\)/);
  expect(r.stdout).not.toContain('very-secret-pw-2024x');
  expect(r.stdout).toContain('"password": "***"');
});

test('GATEWAY_CONFIG names the file when --config is absent', () => {
  const r = run(['--check'], { GATEWAY_CONFIG: file('env.yaml', GOOD), ORTHANC_PASSWORD: 'k3P9-fq2W-xz7R-m1aD' });
  expect(r.status).toBe(0);
  expect(r.stdout).toContain('env.yaml: OK');
});

test('weak secrets are refused with exit 2, each named with how to make a good one; the demo alone may run with them', () => {
  for (const [password, why] of [['change-me', 'is a placeholder'], ['Password1', 'is a placeholder'], ['short-but-ok', 'is shorter than 16'], ['aaaaaaaaaaaaaaaaaaaa', 'repeats too few']]) {
    const r = run(['--check', '--config', file('weak.yaml', GOOD)], { ORTHANC_PASSWORD: password });
    expect({ password, status: r.status }).toEqual({ password, status: 2 });
    expect(r.stderr).toContain(`routes[0].upstreamAuth.basic.password (route dicomweb) ${why}`);
    expect(r.stderr).toContain('openssl rand -hex 24');
    expect(r.stdout).toBe('');
    if (password) expect(r.stderr).not.toContain(password);
  }
  const demo = run(['--check', '--config', file('weak.yaml', GOOD)], { ORTHANC_PASSWORD: 'change-me', PACS_GATEWAY_DEMO: '1' });
  expect(demo.status).toBe(0);
});

test('a broken routes.yaml is refused with exit 2, naming file, line, key and expectation', () => {
  const bad = file('bad.yaml', GOOD.replace('${ORTHANC_URL:-http://127.0.0.1:8042}', 'orthanc:8042'));
  const r = run(['--check', '--config', bad], { ORTHANC_PASSWORD: 'x' });
  expect(r.status).toBe(2);
  expect(r.stderr).toContain(`${bad}:6:15: routes[0].upstream: expected an http(s) URL without credentials, got "orthanc:8042"`);
  expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
});

test('starting (not only --check) with a bad file also exits 2', () => {
  const r = run(['--config', file('bad2.yaml', 'routes: []\n')]);
  expect(r.status).toBe(2);
  expect(r.stderr).toContain('routes: expected at least one route');
});

test('a missing file and unknown flags are usage errors', () => {
  expect(run(['--check', '--config', join(dir, 'nope.yaml')]).status).toBe(2);
  expect(run(['--bogus']).status).toBe(2);
});

describe('shutdown', () => {
  let echo: EchoUpstream;
  beforeAll(async () => { echo = await startEchoUpstream(); });
  afterAll(async () => { await echo?.stop(); });

  test('close() lets an in-flight request finish and refuses new connections', async () => {
    const gw = await startGateway(`server: { listen: 127.0.0.1:0, admin: false, timeouts: { shutdown: 5s } }\nroutes:\n  - { name: api, path: /api, upstream: ${echo.url}, auth: public }\n`);
    const inFlight = request(gw.url, '/api/delay/600');
    await new Promise((r) => setTimeout(r, 150));
    const closing = gw.stop();
    const r = await inFlight;
    expect(r.status).toBe(200);
    expect(r.text).toBe('late');
    await closing;
    await expect(request(gw.url, '/api/x')).rejects.toThrow(/ECONNREFUSED/);
  });

  test('SIGTERM stops the process with exit 0 within the shutdown bound', async () => {
    const cfg = file('run.yaml', `server: { listen: 127.0.0.1:0, admin: false, timeouts: { shutdown: 2s } }\nroutes:\n  - { name: api, path: /api, upstream: ${echo.url}, auth: public }\n`);
    const child = spawn(process.execPath, [MAIN, '--config', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    const until = Date.now() + 10_000;
    while (!out.includes('"listening"') && !out.includes('"msg":"listening"')) {
      if (Date.now() > until) throw new Error(`gateway did not start: ${out}`);
      await new Promise((r) => setTimeout(r, 25));
    }
    const url = JSON.parse(out.split('\n').find((l) => l.includes('"listening"')) as string).url as string;
    expect((await request(url, '/api/x')).status).toBe(200);
    const started = Date.now();
    child.kill('SIGTERM');
    const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    expect(code).toBe(0);
    expect(Date.now() - started).toBeLessThan(2000 + 5000);
  });
});
