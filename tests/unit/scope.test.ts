// Roles limited to some studies: how the permissions table compiles into grants, how a study record
// is read from DICOM JSON and judged, and how routes.yaml mistakes are reported.
import { UPSTREAM_REST } from '../../proxy/access/operations.js';
import { compileRoleGrants, createPermissionAuthorizer } from '../../proxy/access/permissions.js';
import type { Exchange } from '../../proxy/exchange.js';
import { datasetValues, inScope, makeScope, studyRecordOf } from '../../proxy/access/scope.js';
import { ConfigError, parseConfig } from '../../proxy/config/load.js';

const study = (uid: string, values: Record<string, string[]>) => ({ uid, values: new Map(Object.entries(values)) });

describe('grants of roles', () => {
  const grantsOf = compileRoleGrants({
    viewer: ['view'],
    external: { permissions: ['view'], studies: { InstitutionName: ['NORTH CLINIC'] } },
    northDownloads: { permissions: ['view', 'download'], studies: { InstitutionName: ['NORTH CLINIC'], '00091010': ['TEACHING'] } },
    site: { permissions: ['view'], studies: { InstitutionName: { claim: 'org.site' } } },
  });

  test('a role without limits grants unrestricted permissions; a plain table has no limits at all', () => {
    const g = grantsOf(['viewer']);
    expect([...g.permissions]).toEqual(['view']);
    expect(g.limited).toBeUndefined();
    expect(compileRoleGrants({ viewer: ['view'] })(['viewer'], {}).limited).toBeUndefined();
  });

  test('a limited role limits its permissions to its studies', () => {
    const g = grantsOf(['external']);
    expect([...g.permissions]).toEqual(['view']);
    const scope = g.limited!.get('view')!;
    expect(inScope(scope, study('1.1', { '00080080': ['NORTH CLINIC'] }))).toBe(true);
    expect(inScope(scope, study('1.2', { '00080080': ['GENERAL HOSPITAL'] }))).toBe(false);
    expect(inScope(scope, study('1.3', { '00080080': [] }))).toBe(false);
    expect(inScope(scope, study('1.4', {}))).toBe(false);
    // Exact: not a prefix, not case-insensitive.
    expect(inScope(scope, study('1.5', { '00080080': ['north clinic'] }))).toBe(false);
    expect(inScope(scope, study('1.6', { '00080080': ['NORTH CLINIC 2'] }))).toBe(false);
  });

  test('an unrestricted grant of the same permission wins over a limited one', () => {
    const g = grantsOf(['external', 'viewer']);
    expect(g.limited?.get('view')).toBeUndefined();
  });

  test('every attribute of a role must match; two limited roles are a union', () => {
    const both = grantsOf(['northDownloads']).limited!.get('download')!;
    expect(inScope(both, study('2.1', { '00080080': ['NORTH CLINIC'], '00091010': ['TEACHING'] }))).toBe(true);
    expect(inScope(both, study('2.2', { '00080080': ['NORTH CLINIC'], '00091010': ['CLINICAL'] }))).toBe(false);
    const union = grantsOf(['northDownloads', 'site'], { org: { site: 'SOUTH LAB' } });
    const view = union.limited!.get('view')!;
    expect(inScope(view, study('2.3', { '00080080': ['SOUTH LAB'], '00091010': [] }))).toBe(true);
    expect(inScope(view, study('2.4', { '00080080': ['NORTH CLINIC'], '00091010': ['TEACHING'] }))).toBe(true);
    expect(inScope(view, study('2.5', { '00080080': ['NORTH CLINIC'], '00091010': [] }))).toBe(false);
    // download comes from northDownloads only.
    expect(inScope(union.limited!.get('download')!, study('2.6', { '00080080': ['SOUTH LAB'], '00091010': ['TEACHING'] }))).toBe(false);
  });

  test('values from a claim: a string is one value (spaces kept), an array many, anything else none', () => {
    const of = (claims: Record<string, unknown>) => grantsOf(['site'], claims).limited!.get('view')!;
    expect(inScope(of({ org: { site: 'GENERAL HOSPITAL' } }), study('3.1', { '00080080': ['GENERAL HOSPITAL'] }))).toBe(true);
    expect(inScope(of({ org: { site: 'GENERAL HOSPITAL' } }), study('3.2', { '00080080': ['GENERAL'] }))).toBe(false);
    expect(inScope(of({ org: { site: ['A', 'B'] } }), study('3.3', { '00080080': ['B'] }))).toBe(true);
    for (const claims of [{}, { org: {} }, { org: { site: 7 } }, { org: { site: '' } }, { org: 'x' }]) {
      expect(inScope(of(claims), study('3.4', { '00080080': [''] }))).toBe(false);
      expect(inScope(of(claims), study('3.5', { '00080080': ['x'] }))).toBe(false);
    }
  });

  test('a list of studies (shares): membership, and the scope knows its UIDs', () => {
    const s = makeScope([{ kind: 'studies', uids: new Set(['4.1', '4.2']) }]);
    expect(s.uids && [...s.uids]).toEqual(['4.1', '4.2']);
    expect(inScope(s, study('4.1', {}))).toBe(true);
    expect(inScope(s, study('4.3', {}))).toBe(false);
    expect(makeScope([{ kind: 'attributes', rules: [] }, { kind: 'studies', uids: new Set(['4.1']) }]).uids).toBeUndefined();
  });
});

