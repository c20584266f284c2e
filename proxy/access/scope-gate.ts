// The study-scope gate: for a caller whose permission holds only for some studies, checks every
// study, series and instance a request names against the upstream's own answers before anything
// is forwarded, and filters searches while they stream. A study out of scope is answered exactly
// like one that does not exist: the gateway gives both answers itself, after the same lookups.
import type { ServerResponse } from 'node:http';
import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { GatewayError } from '../errors.js';
import type { Exchange } from '../exchange.js';
import type { UpstreamAnswer } from '../forward/forwarder.js';
import type { Store } from '../store/store.js';
import { withoutParameter } from '../query.js';
import { stripRoutePrefix } from '../routing.js';
import { queryParameters, type Operation } from './operations.js';
import { multipartBoundary, StowGuard } from './stow-guard.js';
import { datasetValues, inScope, STUDY_ATTRIBUTES, studyRecordOf, type StudyRecord, type StudyScope } from './scope.js';

/** GET below the route (path, raw query, Accept) with the gateway's own upstream credentials. */
export type UpstreamGet = (path: string, query: string, accept: string, requestId: string) => Promise<UpstreamAnswer>;

export interface ScopeGateOptions {
  /** The DICOMweb root below the route (e.g. /dicom-web): where lookups go. */
  readonly root: string;
  /** The route's path prefix (searches are passed on below it). */
  readonly routePath: string;
  readonly get: UpstreamGet;
  /** Every attribute tag a scope of this gateway reads (asked for in each study lookup). */
  readonly tags: readonly string[];
  /** How long what the upstream said about a study stays trusted (ms). */
  readonly ttl?: number;
  /** Upstream page size while filtering a search. */
  readonly pageSize?: number;
  /** Where "my uploads" are recorded (scopes with ownUploads); absent: nobody owns anything. */
  readonly store?: Store;
  /** Counts each lookup that reached the upstream (or the store), by kind. */
  readonly onLookup?: (kind: 'studies' | 'series' | 'instances' | 'owned') => void;
}

export interface ScopeGate {
  /**
   * Resolves true when the request may be forwarded as it is; false when the gate answered it
   * (a filtered search, an empty search, a study that is not there for this caller).
   */
  check(ex: Exchange, scope: StudyScope): Promise<boolean>;
  /** Whether the upstream holds the study and (with a scope) the scope reaches it, for `subject`. */
  studyVisible(uid: string, scope: StudyScope | undefined, requestId: string, subject: string): Promise<boolean>;
}

const JSON_TYPE = 'application/dicom+json';
const MISSING = Symbol('missing');
type Cached<T> = T | typeof MISSING;
/** UIDs in one lookup of several studies (QIDO UID list matching, comma-separated). */
const BATCH = 50;

const notFound = (): GatewayError => new GatewayError('NOT_FOUND', 'no such study, series or instance');

function parseJsonArray(answer: UpstreamAnswer, what: string): unknown[] {
  try {
    const parsed: unknown = answer.body.length === 0 ? [] : JSON.parse(answer.body.toString('utf8'));
    if (Array.isArray(parsed)) return parsed;
  } catch { /* below */ }
  throw new GatewayError('UPSTREAM_ERROR', `the upstream's answer to ${what} was not a DICOM JSON array`);
}

function expectOk(answer: UpstreamAnswer, what: string): void {
  if (answer.status >= 500 || (answer.status >= 300 && answer.status !== 404)) {
    throw new GatewayError('UPSTREAM_ERROR', `the upstream failed to answer ${what} (HTTP ${answer.status})`);
  }
}

interface UidSet { readonly uids: ReadonlySet<string>; readonly at: number }

