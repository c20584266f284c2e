// Share links in the shared store: a link opens some studies, with some permissions, until it
// expires or is revoked. The link carries a random code (256 bits) that is stored only as a hash;
// redeeming it gives the browser a signed cookie naming a share session, never the code. Records:
//   share:<id>            the share (or a revoked tombstone), until it expires
//   share-code:<hash>     code → share id, kept a week past the expiry (to say "expired", not "invalid")
//   share-owner:<hash>    the owner's share ids
//   share-used:<id>       a one-time link was redeemed
//   share-sess:<hash>     a redeemed browser's share session → share id
import { createHash, randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { parse as parseCookies, serialize as serializeCookie } from 'cookie';
import signature from 'cookie-signature';
import type { Permission } from '../access/operations.js';
import type { Store } from '../store/store.js';

export const SHARE_KINDS = ['view', 'download', 'contribute'] as const;
export type ShareKind = typeof SHARE_KINDS[number];

/** What each kind opens: view reads renderings and metadata, download also originals, contribute also stores (into the shared studies). */
export const KIND_PERMISSIONS: Readonly<Record<ShareKind, readonly Permission[]>> = Object.freeze({
  view: ['view'],
  download: ['view', 'download'],
  contribute: ['view', 'upload'],
});

export interface ShareRecord {
  readonly id: string;
  readonly owner: string;
  readonly ownerName?: string;
  readonly studies: readonly string[];
  readonly kind: ShareKind;
  readonly createdAt: number;
  readonly expiresAt: number;
  readonly oneTime: boolean;
  readonly revokedAt?: number;
  /** A password the visitor must type (scrypt, salted): never stored in clear. */
  readonly password?: { readonly salt: string; readonly hash: string };
}

/** Why a link or a share session no longer opens anything. */
export type ShareEnd = 'expired' | 'revoked' | 'used' | 'invalid';

export interface Shares {
  readonly cookieName: string;
  /** A new share; its code is returned once, here, and never stored (nor the password). */
  create(share: Omit<ShareRecord, 'id' | 'createdAt' | 'password'>, password?: string): Promise<{ record: ShareRecord; code: string }>;
  /** The share a link's code names, without opening it; or why it opens nothing. */
  lookup(code: string): Promise<{ share: ShareRecord } | { ended: ShareEnd }>;
  /** Whether `password` is the share's (constant time). */
  passwordMatches(share: ShareRecord, password: string): Promise<boolean>;
  get(id: string): Promise<ShareRecord | undefined>;
  list(owner: string): Promise<ShareRecord[]>;
  /** Revokes (a tombstone stays until the share would have expired); false when there is no live share. */
  revoke(id: string): Promise<boolean>;
  /** Opens a looked-up share: a new share session id (a one-time link only once), or why not. */
  open(share: ShareRecord): Promise<{ sessionId: string } | { ended: ShareEnd }>;
  /** The share session in the request's cookie: its share, why it ended, or undefined without a cookie. */
  sessionShare(req: IncomingMessage): Promise<ShareRecord | { ended: ShareEnd } | undefined>;
  setCookie(sessionId: string, expiresAt: number): string;
  clearCookie(): string;
}

const hash = (s: string): string => createHash('sha256').update(s).digest('base64url');
const scryptAsync = (password: string, salt: string): Promise<Buffer> => new Promise((ok, ko) => {
  scrypt(password.normalize('NFKC'), salt, 32, (err, key) => (err ? ko(err) : ok(key)));
});
const CODE = /^[A-Za-z0-9_-]{43}$/;
const WEEK = 7 * 24 * 3600_000;

export function createShares(store: Store, secrets: readonly string[], https: boolean): Shares {
  const cookieName = https ? '__Host-pgw_share' : 'pgw_share';
  const cookieOpts = { httpOnly: true, sameSite: 'lax' as const, secure: https, path: '/' };
  const signingSecret = secrets[0] as string;

  const shareKey = (id: string) => `share:${id}`;
  const ownerKey = (owner: string) => `share-owner:${hash(owner)}`;

  async function get(id: string): Promise<ShareRecord | undefined> {
    const raw = await store.get(shareKey(id));
    return raw === undefined ? undefined : JSON.parse(raw) as ShareRecord;
  }

  const liveFor = (s: ShareRecord) => s.expiresAt - Date.now();

  return {
    cookieName,
    async create(share, password) {
      const id = randomBytes(12).toString('base64url');
      const code = randomBytes(32).toString('base64url');
      let secret: ShareRecord['password'];
      if (password !== undefined) {
        const salt = randomBytes(16).toString('base64url');
        secret = { salt, hash: (await scryptAsync(password, salt)).toString('base64url') };
      }
      const record: ShareRecord = { ...share, id, createdAt: Date.now(), ...(secret ? { password: secret } : {}) };
      const ttl = liveFor(record);
      await store.set(shareKey(id), JSON.stringify(record), ttl);
      await store.set(`share-code:${hash(code)}`, id, ttl + WEEK);
      await store.addToSet(ownerKey(record.owner), id, ttl);
      return { record, code };
    },
    get,
    async list(owner) {
      const ids = await store.members(ownerKey(owner));
      const records = await Promise.all(ids.map(get));
      return records.filter((r): r is ShareRecord => r !== undefined).sort((a, b) => a.createdAt - b.createdAt);
    },
    async revoke(id) {
      const s = await get(id);
      if (!s || s.revokedAt !== undefined || liveFor(s) <= 0) return false;
      await store.set(shareKey(id), JSON.stringify({ ...s, revokedAt: Date.now() }), liveFor(s));
      return true;
    },
    async lookup(code) {
      if (!CODE.test(code)) return { ended: 'invalid' };
      const id = await store.get(`share-code:${hash(code)}`);
      if (id === undefined) return { ended: 'invalid' };
      const share = await get(id);
      if (!share || liveFor(share) <= 0) return { ended: 'expired' };
      if (share.revokedAt !== undefined) return { ended: 'revoked' };
      if (share.oneTime && (await store.get(`share-used:${id}`)) !== undefined) return { ended: 'used' };
      return { share };
    },
    async passwordMatches(share, password) {
      if (!share.password) return true;
      const expected = Buffer.from(share.password.hash, 'base64url');
      const actual = await scryptAsync(password, share.password.salt);
      return actual.length === expected.length && timingSafeEqual(actual, expected);
    },
    async open(share) {
      if (share.oneTime && !(await store.setIfAbsent(`share-used:${share.id}`, String(Date.now()), liveFor(share)))) return { ended: 'used' };
      const sessionId = randomBytes(32).toString('base64url');
      await store.set(`share-sess:${hash(sessionId)}`, share.id, liveFor(share));
      return { sessionId };
    },
    async sessionShare(req) {
      const header = req.headers.cookie;
      if (!header || !header.includes('pgw_share')) return undefined;
      const value = parseCookies(header)[cookieName];
      if (value === undefined) return undefined;
      let sessionId: string | undefined;
      for (const secret of secrets) {
        const v = signature.unsign(value, secret);
        if (v !== false && CODE.test(v)) { sessionId = v; break; }
      }
      if (!sessionId) return { ended: 'invalid' };
      const id = await store.get(`share-sess:${hash(sessionId)}`);
      if (id === undefined) return { ended: 'expired' };
      const share = await get(id);
      if (!share || liveFor(share) <= 0) return { ended: 'expired' };
      if (share.revokedAt !== undefined) return { ended: 'revoked' };
      return share;
    },
    setCookie: (sessionId, expiresAt) => serializeCookie(cookieName, signature.sign(sessionId, signingSecret), {
      ...cookieOpts, expires: new Date(expiresAt), encode: (v: string) => v,
    }),
    clearCookie: () => serializeCookie(cookieName, '', { ...cookieOpts, expires: new Date(0) }),
  };
}
