// Attacks on /pacs with real parts: the SHIPPED routes.yaml in front of a real Orthanc 1.10 +
// DICOMweb plugin, real bearer tokens from the test IdP. Every attack is judged twice: by the
// gateway's answer (status and JSON error code, the access log) and by its effect on Orthanc,
// asked directly with the gateway's own credentials. Orthanc 1.10 honours X-HTTP-Method-Override
// (any method) and ?_method= (on GET): the control tests below prove that the effects checked here
// really happen when a request reaches Orthanc.
import { readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { accessLogFor, startGateway, type RunningGateway } from '../support/gateway.js';
import { rawExchange, request, statusOf, type Reply } from '../support/http-client.js';
import { loadDemoData, multipartRelated, parseMultipartRelated, uploadInstances, type DemoDataSummary } from '../support/load-studies.js';
import { startOrthanc, type OrthancHandle } from '../support/orthanc.js';
import { routesEnv } from '../support/stack-env.js';
import { generateStudies, type SyntheticInstance } from '../support/synthetic-dicom.js';
import { startTestIdp, type TestIdp } from '../support/test-idp.js';

type User = 'alice' | 'bob' | 'admin' | 'carol';
const ROLES: Record<User, string[]> = { alice: ['viewer'], bob: ['viewer', 'uploader'], admin: ['viewer', 'uploader', 'admin'], carol: [] };
type DicomJson = Record<string, { vr: string; Value?: unknown[] }>;

let orthanc: OrthancHandle;
let idp: TestIdp;
let gw: RunningGateway;
let data: DemoDataSummary;
const tokens = {} as Record<User, string>;

/** Orthanc's own ids (not DICOM UIDs) of what the attacks aim at. */
interface Targets { patient: string; study: string; studyPatientName: string; instance: string; studyUID: string }
let targets: Targets;
/** A synthetic instance whose bytes and pixel data are known. */
let inst: SyntheticInstance;

beforeAll(async () => {
  [orthanc, idp] = await Promise.all([startOrthanc(), startTestIdp({ algs: ['ES256'] })]);
  data = await loadDemoData(orthanc, { samples: false });
  const yaml = readFileSync(new URL('../../routes.yaml', import.meta.url), 'utf8');
  gw = await startGateway(yaml, routesEnv({ listen: '127.0.0.1:0', publicUrl: 'http://127.0.0.1:8080', adminListen: '127.0.0.1:0', orthanc, idp }));
  for (const user of Object.keys(ROLES) as User[]) {
    tokens[user] = await idp.issueAccessToken({ username: user, realmRoles: ROLES[user], ttl: 3600 });
  }
  // Bearer calls need the IdP's keys: wait until the gateway reports ready.
  const until = Date.now() + 20_000;
  for (;;) {
    const r = await gw.gateway.readiness();
    if (r.ready) break;
    if (Date.now() > until) throw new Error(`gateway not ready: ${JSON.stringify(r.checks)}`);
    await new Promise((ok) => setTimeout(ok, 50));
  }
  inst = data.synthetic[0] as SyntheticInstance;
  const found = await directJson<Array<{ ID: string; Type: string }>>('/tools/lookup', { method: 'POST', body: inst.sopInstanceUID });
  const instanceId = found.find((f) => f.Type === 'Instance')?.ID as string;
  const instance = await directJson<{ ParentSeries: string }>(`/instances/${instanceId}`);
  const series = await directJson<{ ParentStudy: string }>(`/series/${instance.ParentSeries}`);
  const study = await directJson<{ ParentPatient: string; PatientMainDicomTags: { PatientName: string } }>(`/studies/${series.ParentStudy}`);
  targets = {
    patient: study.ParentPatient, study: series.ParentStudy, studyPatientName: study.PatientMainDicomTags.PatientName,
    instance: instanceId, studyUID: inst.studyInstanceUID,
  };
  expect(targets.studyPatientName).toBe(inst.patientName);
}, 90_000);

afterAll(async () => {
  await gw?.stop();
  await Promise.all([orthanc?.stop(), idp?.stop()]);
});

// ---------------------------------------------------------------------------------------------
// Helpers

interface Send { method?: string; as?: User; headers?: Record<string, string>; body?: string | Buffer }

/** Through the gateway, with the user's real token; a body always goes with its Content-Length. */
function send(path: string, o: Send = {}): Promise<Reply> {
  const headers: Record<string, string> = {
    ...(o.as ? { authorization: `Bearer ${tokens[o.as]}` } : {}),
    ...(o.body !== undefined ? { 'content-length': String(Buffer.byteLength(o.body)) } : {}),
    ...o.headers,
  };
  return request(gw.url, path, { method: o.method ?? 'GET', headers, ...(o.body !== undefined ? { body: o.body } : {}) });
}

/** Straight to Orthanc, as only the gateway may. */
function direct(path: string, o: { method?: string; headers?: Record<string, string>; body?: string | Buffer } = {}): Promise<Reply> {
  return request(orthanc.url, path, {
    method: o.method ?? 'GET',
    headers: { authorization: orthanc.authHeader, ...(o.body !== undefined ? { 'content-length': String(Buffer.byteLength(o.body)) } : {}), ...o.headers },
    ...(o.body !== undefined ? { body: o.body } : {}),
  });
}

async function directJson<T>(path: string, o: Parameters<typeof direct>[1] = {}): Promise<T> {
  const r = await direct(path, o);
  if (r.status !== 200) throw new Error(`Orthanc ${o.method ?? 'GET'} ${path} answered ${r.status}: ${r.text}`);
  return JSON.parse(r.text) as T;
}

type OrthancState = Record<string, unknown>;

/** What an attack could change in Orthanc, read directly. */
async function orthancState(): Promise<OrthancState> {
  // An Orthanc that was shut down answers nothing: that shows up as a difference, not as a crash of the check.
  const ask = (path: string): Promise<Reply> => direct(path).catch((e: NodeJS.ErrnoException) =>
    ({ status: -1, headers: {}, body: Buffer.alloc(0), text: `unreachable: ${e.code ?? e.message}` }));
  const [system, patients, studies, peers, logLevel, study] = await Promise.all([
    ask('/system'), ask('/patients'), ask('/studies'), ask('/peers'), ask('/tools/log-level'), ask(`/studies/${targets.study}`),
  ]);
  const sorted = (r: Reply) => (r.status === 200 ? (JSON.parse(r.text) as string[]).sort() : r.status);
  return {
    system: system.status === -1 ? system.text : system.status,
    patients: sorted(patients),
    studies: sorted(studies),
    peers: peers.status === 200 ? JSON.parse(peers.text) as unknown : peers.status,
    logLevel: logLevel.text,
    targetStudy: study.status === 200 ? (JSON.parse(study.text) as { PatientMainDicomTags: { PatientName: string } }).PatientMainDicomTags.PatientName : study.status,
  };
}

/** The gateway's own refusal: status, code, its JSON (with requestId) — never Orthanc's error body. */
function expectRefusal(r: Reply, status: number, code: string): { error: string; message: string; requestId: string } {
  let body: Record<string, unknown> | undefined;
  try { body = JSON.parse(r.text) as Record<string, unknown>; } catch { body = undefined; }
  expect({ status: r.status, error: body?.error }).toEqual({ status, error: code });
  expect(String(r.headers['content-type'])).toMatch(/^application\/json/);
  expect(body).not.toHaveProperty('HttpError'); // Orthanc's error bodies carry HttpError
  expect(body?.requestId).toEqual(expect.stringMatching(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/));
  expect(r.headers['x-request-id']).toBe(body?.requestId);
  return body as { error: string; message: string; requestId: string };
}

/**
 * The verdict on one attack, both sides in one comparison (a failure shows what the gateway answered
 * AND what became of Orthanc), then the details of the gateway's refusal.
 */
async function expectRefusedAndUnchanged(r: Reply, status: number, code: string, before: OrthancState): Promise<{ error: string; message: string; requestId: string }> {
  const after = await orthancState();
  let error: unknown;
  try { error = (JSON.parse(r.text) as { error?: unknown }).error; } catch { error = undefined; }
  expect({ gateway: { status: r.status, error }, orthanc: after }).toEqual({ gateway: { status, error: code }, orthanc: before });
  return expectRefusal(r, status, code);
}

const logOf = (r: Reply) => accessLogFor(gw, String(r.headers['x-request-id']));

const instancePath = (i: SyntheticInstance) =>
  `/pacs/dicom-web/studies/${i.studyInstanceUID}/series/${i.seriesInstanceUID}/instances/${i.sopInstanceUID}`;
const wadoUri = (i: SyntheticInstance, extra = '') =>
  `/pacs/wado?requestType=WADO&studyUID=${i.studyInstanceUID}&seriesUID=${i.seriesInstanceUID}&objectUID=${i.sopInstanceUID}${extra}`;
const value = (d: DicomJson | undefined, tag: string) => d?.[tag]?.Value?.[0];

/** A single small instance Orthanc has never seen. */
function freshInstance(name: string): SyntheticInstance {
  return generateStudies({ seed: randomUUID(), patients: [{ id: `ATT-${randomUUID().slice(0, 8)}`, name, birthDate: '19700101', sex: 'O', studies: [{
    description: 'attack suite', date: '20260101', accessionNumber: 'ACC-ATT',
    series: [{ modality: 'CT', description: 'one slice', slices: 1, rows: 64, columns: 64 }],
  }] }] })[0] as SyntheticInstance;
}

/** Orthanc's id of a new one-instance patient, for attacks that must not risk the shared data. */
async function canaryPatient(name: string): Promise<string> {
  const [uploaded] = await uploadInstances(orthanc, [freshInstance(name).file]);
  return uploaded!.ParentPatient;
}

// Ways to make a server run another method (or path) than the request line says.
interface Override { label: string; query?: string; headers?: (verb: string, path: string) => Record<string, string> }
const OVERRIDES: readonly Override[] = [
  { label: '?_method=', query: '_method=' },
  { label: '?%5Fmethod=', query: '%5Fmethod=' },
  { label: '?%5f%4d%45%54%48%4f%44= (every letter encoded)', query: '%5f%4d%45%54%48%4f%44=' },
  { label: '?_METHOD=', query: '_METHOD=' },
  { label: '?a=1&_method= (not the first parameter)', query: 'a=1&_method=' },
  { label: 'X-HTTP-Method-Override', headers: (v) => ({ 'X-HTTP-Method-Override': v }) },
  { label: 'x-http-method-override (lower case)', headers: (v) => ({ 'x-http-method-override': v }) },
  { label: 'X-HTTP-METHOD-OVERRIDE (upper case)', headers: (v) => ({ 'X-HTTP-METHOD-OVERRIDE': v }) },
  { label: 'X-Method-Override', headers: (v) => ({ 'X-Method-Override': v }) },
  { label: 'X-HTTP-Method', headers: (v) => ({ 'X-HTTP-Method': v }) },
  { label: 'X-Original-URL', headers: (_v, p) => ({ 'X-Original-URL': p }) },
  { label: 'X-Rewrite-URL', headers: (_v, p) => ({ 'X-Rewrite-URL': p }) },
];

/** The request of one override to `verb` on `path` (a gateway path; `upstreamPath` is what the override names upstream). */
function withOverride(o: Override, path: string, verb: string, upstreamPath: string): { path: string; headers: Record<string, string> } {
  const sep = path.includes('?') ? '&' : '?';
  return { path: o.query ? `${path}${sep}${o.query}${verb}` : path, headers: o.headers ? o.headers(verb, upstreamPath) : {} };
}

// ---------------------------------------------------------------------------------------------
describe('1. method overrides to DELETE a patient are refused before anything reaches Orthanc', () => {
  let before: OrthancState;
  beforeAll(async () => { before = await orthancState(); });

  const cases = OVERRIDES.flatMap((o) => ['GET', 'POST'].map((method) => [o.label, method, o] as const));
  test.each(cases)('alice: %s on %s /pacs/patients/{id} → 400 METHOD_OVERRIDE, the patient survives', async (_label, method, o) => {
    const req = withOverride(o, `/pacs/patients/${targets.patient}`, 'DELETE', `/patients/${targets.patient}`);
    const r = await send(req.path, { method, as: 'alice', headers: req.headers });
    await expectRefusedAndUnchanged(r, 400, 'METHOD_OVERRIDE', before);
    expect((await direct(`/patients/${targets.patient}`)).status).toBe(200);
    expect(await logOf(r)).toMatchObject({ status: 400, error: 'METHOD_OVERRIDE', route: 'dicomweb', method });
  });

  test.each(OVERRIDES.map((o) => [o.label, o] as const))('alice: %s on a DICOMweb path (/pacs/dicom-web/studies, …/studies/{uid}) → 400', async (_label, o) => {
    for (const path of ['/pacs/dicom-web/studies', `/pacs/dicom-web/studies/${targets.studyUID}`]) {
      const req = withOverride(o, path, 'DELETE', path.slice('/pacs'.length));
      const r = await send(req.path, { as: 'alice', headers: req.headers });
      await expectRefusedAndUnchanged(r, 400, 'METHOD_OVERRIDE', before);
      expect(await logOf(r)).toMatchObject({ status: 400, error: 'METHOD_OVERRIDE' });
    }
  });

  // Overrides are refused on every route, whoever asks: the admin route forwards everything else verbatim.
  const everyRoute: Array<[string, User | undefined, string]> = [
    ['/pacs-admin/patients/{id}', 'admin', 'admin'],
    ['/auth/.well-known/openid-configuration', undefined, 'idp'],
    ['/', undefined, 'viewer'],
  ];
  test.each(everyRoute.flatMap(([p, u, route]) => [OVERRIDES[0]!, OVERRIDES[5]!, OVERRIDES[8]!].map((o) => [p, o.label, u, route, o] as const)))(
    'on %s: %s → 400 METHOD_OVERRIDE', async (pathTemplate, _label, user, route, o) => {
      // The admin route forwards any path: aim at a patient of its own, so a failure here cannot take others' data.
      const patient = await canaryPatient('CANARY^OVERRIDE');
      try {
        const pre = await orthancState();
        const path = pathTemplate.replace('{id}', patient);
        const req = withOverride(o, path, 'DELETE', `/patients/${patient}`);
        const r = await send(req.path, { as: user, headers: req.headers });
        await expectRefusedAndUnchanged(r, 400, 'METHOD_OVERRIDE', pre);
        expect((await direct(`/patients/${patient}`)).status).toBe(200);
        expect(await logOf(r)).toMatchObject({ error: 'METHOD_OVERRIDE', route });
      } finally {
        await direct(`/patients/${patient}`, { method: 'DELETE' });
      }
      expect(await orthancState()).toEqual(before);
    });
});

// ---------------------------------------------------------------------------------------------
describe('2. overrides to PUT Orthanc settings (log level, peers) are refused', () => {
  let before: OrthancState;
  beforeAll(async () => { before = await orthancState(); });

  const writes = [
    ['/pacs/tools/log-level', '/tools/log-level', 'verbose'],
    ['/pacs/peers/evil', '/peers/evil', '{"Url":"http://127.0.0.1:1/"}'],
  ] as const;
  const variants = [OVERRIDES[0]!, OVERRIDES[5]!, OVERRIDES[6]!, OVERRIDES[8]!, OVERRIDES[9]!];
  test.each(writes.flatMap(([p, up, body]) => variants.flatMap((o) => ['GET', 'POST'].map((m) => [p, o.label, m, up, body, o] as const))))(
    'alice: %s with %s on %s (and a body) → 400 METHOD_OVERRIDE, nothing changes', async (path, _label, method, upstreamPath, body, o) => {
      const req = withOverride(o, path, 'PUT', upstreamPath);
      const r = await send(req.path, { method, as: 'alice', headers: req.headers, body });
      await expectRefusedAndUnchanged(r, 400, 'METHOD_OVERRIDE', before);
      expect(before).toMatchObject({ logLevel: 'default', peers: [] });
      expect(await logOf(r)).toMatchObject({ status: 400, error: 'METHOD_OVERRIDE' });
    });

  test.each(writes.map(([p, , body]) => [p, body] as const))('alice: a plain PUT %s → 404 UNKNOWN_OPERATION, nothing changes', async (path, body) => {
    const r = await send(path, { method: 'PUT', as: 'alice', body });
    await expectRefusedAndUnchanged(r, 404, 'UNKNOWN_OPERATION', before);
  });

  test('admin: GET /pacs-admin/tools/log-level with X-HTTP-Method-Override: PUT and a body → 400, level unchanged', async () => {
    const r = await send('/pacs-admin/tools/log-level', { as: 'admin', headers: { 'X-HTTP-Method-Override': 'PUT' }, body: 'verbose' });
    await expectRefusedAndUnchanged(r, 400, 'METHOD_OVERRIDE', before);
    expect(await logOf(r)).toMatchObject({ route: 'admin', error: 'METHOD_OVERRIDE' });
  });
});

// ---------------------------------------------------------------------------------------------
describe('control: Orthanc itself honours the overrides the gateway refuses', () => {
  // Without these, "the patient survives" could pass against an Orthanc that ignores overrides anyway.
  test.each([
    ['GET ?_method=DELETE', 'GET', '?_method=DELETE', {}],
    ['POST X-HTTP-Method-Override: DELETE', 'POST', '', { 'X-HTTP-Method-Override': 'DELETE' }],
  ] as const)('%s deletes a patient when sent to Orthanc directly', async (_label, method, query, headers) => {
    const patient = await canaryPatient('CANARY^DELETE');
    expect((await direct(`/patients/${patient}`)).status).toBe(200);
    expect((await direct(`/patients/${patient}${query}`, { method, headers })).status).toBe(200);
    expect((await direct(`/patients/${patient}`)).status).toBe(404);
  });

  test('GET with a body and X-HTTP-Method-Override: PUT sets the log level when sent to Orthanc directly', async () => {
    try {
      expect((await direct('/tools/log-level', { headers: { 'X-HTTP-Method-Override': 'PUT' }, body: 'verbose' })).status).toBe(200);
      expect((await direct('/tools/log-level')).text).toBe('verbose');
    } finally {
      await direct('/tools/log-level', { method: 'PUT', body: 'default' });
    }
    expect((await direct('/tools/log-level')).text).toBe('default');
  });
});

// ---------------------------------------------------------------------------------------------
describe('3. Orthanc\'s REST API is not reachable through the DICOMweb route, whatever the role', () => {
  const reads: Array<[string, string, (t: Targets) => string, string?]> = [
    ['GET', '/pacs/system', () => '/pacs/system'],
    ['GET', '/pacs/patients', () => '/pacs/patients'],
    ['GET', '/pacs/changes', () => '/pacs/changes'],
    ['GET', '/pacs/jobs', () => '/pacs/jobs'],
    ['GET', '/pacs/modalities?expand', () => '/pacs/modalities?expand'],
    ['GET', '/pacs/app/explorer.html', () => '/pacs/app/explorer.html'],
    ['GET', '/pacs/statistics', () => '/pacs/statistics'],
    ['POST', '/pacs/tools/lookup', () => '/pacs/tools/lookup', '1.2.3'],
    ['GET', '/pacs/dicom-web/servers', () => '/pacs/dicom-web/servers'],
    ['GET', '/pacs/dicom-web/info', () => '/pacs/dicom-web/info'],
    ['GET', '/pacs/instances/{id}/file', (t) => `/pacs/instances/${t.instance}/file`],
    ['GET', '/pacs//system (doubled slash)', () => '/pacs//system'],
    ['GET', '/pacs/dicom-web/studies/{uid}/../../../system', (t) => `/pacs/dicom-web/studies/${t.studyUID}/../../../system`],
    ['GET', '/pacs/dicom-web/%2e%2e/system', () => '/pacs/dicom-web/%2e%2e/system'],
    ['GET', '/pacs/wado/..%2fsystem', () => '/pacs/wado/..%2fsystem'],
  ];
  const users: User[] = ['alice', 'bob', 'admin'];
  test.each(users.flatMap((u) => reads.map(([m, label, path, body]) => [u, m, label, path, body] as const)))(
    '%s: %s %s → refused by the gateway, not Orthanc', async (user, method, _label, pathOf, body) => {
      const path = pathOf(targets);
      const r = await send(path, { method, as: user, ...(body !== undefined ? { body } : {}) });
      // Dot segments are refused while the path is read (400); every other path is an unknown operation (404).
      const traversal = /\.\.|%2e/i.test(path);
      const refusal = expectRefusal(r, traversal ? 400 : 404, traversal ? 'BAD_REQUEST_PATH' : 'UNKNOWN_OPERATION');
      expect(r.text).not.toMatch(/"(ApiVersion|DicomAet|HttpError|OrthancError)"/);
      // A path refused while being read has no route yet.
      expect(await logOf(r)).toMatchObject({ route: traversal ? '-' : 'dicomweb', status: r.status, error: refusal.error, op: '-' });
    });
});

// ---------------------------------------------------------------------------------------------
describe('5. bodies smuggled on GET, HEAD and DELETE are refused', () => {
  let before: OrthancState;
  beforeAll(async () => { before = await orthancState(); });
  afterEach(async () => { expect(await orthancState()).toEqual(before); });

  test('alice: GET /pacs/dicom-web/studies with a Content-Length body → 400', async () => {
    const r = await send('/pacs/dicom-web/studies', { as: 'alice', body: '{"PatientID":"*"}' });
    expectRefusal(r, 400, 'BAD_REQUEST');
    expect(await logOf(r)).toMatchObject({ status: 400, error: 'BAD_REQUEST', method: 'GET' });
  });

  test.each([
    ['Content-Length', 'Content-Length: 7\r\n\r\nverbose'],
    ['Transfer-Encoding: chunked', 'Transfer-Encoding: chunked\r\n\r\n7\r\nverbose\r\n0\r\n\r\n'],
  ])('alice: a raw GET with a %s body → 400', async (_label, framing) => {
    const raw = await rawExchange(gw.url, `GET /pacs/dicom-web/studies HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${tokens.alice}\r\nConnection: close\r\n${framing}`);
    expect(statusOf(raw)).toBe(400);
    const body = JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4)) as Record<string, unknown>;
    expect(body).toMatchObject({ error: 'BAD_REQUEST', requestId: expect.any(String) });
    expect(await accessLogFor(gw, body.requestId as string)).toMatchObject({ status: 400, error: 'BAD_REQUEST' });
  });

  test('alice: HEAD with a body → 400', async () => {
    const r = await send('/pacs/dicom-web/studies', { method: 'HEAD', as: 'alice', body: 'x' });
    expect(r.status).toBe(400);
    expect(await logOf(r)).toMatchObject({ status: 400, error: 'BAD_REQUEST', method: 'HEAD' });
  });

  test.each(['alice', 'admin'] as const)('%s: DELETE /pacs/dicom-web/studies/{uid} with a body → 400, the study stays', async (user) => {
    const r = await send(`/pacs/dicom-web/studies/${targets.studyUID}`, { method: 'DELETE', as: user, body: '{}' });
    await expectRefusedAndUnchanged(r, 400, 'BAD_REQUEST', before);
    expect((await direct(`/studies/${targets.study}`)).status).toBe(200);
  });

  test('admin: DELETE /pacs/dicom-web/studies/{uid} without a body → 405 (the route exposes no DELETE), the study stays', async () => {
    const r = await send(`/pacs/dicom-web/studies/${targets.studyUID}`, { method: 'DELETE', as: 'admin' });
    await expectRefusedAndUnchanged(r, 405, 'METHOD_NOT_ALLOWED', before);
    expect((await direct(`/studies/${targets.study}`)).status).toBe(200);
  });

  test('admin: DELETE /pacs-admin/patients/{id} with a body → 400 on the admin route too, the patient stays', async () => {
    const patient = await canaryPatient('CANARY^BODY');
    try {
      const pre = await orthancState();
      const r = await send(`/pacs-admin/patients/${patient}`, { method: 'DELETE', as: 'admin', body: '{}' });
      await expectRefusedAndUnchanged(r, 400, 'BAD_REQUEST', pre);
      expect(await logOf(r)).toMatchObject({ route: 'admin', error: 'BAD_REQUEST' });
      expect((await direct(`/patients/${patient}`)).status).toBe(200);
    } finally {
      await direct(`/patients/${patient}`, { method: 'DELETE' });
    }
  });
});

