// The Store shared by several gateway processes, on Redis through ioredis. It fails fast: while
// Redis is away every operation rejects with StoreUnavailableError instead of queueing.
import { Redis, type RedisOptions } from 'ioredis';
import { RateLimiterRedis } from 'rate-limiter-flexible';
import { limiterOf, StoreUnavailableError, validTtlMs, type Store, type StoreLog, type StoreOptions } from './store.js';
// (store.ts imports this module too: its exports are only used inside functions, which an ESM
// import cycle allows.)

const DEFAULT_KEY_PREFIX = 'pgw:';
const DEFAULT_COMMAND_TIMEOUT_MS = 1_000;
const CHECK_TIMEOUT_MS = 1_000;
const CONNECT_TIMEOUT_MS = 5_000;
const MAX_RECONNECT_DELAY_MS = 2_000;

// Atomic compare-and-delete: a lock is released only by the holder that knows its value.
const DELETE_IF_EQUAL = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

// `PEXPIRE key ms GT` treats a key without a TTL as infinite and leaves it alone, which is exactly
// the state SADD leaves a new set in; comparing PTTL (-1 = no TTL) covers both cases atomically.
const ADD_TO_SET = `redis.call('SADD', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1`;

type Role = 'commands' | 'subscriber';

export function createRedisStore(url: string, opts: StoreOptions = {}): Store {
  const prefix = opts.keyPrefix ?? DEFAULT_KEY_PREFIX;
  const timeoutMs = opts.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
  const { target, redact } = describeUrl(url);
  const health = outageLog(target, redact, opts.log);

  const client = connect(url, timeoutMs, 'commands', health);
  const ready = readinessGate(client, timeoutMs);
  let sub: { client: Redis; ready: () => Promise<void> } | undefined;
  // Local handlers per full channel name; the subscriber connection holds one Redis subscription
  // per channel however many handlers share it.
  const handlers = new Map<string, Set<(message: string) => void>>();
  // Channels whose UNSUBSCRIBE failed during an outage: ioredis would resubscribe them on reconnect.
  const stale = new Set<string>();
  let closed = false;

  function unavailable(op: string, err: unknown): Error {
    if (err instanceof StoreUnavailableError) return err;
    const reason = redact(err instanceof Error ? err.message : String(err));
    // A type clash is a bug in the caller's key naming, not an outage.
    if (reason.includes('WRONGTYPE')) return new Error(`redis store ${op}: ${reason}`);
    if (closed) return new StoreUnavailableError('redis store is closed');
    return new StoreUnavailableError(`redis store unavailable (${target}): ${op} failed: ${reason}`);
  }

  async function run<T>(op: string, command: () => Promise<T>, gate = ready): Promise<T> {
    try {
      await gate();
      return await command();
    } catch (err) {
      throw unavailable(op, err);
    }
  }

  function subscriber(): NonNullable<typeof sub> {
    if (sub) return sub;
    const c = connect(url, timeoutMs, 'subscriber', health);
    c.on('message', (channel: string, message: string) => {
      // A throw inside ioredis's socket data handler would break the connection's reply parser.
      const complain = (err: unknown) => opts.log?.warn({ store: 'redis', err: err instanceof Error ? err.message : String(err) }, 'store subscriber threw');
      for (const onMessage of [...(handlers.get(channel) ?? [])]) {
        try {
          const result: unknown = onMessage(message);
          // An async handler's rejection would otherwise be an unhandled rejection.
          if (result instanceof Promise) result.catch(complain);
        } catch (err) {
          complain(err);
        }
      }
    });
    c.on('ready', () => {
      for (const channel of stale) {
        if (!handlers.has(channel)) c.unsubscribe(channel).then(() => stale.delete(channel), () => undefined);
      }
    });
    return (sub = { client: c, ready: readinessGate(c, timeoutMs) });
  }

  const k = (key: string) => prefix + key;

  return {
    kind: 'redis',
    limiter(name, points, durationMs) {
      const inner = limiterOf(
        new RateLimiterRedis({ storeClient: client, keyPrefix: `${prefix}rl:${name}`, points, duration: Math.ceil(durationMs / 1000), rejectIfRedisNotReady: true }),
        (err) => unavailable('rate limit', err),
      );
      // The connection is opened lazily: wait for it (within the command timeout) as every command does.
      return {
        consume: (key) => run('rate limit', () => Promise.resolve()).then(() => inner.consume(key)),
        reset: (key) => run('rate limit', () => Promise.resolve()).then(() => inner.reset(key)),
      };
    },

    get: (key) => run('GET', async () => (await client.get(k(key))) ?? undefined),

    // TTLs are checked before run(): a bad argument is the caller's bug, not an outage.
    async set(key, value, ttlMs) {
      const px = validTtlMs(ttlMs);
      await run('SET', () => client.set(k(key), value, 'PX', px));
    },

    async setIfAbsent(key, value, ttlMs) {
      const px = validTtlMs(ttlMs);
      return (await run('SET NX', () => client.set(k(key), value, 'PX', px, 'NX'))) === 'OK';
    },

    delete: (key) => run('DEL', async () => (await client.del(k(key))) > 0),

    deleteIfEqual: (key, value) => run('deleteIfEqual', async () => (await client.eval(DELETE_IF_EQUAL, 1, k(key), value)) === 1),

    async addToSet(key, member, ttlMs) {
      const px = validTtlMs(ttlMs);
      await run('addToSet', () => client.eval(ADD_TO_SET, 1, k(key), member, px));
    },

    members: (key) => run('SMEMBERS', () => client.smembers(k(key))),

    removeFromSet: (key, member) => run('SREM', async () => {
      await client.srem(k(key), member);
    }),

    publish: (channel, message) => run('PUBLISH', async () => {
      await client.publish(k(channel), message);
    }),

    async subscribe(channel, onMessage) {
      if (closed) throw new StoreUnavailableError('redis store is closed');
      const full = k(channel);
      const s = subscriber();
      // Registered before SUBSCRIBE is sent so a concurrent unsubscribe of the same channel sees a
      // remaining handler and keeps the Redis subscription.
      let set = handlers.get(full);
      if (!set) handlers.set(full, (set = new Set()));
      const handler = (message: string) => onMessage(message);
      set.add(handler);
      const forget = () => {
        set.delete(handler);
        if (set.size === 0 && handlers.get(full) === set) {
          handlers.delete(full);
          return true;
        }
        return false;
      };
      try {
        // Sent even when the channel is already subscribed: it is idempotent, and its reply tells
        // this caller the subscription is live.
        await run('SUBSCRIBE', () => s.client.subscribe(full), s.ready);
      } catch (err) {
        if (forget()) stale.add(full);
        throw err;
      }
      let active = true;
      return async () => {
        if (!active) return;
        active = false;
        if (!forget()) return;
        // Best effort: the handler is gone already, so a failure here only leaves a subscription
        // whose messages are dropped; it is retried when the connection comes back.
        await s.client.unsubscribe(full).catch(() => stale.add(full));
      };
    },

    async check() {
      if (closed) return { ok: false, detail: 'redis store is closed' };
      const started = performance.now();
      try {
        await withTimeout(run('PING', () => client.ping()), CHECK_TIMEOUT_MS, `no PONG within ${CHECK_TIMEOUT_MS} ms`);
      } catch (err) {
        return { ok: false, detail: unavailable('PING', err).message };
      }
      // Lost subscriptions mean missed revocations: not ready either.
      if (sub && sub.client.status !== 'ready') {
        return { ok: false, detail: `redis store (${target}): subscriber connection is ${sub.client.status}` };
      }
      return { ok: true, detail: `redis ${target} answered PING in ${Math.round(performance.now() - started)} ms` };
    },

    async close() {
      if (closed) return;
      closed = true;
      health.closing();
      handlers.clear();
      await Promise.all([client, sub?.client].map((c) => c && disconnect(c)));
    },
  };
}

