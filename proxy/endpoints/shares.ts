// Share links: POST /_gateway/shares makes one (the caller needs the share permission and must be
// able to read every study with the permission the link's kind gives), GET lists the caller's,
// DELETE revokes; GET /_gateway/s/<code> redeems a link into a share-session cookie and sends the
// browser to the study in OHIF, with the code gone from the address bar.
import express, { type Request, type Response, type Router } from 'express';
import type { Permission } from '../access/operations.js';
import type { ScopeGate } from '../access/scope-gate.js';
import type { SharesConfig } from '../config/schema.js';
import { GatewayError } from '../errors.js';
import type { Exchange } from '../exchange.js';
import type { Principal } from '../identity/principal.js';
import { shareEnded } from '../identity/share.js';
import { SHARE_KINDS, type ShareKind, type ShareRecord, type Shares } from '../identity/shares.js';
import { sameOrigin } from '../identity/session.js';
import type { Logger } from '../ops/log.js';
import type { Limiter } from '../store/store.js';
import type { Pages } from './pages.js';

export const SHARES_PATH = '/_gateway/shares';
export const SHARE_LINK_PREFIX = '/_gateway/s/';

/** What the kind of a link needs of its maker, for every study in it. */
const KIND_NEEDS: Readonly<Record<ShareKind, Permission>> = { view: 'view', download: 'download', contribute: 'upload' };
const UID = /^[0-9]{1,64}(?:\.[0-9]{1,64}){0,63}$/;
const MAX_STUDIES = 50;

export interface ShareEndpointsDeps {
  readonly shares: Shares;
  readonly config: SharesConfig;
  readonly publicUrl: string;
  readonly gate: ScopeGate;
  /** The caller by session cookie or bearer token; throws 401 without either. */
  readonly identify: (ex: Exchange) => Promise<Principal>;
  readonly log: Logger;
  readonly exchangeOf: (req: Request) => Exchange;
  readonly pages: Pages;
  readonly publicOrigin: string;
  /** Failed password attempts, per link. */
  readonly attempts: Limiter;
  readonly count?: (event: 'share_created' | 'share_revoked' | 'share_redeemed' | 'share_refused') => void;
}

/** `7d`, `12h`, `30m`, `90s` or a number of seconds → milliseconds; undefined when unreadable. */
export function parseExpiry(v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isInteger(v) && v > 0 ? v * 1000 : undefined;
  if (typeof v !== 'string') return undefined;
  const m = /^\s*(\d{1,9})\s*(s|m|h|d)?\s*$/.exec(v);
  if (!m) return undefined;
  const n = Number(m[1]) * ({ s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] ?? 's'] ?? 1000);
  return n > 0 ? n : undefined;
}

const view = (s: ShareRecord) => ({
  id: s.id, kind: s.kind, studies: s.studies, oneTime: s.oneTime, passwordProtected: s.password !== undefined,
  createdAt: new Date(s.createdAt).toISOString(), expiresAt: new Date(s.expiresAt).toISOString(),
  ...(s.revokedAt !== undefined ? { revokedAt: new Date(s.revokedAt).toISOString() } : {}),
  state: s.revokedAt !== undefined ? 'revoked' : s.expiresAt <= Date.now() ? 'expired' : 'active',
});

