// What a request does on the upstream: the one place that knows what a DICOMweb URL means.
// Every request on an upstream route becomes one Operation from a closed table, before anyone is
// authenticated; a request the table does not know is refused here and never reaches an upstream.
import { GatewayError } from '../errors.js';
import { decodeQueryComponent } from '../query.js';

export const PERMISSIONS = ['view', 'download', 'upload', 'delete', 'share', 'admin'] as const;
export type Permission = typeof PERMISSIONS[number];

export type OperationKind = 'search' | 'retrieve' | 'store' | 'delete' | 'wado-uri' | 'upstream-rest';
/** search: the level searched; retrieve/delete: what comes back or goes away. */
export type Level = 'studies' | 'series' | 'instances' | 'metadata' | 'frames' | 'bulkdata' | 'rendered' | 'thumbnail';

export interface Operation {
  /** Stable label for logs, metrics and the audit trail, e.g. "search-series", "retrieve-frames". */
  readonly name: string;
  readonly kind: OperationKind;
  readonly level?: Level;
  /** Original DICOM bytes (a Part 10 file, a whole study/series/instance), not a rendering or metadata. */
  readonly original: boolean;
  /** The permission this operation needs. */
  readonly permission: Permission;
  readonly study?: string;
  readonly series?: string;
  readonly instance?: string;
  readonly frames?: readonly number[];
}

export interface DicomwebExposure {
  /** DICOMweb roots below the route path, e.g. ['/dicom-web']. */
  readonly roots: readonly string[];
  /** The WADO-URI endpoint below the route path (e.g. '/wado'), or false. */
  readonly wadoUri: string | false;
  /** Whether the upstream supports DELETE on studies/series/instances (Orthanc's plugin does not). */
  readonly delete: boolean;
}

/** Maps one request (path below the route prefix, raw query) to its operation, or throws a GatewayError. */
export interface OperationTable {
  classify(method: string, path: string, query: string): Operation;
}

/** Every request on a route that exposes a whole upstream (Orthanc's REST API): admins only. */
export const UPSTREAM_REST: Operation = Object.freeze({ name: 'upstream-rest', kind: 'upstream-rest', original: false, permission: 'admin' });

export const upstreamRestTable: OperationTable = { classify: () => UPSTREAM_REST };

/** DICOM UIDs: digits and dots, at most 64 characters (PS3.5 §9.1; leading zeros tolerated, as servers do). */
const UID = /^[0-9]{1,64}(?:\.[0-9]{1,64}){0,63}$/;
const isUid = (s: string | undefined): s is string => s !== undefined && s.length <= 64 && UID.test(s);
/** One or more frame numbers (1-based), comma-separated. */
const FRAME_LIST = /^[1-9][0-9]{0,8}(?:,[1-9][0-9]{0,8}){0,4095}$/;
/** A bulk-data path step: a tag (8 hex digits) or a sequence item index. */
const BULK_STEP = /^(?:[0-9A-Fa-f]{8}|[0-9]{1,6})$/;
const MAX_BULK_STEPS = 16;

const unknown = (): GatewayError => new GatewayError('UNKNOWN_OPERATION', 'no DICOMweb operation of this gateway matches this path');
const badQuery = (reason: string): GatewayError => new GatewayError('BAD_REQUEST', reason);
function notAllowed(method: string, allowed: readonly string[]): GatewayError {
  return new GatewayError('METHOD_NOT_ALLOWED', `${method} is not a DICOMweb operation on this resource`, { headers: { Allow: allowed.join(', ') } });
}

const GET = ['GET', 'HEAD'] as const;
const isRead = (m: string): boolean => m === 'GET' || m === 'HEAD';

function op(name: string, kind: OperationKind, permission: Permission, level: Level | undefined, original: boolean,
  uids: { study?: string; series?: string; instance?: string; frames?: readonly number[] } = {}): Operation {
  return { name, kind, permission, ...(level ? { level } : {}), original, ...uids };
}

