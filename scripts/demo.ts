// `npm run demo`: the whole stack on this machine — Orthanc with the demo studies, the dev IdP
// (oidc-provider, standing in for Keycloak) with demo accounts, and the real gateway running the
// SHIPPED routes.yaml, configured only through its environment variables. The IdP and the gateway
// listen on 127.0.0.1 only (Orthanc 1.10 has no bind address; see tests/support/orthanc.ts).
// Ctrl-C (or SIGTERM) stops everything.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadDemoData } from '../tests/support/load-studies.js';
import { startOrthanc, type OrthancHandle } from '../tests/support/orthanc.js';
import { routesEnv } from '../tests/support/stack-env.js';
import { browserClient, DEMO_USERS, deviceClient, gatewayClient, scriptsClient, startTestIdp, type TestIdp, type TestUser } from '../tests/support/test-idp.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/**
 * The host others use to reach the demo (DEMO_HOST: a name or address of this machine, e.g. on a
 * headless server). The issuer, OHIF's redirect URIs and the gateway's public URL follow it; the
 * gateway then listens on every interface. Loopback by default: nothing is reachable from outside.
 */
const PUBLIC_HOST = process.env.DEMO_HOST?.trim() || '127.0.0.1';
if (!/^[A-Za-z0-9.-]+$|^\[[0-9A-Fa-f:]+\]$/.test(PUBLIC_HOST)) {
  console.error(`demo: DEMO_HOST must be a host name or an address (e.g. pacs.lan or 192.168.1.20), got ${JSON.stringify(PUBLIC_HOST)}`);
  process.exit(2);
}
const LOOPBACK = ['127.0.0.1', 'localhost', '[::1]'].includes(PUBLIC_HOST);
/** Where the parts listen: Orthanc and the IdP always on loopback; the gateway on every interface when DEMO_HOST is not loopback. */
const HOST = '127.0.0.1';
const GATEWAY_HOST = LOOPBACK ? HOST : '0.0.0.0';
const REALM_PATH = '/auth/realms/pacs';
const OHIF_CLIENT = 'ohif-viewer';
const LOG_FILE = path.join(ROOT, '.cache', 'demo', 'gateway.log');

function portFromEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  const port = raw === undefined || raw === '' ? fallback : Number(raw);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    console.error(`demo: ${name} must be a TCP port (1-65535), got ${JSON.stringify(raw)}`);
    process.exit(2);
  }
  return port;
}

const port = portFromEnv('DEMO_PORT', 8080);
const idpPort = portFromEnv('DEMO_IDP_PORT', 8081);
const adminPort = portFromEnv('DEMO_ADMIN_PORT', 9090);
const publicUrl = `http://${PUBLIC_HOST}:${port}`;

/** A port someone else holds is named with the variable that moves it, before anything starts. */
async function ensureFree(portNumber: number, host: string, variable: string): Promise<void> {
  const net = await import('node:net');
  await new Promise<void>((ok) => {
    const probe = net.createServer();
    probe.once('error', (err: NodeJS.ErrnoException) => {
      console.error(`demo: port ${portNumber} on ${host} is taken (${err.code}): set ${variable} to a free port, e.g. ${variable}=${portNumber + 100} npm run demo`);
      process.exit(2);
    });
    probe.listen(portNumber, host, () => probe.close(() => ok()));
  });
}

// What each role opens in the shipped routes.yaml (its permissions table).
const CAN: Record<string, string> = {
  viewer: 'view: study list and images',
  uploader: 'upload (STOW-RS)',
  admin: 'download of original files, and Orthanc Explorer at /pacs-admin (the gateway\'s own login)',
  external: 'view, of NORTH CLINIC studies only (other studies do not exist for her)',
};
const abilities = (u: TestUser) => u.realmRoles.length === 0
  ? 'signs in, and gets a page saying the account has no role'
  : u.realmRoles.map((r) => CAN[r] ?? `role ${r}`).join(' + ');