function connect(url: string, timeoutMs: number, role: Role, health: Health): Redis {
  const options: RedisOptions = {
    lazyConnect: true,
    // Fail now rather than queue: a request must not hang while Redis is away.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    // A command that was sent but not answered before the connection dropped may have run: replaying
    // SET NX after reconnecting would answer "taken" to the caller that took it.
    autoResendUnfulfilledCommands: false,
    commandTimeout: timeoutMs,
    connectTimeout: CONNECT_TIMEOUT_MS,
    // Exponential, capped, with jitter so several gateway processes do not reconnect in lockstep.
    retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times - 1, 10), MAX_RECONNECT_DELAY_MS) + Math.floor(Math.random() * 50),
    connectionName: `pacs-gateway-${role}`,
  };
  const client = new Redis(url, options);
  client.on('error', (err: Error) => health.down(role, err.message));
  client.on('close', () => health.down(role, 'connection closed'));
  client.on('ready', () => health.up(role));
  // Background connect: failures surface as 'error' events and retries, not as a rejection here.
  client.connect().catch(() => undefined);
  return client;
}

/**
 * Resolves when the client can take commands. Only the very first connection attempt is waited
 * for (at most timeoutMs: start-up, or a subscriber connection opened on first use); once a client
 * has been up or has failed, "not ready" means an outage and the answer is an immediate failure,
 * even while a reconnect attempt is under way (it may hang for connectTimeout on a lost host).
 * One shared wait, not one listener per caller.
 */