export function shareRouter(deps: ShareEndpointsDeps): Router {
  const { shares, config, gate, identify, log, exchangeOf } = deps;
  const router = express.Router();
  const bad = (reason: string) => new GatewayError('BAD_REQUEST', reason);

  router.post(SHARES_PATH, express.json({ limit: '16kb', strict: true, type: () => true }), async (req: Request, res: Response) => {
    const ex = exchangeOf(req);
    const caller = await identify(ex);
    ex.principal = caller;
    if (!caller.permissions.has('share')) throw new GatewayError('FORBIDDEN', 'making share links needs the share permission');
    const body = req.body as Record<string, unknown> | undefined;
    if (!body || typeof body !== 'object' || Array.isArray(body)) throw bad('expected a JSON object: { "studies": [...], "expiresIn": "7d", "kind": "view" }');
    const unknownKeys = Object.keys(body).filter((k) => !['studies', 'expiresIn', 'kind', 'oneTime', 'password'].includes(k));
    if (unknownKeys.length) throw bad(`unknown field ${unknownKeys.map((k) => JSON.stringify(k)).join(', ')} (expected studies, expiresIn, kind, oneTime, password)`);
    const password = body.password;
    if (password !== undefined && (typeof password !== 'string' || password.length < 8 || password.length > 128)) throw bad('password: expected 8 to 128 characters');
    const studies = body.studies;
    if (!Array.isArray(studies) || studies.length === 0 || studies.length > MAX_STUDIES || !studies.every((u) => typeof u === 'string' && u.length <= 64 && UID.test(u))) {
      throw bad(`studies: expected 1 to ${MAX_STUDIES} StudyInstanceUIDs`);
    }
    const uids = [...new Set(studies as string[])];
    const kind = (body.kind ?? 'view') as ShareKind;
    if (!SHARE_KINDS.includes(kind)) throw bad(`kind: expected one of ${SHARE_KINDS.join(', ')}`);
    if (body.expiresIn === undefined) throw bad('expiresIn is required, e.g. "7d", "12h" or a number of seconds');
    const ttl = parseExpiry(body.expiresIn);
    if (ttl === undefined) throw bad('expiresIn: expected a duration such as "7d", "12h", "30m" or a number of seconds');
    if (ttl > config.maxExpiry) throw bad(`expiresIn: at most ${Math.floor(config.maxExpiry / 1000)} seconds on this gateway`);
    if (body.oneTime !== undefined && typeof body.oneTime !== 'boolean') throw bad('oneTime: expected true or false');

    // A link never opens more than its maker may: the kind's permission, for every study in it.
    const needed = KIND_NEEDS[kind];
    if (!caller.permissions.has(needed)) throw new GatewayError('FORBIDDEN', `a ${kind} link needs the ${needed} permission, which your roles do not grant`);
    const scope = caller.limited?.get(needed);
    const visible = await Promise.all(uids.map((u) => gate.studyVisible(u, scope, ex.id, caller.subject)));
    const missing = uids.filter((_, i) => !visible[i]);
    // Out of the caller's scope or not there at all: the same answer.
    if (missing.length) throw new GatewayError('NOT_FOUND', `no such study: ${missing.join(', ')}`);

    const { record, code } = await shares.create({
      owner: caller.subject, ...(caller.username ? { ownerName: caller.username } : {}),
      studies: uids, kind, expiresAt: Date.now() + ttl, oneTime: body.oneTime === true,
    }, password as string | undefined);
    log.info({ reqId: ex.id, sub: caller.subject, share: record.id, kind, studies: uids.length, expiresAt: record.expiresAt }, 'share created');
    deps.count?.('share_created');
    res.setHeader('Cache-Control', 'no-store');
    res.status(201).json({ ...view(record), url: `${deps.publicUrl}${SHARE_LINK_PREFIX}${code}` });
  });

  router.get(SHARES_PATH, async (req: Request, res: Response) => {
    const ex = exchangeOf(req);
    const caller = await identify(ex);
    ex.principal = caller;
    res.setHeader('Cache-Control', 'no-store');
    res.json({ shares: (await shares.list(caller.subject)).map(view) });
  });

  router.delete(`${SHARES_PATH}/:id`, async (req: Request, res: Response) => {
    const ex = exchangeOf(req);
    const caller = await identify(ex);
    ex.principal = caller;
    const id = String(req.params.id);
    const share = /^[A-Za-z0-9_-]{16}$/.test(id) ? await shares.get(id) : undefined;
    // Someone else's share is not there for the caller (admins with unrestricted admin excepted).
    const admin = caller.permissions.has('admin') && !caller.limited?.has('admin');
    if (!share || (share.owner !== caller.subject && !admin)) throw new GatewayError('NOT_FOUND', 'no such share');
    if (!(await shares.revoke(id))) throw new GatewayError('NOT_FOUND', 'this share has expired or was revoked already');
    log.info({ reqId: ex.id, sub: caller.subject, share: id }, 'share revoked');
    deps.count?.('share_revoked');
    res.setHeader('Cache-Control', 'no-store');
    res.status(204).end();
  });

  /** The share a link names, or its ended page. */
  async function linked(req: Request, res: Response): Promise<ShareRecord> {
    res.setHeader('Referrer-Policy', 'no-referrer');
    res.setHeader('Cache-Control', 'no-store');
    const found = await shares.lookup(String(req.params.code));
    if ('ended' in found) {
      deps.count?.('share_refused');
      throw shareEnded(found.ended);
    }
    return found.share;
  }

  async function open(req: Request, res: Response, share: ShareRecord): Promise<void> {
    const opened = await shares.open(share);
    if ('ended' in opened) {
      deps.count?.('share_refused');
      throw shareEnded(opened.ended);
    }
    log.info({ reqId: exchangeOf(req).id, share: share.id }, 'share redeemed');
    deps.count?.('share_redeemed');
    res.setHeader('Set-Cookie', shares.setCookie(opened.sessionId, share.expiresAt));
    // 303 to the viewer: the code leaves the address bar (and history) with this answer.
    res.redirect(303, `${config.viewerPath}?StudyInstanceUIDs=${share.studies.join(',')}`);
  }

  const passwordPage = (req: Request, res: Response, status: number, reason?: string) => deps.pages.send(res, status, 'share-password', {
    title: 'Password needed', action: req.path, requestId: exchangeOf(req).id, ...(reason ? { reason } : {}),
  });

  router.get(`${SHARE_LINK_PREFIX}:code`, async (req: Request, res: Response) => {
    const share = await linked(req, res);
    if (share.password) { passwordPage(req, res, 200); return; }
    await open(req, res, share);
  });

  // The password form of a protected link: from this site's page only, failed attempts limited per link.
  router.post(`${SHARE_LINK_PREFIX}:code`, express.urlencoded({ extended: false, limit: '4kb' }), async (req: Request, res: Response) => {
    const ex = exchangeOf(req);
    if (!sameOrigin(ex, deps.publicOrigin)) throw new GatewayError('CROSS_ORIGIN', 'a share link\'s password is typed on this site\'s page');
    const share = await linked(req, res);
    if (!share.password) { await open(req, res, share); return; }
    const password = (req.body as Record<string, unknown> | undefined)?.password;
    if (typeof password !== 'string' || password === '') { passwordPage(req, res, 400, 'Type the password.'); return; }
    const attempt = await deps.attempts.consume(share.id);
    if (!attempt.allowed) {
      const minutes = Math.max(1, Math.ceil(attempt.retryAfterMs / 60_000));
      log.warn({ reqId: ex.id, share: share.id }, 'share password attempts exhausted');
      res.setHeader('Retry-After', String(Math.ceil(attempt.retryAfterMs / 1000)));
      passwordPage(req, res, 429, `Too many wrong passwords for this link: try again in ${minutes} minute${minutes === 1 ? '' : 's'}.`);
      return;
    }
    if (!(await shares.passwordMatches(share, password))) {
      ex.errorCode = 'SHARE_PASSWORD';
      passwordPage(req, res, 401, 'That password is not the right one.');
      return;
    }
    await deps.attempts.reset(share.id);
    await open(req, res, share);
  });

  return router;
}
