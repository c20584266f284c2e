// The operation table: one row per DICOMweb request shape, and the shapes that must not match.
import { createDicomwebTable, queryParameters, UPSTREAM_REST, upstreamRestTable, type Operation } from '../../proxy/access/operations.js';
import { GatewayError } from '../../proxy/errors.js';

const ST = '1.2.840.113619.2.55.3.1';
const SE = '1.2.840.113619.2.55.3.1.2';
const IN = '1.2.840.113619.2.55.3.1.2.3';
const table = createDicomwebTable({ roots: ['/dicom-web'], wadoUri: '/wado', delete: false });
const withDelete = createDicomwebTable({ roots: ['/dicom-web', '/rs'], wadoUri: false, delete: true });

const classify = (method: string, path: string, query = '', t = table): Operation => t.classify(method, path, query);
function refusal(method: string, path: string, query = '', t = table): GatewayError {
  try {
    classify(method, path, query, t);
  } catch (e) {
    expect(e).toBeInstanceOf(GatewayError);
    return e as GatewayError;
  }
  throw new Error(`${method} ${path}?${query} was classified, expected a refusal`);
}

const I = `/dicom-web/studies/${ST}/series/${SE}/instances/${IN}`;
const uids = (n: 1 | 2 | 3) => ({ study: ST, ...(n > 1 ? { series: SE } : {}), ...(n > 2 ? { instance: IN } : {}) });

