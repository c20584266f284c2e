// A real redis-server (Debian package) as a child process on a free loopback port, in a throw-away
// directory, with no persistence. Tests can kill, restart or freeze it to play outages.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

export interface RedisHandle {
  /** redis://127.0.0.1:PORT */
  url: string;
  port: number;
  /** SIGTERM (SIGKILL after 5 s), then removes the temp dir. */
  stop(): Promise<void>;
  /** SIGKILL, as in a crash; the port stays free until restart(). */
  kill(): Promise<void>;
  /** A new server on the same port with no data (killing the running one first, if any). */
  restart(): Promise<void>;
  /** SIGSTOP: connections stay open but nothing answers (a hung or overloaded Redis). */
  freeze(): void;
  /** SIGCONT after freeze(). */
  thaw(): void;
}

const BINARY = '/usr/bin/redis-server';
const READY_TIMEOUT_MS = 10_000;
const KILL_AFTER_MS = 5_000;

export async function startRedis(): Promise<RedisHandle> {
  if (!existsSync(BINARY)) throw new Error(`${BINARY} not found (apt-get install redis-server)`);
  const dir = await mkdtemp(path.join(tmpdir(), 'redis-'));
  const port = await freePort();
  let child: ChildProcess | undefined;

  const start = async () => {
    const spawned = spawnRedis(dir, port);
    child = spawned.child;
    try {
      await waitForPong(port, child, spawned.output);
    } catch (err) {
      await terminate(child, 'SIGKILL');
      throw err;
    }
  };
  try {
    await start();
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }

  let stopping: Promise<void> | undefined;
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    stop: () => (stopping ??= (async () => {
      if (child) await terminate(child, 'SIGTERM');
      await rm(dir, { recursive: true, force: true });
    })()),
    kill: async () => {
      if (child) await terminate(child, 'SIGKILL');
    },
    restart: async () => {
      if (child) await terminate(child, 'SIGKILL');
      await start();
    },
    freeze: () => { child?.kill('SIGSTOP'); },
    thaw: () => { child?.kill('SIGCONT'); },
  };
}

function spawnRedis(dir: string, port: number): { child: ChildProcess; output: () => string } {
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir];
  // setpriv sets PR_SET_PDEATHSIG so the kernel stops Redis even if the test process dies without
  // running any cleanup (a Jest worker torn down).
  const [command, argv] = existsSync('/usr/bin/setpriv')
    ? ['/usr/bin/setpriv', ['--pdeathsig', 'KILL', '--', BINARY, ...args]]
    : [BINARY, args];
  const child = spawn(command, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  let tail = '';
  const keep = (chunk: Buffer) => { tail = (tail + chunk.toString('utf8')).slice(-4_000); };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  // A forgotten handle must not keep Jest alive.
  child.unref();
  (child.stdout as Socket | null)?.unref();
  (child.stderr as Socket | null)?.unref();
  return { child, output: () => tail.trim() };
}

async function terminate(child: ChildProcess, signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  // A frozen process would not act on SIGTERM.
  child.kill('SIGCONT');
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), KILL_AFTER_MS);
  try {
    await exited;
  } finally {
    clearTimeout(timer);
  }
}

async function waitForPong(port: number, child: ChildProcess, output: () => string): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let lastError = 'no answer yet';
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`redis-server exited during startup (code ${child.exitCode}, signal ${child.signalCode}):\n${output()}`);
    }
    try {
      if ((await ping(port)).startsWith('+PONG')) return;
      lastError = 'PING answered something else';
    } catch (err) {
      lastError = err instanceof Error ? err.message : String(err);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`redis-server on port ${port} not answering PING after ${READY_TIMEOUT_MS} ms (${lastError})`);
}

/** One PING over a raw socket: no client library, so nothing here can mask a client bug. */
function ping(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    let reply = '';
    socket.setTimeout(1_000, () => socket.destroy(new Error('PING timed out')));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk) => {
      reply += chunk.toString('latin1');
      if (reply.includes('\r\n')) {
        socket.destroy();
        resolve(reply);
      }
    });
    socket.once('error', reject);
  });
}

/** Listens on port 0 to learn a free port, then releases it for Redis. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