export function createScopeGate(opts: ScopeGateOptions): ScopeGate {
  const { root, get } = opts;
  const ttl = opts.ttl ?? 30_000;
  const pageSize = opts.pageSize ?? 200;
  const lookupFields = ['0020000D', ...opts.tags.filter((t) => t !== '0020000D')];
  const includeLookup = lookupFields.map((t) => `includefield=${t}`).join('&');

  // What the upstream said about each study: found (its record) or not. Absent studies are
  // remembered briefly only (one may be stored any moment).
  const studies = new LRUCache<string, Cached<StudyRecord>>({ max: 20_000, ttl });
  const inflight = new Map<string, Promise<Cached<StudyRecord>>>();

  async function lookupStudies(uids: readonly string[], requestId: string): Promise<void> {
    for (let i = 0; i < uids.length; i += BATCH) {
      const batch = uids.slice(i, i + BATCH);
      opts.onLookup?.('studies');
      const answer = await get(`${root}/studies`, `StudyInstanceUID=${batch.join(',')}&${includeLookup}`, JSON_TYPE, requestId);
      expectOk(answer, 'a study lookup');
      const found = new Set<string>();
      if (answer.status === 200) {
        for (const d of parseJsonArray(answer, 'a study lookup')) {
          const record = studyRecordOf(d, opts.tags);
          if (record && batch.includes(record.uid)) { studies.set(record.uid, record); found.add(record.uid); }
        }
      }
      for (const uid of batch) if (!found.has(uid)) studies.set(uid, MISSING, { ttl: 2_000 });
    }
  }

  /** The study's record, or undefined when the upstream does not have it. */
  async function study(uid: string, requestId: string): Promise<StudyRecord | undefined> {
    const known = studies.get(uid);
    if (known !== undefined) return known === MISSING ? undefined : known;
    let pending = inflight.get(uid);
    if (!pending) {
      pending = lookupStudies([uid], requestId).then(() => studies.get(uid) ?? MISSING).finally(() => inflight.delete(uid));
      inflight.set(uid, pending);
    }
    const r = await pending;
    return r === MISSING ? undefined : r;
  }

  /** Records of many studies (a page of series or instances), in as few lookups as possible. */
  async function manyStudies(uids: Iterable<string>, requestId: string): Promise<Map<string, StudyRecord>> {
    const unknown = [...new Set(uids)].filter((u) => studies.get(u) === undefined);
    if (unknown.length) await lookupStudies(unknown, requestId);
    const out = new Map<string, StudyRecord>();
    for (const u of uids) {
      const r = studies.get(u);
      if (r && r !== MISSING) out.set(u, r);
    }
    return out;
  }

  // "My uploads": the studies each subject stored through the gateway, in the shared store.
  const OWNED_TTL = 5 * 365 * 86_400_000;
  const ownedKey = (subject: string) => `owned:${createHash('sha256').update(subject).digest('base64url')}`;
  const owners = new LRUCache<string, ReadonlySet<string>>({ max: 10_000, ttl: 5_000 });
  async function ownedBy(subject: string): Promise<ReadonlySet<string>> {
    const known = owners.get(subject);
    if (known) return known;
    opts.onLookup?.('owned');
    const set = new Set(opts.store ? await opts.store.members(ownedKey(subject)) : []);
    owners.set(subject, set);
    return set;
  }
  async function own(subject: string, uid: string): Promise<void> {
    if (!opts.store) throw new GatewayError('FORBIDDEN', 'this gateway keeps no record of uploads');
    await opts.store.addToSet(ownedKey(subject), uid, OWNED_TTL);
    owners.delete(subject);
  }
  const ownedFor = (ex: Exchange, scope: StudyScope): Promise<ReadonlySet<string>> | undefined =>
    (scope.owned && ex.principal ? ownedBy(ex.principal.subject) : undefined);

  // Which series a study holds and which instances a series holds, from the upstream's searches.
  const children = new LRUCache<string, UidSet>({ max: 50_000, maxSize: 4_000_000, sizeCalculation: (v) => v.uids.size + 1, ttl });
  const childInflight = new Map<string, Promise<UidSet>>();

  async function listAll(path: string, tag: string, requestId: string): Promise<UidSet> {
    const uids = new Set<string>();
    const page = 1000;
    opts.onLookup?.(tag === '0020000E' ? 'series' : 'instances');
    for (let offset = 0; ; offset += page) {
      const answer = await get(path, `includefield=${tag}&limit=${page}&offset=${offset}`, JSON_TYPE, requestId);
      expectOk(answer, 'a series or instance lookup');
      if (answer.status !== 200) break;
      const items = parseJsonArray(answer, 'a series or instance lookup');
      for (const d of items) { const v = datasetValues(d, tag)[0]; if (v) uids.add(v); }
      if (items.length < page) break;
    }
    return { uids, at: Date.now() };
  }

  async function childrenOf(key: string, path: string, tag: string, requestId: string, fresh: boolean): Promise<UidSet> {
    const known = fresh ? undefined : children.get(key);
    if (known) return known;
    let pending = childInflight.get(key);
    if (!pending) {
      pending = listAll(path, tag, requestId).then((set) => { children.set(key, set); return set; }).finally(() => childInflight.delete(key));
      childInflight.set(key, pending);
    }
    return pending;
  }

  /** Whether `uid` is among the children at `key`; a miss on a list older than a second is asked again (it may have just been stored). */
  async function hasChild(key: string, path: string, tag: string, uid: string, requestId: string): Promise<boolean> {
    const set = await childrenOf(key, path, tag, requestId, false);
    if (set.uids.has(uid)) return true;
    if (Date.now() - set.at < 1_000) return false;
    return (await childrenOf(key, path, tag, requestId, true)).uids.has(uid);
  }

  /** The study is there and in scope; the series is in it; the instance in the series. */
  async function reaches(op: Operation, scope: StudyScope, requestId: string, owned?: ReadonlySet<string>): Promise<boolean> {
    const uid = op.study as string;
    const record = await study(uid, requestId);
    if (!record || !inScope(scope, record, owned)) return false;
    if (op.series === undefined) return true;
    const studyPath = `${root}/studies/${uid}`;
    if (!(await hasChild(uid, `${studyPath}/series`, '0020000E', op.series, requestId))) return false;
    if (op.instance === undefined) return true;
    return hasChild(`${uid}/${op.series}`, `${studyPath}/series/${op.series}/instances`, '00080018', op.instance, requestId);
  }

  // ------------------------------------------------------------------------------------------
  // Searches across studies: filtered while they stream

  function sendJsonArrayStart(res: ServerResponse, requestId: string): void {
    res.writeHead(200, { 'content-type': JSON_TYPE, 'cache-control': 'no-store', 'x-request-id': requestId });
    res.write('[');
  }

  function nonNegative(params: Map<string, string>, name: string): number | undefined {
    const raw = params.get(name);
    if (raw === undefined) return undefined;
    if (!/^[0-9]{1,9}$/.test(raw)) throw new GatewayError('BAD_REQUEST', `${name} must be a non-negative integer`);
    return Number(raw);
  }

  /** The tags of includefield values (hex tags or the keywords this gateway knows), upper-case. */
  function requestedFields(params: Map<string, string>, query: string): { all: boolean; tags: Set<string> } {
    const tags = new Set<string>();
    let all = false;
    for (const pair of query.split('&')) {
      const eq = pair.indexOf('=');
      if (eq < 0 || pair.slice(0, eq).toLowerCase() !== 'includefield') continue;
      let value: string;
      try { value = decodeURIComponent(pair.slice(eq + 1)); } catch { continue; }
      for (const f of value.split(',')) {
        const field = f.trim();
        if (field.toLowerCase() === 'all') all = true;
        else tags.add((Object.hasOwn(STUDY_ATTRIBUTES, field) ? STUDY_ATTRIBUTES[field] as string : field).toUpperCase());
      }
    }
    void params;
    return { all, tags };
  }

  function acceptsJson(ex: Exchange): boolean {
    const accept = ex.req.headers.accept;
    if (!accept) return true;
    return /(^|,)\s*(\*\/\*|application\/\*|application\/(dicom\+)?json)\s*(;|,|$)/i.test(accept);
  }

  /**
   * A search at /studies, /series or /instances across all studies: asks the upstream page by page
   * and passes on only results whose study is in scope, so offset and limit count allowed results.
   */
  async function filteredSearch(ex: Exchange, scope: StudyScope, level: 'studies' | 'series' | 'instances', owned?: ReadonlySet<string>): Promise<void> {
    if (!acceptsJson(ex)) throw new GatewayError('NOT_ACCEPTABLE', 'searches of callers limited to some studies are answered in DICOM JSON (application/dicom+json) only');
    const raw = ex.target!.query;
    const params = queryParameters(raw, new Set(['includefield']));
    const offset = nonNegative(params, 'offset') ?? 0;
    const limit = nonNegative(params, 'limit');
    let base = withoutParameter(withoutParameter(withoutParameter(raw, 'access_token'), 'limit'), 'offset');
    const asked = requestedFields(params, raw);
    // What the filter reads must be in every result; what the caller did not ask for is taken out again.
    const needed = level === 'studies' ? lookupFields.filter((t) => scope.tags.includes(t) || t === '0020000D') : ['0020000D'];
    // (StudyInstanceUID is a key every QIDO result carries anyway: asked for, never taken out.)
    const added = asked.all ? [] : needed.filter((t) => !asked.tags.has(t));
    const strip = added.filter((t) => t !== '0020000D');
    if (added.length) base += `${base ? '&' : ''}${added.map((t) => `includefield=${t}`).join('&')}`;
    // A scope that is a list of studies is named in the search itself (the upstream then pages for us).
    const listed = scope.uids !== undefined ? [...scope.uids]
      : owned && scope.matchers.every((m) => m.kind !== 'attributes')
        ? [...new Set([...owned, ...scope.matchers.flatMap((m) => (m.kind === 'studies' ? [...m.uids] : []))])] : undefined;
    if (listed !== undefined) {
      const own = params.get('StudyInstanceUID') ?? params.get('0020000D');
      let uids = listed;
      if (own !== undefined) {
        const wanted = new Set(own.split(/[,\\]/));
        uids = uids.filter((u) => wanted.has(u));
        base = withoutParameter(withoutParameter(base, 'StudyInstanceUID'), '0020000D');
      }
      if (uids.length === 0) {
        sendJsonArrayStart(ex.res, ex.id);
        ex.res.end(']');
        return;
      }
      base += `${base ? '&' : ''}StudyInstanceUID=${uids.join(',')}`;
    }
    const path = stripRoutePrefix(ex.target!.path, opts.routePath);

    let skipped = 0;
    let sent = 0;
    let started = false;
    const res = ex.res;
    for (let upstreamOffset = 0; ; upstreamOffset += pageSize) {
      if (res.destroyed) return;
      const answer = await get(path, `${base}${base ? '&' : ''}limit=${pageSize}&offset=${upstreamOffset}`, JSON_TYPE, ex.id);
      if (answer.status !== 200) {
        if (started) { res.destroy(); return; }
        if (answer.status >= 500) throw new GatewayError('UPSTREAM_ERROR', `the upstream failed to answer this search (HTTP ${answer.status})`);
        // The upstream refused the search itself (a bad query): its answer, as any caller gets it.
        res.writeHead(answer.status, { 'content-type': answer.contentType || 'application/json', 'x-request-id': ex.id });
        res.end(answer.body);
        return;
      }
      const items = parseJsonArray(answer, 'a search');
      let records: Map<string, StudyRecord> | undefined;
      if (level !== 'studies') records = await manyStudies(items.map((d) => datasetValues(d, '0020000D')[0] ?? ''), ex.id);
      const out: string[] = [];
      for (const d of items) {
        const record = level === 'studies' ? studyRecordOf(d, scope.tags) : records!.get(datasetValues(d, '0020000D')[0] ?? '');
        if (!record || !inScope(scope, record, owned)) continue;
        if (skipped < offset) { skipped++; continue; }
        if (limit !== undefined && sent >= limit) break;
        for (const t of strip) delete (d as Record<string, unknown>)[t];
        out.push(JSON.stringify(d));
        sent++;
      }
      if (!started) { sendJsonArrayStart(res, ex.id); started = true; }
      if (out.length) {
        const chunk = (sent - out.length > 0 ? ',' : '') + out.join(',');
        if (!res.write(chunk)) await new Promise<void>((ok) => { res.once('drain', ok); res.once('close', ok); });
      }
      if (items.length < pageSize || (limit !== undefined && sent >= limit)) break;
    }
    if (!res.destroyed) res.end(']');
  }

  function emptySearch(ex: Exchange): void {
    sendJsonArrayStart(ex.res, ex.id);
    ex.res.end(']');
  }

  return {
    async studyVisible(uid, scope, requestId, subject) {
      const record = await study(uid, requestId);
      if (record === undefined) return false;
      return scope === undefined || inScope(scope, record, scope.owned ? await ownedBy(subject) : undefined);
    },
    async check(ex, scope) {
      const op = ex.operation;
      if (!op) throw notFound();
      const owned = await ownedFor(ex, scope);
      switch (op.kind) {
        case 'search':
          if (op.study === undefined) {
            await filteredSearch(ex, scope, op.level as 'studies' | 'series' | 'instances', owned);
            return false;
          }
          // Under a study (and series): what the upstream answers for one that is not there.
          if (await reaches(op, scope, ex.id, owned)) return true;
          emptySearch(ex);
          return false;
        case 'retrieve':
        case 'wado-uri':
        case 'delete':
          if (op.study !== undefined && await reaches(op, scope, ex.id, owned)) return true;
          throw notFound();
        case 'store': {
          // Each part's study (from its own DICOM header, while it streams) must be one the caller may
          // store into: an existing study as the upstream knows it, a new one by its own attributes.
          const boundary = multipartBoundary(ex.req.headers['content-type']);
          if (!boundary) throw new GatewayError('BAD_REQUEST', 'a store is a multipart/related body with a boundary (STOW-RS)');
          const pathStudy = op.study;
          ex.bodyGuard = new StowGuard(boundary, scope.tags, async (part) => {
            const refused = () => new GatewayError('FORBIDDEN', `part ${part.index} of the upload belongs to a study you may not store into`);
            if (pathStudy !== undefined && part.study !== pathStudy) throw refused();
            const existing = await study(part.study, ex.id);
            if (existing) {
              if (!inScope(scope, existing, owned)) throw refused();
              return;
            }
            // A study that is not there yet may be there in a moment: no negative answer is kept for it.
            studies.delete(part.study);
            // A new study: the caller's own upload when their scope has ownUploads (recorded before its
            // bytes go on, so it is theirs as soon as it is stored); otherwise judged by its own attributes.
            if (scope.owned && ex.principal) await own(ex.principal.subject, part.study);
            else if (!inScope(scope, { uid: part.study, values: part.values }, owned)) throw refused();
          });
          return true;
        }
        default:
          throw new GatewayError('FORBIDDEN', `${op.name} reaches beyond any study`);
      }
    },
  };
}
