// The Store for a single gateway process: Maps with expiry times, swept periodically so memory
// stays bounded, and in-process pub/sub with Redis's semantics (one key space, async delivery).
import { RateLimiterMemory } from 'rate-limiter-flexible';
import { limiterOf, StoreUnavailableError, validTtlMs, type Store, type StoreLog } from './store.js';
// (store.ts imports this module too: its exports are only used inside functions, which an ESM
// import cycle allows.)

type Entry =
  | { kind: 'value'; value: string; expiresAt: number }
  | { kind: 'set'; members: Set<string>; expiresAt: number };

interface Subscription { active: boolean; onMessage: (message: string) => void }

export interface MemoryStore extends Store {
  readonly kind: 'memory';
  /** Entries held, including expired ones not yet swept (for tests and metrics). */
  readonly size: number;
}

export interface MemoryStoreOptions {
  /** How often expired entries nobody reads again are dropped (default 30 s). */
  sweepIntervalMs?: number;
  log?: StoreLog;
}

const DEFAULT_SWEEP_INTERVAL_MS = 30_000;

// A monotonic clock: a wall-clock step (NTP, manual change) must not expire or revive sessions.
const now = () => performance.now();

export function createMemoryStore(opts: MemoryStoreOptions = {}): MemoryStore {
  const entries = new Map<string, Entry>();
  const channels = new Map<string, Set<Subscription>>();
  let closed = false;

  const sweep = setInterval(() => {
    const t = now();
    for (const [key, entry] of entries) if (entry.expiresAt <= t) entries.delete(key);
  }, opts.sweepIntervalMs ?? DEFAULT_SWEEP_INTERVAL_MS);
  sweep.unref();

  function open(): void {
    if (closed) throw new StoreUnavailableError('memory store is closed');
  }

  function live(key: string): Entry | undefined {
    const entry = entries.get(key);
    if (entry && entry.expiresAt <= now()) {
      entries.delete(key);
      return undefined;
    }
    return entry;
  }

  // Same key space and the same refusal as Redis, so code that works on one works on the other.
  function wrongType(key: string): never {
    throw new Error(`WRONGTYPE store key ${JSON.stringify(key)} holds the other kind of value (value vs set)`);
  }

  function valueOf(key: string): string | undefined {
    const entry = live(key);
    if (entry && entry.kind !== 'value') wrongType(key);
    return entry?.value;
  }

  function setOf(key: string): Set<string> | undefined {
    const entry = live(key);
    if (entry && entry.kind !== 'set') wrongType(key);
    return entry?.members;
  }

  const complain = (err: unknown) => opts.log?.warn({ store: 'memory', err: err instanceof Error ? err.message : String(err) }, 'store subscriber threw');

  function deliver(sub: Subscription, message: string): void {
    if (!sub.active) return;
    try {
      const result: unknown = sub.onMessage(message);
      // An async handler's rejection would otherwise be an unhandled rejection.
      if (result instanceof Promise) result.catch(complain);
    } catch (err) {
      complain(err);
    }
  }

  return {
    kind: 'memory',
    limiter: (name, points, durationMs) => limiterOf(
      new RateLimiterMemory({ keyPrefix: name, points, duration: Math.ceil(durationMs / 1000) }),
      (err) => (err instanceof Error ? err : new Error(String(err))),
    ),
    get size() { return entries.size; },

    async get(key) {
      open();
      return valueOf(key);
    },

    async set(key, value, ttlMs) {
      open();
      entries.set(key, { kind: 'value', value, expiresAt: now() + validTtlMs(ttlMs) });
    },

    async setIfAbsent(key, value, ttlMs) {
      open();
      const expiresAt = now() + validTtlMs(ttlMs);
      if (live(key)) return false;
      entries.set(key, { kind: 'value', value, expiresAt });
      return true;
    },

    async delete(key) {
      open();
      return live(key) !== undefined && entries.delete(key);
    },

    async deleteIfEqual(key, value) {
      open();
      return valueOf(key) === value && entries.delete(key);
    },

    async addToSet(key, member, ttlMs) {
      open();
      const expiresAt = now() + validTtlMs(ttlMs);
      const members = setOf(key);
      if (!members) {
        entries.set(key, { kind: 'set', members: new Set([member]), expiresAt });
        return;
      }
      members.add(member);
      const entry = entries.get(key)!;
      entry.expiresAt = Math.max(entry.expiresAt, expiresAt);
    },

    async members(key) {
      open();
      return [...(setOf(key) ?? [])];
    },

    async removeFromSet(key, member) {
      open();
      const members = setOf(key);
      // Like Redis, an emptied set no longer exists.
      if (members?.delete(member) && members.size === 0) entries.delete(key);
    },

    async publish(channel, message) {
      open();
      // Delivered on a later turn, as from Redis: the publisher never runs subscriber code inline,
      // and a subscriber added after this call does not receive the message.
      for (const sub of channels.get(channel) ?? []) setImmediate(deliver, sub, message);
    },

    async subscribe(channel, onMessage) {
      open();
      const sub: Subscription = { active: true, onMessage };
      let subs = channels.get(channel);
      if (!subs) channels.set(channel, (subs = new Set()));
      subs.add(sub);
      return async () => {
        sub.active = false;
        subs.delete(sub);
        if (subs.size === 0 && channels.get(channel) === subs) channels.delete(channel);
      };
    },

    async check() {
      return closed ? { ok: false, detail: 'memory store is closed' } : { ok: true, detail: 'memory store (this process only)' };
    },

    async close() {
      closed = true;
      clearInterval(sweep);
      entries.clear();
      for (const subs of channels.values()) for (const sub of subs) sub.active = false;
      channels.clear();
    },
  };
}