describe('every DICOMweb request shape maps to exactly one operation', () => {
  test.each<[string, string, string, Partial<Operation>]>([
    // QIDO-RS, at every level, with and without a parent
    ['GET', '/dicom-web/studies', '', { name: 'search-studies', kind: 'search', level: 'studies', permission: 'view', original: false }],
    ['GET', '/dicom-web/studies/', 'PatientName=DOE*&limit=10', { name: 'search-studies', kind: 'search' }],
    ['HEAD', '/dicom-web/studies', '', { name: 'search-studies', kind: 'search' }],
    ['GET', '/dicom-web/series', 'Modality=CT', { name: 'search-series', kind: 'search', level: 'series', permission: 'view' }],
    ['GET', '/dicom-web/instances', '', { name: 'search-instances', kind: 'search', level: 'instances' }],
    ['GET', `/dicom-web/studies/${ST}/series`, '', { name: 'search-series', kind: 'search', ...uids(1) }],
    ['GET', `/dicom-web/studies/${ST}/instances`, '', { name: 'search-instances', kind: 'search', ...uids(1) }],
    ['GET', `/dicom-web/studies/${ST}/series/${SE}/instances`, 'includefield=00080016&includefield=00080018', { name: 'search-instances', ...uids(2) }],
    // WADO-RS: originals need download, everything else view
    ['GET', `/dicom-web/studies/${ST}`, '', { name: 'retrieve-study', kind: 'retrieve', level: 'studies', original: true, permission: 'download', ...uids(1) }],
    ['GET', `/dicom-web/studies/${ST}/series/${SE}`, '', { name: 'retrieve-series', level: 'series', original: true, permission: 'download', ...uids(2) }],
    ['GET', I, '', { name: 'retrieve-instance', level: 'instances', original: true, permission: 'download', ...uids(3) }],
    ['GET', `/dicom-web/studies/${ST}/metadata`, '', { name: 'retrieve-metadata', kind: 'retrieve', level: 'metadata', original: false, permission: 'view', ...uids(1) }],
    ['GET', `/dicom-web/studies/${ST}/series/${SE}/metadata`, '', { name: 'retrieve-metadata', ...uids(2) }],
    ['GET', `${I}/metadata`, '', { name: 'retrieve-metadata', ...uids(3) }],
    ['GET', `${I}/metadata/`, '', { name: 'retrieve-metadata', ...uids(3) }],
    ['GET', `${I}/frames/1`, '', { name: 'retrieve-frames', level: 'frames', permission: 'view', frames: [1], ...uids(3) }],
    ['GET', `${I}/frames/1,2,30`, '', { name: 'retrieve-frames', frames: [1, 2, 30] }],
    ['GET', `${I}/frames/3/rendered`, 'quality=90', { name: 'retrieve-rendered', level: 'rendered', frames: [3], permission: 'view' }],
    ['GET', `${I}/frames/3/thumbnail`, '', { name: 'retrieve-thumbnail', level: 'thumbnail', frames: [3] }],
    ['GET', `${I}/bulk/7fe00010`, '', { name: 'retrieve-bulkdata', level: 'bulkdata', permission: 'view', ...uids(3) }],
    ['GET', `${I}/bulk/00540016/0/00181072`, '', { name: 'retrieve-bulkdata' }],
    ['GET', `${I}/bulkdata/7FE00010`, '', { name: 'retrieve-bulkdata' }],
    ['GET', `/dicom-web/studies/${ST}/rendered`, '', { name: 'retrieve-rendered', ...uids(1) }],
    ['GET', `/dicom-web/studies/${ST}/series/${SE}/rendered`, '', { name: 'retrieve-rendered', ...uids(2) }],
    ['GET', `${I}/rendered`, 'viewport=64,64', { name: 'retrieve-rendered', ...uids(3) }],
    ['GET', `/dicom-web/studies/${ST}/thumbnail`, '', { name: 'retrieve-thumbnail', ...uids(1) }],
    ['GET', `/dicom-web/studies/${ST}/series/${SE}/thumbnail`, '', { name: 'retrieve-thumbnail', ...uids(2) }],
    ['GET', `${I}/thumbnail`, '', { name: 'retrieve-thumbnail', ...uids(3) }],
    // STOW-RS
    ['POST', '/dicom-web/studies', '', { name: 'store', kind: 'store', permission: 'upload', original: true }],
    ['POST', `/dicom-web/studies/${ST}`, '', { name: 'store', kind: 'store', permission: 'upload', study: ST }],
    // WADO-URI
    ['GET', '/wado', `requestType=WADO&studyUID=${ST}&seriesUID=${SE}&objectUID=${IN}`, { name: 'wado-uri', kind: 'wado-uri', permission: 'view', original: false, ...uids(3) }],
    ['GET', '/wado/', `requestType=WADO&studyUID=${ST}&seriesUID=${SE}&objectUID=${IN}&contentType=image%2Fjpeg`, { name: 'wado-uri', permission: 'view' }],
    ['GET', '/wado', `requestType=WADO&studyUID=${ST}&seriesUID=${SE}&objectUID=${IN}&contentType=application%2Fdicom`, { name: 'wado-uri-original', permission: 'download', original: true }],
    ['GET', '/wado', `requestType=WADO&studyUID=${ST}&seriesUID=${SE}&objectUID=${IN}&contentType=image/jpeg,Application/DICOM`, { name: 'wado-uri-original', permission: 'download' }],
    ['GET', '/wado', `requestType=WADO&studyUID=${ST}&seriesUID=${SE}&objectUID=${IN}&access_token=x`, { name: 'wado-uri' }],
  ])('%s %s?%s', (method, path, query, expected) => {
    const op = classify(method, path, query);
    expect(op).toMatchObject(expected);
    // An operation names only UIDs its request carries.
    for (const uid of [op.study, op.series, op.instance]) if (uid !== undefined) expect(`${path}?${query}`).toContain(uid);
  });

  test('delete rows exist only where the upstream supports them', () => {
    expect(classify('DELETE', `/rs/studies/${ST}`, '', withDelete)).toMatchObject({ name: 'delete-study', kind: 'delete', permission: 'delete', ...uids(1) });
    expect(classify('DELETE', `/dicom-web/studies/${ST}/series/${SE}`, '', withDelete)).toMatchObject({ name: 'delete-series', ...uids(2) });
    expect(classify('DELETE', `/rs${I.slice('/dicom-web'.length)}`, '', withDelete)).toMatchObject({ name: 'delete-instance', ...uids(3) });
    const e = refusal('DELETE', `/dicom-web/studies/${ST}`);
    expect(e.code).toBe('METHOD_NOT_ALLOWED');
    expect(e.headers.Allow).toBe('GET, HEAD, POST');
  });

  test('a route that exposes a whole upstream has one operation, which needs admin', () => {
    for (const [m, p] of [['GET', '/system'], ['POST', '/tools/shutdown'], ['DELETE', '/patients/x']] as const) {
      expect(upstreamRestTable.classify(m, p, '')).toBe(UPSTREAM_REST);
    }
    expect(UPSTREAM_REST.permission).toBe('admin');
  });
});

