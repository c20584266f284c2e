// A real Orthanc (Debian package, 1.10 + DICOMweb plugin) as a child process, on free loopback
// ports, with a generated config and a random password. Used by integration tests and the demo.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

export interface OrthancHandle {
  /** http://127.0.0.1:PORT, no trailing slash */
  url: string;
  username: string;
  password: string;
  /** 'Basic …' for `username:password` */
  authHeader: string;
  pid: number;
  /** SIGTERM, then SIGKILL after 10 s; removes the temp dir unless `dataDir` was given. */
  stop(): Promise<void>;
}

export interface StartOrthancOptions {
  /** Keep storage, index and config here (created if missing) instead of a throw-away temp dir. */
  dataDir?: string;
}

const PLUGIN = '/usr/share/orthanc/plugins/libOrthancDicomWeb.so';
const USERNAME = 'gateway';
const READY_TIMEOUT_MS = 20_000;
const KILL_AFTER_MS = 10_000;
const STDERR_TAIL_BYTES = 4_000;

// Children still running (with their throw-away dir, if any), killed when this process exits so a
// script or test that forgets stop() does not leave Orthanc behind. Inside Jest `process` is a
// sandbox copy whose 'exit' never fires: there the parent-death signal set in spawnOrthanc stops
// Orthanc, but its temp dir stays.
const running = new Map<ChildProcess, string | undefined>();
let exitHookInstalled = false;

export async function startOrthanc(opts: StartOrthancOptions = {}): Promise<OrthancHandle> {
  const binary = findOrthancBinary();
  if (!existsSync(PLUGIN)) throw new Error(`DICOMweb plugin not found at ${PLUGIN} (apt-get install orthanc-dicomweb)`);

  const dir = opts.dataDir ? path.resolve(opts.dataDir) : await mkdtemp(path.join(tmpdir(), 'orthanc-'));
  await mkdir(dir, { recursive: true });
  const [httpPort, dicomPort] = await freePortPair();
  const password = randomBytes(18).toString('base64url');
  const configPath = path.join(dir, 'orthanc.json');
  await writeFile(configPath, JSON.stringify(orthancConfig(dir, httpPort, dicomPort, password), null, 2));

  const url = `http://127.0.0.1:${httpPort}`;
  const authHeader = `Basic ${Buffer.from(`${USERNAME}:${password}`).toString('base64')}`;
  const tempDir = opts.dataDir ? undefined : dir;
  const removeTempDir = async () => {
    if (tempDir) await rm(tempDir, { recursive: true, force: true });
  };
  let child: ChildProcess;
  try {
    child = await spawnOrthanc(binary, configPath, tempDir);
  } catch (err) {
    await removeTempDir();
    throw err;
  }
  const stderrTail = captureTail(child);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  const cleanup = async () => {
    await stopChild(child, exited);
    await removeTempDir();
  };
  try {
    await waitUntilReady(url, authHeader, child, stderrTail);
  } catch (err) {
    await cleanup();
    throw err;
  }

  let stopping: Promise<void> | undefined;
  return {
    url,
    username: USERNAME,
    password,
    authHeader,
    pid: child.pid!,
    stop: () => (stopping ??= cleanup()),
  };
}

function orthancConfig(dir: string, httpPort: number, dicomPort: number, password: string) {
  return {
    Name: `pacs-gateway-test-${httpPort}`,
    StorageDirectory: path.join(dir, 'storage'),
    IndexDirectory: path.join(dir, 'index'),
    HttpPort: httpPort,
    DicomPort: dicomPort,
    DicomAet: 'PACSGWTEST',
    // Orthanc 1.10 has no bind address and listens on all interfaces: only loopback clients and
    // only the registered user (known to the gateway alone) may get in.
    RemoteAccessAllowed: false,
    AuthenticationEnabled: true,
    RegisteredUsers: { [USERNAME]: password },
    // The DICOM listener cannot be bound to loopback either, and would accept C-STORE from any
    // host: nothing here needs it.
    DicomServerEnabled: false,
    // Keep answers byte-for-byte predictable for tests that compare payloads.
    HttpCompressionEnabled: false,
    StorageCompression: false,
    // Nothing to resume between runs; saves work at shutdown.
    SaveJobs: false,
    Plugins: [PLUGIN],
    DicomWeb: { Enable: true, Root: '/dicom-web/', EnableWado: true, WadoRoot: '/wado' },
  };
}

