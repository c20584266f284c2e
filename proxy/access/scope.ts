// Study scopes: which studies a permission holds for. A role may be limited to the studies whose
// attributes match (InstitutionName, a private tag used as a label, a value from a token claim); a
// share link to the studies it names. A principal's permission is either unrestricted (some role
// grants it without limits) or limited to the union of the scopes of the roles that grant it.
import type { Permission } from './operations.js';

/** What the gateway knows of one study: its UID and the attribute values it was asked for. */
export interface StudyRecord {
  readonly uid: string;
  /** Tag (8 upper-case hex digits) → the values the upstream reported at the study level. */
  readonly values: ReadonlyMap<string, readonly string[]>;
}

/** One way a study can be in scope. */
export type StudyMatcher =
  /** Every rule holds: the study's value of `tag` is one of `values` (exact, case-sensitive). */
  | { readonly kind: 'attributes'; readonly rules: readonly AttributeRule[] }
  /** The study is one of these (share links). */
  | { readonly kind: 'studies'; readonly uids: ReadonlySet<string> }
  /** The caller stored the study through the gateway ("my uploads"; the records live in the store). */
  | { readonly kind: 'owned' };

export interface AttributeRule { readonly tag: string; readonly values: ReadonlySet<string> }

/** A union of matchers: a study is in scope when any of them matches. */
export interface StudyScope {
  readonly matchers: readonly StudyMatcher[];
  /** The attribute tags the matchers read (what a lookup must ask the upstream for). */
  readonly tags: readonly string[];
  /** Only explicit study lists: the whole scope is a known set of UIDs (searches can name them). */
  readonly uids: ReadonlySet<string> | undefined;
  /** Studies the caller stored are in scope (and new studies may be stored, becoming theirs). */
  readonly owned: boolean;
}

export function makeScope(matchers: readonly StudyMatcher[]): StudyScope {
  const tags = [...new Set(matchers.flatMap((m) => (m.kind === 'attributes' ? m.rules.map((r) => r.tag) : [])))];
  const onlyLists = matchers.every((m) => m.kind === 'studies');
  const uids = onlyLists ? new Set(matchers.flatMap((m) => (m.kind === 'studies' ? [...m.uids] : []))) : undefined;
  const owned = matchers.some((m) => m.kind === 'owned');
  return Object.freeze({ matchers: Object.freeze([...matchers]), tags, uids, owned });
}

const NOTHING_OWNED: ReadonlySet<string> = new Set();

function matches(m: StudyMatcher, study: StudyRecord, owned: ReadonlySet<string>): boolean {
  if (m.kind === 'studies') return m.uids.has(study.uid);
  if (m.kind === 'owned') return owned.has(study.uid);
  for (const rule of m.rules) {
    const values = study.values.get(rule.tag);
    if (!values || !values.some((v) => rule.values.has(v))) return false;
  }
  return true;
}

/** Whether the study is in scope; `owned`: the studies the caller stored (for scopes with `owned`). */
export function inScope(scope: StudyScope, study: StudyRecord, owned: ReadonlySet<string> = NOTHING_OWNED): boolean {
  for (const m of scope.matchers) if (matches(m, study, owned)) return true;
  return false;
}

// ---------------------------------------------------------------------------------------------
// Attributes by name

/**
 * Study-level attributes an operator may name by keyword (any other attribute, private tags
 * included, by its 8-digit hex tag). The upstream must report the attribute at the study level
 * (QIDO-RS /studies with includefield); a study whose answer lacks it is out of scope.
 */
export const STUDY_ATTRIBUTES: Readonly<Record<string, string>> = Object.freeze({
  AccessionNumber: '00080050',
  InstitutionName: '00080080',
  ReferringPhysicianName: '00080090',
  StudyDescription: '00081030',
  InstitutionalDepartmentName: '00081040',
  PatientID: '00100020',
  IssuerOfPatientID: '00100021',
  StudyID: '00200010',
  StudyInstanceUID: '0020000D',
});

/** An attribute keyword or hex tag → the tag, or undefined. */
export function attributeTag(key: string): string | undefined {
  if (/^[0-9A-Fa-f]{8}$/.test(key)) return key.toUpperCase();
  return Object.hasOwn(STUDY_ATTRIBUTES, key) ? STUDY_ATTRIBUTES[key] : undefined;
}