function readinessGate(client: Redis, timeoutMs: number): () => Promise<void> {
  let firstAttempt = true;
  client.once('ready', () => { firstAttempt = false; });
  client.once('close', () => { firstAttempt = false; });
  let pending: Promise<void> | undefined;
  return () => {
    const status = client.status;
    if (status === 'ready') return Promise.resolve();
    if (!firstAttempt || (status !== 'wait' && status !== 'connecting' && status !== 'connect')) {
      return Promise.reject(new Error(status === 'end' ? 'connection closed' : `not connected (${status})`));
    }
    return (pending ??= new Promise<void>((resolve, reject) => {
      const settle = (err?: Error) => {
        clearTimeout(timer);
        client.off('ready', onReady);
        client.off('close', onClose);
        pending = undefined;
        if (err) reject(err); else resolve();
      };
      const onReady = () => settle();
      const onClose = () => settle(new Error('connection attempt failed'));
      const timer = setTimeout(() => settle(new Error(`not connected within ${timeoutMs} ms`)), timeoutMs);
      client.once('ready', onReady);
      client.once('close', onClose);
    }));
  };
}

interface Health {
  down(role: Role, reason: string): void;
  up(role: Role): void;
  /** Our own close() is not an outage. */
  closing(): void;
}

/** Logs an outage once when it starts (whichever connection notices first) and once when it ends. */
function outageLog(target: string, redact: (s: string) => string, log: StoreLog | undefined): Health {
  const broken = new Set<Role>();
  let closing = false;
  return {
    down(role, reason) {
      if (closing) return;
      if (broken.size === 0) log?.warn({ store: 'redis', redis: target, err: redact(reason) }, 'redis store unavailable; its operations fail until it is back');
      broken.add(role);
    },
    up(role) {
      if (broken.delete(role) && broken.size === 0 && !closing) log?.warn({ store: 'redis', redis: target }, 'redis store available again');
    },
    closing() {
      closing = true;
    },
  };
}

/** Where the store points, for messages ("host:port"), and a scrubber for the URL's password. */
function describeUrl(url: string): { target: string; redact: (s: string) => string } {
  let target = 'redis';
  const secrets: string[] = [];
  try {
    const u = new URL(url);
    target = `${u.hostname}:${u.port || '6379'}`;
    if (u.password) secrets.push(u.password, decodeURIComponent(u.password));
  } catch {
    // ioredis will refuse it too and say so through its error event, scrubbed below.
  }
  return {
    target,
    redact: (s) => secrets.reduce((text, secret) => text.split(secret).join('***'), s),
  };
}

function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(message)), ms); });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** QUIT lets answers already on their way arrive; a connection that is down is just dropped. */
async function disconnect(client: Redis): Promise<void> {
  if (client.status === 'ready') {
    try {
      await client.quit();
      return;
    } catch {
      // Timed out or dropped meanwhile: fall through.
    }
  }
  client.disconnect();
}