function findOrthancBinary(): string {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter).filter(Boolean)) {
    const candidate = path.join(dir, 'Orthanc');
    if (existsSync(candidate)) return candidate;
  }
  if (existsSync('/usr/sbin/Orthanc')) return '/usr/sbin/Orthanc';
  throw new Error('Orthanc binary not found on PATH nor at /usr/sbin/Orthanc (apt-get install orthanc)');
}

async function spawnOrthanc(binary: string, configPath: string, tempDir: string | undefined): Promise<ChildProcess> {
  // setpriv execs Orthanc with PR_SET_PDEATHSIG, so the kernel stops it even if this process
  // dies without running exit hooks (SIGKILL, a Jest worker torn down). The pid stays Orthanc's.
  const [command, args] = existsSync('/usr/bin/setpriv')
    ? ['/usr/bin/setpriv', ['--pdeathsig', 'TERM', '--', binary, configPath]]
    : [binary, [configPath]];
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  if (child.pid === undefined) {
    const [err] = (await once(child, 'error')) as [Error];
    throw new Error(`could not start ${command}: ${err.message}`);
  }

  running.set(child, tempDir);
  child.once('exit', () => running.delete(child));
  installExitHook();
  // A forgotten handle must not keep the test runner (or a script) alive; stop() re-refs it.
  child.unref();
  (child.stdout as Socket | null)?.unref();
  (child.stderr as Socket | null)?.unref();
  return child;
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const [child, tempDir] of running) {
      child.kill('SIGKILL');
      if (tempDir) rmSync(tempDir, { recursive: true, force: true });
    }
  });
}

/** Keeps the last few KB of Orthanc's output for error messages; also drains the pipes. */
function captureTail(child: ChildProcess): () => string {
  let tail = '';
  const append = (chunk: Buffer) => {
    tail = (tail + chunk.toString('utf8')).slice(-STDERR_TAIL_BYTES);
  };
  child.stdout?.on('data', append);
  child.stderr?.on('data', append);
  return () => tail.trim();
}

async function waitUntilReady(
  url: string,
  authHeader: string,
  child: ChildProcess,
  stderrTail: () => string,
): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let lastError = 'no answer yet';
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(
        `Orthanc exited during startup (code ${child.exitCode}, signal ${child.signalCode}):\n${stderrTail()}`,
      );
    }
    try {
      const res = await fetch(`${url}/system`, {
        headers: { authorization: authHeader },
        signal: AbortSignal.timeout(2_000),
      });
      await res.arrayBuffer();
      if (res.status === 200) return;
      lastError = `GET /system answered ${res.status}`;
    } catch (err) {
      lastError = err instanceof Error ? (err.cause as Error | undefined)?.message ?? err.message : String(err);
    }
    await delay(50);
  }
  throw new Error(`Orthanc not ready after ${READY_TIMEOUT_MS} ms (${lastError}):\n${stderrTail()}`);
}

async function stopChild(child: ChildProcess, exited: Promise<void>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  // Re-ref so a script awaiting stop() is not ended early by an empty event loop.
  child.ref();
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), KILL_AFTER_MS);
  try {
    await exited;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Two distinct free TCP ports on 127.0.0.1: both are held open together, then released for
 * Orthanc to take. Racy in theory; the kernel does not hand a just-released ephemeral port straight
 * back out, so in practice this is fine.
 */
async function freePortPair(): Promise<[number, number]> {
  const first = await listenOnEphemeralPort();
  const second = await listenOnEphemeralPort();
  const ports: [number, number] = [portOf(first), portOf(second)];
  await Promise.all([closeServer(first), closeServer(second)]);
  return ports;
}

const portOf = (server: Server) => (server.address() as AddressInfo).port;
const closeServer = (server: Server) => new Promise<void>((resolve) => server.close(() => resolve()));

async function listenOnEphemeralPort(): Promise<Server> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return server;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