let orthanc: OrthancHandle | undefined;
let idp: TestIdp | undefined;
let gateway: ChildProcess | undefined;
let stopping: Promise<never> | undefined;
let running = false;

/** Gateway first (no request left in flight), then what it talks to. */
function stopAll(code: number): Promise<never> {
  stopping ??= (async () => {
    const gw = gateway;
    if (gw && gw.exitCode === null && gw.signalCode === null) {
      const exited = new Promise((ok) => gw.once('exit', ok));
      gw.kill('SIGTERM');
      const force = setTimeout(() => gw.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(force);
    }
    await Promise.allSettled([idp?.stop(), orthanc?.stop()]);
    process.exit(code);
  })();
  return stopping;
}

/**
 * `npm run demo` reaches this script through npm, two `sh -c` and tsx, and a SIGTERM sent to npm
 * stops at the first shell. So the demo also stops once the leader of its process group (npm, or
 * whatever the terminal started) is gone. Linux only, like the rest of the demo.
 */
function stopWithGroupLeader(): void {
  let leader: number;
  try {
    leader = Number(readFileSync('/proc/self/stat', 'utf8').split(') ')[1]?.split(' ')[2]);
  } catch { return; }
  if (!leader || leader === process.pid) return;
  setInterval(() => {
    try { process.kill(leader, 0); } catch (err) { if ((err as NodeJS.ErrnoException).code === 'ESRCH') void stopAll(0); }
  }, 1000).unref();
}

async function waitUntilReady(gw: ChildProcess): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (gw.exitCode !== null || gw.signalCode !== null) throw new Error(`the gateway exited during start-up (code ${gw.exitCode}); see ${LOG_FILE}`);
    try {
      const res = await fetch(`http://${HOST}:${adminPort}/readyz`, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (res.ok) return;
    } catch { /* not listening yet */ }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`the gateway was not ready after 30 s; see ${LOG_FILE}`);
}

