// The shared-state interface that sessions, share links and revocations use, and the factory that
// picks its implementation from the configured URL: memory (one process) or Redis (many).
import { RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import { createMemoryStore } from './memory.js';
import { createRedisStore } from './redis.js';

export interface Store {
  readonly kind: 'memory' | 'redis';
  /** Value under key, undefined when absent or expired. */
  get(key: string): Promise<string | undefined>;
  /** Sets key to value, expiring after ttlMs (> 0). */
  set(key: string, value: string, ttlMs: number): Promise<void>;
  /** Sets only when absent (SET NX PX); true when this call set it. For locks and replay detection. */
  setIfAbsent(key: string, value: string, ttlMs: number): Promise<boolean>;
  /** Deletes key; true when something was deleted. */
  delete(key: string): Promise<boolean>;
  /** Deletes key only if its value equals `value` (a lock released by its holder only); true when deleted. */
  deleteIfEqual(key: string, value: string): Promise<boolean>;
  /** Adds member to the set at key; the set's expiry becomes max(current, ttlMs from now). */
  addToSet(key: string, member: string, ttlMs: number): Promise<void>;
  /** Members of the set at key ([] when absent/expired). */
  members(key: string): Promise<string[]>;
  removeFromSet(key: string, member: string): Promise<void>;
  /** Publishes a message on a channel to every process sharing the store (memory: this process only). */
  publish(channel: string, message: string): Promise<void>;
  /** Calls onMessage for every message on channel (from any process, including this one); returns an unsubscribe function. */
  subscribe(channel: string, onMessage: (message: string) => void): Promise<() => Promise<void>>;
  /**
   * A counter of attempts per key (rate-limiter-flexible over this store): at most `points` in
   * `durationMs`; shared by every process on Redis.
   */
  limiter(name: string, points: number, durationMs: number): Limiter;
  /** For /readyz: { ok, detail } — Redis: connected and answering PING within 1 s. */
  check(): Promise<{ ok: boolean; detail: string }>;
  close(): Promise<void>;
}

export interface Limiter {
  /** Counts one attempt for key; allowed false (with how long to wait) once the points are used up. */
  consume(key: string): Promise<{ allowed: boolean; retryAfterMs: number }>;
  /** Forgets key's attempts (e.g. after a success). */
  reset(key: string): Promise<void>;
}

/** Adapts a rate-limiter-flexible limiter: a refusal is an answer, anything else a store error. */
export function limiterOf(rl: RateLimiterAbstract, unavailable: (err: unknown) => Error): Limiter {
  return {
    async consume(key) {
      try {
        await rl.consume(key);
        return { allowed: true, retryAfterMs: 0 };
      } catch (err) {
        if (err instanceof RateLimiterRes) return { allowed: false, retryAfterMs: err.msBeforeNext };
        throw unavailable(err);
      }
    },
    async reset(key) {
      try { await rl.delete(key); } catch (err) { throw unavailable(err); }
    },
  };
}

/** Redis is down, unreachable, too slow, or the store was closed. Never carries the URL's password. */
export class StoreUnavailableError extends Error {
  override readonly name = 'StoreUnavailableError';
}

export interface StoreLog { warn(obj: object, msg: string): void }

export interface StoreOptions {
  /** Prepended to every Redis key and channel (default 'pgw:'); ignored by the memory store. */
  keyPrefix?: string;
  /** Redis: a command (or waiting for a connection) fails after this long (default 1000 ms). */
  commandTimeoutMs?: number;
  log?: StoreLog;
}

export function createStore(url: string | undefined, opts: StoreOptions = {}): Store {
  if (url === undefined || url === 'memory') return createMemoryStore({ log: opts.log });
  if (/^rediss?:\/\//i.test(url)) return createRedisStore(url, opts);
  // Only the scheme is echoed: the rest of a mistyped URL may hold a password.
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1];
  throw new Error(`session store must be 'memory' or a redis:// or rediss:// URL (got ${scheme ? `a ${scheme}: URL` : 'something else'})`);
}

/**
 * Rejects TTLs Redis would refuse or misread (0, negative, NaN) and rounds up to whole
 * milliseconds, so both implementations accept exactly the same values.
 */
export function validTtlMs(ttlMs: number): number {
  if (!Number.isFinite(ttlMs) || ttlMs <= 0) throw new RangeError(`store TTL must be a positive number of milliseconds (got ${ttlMs})`);
  return Math.ceil(ttlMs);
}