// ---------------------------------------------------------------------------------------------
describe('6. the admin route: the admin permission only', () => {
  test.each(['alice', 'bob', 'carol'] as const)('%s: GET /pacs-admin/system → 403 insufficient_scope naming the admin permission', async (user) => {
    const r = await send('/pacs-admin/system', { as: user });
    const body = expectRefusal(r, 403, 'FORBIDDEN');
    expect(body.message).toContain('admin permission');
    expect(String(r.headers['www-authenticate'])).toMatch(/^Bearer .*error="insufficient_scope"/);
    expect(r.text).not.toContain('ApiVersion');
    expect(await logOf(r)).toMatchObject({ route: 'admin', op: 'upstream-rest', status: 403, error: 'FORBIDDEN', sub: expect.any(String) });
  });

  test('no token: GET /pacs-admin/system → 401', async () => {
    const r = await send('/pacs-admin/system');
    expectRefusal(r, 401, 'UNAUTHENTICATED');
    expect(r.text).not.toContain('ApiVersion');
  });

  test('admin: GET /pacs-admin/system → 200 with Orthanc\'s own JSON', async () => {
    const r = await send('/pacs-admin/system', { as: 'admin' });
    expect(r.status).toBe(200);
    const system = JSON.parse(r.text) as Record<string, unknown>;
    expect(system).toMatchObject({ ApiVersion: expect.any(Number), DicomAet: 'PACSGWTEST' });
    expect(system).toEqual(await directJson('/system'));
    expect(await logOf(r)).toMatchObject({ route: 'admin', op: 'upstream-rest', status: 200 });
  });

  test('admin: GET /pacs/system (the DICOMweb route) → still 404', async () => {
    const r = await send('/pacs/system', { as: 'admin' });
    expectRefusal(r, 404, 'UNKNOWN_OPERATION');
  });
});