function startGateway(env: NodeJS.ProcessEnv): ChildProcess {
  const main = path.join(ROOT, 'dist', 'proxy', 'main.js');
  if (!existsSync(main)) throw new Error('dist/proxy/main.js is missing: run `npm run build` (scripts/setup.sh does)');
  mkdirSync(path.dirname(LOG_FILE), { recursive: true });
  const log = createWriteStream(LOG_FILE, { flags: 'a' });
  // Its own process group: Ctrl-C reaches only this script, which stops the gateway in order.
  // setpriv's parent-death signal stops it even if this script is killed outright.
  const args = [process.execPath, '--max-semi-space-size=64', main, '--config', path.join(ROOT, 'routes.yaml')];
  const [command, ...rest] = existsSync('/usr/bin/setpriv') ? ['/usr/bin/setpriv', '--pdeathsig', 'TERM', '--', ...args] : args;
  // The demo's secrets are random, but the demo is the one place weak ones would be tolerated.
  const child = spawn(command!, rest, { cwd: ROOT, env: { ...process.env, ...env, PACS_GATEWAY_DEMO: '1' }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  child.stdout!.pipe(log);
  child.stderr!.on('data', (chunk: Buffer) => { process.stderr.write(chunk); log.write(chunk); });
  child.once('exit', (code, signal) => {
    if (stopping || !running) return; // during start-up, waitUntilReady reports it
    console.error(`demo: the gateway stopped unexpectedly (code ${code}, signal ${signal}); see ${LOG_FILE}`);
    void stopAll(1);
  });
  return child;
}

async function main(): Promise<void> {
  const started = Date.now();
  // Kept for every signal, not once: tsx relays a Ctrl-C the script already got from the terminal,
  // and a signal without a listener would end the script halfway through stopping.
  process.on('SIGINT', () => void stopAll(0));
  process.on('SIGTERM', () => void stopAll(0));
  stopWithGroupLeader();

  await ensureFree(port, GATEWAY_HOST, 'DEMO_PORT');
  await ensureFree(idpPort, HOST, 'DEMO_IDP_PORT');
  await ensureFree(adminPort, HOST, 'DEMO_ADMIN_PORT');
  console.log('demo: starting Orthanc…');
  orthanc = await startOrthanc();
  const data = await loadDemoData(orthanc);
  const synthetic = data.studies.filter((s) => s.source === 'synthetic').length;
  console.log(`demo: loaded ${synthetic} synthetic and ${data.studies.length - synthetic} real sample studies (${data.instanceCount} instances)`);

  idp = await startTestIdp({
    port: idpPort,
    issuerUrl: `${publicUrl}${REALM_PATH}`,
    algs: ['RS256'],
    users: DEMO_USERS,
    clients: { [OHIF_CLIENT]: browserClient(publicUrl), 'pacs-gateway': gatewayClient(publicUrl), 'pacs-scripts': scriptsClient(), 'pacs-cli': deviceClient() },
    // The scripts' client: its own tokens (client credentials) may search and store, as Keycloak's service account does.
    serviceAccounts: { 'pacs-scripts': { realmRoles: ['viewer', 'uploader'] } },
  });

  gateway = startGateway({
    ...routesEnv({ listen: `${GATEWAY_HOST}:${port}`, publicUrl, adminListen: `${HOST}:${adminPort}`, orthanc, idp }),
    OHIF_CLIENT_ID: OHIF_CLIENT,
  });
  await waitUntilReady(gateway);
  running = true;

  const login = (u: TestUser) => `${u.username} / ${u.password}`;
  const roles = (u: TestUser) => u.realmRoles.join(', ') || 'no roles';
  const w1 = Math.max(...DEMO_USERS.map((u) => login(u).length));
  const w2 = Math.max(...DEMO_USERS.map((u) => roles(u).length));
  console.log([
    '',
    `pacs-gateway demo is ready after ${((Date.now() - started) / 1000).toFixed(1)} s — open ${publicUrl}/`,
    '',
    'Sign in on the login page of the dev IdP (oidc-provider, in place of Keycloak) as:',
    ...DEMO_USERS.map((u) => `  ${login(u).padEnd(w1)}  ${roles(u).padEnd(w2)}  ${abilities(u)}`),
    '',
    `Orthanc Explorer   ${publicUrl}/pacs-admin/app/explorer.html (admin)   sign out: ${publicUrl}/_gateway/logout`,
    `Share links        signed in as admin, in the browser console: await (await fetch('/_gateway/shares', { method: 'POST', body: JSON.stringify({ studies: ['<StudyInstanceUID>'], expiresIn: '1h' }) })).json()`,
    `Identity provider  ${idp.issuer} (through the gateway's /auth; itself on ${HOST}:${idpPort})`,
    '',
    'A token for scripts (client pacs-scripts: search and store), then DICOMweb with it:',
    `  TOKEN=$(curl -s -u pacs-scripts:${idp.clientSecret} -d grant_type=client_credentials ${idp.tokenEndpoint} | node -pe 'JSON.parse(require("fs").readFileSync(0)).access_token')`,
    `  curl -H "Authorization: Bearer $TOKEN" ${publicUrl}/pacs/dicom-web/studies`,
    `A person at a terminal (client pacs-cli, device authorization): curl -s -d client_id=pacs-cli ${idp.issuer}/protocol/openid-connect/auth/device (README § A token for scripts)`,
    '',
    `Orthanc            ${orthanc.url}, reachable only with the gateway's password, through ${publicUrl}/pacs`,
    `Gateway admin      http://${HOST}:${adminPort}/metrics, /readyz   access log: ${path.relative(process.cwd(), LOG_FILE)}`,
    '',
    'Ctrl-C stops everything.',
    '',
  ].join('\n'));
}

main().catch((err: unknown) => {
  const e = err as NodeJS.ErrnoException;
  console.error(`demo: ${e.code === 'EADDRINUSE' ? `a port is taken (${e.message}); choose others with DEMO_PORT, DEMO_IDP_PORT, DEMO_ADMIN_PORT` : e.message ?? String(err)}`);
  void stopAll(1);
});
