import { GatewayError } from '../../proxy/errors.js';
import { normaliseTarget, RouteTable, stripRoutePrefix } from '../../proxy/routing.js';
import { splitIncludeField } from '../../proxy/forward/proxy.js';

const HOST = 'gw.example:8080';

describe('normaliseTarget refuses ambiguous paths with 400', () => {
  const refused: Array<[string, string]> = [
    ['dot-dot segment', '/pacs/../etc/passwd'],
    ['single dot segment', '/pacs/./dicom-web'],
    ['trailing dot-dot', '/pacs/..'],
    ['percent-encoded dot-dot', '/pacs/%2e%2e/admin'],
    ['mixed-case encoded dot-dot', '/pacs/%2E%2e/admin'],
    ['half-encoded dot-dot', '/pacs/.%2e/admin'],
    ['double-encoded dot-dot', '/pacs/%252e%252e/admin'],
    ['triple-encoded dot-dot', '/pacs/%25252e%25252e/admin'],
    ['encoded slash', '/pacs/dicom-web%2fstudies'],
    ['lower-case encoded slash', '/pacs%2f..%2fadmin'],
    ['double-encoded slash', '/pacs/a%252fb'],
    ['raw backslash', '/pacs\\..\\admin'],
    ['encoded backslash', '/pacs/%5c..%5cadmin'],
    ['encoded NUL', '/pacs/studies%00.json'],
    ['raw NUL', '/pacs/\u0000'],
    ['raw control byte', '/pacs/\u0001x'],
    ['encoded control byte', '/pacs/%0d%0aSet-Cookie:x'],
    ['malformed escape', '/pacs/%zz'],
    ['truncated escape', '/pacs/%2'],
    ['absolute-form for another host', 'http://evil.example/pacs/studies'],
    ['asterisk-form', '*'],
    ['no leading slash', 'pacs/studies'],
  ];
  test.each(refused)('%s: %j', (_name, url) => {
    let caught: unknown;
    try { normaliseTarget(url, HOST); } catch (e) { caught = e; }
    expect(caught).toBeInstanceOf(GatewayError);
    expect((caught as GatewayError).status).toBe(400);
    expect((caught as GatewayError).code).toBe('BAD_REQUEST_PATH');
  });
});

describe('normaliseTarget accepts ordinary targets', () => {
  const accepted: Array<[string, string, string]> = [
    ['/', '/', ''],
    ['/pacs', '/pacs', ''],
    ['/pacs/', '/pacs/', ''],
    ['/pacs/dicom-web/studies?PatientName=DOE*&limit=10', '/pacs/dicom-web/studies', 'PatientName=DOE*&limit=10'],
    ['/pacs//dicom-web///studies', '/pacs/dicom-web/studies', ''],
    ['/pacs/dicom-web/studies/1.2.840.113619.2.55', '/pacs/dicom-web/studies/1.2.840.113619.2.55', ''],
    ['/assets/app.bundle.js', '/assets/app.bundle.js', ''],
    ['/pacs/file%20name', '/pacs/file%20name', ''],
    ['/pacs/100%25', '/pacs/100%25', ''],
    ['/.well-known/openid-configuration', '/.well-known/openid-configuration', ''],
    [`http://${HOST}/pacs/studies?x=1`, '/pacs/studies', 'x=1'],
  ];
  test.each(accepted)('%j', (url, path, query) => {
    expect(normaliseTarget(url, HOST)).toEqual({ path, query });
  });
});

describe('RouteTable matches the longest prefix on whole segments', () => {
  const table = new RouteTable([{ path: '/' }, { path: '/pacs' }, { path: '/pacs-admin' }, { path: '/auth' }]);
  test.each([
    ['/pacs', '/pacs'],
    ['/pacs/dicom-web/studies', '/pacs'],
    ['/pacs-admin/app/explorer.html', '/pacs-admin'],
    ['/pacsX/studies', '/'],
    ['/pacs-adminX', '/'],
    ['/authority', '/'],
    ['/auth/realms/ohif', '/auth'],
    ['/', '/'],
  ])('%s → %s', (path, expected) => {
    expect(table.match(path)?.path).toBe(expected);
  });

  test('without a root route an unmatched path finds nothing', () => {
    const t = new RouteTable([{ path: '/pacs' }]);
    expect(t.match('/pacsX')).toBeUndefined();
    expect(t.match('/')).toBeUndefined();
    expect(t.match('/pacs/x')?.path).toBe('/pacs');
  });
});

test('stripRoutePrefix', () => {
  expect(stripRoutePrefix('/pacs', '/pacs')).toBe('/');
  expect(stripRoutePrefix('/pacs/dicom-web/studies', '/pacs')).toBe('/dicom-web/studies');
  expect(stripRoutePrefix('/x/y', '/')).toBe('/x/y');
});

describe('splitIncludeField (Orthanc DICOMweb 1.7 reads only repeated includefield parameters)', () => {
  test.each([
    ['includefield=00081030,00080060', 'includefield=00081030&includefield=00080060'],
    ['PatientName=DOE*&includefield=00081030%2C00080060&limit=25', 'PatientName=DOE*&includefield=00081030&includefield=00080060&limit=25'],
    ['includefield=all', 'includefield=all'],
    ['StudyDescription=a,b&includefield=00081030', 'StudyDescription=a,b&includefield=00081030'],
    ['IncludeField=00100010, 00100020', 'IncludeField=00100010&IncludeField=00100020'],
    ['', ''],
  ])('%j → %j', (input, expected) => {
    expect(splitIncludeField(input)).toBe(expected);
  });
});