describe('shapes that must not match: 404 from the gateway, never forwarded', () => {
  test.each([
    // Orthanc's REST API under a DICOMweb route
    '/system', '/patients', `/patients/abc/delete`, '/tools/shutdown', '/tools/reset', '/peers', '/modalities', '/changes', '/jobs',
    '/app/explorer.html', '/instances', '/studies', '/tools/execute-script',
    // the DICOMweb plugin's own non-DICOMweb resources (servers/ pushes studies to other servers)
    '/dicom-web', '/dicom-web/', '/dicom-web/servers', '/dicom-web/servers/x/stow', '/dicom-web/info',
    // case, prefixes, nesting and UID syntax
    '/dicom-web/Studies', '/DICOM-WEB/studies', '/dicom-webx/studies', '/dicom-web/studies/../system',
    `/dicom-web/studies/${ST}x`, '/dicom-web/studies/abc', `/dicom-web/studies/${ST}%2e1`, `/dicom-web/studies/1..2`, '/dicom-web/studies/.1',
    `/dicom-web/studies/${'1'.repeat(65)}`, `/dicom-web/studies/1.${'2'.repeat(64)}`,
    `/dicom-web/studies/${ST}/frames/1`, `/dicom-web/studies/${ST}/series/${SE}/frames/1`,
    `/dicom-web/studies/${ST}/series/${SE}/instances/${IN}/frames`, `${I}/frames/0`, `${I}/frames/1,`, `${I}/frames/a`, `${I}/frames/1/2`,
    `${I}/frames/1/rendered/x`, `${I}/bulk`, `${I}/bulk/xyz`, `${I}/bulk/7fe00010/../..`, `${I}/bulk/${'0/'.repeat(17)}7fe00010`,
    `${I}/metadata/x`, `${I}/file`, `/dicom-web/studies/${ST}/archive`, `/dicom-web/studies/${ST}/series/${SE}/instances/${IN}/x`,
    `/dicom-web/series/${SE}`, `/dicom-web/instances/${IN}`, `/dicom-web/studies/${ST}/series/${SE}/series`,
    `/dicom-web/studies/${ST}//series`, '/wado/x', '/wadox',
  ])('%s', (path) => {
    const e = refusal('GET', path);
    expect(e.code).toBe('UNKNOWN_OPERATION');
    expect(e.status).toBe(404);
  });

  test.each<[string, string, string]>([
    ['PUT', '/dicom-web/studies', 'GET, HEAD, POST'],
    ['PATCH', `/dicom-web/studies/${ST}`, 'GET, HEAD, POST'],
    ['POST', `/dicom-web/studies/${ST}/series/${SE}`, 'GET, HEAD'],
    ['POST', `${I}/frames/1`, 'GET, HEAD'],
    ['DELETE', `${I}/metadata`, 'GET, HEAD'],
    ['OPTIONS', '/dicom-web/series', 'GET, HEAD'],
    ['POST', '/wado', 'GET, HEAD'],
  ])('%s %s → 405 with Allow: %s', (method, path, allow) => {
    const e = refusal(method, path, method === 'POST' && path === '/wado' ? `requestType=WADO&studyUID=1&seriesUID=2&objectUID=3` : '');
    expect(e.code).toBe('METHOD_NOT_ALLOWED');
    expect(e.headers.Allow).toBe(allow);
  });

  test('the WADO-URI endpoint can be switched off', () => {
    expect(refusal('GET', '/wado', `requestType=WADO&studyUID=1&seriesUID=2&objectUID=3`, withDelete).code).toBe('UNKNOWN_OPERATION');
  });
});

describe('query parameters', () => {
  test.each<[string, string, string]>([
    ['repeated QIDO matching key', '/dicom-web/studies', 'PatientID=A&PatientID=B'],
    ['repeated limit', '/dicom-web/studies', 'limit=1&limit=1000'],
    ['repeated under two encodings', '/dicom-web/studies', 'PatientID=A&Patient%49D=B'],
    ['repeated parameter on a retrieve', `${I}/rendered`, 'quality=1&quality=2'],
    ['malformed escape', '/dicom-web/studies', 'PatientName=%zz'],
    ['WADO-URI without requestType', '/wado', `studyUID=${ST}&seriesUID=${SE}&objectUID=${IN}`],
    ['WADO-URI with another requestType', '/wado', `requestType=wado&studyUID=${ST}&seriesUID=${SE}&objectUID=${IN}`],
    ['WADO-URI without the study', '/wado', `requestType=WADO&seriesUID=${SE}&objectUID=${IN}`],
    ['WADO-URI with a non-UID object', '/wado', `requestType=WADO&studyUID=${ST}&seriesUID=${SE}&objectUID=abc`],
    ['WADO-URI with two objects', '/wado', `requestType=WADO&studyUID=${ST}&seriesUID=${SE}&objectUID=${IN}&objectUID=1.2`],
    ['WADO-URI with two content types', '/wado', `requestType=WADO&studyUID=${ST}&seriesUID=${SE}&objectUID=${IN}&contentType=image/jpeg&contentType=application/dicom`],
  ])('%s → 400', (_what, path, query) => {
    const e = refusal('GET', path, query);
    expect(e.code).toBe('BAD_REQUEST');
    expect(e.status).toBe(400);
  });

  test('includefield may repeat; decoded names are what count', () => {
    expect(classify('GET', '/dicom-web/studies', 'includefield=00081030&includefield=00080060&includefield=all').name).toBe('search-studies');
    const p = queryParameters('Patient%4Eame=DOE%5EJOHN&a+b=c+d&flag&&x=', new Set());
    expect([...p.entries()]).toEqual([['PatientName', 'DOE^JOHN'], ['a b', 'c d'], ['flag', ''], ['x', '']]);
  });
});