// ---------------------------------------------------------------------------------------------
describe('7. legitimate DICOMweb work still passes, with the permissions it needs', () => {
  const DICOM_MULTIPART = 'multipart/related; type="application/dicom"';

  test('alice: QIDO-RS search lists the loaded studies (search-studies)', async () => {
    const r = await send('/pacs/dicom-web/studies', { as: 'alice' });
    expect(r.status).toBe(200);
    const uids = (JSON.parse(r.text) as DicomJson[]).map((s) => value(s, '0020000D') as string).sort();
    expect(uids).toEqual(expect.arrayContaining(data.studyInstanceUIDs));
    const directUids = (JSON.parse((await direct('/dicom-web/studies')).text) as DicomJson[]).map((s) => value(s, '0020000D') as string).sort();
    expect(uids).toEqual(directUids);
    expect(await logOf(r)).toMatchObject({ route: 'dicomweb', op: 'search-studies', status: 200, sub: expect.any(String) });
  });

  test('alice: QIDO-RS series of a study (search-series)', async () => {
    const r = await send(`/pacs/dicom-web/studies/${inst.studyInstanceUID}/series`, { as: 'alice' });
    expect(r.status).toBe(200);
    expect((JSON.parse(r.text) as DicomJson[]).map((s) => value(s, '0020000E'))).toContain(inst.seriesInstanceUID);
    expect(await logOf(r)).toMatchObject({ op: 'search-series', status: 200 });
  });

  test('alice: WADO-RS metadata (retrieve-metadata)', async () => {
    const r = await send(`${instancePath(inst)}/metadata`, { as: 'alice' });
    expect(r.status).toBe(200);
    expect(value((JSON.parse(r.text) as DicomJson[])[0], '00080018')).toBe(inst.sopInstanceUID);
    expect(await logOf(r)).toMatchObject({ op: 'retrieve-metadata', status: 200 });
  });

  test('alice: WADO-RS frames (retrieve-frames) are the instance\'s pixels', async () => {
    const r = await send(`${instancePath(inst)}/frames/1`, { as: 'alice', headers: { accept: 'multipart/related; type="application/octet-stream"' } });
    expect(r.status).toBe(200);
    const parts = parseMultipartRelated(String(r.headers['content-type']), r.body);
    expect(parts).toHaveLength(1);
    expect(parts[0]!.body.equals(inst.pixelData)).toBe(true);
    expect(await logOf(r)).toMatchObject({ op: 'retrieve-frames', status: 200 });
  });

  test('alice: WADO-RS rendered (retrieve-rendered) is an image', async () => {
    const r = await send(`${instancePath(inst)}/rendered`, { as: 'alice' });
    expect(r.status).toBe(200);
    expect(String(r.headers['content-type'])).toMatch(/^image\//);
    expect(r.body.length).toBeGreaterThan(100);
    expect(await logOf(r)).toMatchObject({ op: 'retrieve-rendered', status: 200 });
  });

  test('alice: WADO-URI without contentType (wado-uri) is a rendered image', async () => {
    const r = await send(wadoUri(inst), { as: 'alice' });
    expect(r.status).toBe(200);
    expect(String(r.headers['content-type'])).toMatch(/^image\//);
    // Orthanc 1.10 labels it image/png but sends a JPEG; either way it is a rendering, not the DICOM file.
    expect(r.body.subarray(0, 2).equals(Buffer.from([0xff, 0xd8])) || r.body.subarray(1, 4).toString() === 'PNG').toBe(true);
    expect(r.body.includes(Buffer.from('DICM'))).toBe(false);
    expect(await logOf(r)).toMatchObject({ op: 'wado-uri', status: 200 });
  });

  test.each(['alice', 'bob'] as const)('%s: retrieving the original instance (retrieve-instance) → 403, needs download', async (user) => {
    const r = await send(instancePath(inst), { as: user, headers: { accept: DICOM_MULTIPART } });
    const body = expectRefusal(r, 403, 'FORBIDDEN');
    expect(body.message).toContain('download permission');
    expect(String(r.headers['www-authenticate'])).toContain('error="insufficient_scope"');
    expect(await logOf(r)).toMatchObject({ op: 'retrieve-instance', status: 403, error: 'FORBIDDEN' });
  });

  test('alice: retrieving a whole study (retrieve-study) → 403, needs download', async () => {
    const r = await send(`/pacs/dicom-web/studies/${inst.studyInstanceUID}`, { as: 'alice', headers: { accept: DICOM_MULTIPART } });
    expect(expectRefusal(r, 403, 'FORBIDDEN').message).toContain('download permission');
    expect(await logOf(r)).toMatchObject({ op: 'retrieve-study', status: 403 });
  });

  test('admin: retrieving the original instance → 200, the stored file byte for byte', async () => {
    const r = await send(instancePath(inst), { as: 'admin', headers: { accept: DICOM_MULTIPART } });
    expect(r.status).toBe(200);
    const parts = parseMultipartRelated(String(r.headers['content-type']), r.body);
    expect(parts).toHaveLength(1);
    expect(parts[0]!.body.equals(inst.file)).toBe(true);
    expect(await logOf(r)).toMatchObject({ op: 'retrieve-instance', status: 200 });
  });

  test.each([
    ['contentType=application/dicom', '&contentType=application/dicom'],
    ['contentType=application/dicom listed second', '&contentType=image/jpeg,application/dicom'],
    ['contentType=APPLICATION/DICOM', '&contentType=APPLICATION/DICOM'],
  ])('alice: WADO-URI %s (wado-uri-original) → 403, needs download', async (_label, extra) => {
    const r = await send(wadoUri(inst, extra), { as: 'alice' });
    expect(expectRefusal(r, 403, 'FORBIDDEN').message).toContain('download permission');
    expect(r.body.includes(Buffer.from('DICM'))).toBe(false);
    expect(await logOf(r)).toMatchObject({ op: 'wado-uri-original', status: 403 });
  });

  test('admin: WADO-URI contentType=application/dicom → 200, the stored file', async () => {
    const r = await send(wadoUri(inst, '&contentType=application/dicom'), { as: 'admin' });
    expect(r.status).toBe(200);
    expect(String(r.headers['content-type'])).toMatch(/^application\/dicom/);
    expect(r.body.equals(inst.file)).toBe(true);
    expect(await logOf(r)).toMatchObject({ op: 'wado-uri-original', status: 200 });
  });

  test('STOW-RS: alice → 403 (needs upload), nothing stored; bob → 200, the study is in Orthanc (store)', async () => {
    const fresh = freshInstance('STOW^ATTACK');
    const { contentType, body } = multipartRelated([fresh.file]);
    const qido = `/dicom-web/studies?StudyInstanceUID=${fresh.studyInstanceUID}`;

    const denied = await send('/pacs/dicom-web/studies', { method: 'POST', as: 'alice', headers: { 'content-type': contentType }, body });
    expect(expectRefusal(denied, 403, 'FORBIDDEN').message).toContain('upload permission');
    expect(await logOf(denied)).toMatchObject({ op: 'store', status: 403, error: 'FORBIDDEN' });
    expect(JSON.parse((await direct(qido)).text)).toEqual([]);

    const stored = await send('/pacs/dicom-web/studies', { method: 'POST', as: 'bob', headers: { 'content-type': contentType, accept: 'application/dicom+json' }, body });
    expect(stored.status).toBe(200);
    expect(await logOf(stored)).toMatchObject({ op: 'store', status: 200 });
    const found = JSON.parse((await direct(qido)).text) as DicomJson[];
    expect(found.map((s) => value(s, '0020000D'))).toEqual([fresh.studyInstanceUID]);
    expect(value(found[0], '00100010')).toEqual({ Alphabetic: 'STOW^ATTACK' });
  });
});

// ---------------------------------------------------------------------------------------------
// Last: if one of these ever got through it could stop Orthanc or rewrite data under the other tests.
describe('4. uploaders (and admins) cannot run Orthanc\'s REST API through /pacs', () => {
  let before: OrthancState;
  beforeAll(async () => { before = await orthancState(); });

  // Orthanc stops about 200 ms after answering /tools/shutdown (and restarts on /tools/reset): look after 1 s.
  const SETTLE = '1000';
  const attacks: Array<[string, string, (t: Targets) => string, string?, string?]> = [
    ['POST', '/pacs/tools/shutdown', () => '/pacs/tools/shutdown', '', SETTLE],
    ['POST', '/pacs/tools/reset', () => '/pacs/tools/reset', '', SETTLE],
    ['POST', '/pacs/studies/{id}/modify', (t) => `/pacs/studies/${t.study}/modify`, '{"Replace":{"PatientName":"X"},"KeepSource":false}'],
    ['PUT', '/pacs/peers/evil', () => '/pacs/peers/evil', '{"Url":"http://127.0.0.1:1/"}'],
    ['POST', '/pacs/peers/evil/store', () => '/pacs/peers/evil/store', '[]'],
    ['POST', '/pacs/tools/dicom-echo', () => '/pacs/tools/dicom-echo', '{"AET":"X","Host":"127.0.0.1","Port":1}'],
    ['POST', '/pacs/tools/execute-script', () => '/pacs/tools/execute-script', 'print(1)'],
  ];
  test.each((['bob', 'admin'] as const).flatMap((u) => attacks.map(([m, label, p, b, settle]) => [u, m, label, p, b, settle] as const)))(
    '%s: %s %s → refused by the gateway; Orthanc runs on, unchanged', async (user, method, _label, pathOf, body, settle) => {
      const r = await send(pathOf(targets), { method, as: user, ...(body ? { body } : {}) });
      if (settle) await new Promise((ok) => setTimeout(ok, Number(settle)));
      // Either refusal will do (an unknown operation, or a method the resource does not take): both are the gateway's.
      const [status, code] = r.status === 405 ? [405, 'METHOD_NOT_ALLOWED'] : [404, 'UNKNOWN_OPERATION'];
      await expectRefusedAndUnchanged(r, status, code, before);
      expect(before).toMatchObject({ system: 200, targetStudy: targets.studyPatientName, peers: [] });
      expect(r.text).not.toMatch(/TCP Initialization|DicomAssociation|"ID"|"Path"/);
      expect(await logOf(r)).toMatchObject({ route: 'dicomweb', error: code, method });
    });
});