/**
 * The query's parameters, decoded. Repeated parameters are refused, except `includefield` (QIDO
 * lists it once per field) and `access_token` (the bearer authenticator judges that one): a gateway
 * and an upstream that read different copies of a repeated parameter would disagree on what the
 * request asks for.
 */
export function queryParameters(query: string, repeatable: ReadonlySet<string> = NO_REPEATS): Map<string, string> {
  const params = new Map<string, string>();
  if (!query) return params;
  for (const pair of query.split('&')) {
    if (!pair) continue;
    const eq = pair.indexOf('=');
    const name = decodeQueryComponent(eq < 0 ? pair : pair.slice(0, eq));
    const value = eq < 0 ? '' : decodeQueryComponent(pair.slice(eq + 1));
    if (name === undefined || value === undefined) throw badQuery('malformed percent-encoding in the query');
    if (name === 'access_token') continue;
    if (params.has(name) && !repeatable.has(name)) throw badQuery(`query parameter "${name}" given more than once`);
    params.set(name, value);
  }
  return params;
}
const NO_REPEATS: ReadonlySet<string> = new Set();
const QIDO_REPEATS: ReadonlySet<string> = new Set(['includefield']);

const RETRIEVE_LEAVES: Readonly<Record<string, Level>> = { metadata: 'metadata', rendered: 'rendered', thumbnail: 'thumbnail' };