/**
 * The values of one attribute in a DICOM JSON dataset (PS3.18 F.2), as strings: person names by
 * their alphabetic form, numbers as written, trailing spaces removed. Absent or empty: [].
 */
export function datasetValues(dataset: unknown, tag: string): string[] {
  if (!dataset || typeof dataset !== 'object') return [];
  const element = (dataset as Record<string, unknown>)[tag];
  if (!element || typeof element !== 'object') return [];
  const value = (element as { Value?: unknown }).Value;
  if (!Array.isArray(value)) return [];
  const out: string[] = [];
  for (const v of value) {
    if (typeof v === 'string') out.push(v.trimEnd());
    else if (typeof v === 'number') out.push(String(v));
    else if (v && typeof v === 'object' && typeof (v as { Alphabetic?: unknown }).Alphabetic === 'string') out.push((v as { Alphabetic: string }).Alphabetic.trimEnd());
  }
  return out;
}

/** A study record read from a study-level QIDO result. */
export function studyRecordOf(dataset: unknown, tags: readonly string[]): StudyRecord | undefined {
  const uid = datasetValues(dataset, '0020000D')[0];
  if (!uid) return undefined;
  const values = new Map<string, readonly string[]>();
  for (const t of tags) values.set(t, datasetValues(dataset, t));
  return { uid, values };
}

// ---------------------------------------------------------------------------------------------
// Roles → grants

/** A rule's allowed values: listed in routes.yaml, or read from a claim of the caller's token. */
export type RuleValues = { readonly list: readonly string[] } | { readonly claim: (claims: Record<string, unknown>) => readonly string[] };

export interface RoleGrant {
  readonly permissions: readonly Permission[];
  /** Only studies whose attributes match every rule (absent: no attribute rule). */
  readonly studies?: ReadonlyArray<{ readonly tag: string; readonly values: RuleValues }>;
  /** Also (or only) the studies the caller stored through the gateway. */
  readonly ownUploads?: boolean;
}

/** What a principal's roles grant: every permission, and those of them limited to a study scope. */
export interface Grants {
  readonly permissions: ReadonlySet<Permission>;
  /** Permissions that hold only within a scope (absent: none is limited). */
  readonly limited?: ReadonlyMap<Permission, StudyScope>;
}

const NO_LIMITS: Grants = Object.freeze({ permissions: new Set<Permission>() });

/**
 * Compiles role → grant into a function of a principal's roles (and token claims, for claim-valued
 * rules). A permission any role grants without limits is unrestricted; otherwise it is limited to
 * the union of the scopes of the roles granting it. A claim-valued rule whose claim is absent or
 * empty matches nothing.
 */
export function compileGrants(table: Readonly<Record<string, RoleGrant>>): (roles: Iterable<string>, claims?: Record<string, unknown>) => Grants {
  const byRole = new Map(Object.entries(table));
  const isLimited = (g: RoleGrant) => g.studies !== undefined || g.ownUploads === true;
  const anyLimited = [...byRole.values()].some(isLimited);
  return (roles, claims = {}) => {
    const permissions = new Set<Permission>();
    if (!anyLimited) {
      for (const role of roles) for (const p of byRole.get(role)?.permissions ?? []) permissions.add(p);
      return permissions.size === 0 ? NO_LIMITS : { permissions };
    }
    const unrestricted = new Set<Permission>();
    const matchersOf = new Map<Permission, StudyMatcher[]>();
    for (const role of roles) {
      const grant = byRole.get(role);
      if (!grant) continue;
      const matchers: StudyMatcher[] = [];
      if (grant.studies) {
        matchers.push({
          kind: 'attributes',
          rules: grant.studies.map((r) => ({ tag: r.tag, values: new Set('list' in r.values ? r.values.list : r.values.claim(claims)) })),
        });
      }
      if (grant.ownUploads) matchers.push({ kind: 'owned' });
      for (const p of grant.permissions) {
        permissions.add(p);
        if (!isLimited(grant)) unrestricted.add(p);
        else {
          const list = matchersOf.get(p) ?? [];
          list.push(...matchers);
          matchersOf.set(p, list);
        }
      }
    }
    const limited = new Map<Permission, StudyScope>();
    for (const [p, matchers] of matchersOf) if (!unrestricted.has(p)) limited.set(p, makeScope(matchers));
    return limited.size > 0 ? { permissions, limited } : { permissions };
  };
}