describe('the permission authorizer with limited permissions', () => {
  const grants = compileRoleGrants({ siteAdmin: { permissions: ['view', 'admin'], studies: { InstitutionName: ['NORTH CLINIC'] } } })(['siteAdmin']);
  const principal = { subject: 's', roles: new Set(['siteAdmin']), scopes: new Set<string>(), via: 'bearer' as const, expiresAt: Infinity, ...grants };

  test('an admin permission limited to some studies does not open the whole upstream API', () => {
    const ex = { operation: UPSTREAM_REST } as unknown as Exchange;
    const d = createPermissionAuthorizer('admin', ['admin']).authorize(principal, ex);
    expect(d).toEqual({ allow: false, reason: expect.stringMatching(/limited to some studies/) });
    expect(ex.scope).toBeUndefined();
  });

  test('a limited view permission is allowed and hands its scope to the gate', () => {
    const ex = { operation: { name: 'retrieve-metadata', kind: 'retrieve', permission: 'view', original: false, study: '1.2' } } as unknown as Exchange;
    expect(createPermissionAuthorizer('dicomweb', ['view']).authorize(principal, ex)).toEqual({ allow: true });
    expect(ex.scope).toBe(grants.limited!.get('view'));
  });
});

describe('study records from DICOM JSON', () => {
  test('strings (trailing spaces dropped), person names by their alphabetic form, numbers; nothing for absent values', () => {
    const d = {
      '0020000D': { vr: 'UI', Value: ['1.2.3'] },
      '00080080': { vr: 'LO', Value: ['NORTH CLINIC '] },
      '00080090': { vr: 'PN', Value: [{ Alphabetic: 'WHO^DOCTOR' }] },
      '00200011': { vr: 'IS', Value: [7] },
      '00081030': { vr: 'LO' },
    };
    expect(datasetValues(d, '00080080')).toEqual(['NORTH CLINIC']);
    expect(datasetValues(d, '00080090')).toEqual(['WHO^DOCTOR']);
    expect(datasetValues(d, '00200011')).toEqual(['7']);
    expect(datasetValues(d, '00081030')).toEqual([]);
    expect(datasetValues(d, '00100010')).toEqual([]);
    expect(studyRecordOf(d, ['00080080'])).toEqual({ uid: '1.2.3', values: new Map([['00080080', ['NORTH CLINIC']]]) });
    expect(studyRecordOf({ '00080080': { vr: 'LO', Value: ['X'] } }, ['00080080'])).toBeUndefined();
  });
});

describe('routes.yaml', () => {
  const YAML = (permissions: string) => `identity: { issuer: https://idp.example/realms/x, audience: pacs }
permissions:
${permissions}
routes:
  - { name: dicomweb, path: /pacs, upstream: http://127.0.0.1:8042, expose: dicomweb, auth: [bearer], allow: [view] }
`;
  const problems = (yaml: string): string[] => {
    try { parseConfig(yaml, 'routes.yaml', {}); } catch (e) { expect(e).toBeInstanceOf(ConfigError); return [...(e as ConfigError).problems]; }
    throw new Error('expected the configuration to be refused');
  };

  test('a limited role is read as written', () => {
    const c = parseConfig(YAML("  external: { permissions: [view], studies: { InstitutionName: [NORTH CLINIC], '00091010': { claim: labels } } }"), 'routes.yaml', {});
    expect(c.permissions.external).toEqual({ permissions: ['view'], studies: { InstitutionName: ['NORTH CLINIC'], '00091010': { claim: 'labels' } } });
  });

  test('ownUploads alone, or with attributes; a limited role with neither is refused', () => {
    const c = parseConfig(YAML('  mine: { permissions: [view, upload], ownUploads: true }'), 'routes.yaml', {});
    expect(c.permissions.mine).toEqual({ permissions: ['view', 'upload'], ownUploads: true });
    const g = compileRoleGrants(c.permissions)(['mine']);
    const scope = g.limited!.get('upload')!;
    expect(scope.owned).toBe(true);
    expect(inScope(scope, study('9.1', {}), new Set(['9.1']))).toBe(true);
    expect(inScope(scope, study('9.2', {}), new Set(['9.1']))).toBe(false);
    expect(inScope(scope, study('9.1', {}))).toBe(false);
    expect(problems(YAML('  mine: { permissions: [view] }'))[0]).toMatch(/permissions\.mine: a limited role names its studies .* ownUploads/);
  });

  test('an unknown attribute, an empty rule, no attribute at all, a bad claim path: each refused at its key', () => {
    expect(problems(YAML('  external: { permissions: [view], studies: { Institution: [X] } }'))).toEqual([
      expect.stringMatching(/^routes\.yaml:3:\d+: permissions\.external\.studies\.Institution: expected a study attribute: an 8-digit hex tag .* InstitutionName/),
    ]);
    expect(problems(YAML('  external: { permissions: [view], studies: { InstitutionName: [] } }'))[0]).toMatch(/permissions\.external\.studies\.InstitutionName: expected at least one value/);
    // An unquoted tag of digits is a number to YAML: said so, with the quoted form.
    expect(problems(YAML('  external: { permissions: [view], studies: { 00091010: [X] } }'))[0]).toMatch(/permissions\.external\.studies\.91010: YAML reads an unquoted tag of digits as a number .* '00091010'/);
    expect(problems(YAML('  external: { permissions: [view], studies: {} }'))[0]).toMatch(/permissions\.external(\.studies)?: expected/);
    expect(problems(YAML('  external: { permissions: [view], studies: { InstitutionName: { claim: "a b" } } }'))[0]).toMatch(/permissions\.external/);
    expect(problems(YAML('  external: { permissions: [], studies: { InstitutionName: [X] } }'))[0]).toMatch(/permissions\.external/);
  });
});