/** The operation table of a DICOMweb route: QIDO-RS, WADO-RS, STOW-RS, WADO-URI (PS3.18), nothing else. */
export function createDicomwebTable(exposure: DicomwebExposure): OperationTable {
  const roots = [...exposure.roots];
  const wado = exposure.wadoUri;
  const del = exposure.delete;

  /** The resource path below a DICOMweb root, as segments; undefined when no root matches. */
  function segmentsBelowRoot(path: string): string[] | undefined {
    for (const root of roots) {
      if (path === root || path === `${root}/`) return [];
      if (path.startsWith(root) && path.charCodeAt(root.length) === 47 /* / */) {
        const segs = path.slice(root.length + 1).split('/');
        if (segs[segs.length - 1] === '') segs.pop(); // one trailing slash is tolerated, as DICOMweb servers do
        return segs;
      }
    }
    return undefined;
  }

  function wadoUri(method: string, query: string): Operation {
    if (!isRead(method)) throw notAllowed(method, GET);
    const p = queryParameters(query);
    if (p.get('requestType') !== 'WADO') throw badQuery('WADO-URI needs requestType=WADO');
    const study = p.get('studyUID');
    const series = p.get('seriesUID');
    const instance = p.get('objectUID');
    if (!isUid(study) || !isUid(series) || !isUid(instance)) throw badQuery('WADO-URI needs studyUID, seriesUID and objectUID, each a DICOM UID');
    // contentType may list several types (PS3.18 §9.1.2.1.1): asking for application/dicom among them is a download.
    const original = (p.get('contentType') ?? '').toLowerCase().includes('application/dicom');
    return op(original ? 'wado-uri-original' : 'wado-uri', 'wado-uri', original ? 'download' : 'view', original ? 'instances' : 'rendered', original, { study, series, instance });
  }

  function dicomweb(method: string, s: readonly string[], query: string): Operation {
    const n = s.length;
    const read = isRead(method);
    if (n === 0) throw unknown();
    const first = s[0];
    if (n === 1 && (first === 'series' || first === 'instances')) {
      if (!read) throw notAllowed(method, GET);
      queryParameters(query, QIDO_REPEATS);
      return op(`search-${first}`, 'search', 'view', first, false);
    }
    if (first !== 'studies') throw unknown();
    if (n === 1) {
      if (method === 'POST') return op('store', 'store', 'upload', 'instances', true);
      if (!read) throw notAllowed(method, [...GET, 'POST']);
      queryParameters(query, QIDO_REPEATS);
      return op('search-studies', 'search', 'view', 'studies', false);
    }
    const study = s[1];
    if (!isUid(study)) throw unknown();
    if (n === 2) {
      if (method === 'POST') return op('store', 'store', 'upload', 'instances', true, { study });
      if (del && method === 'DELETE') return op('delete-study', 'delete', 'delete', 'studies', false, { study });
      if (!read) throw notAllowed(method, [...GET, 'POST', ...(del ? ['DELETE'] : [])]);
      queryParameters(query);
      return op('retrieve-study', 'retrieve', 'download', 'studies', true, { study });
    }
    const third = s[2] as string;
    if (n === 3) {
      const leaf = RETRIEVE_LEAVES[third];
      if (leaf) return readOnly(method, query, op(`retrieve-${leaf}`, 'retrieve', 'view', leaf, false, { study }));
      if (third === 'series' || third === 'instances') {
        return readOnly(method, query, op(`search-${third}`, 'search', 'view', third, false, { study }), QIDO_REPEATS);
      }
      throw unknown();
    }
    if (third !== 'series') throw unknown();
    const series = s[3];
    if (!isUid(series)) throw unknown();
    if (n === 4) {
      if (del && method === 'DELETE') return op('delete-series', 'delete', 'delete', 'series', false, { study, series });
      if (!read) throw notAllowed(method, [...GET, ...(del ? ['DELETE'] : [])]);
      queryParameters(query);
      return op('retrieve-series', 'retrieve', 'download', 'series', true, { study, series });
    }
    const fifth = s[4] as string;
    if (n === 5) {
      const leaf = RETRIEVE_LEAVES[fifth];
      if (leaf) return readOnly(method, query, op(`retrieve-${leaf}`, 'retrieve', 'view', leaf, false, { study, series }));
      if (fifth === 'instances') return readOnly(method, query, op('search-instances', 'search', 'view', 'instances', false, { study, series }), QIDO_REPEATS);
      throw unknown();
    }
    if (fifth !== 'instances') throw unknown();
    const instance = s[5];
    if (!isUid(instance)) throw unknown();
    const uids = { study, series, instance };
    if (n === 6) {
      if (del && method === 'DELETE') return op('delete-instance', 'delete', 'delete', 'instances', false, uids);
      if (!read) throw notAllowed(method, [...GET, ...(del ? ['DELETE'] : [])]);
      queryParameters(query);
      return op('retrieve-instance', 'retrieve', 'download', 'instances', true, uids);
    }
    const seventh = s[6] as string;
    if (n === 7) {
      const leaf = RETRIEVE_LEAVES[seventh];
      if (leaf) return readOnly(method, query, op(`retrieve-${leaf}`, 'retrieve', 'view', leaf, false, uids));
      throw unknown();
    }
    if (seventh === 'frames') {
      const list = s[7] as string;
      if (!FRAME_LIST.test(list) || n > 9) throw unknown();
      const frames = list.split(',').map(Number);
      if (n === 8) return readOnly(method, query, op('retrieve-frames', 'retrieve', 'view', 'frames', false, { ...uids, frames }));
      const leaf = s[8] === 'rendered' || s[8] === 'thumbnail' ? s[8] : undefined;
      if (!leaf) throw unknown();
      return readOnly(method, query, op(`retrieve-${leaf}`, 'retrieve', 'view', leaf, false, { ...uids, frames }));
    }
    if (seventh === 'bulk' || seventh === 'bulkdata') {
      // Orthanc links bulk data as …/bulk/<tag>[/<item>/<tag>…]; other servers use …/bulkdata/….
      if (n - 7 > MAX_BULK_STEPS) throw unknown();
      for (let i = 7; i < n; i++) if (!BULK_STEP.test(s[i] as string)) throw unknown();
      return readOnly(method, query, op('retrieve-bulkdata', 'retrieve', 'view', 'bulkdata', false, uids));
    }
    throw unknown();
  }

  function readOnly(method: string, query: string, operation: Operation, repeatable?: ReadonlySet<string>): Operation {
    if (!isRead(method)) throw notAllowed(method, GET);
    queryParameters(query, repeatable);
    return operation;
  }

  return {
    classify(method, path, query) {
      if (wado !== false && (path === wado || path === `${wado}/`)) return wadoUri(method, query);
      const segs = segmentsBelowRoot(path);
      if (segs === undefined) throw unknown();
      return dicomweb(method, segs, query);
    },
  };
}
