// Login sessions kept server-side in the shared store: the browser holds only a signed random id.
// Records are keyed by a hash of the id (a leaked store does not yield cookies) and indexed by the
// IdP's sid and the user's sub, so a back-channel logout can end them on every gateway process.
import { createHash, randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { parse as parseCookies, serialize as serializeCookie } from 'cookie';
import signature from 'cookie-signature';
import type { SessionConfig } from '../config/schema.js';
import type { Store } from '../store/store.js';

export interface SessionRecord {
  readonly sub: string;
  /** The IdP's session id (ID token sid), named by back-channel logout tokens. */
  readonly sid?: string;
  readonly username?: string;
  readonly createdAt: number;
  readonly idToken?: string;
  readonly accessToken: string;
  readonly refreshToken?: string;
  /** Epoch ms when the access token expires. */
  readonly accessExpiresAt: number;
}

export interface Sessions {
  /** The cookie's name as the browser sees it (__Host- prefixed on https). */
  readonly cookieName: string;
  /** The session id in the request's cookie: undefined without one, null when its signature is wrong. */
  idFrom(req: IncomingMessage): string | undefined | null;
  /** The live session, or undefined (unknown, idle too long or past its absolute lifetime: then removed). */
  load(id: string): Promise<SessionRecord | undefined>;
  /** A new session (a new id: a session id set before login never survives it). */
  create(record: SessionRecord): Promise<string>;
  /** Replaces the record (after a refresh), keeping its lifetime. */
  update(id: string, record: SessionRecord): Promise<void>;
  destroy(id: string): Promise<void>;
  /** Ends every session of an IdP session id, or of a subject; returns how many ended. */
  destroyWhere(by: { sid?: string; sub?: string }): Promise<number>;
  /** The Set-Cookie value carrying `id`, and the one that clears it. */
  setCookie(id: string): string;
  clearCookie(): string;
  /** Lock helpers for one refresh at a time per session, across processes. */
  lock(id: string, owner: string, ttlMs: number): Promise<boolean>;
  unlock(id: string, owner: string): Promise<void>;
}

const keyOf = (id: string): string => createHash('sha256').update(id).digest('base64url');

export function createSessions(cfg: SessionConfig, store: Store, https: boolean): Sessions {
  const cookieName = https ? `__Host-${cfg.cookieName}` : cfg.cookieName;
  const secrets: readonly string[] = cfg.secret;
  const signingSecret = secrets[0] as string;
  // The last-seen mark is written at most this often (not one store write per request) and lives
  // idleTimeout from its write: a session unused for idleTimeout ends, at most a tenth earlier.
  const touchEvery = Math.min(60_000, Math.floor(cfg.idleTimeout / 10));
  const cookieOpts = { httpOnly: true, sameSite: 'lax' as const, secure: https, path: '/' };

  const rec = (k: string) => `sess:${k}`;
  const seen = (k: string) => `sess-seen:${k}`;
  const lockKey = (k: string) => `sess-lock:${k}`;
  const bySub = (sub: string) => `sess-sub:${keyOf(sub)}`;
  const bySid = (sid: string) => `sess-sid:${keyOf(sid)}`;

  async function remove(k: string): Promise<void> {
    await Promise.all([store.delete(rec(k)), store.delete(seen(k))]);
  }

  return {
    cookieName,
    idFrom(req) {
      const header = req.headers.cookie;
      if (!header || !header.includes(cfg.cookieName)) return undefined;
      const value = parseCookies(header)[cookieName];
      if (value === undefined) return undefined;
      for (const secret of secrets) {
        const id = signature.unsign(value, secret);
        if (id !== false && /^[A-Za-z0-9_-]{43}$/.test(id)) return id;
      }
      return null;
    },
    async load(id) {
      const k = keyOf(id);
      const [raw, seenAt] = await Promise.all([store.get(rec(k)), store.get(seen(k))]);
      if (raw === undefined) return undefined;
      const record = JSON.parse(raw) as SessionRecord;
      const now = Date.now();
      if (seenAt === undefined || now - record.createdAt >= cfg.absoluteTimeout) {
        await remove(k);
        return undefined;
      }
      if (now - Number(seenAt) >= touchEvery) {
        await store.set(seen(k), String(now), Math.min(cfg.idleTimeout, record.createdAt + cfg.absoluteTimeout - now));
      }
      return record;
    },
    async create(record) {
      const id = randomBytes(32).toString('base64url');
      const k = keyOf(id);
      const ttl = cfg.absoluteTimeout;
      await store.set(rec(k), JSON.stringify(record), ttl);
      await store.set(seen(k), String(Date.now()), Math.min(cfg.idleTimeout, ttl));
      await store.addToSet(bySub(record.sub), k, ttl);
      if (record.sid) await store.addToSet(bySid(record.sid), k, ttl);
      return id;
    },
    async update(id, record) {
      const ttl = record.createdAt + cfg.absoluteTimeout - Date.now();
      if (ttl > 0) await store.set(rec(keyOf(id)), JSON.stringify(record), ttl);
    },
    async destroy(id) {
      await remove(keyOf(id));
    },
    async destroyWhere(by) {
      const sets = [...(by.sid ? [bySid(by.sid)] : []), ...(by.sub ? [bySub(by.sub)] : [])];
      let ended = 0;
      for (const set of sets) {
        for (const k of await store.members(set)) {
          if (await store.delete(rec(k))) ended++;
          await store.delete(seen(k));
        }
        await store.delete(set);
      }
      return ended;
    },
    setCookie: (id) => serializeCookie(cookieName, signature.sign(id, signingSecret), { ...cookieOpts, encode: (v: string) => v }),
    clearCookie: () => serializeCookie(cookieName, '', { ...cookieOpts, expires: new Date(0) }),
    lock: (id, owner, ttlMs) => store.setIfAbsent(lockKey(keyOf(id)), owner, ttlMs),
    async unlock(id, owner) { await store.deleteIfEqual(lockKey(keyOf(id)), owner); },
  };
}
