// The gateway in front of a real Orthanc 1.10 + DICOMweb: every answer through the gateway is the
// answer Orthanc gives directly, and Orthanc's own links lead back through the gateway.
import { createHash, randomUUID } from 'node:crypto';
import { jest } from '@jest/globals';
import { loadDemoData, multipartRelated, parseMultipartRelated, type DemoDataSummary } from '../support/load-studies.js';
import { startGateway, type RunningGateway } from '../support/gateway.js';
import { request, type Reply } from '../support/http-client.js';
import { startOrthanc, type OrthancHandle } from '../support/orthanc.js';
import { generateStudies, type SyntheticInstance } from '../support/synthetic-dicom.js';
import { startTestIdp, type TestIdp } from '../support/test-idp.js';

type DicomJson = Record<string, { vr: string; Value?: unknown[]; BulkDataURI?: string }>;

let orthanc: OrthancHandle;
let data: DemoDataSummary;
let idp: TestIdp;
let gw: RunningGateway;

beforeAll(async () => {
  [orthanc, idp] = await Promise.all([startOrthanc(), startTestIdp({ algs: ['ES256'] })]);
  data = await loadDemoData(orthanc, { large: true, largeMegabytes: 40 });
  const creds = `upstreamAuth: { basic: { username: ${orthanc.username}, password: '${orthanc.password}' } }`;
  gw = await startGateway(`
server: { listen: 127.0.0.1:0, publicUrl: 'http://pacs.test:8443', admin: false }
identity: { issuer: ${idp.issuer}, audience: pacs }
routes:
  - { name: dicomweb, path: /pacs, upstream: ${orthanc.url}, expose: dicomweb, auth: [bearer], allow: [view, download, upload],
      forward: { orthancLinks: true }, ${creds} }
  - { name: open, path: /open-pacs, upstream: ${orthanc.url}, expose: dicomweb, auth: public, forward: { orthancLinks: true }, ${creds} }
  - { name: admin, path: /pacs-admin, upstream: ${orthanc.url}, expose: upstream, auth: public, ${creds} }
`);
}, 90_000);

afterAll(async () => {
  await gw?.stop();
  await Promise.all([orthanc?.stop(), idp?.stop()]);
});

/** Links are written for server.publicUrl, whatever Host the client sent. */
const gwHost = () => 'pacs.test:8443';
/** What Orthanc sees from the gateway, sent directly: the same links come back. */
const direct = (path: string, prefix: string, headers: Record<string, string> = {}) => request(orthanc.url, path, {
  headers: { authorization: orthanc.authHeader, forwarded: `for=127.0.0.1;host=${gwHost()}${prefix};proto=http`, ...headers },
});
const viaOpen = (path: string, headers: Record<string, string> = {}) => request(gw.url, `/open-pacs${path}`, { headers });
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const value = (d: DicomJson | undefined, tag: string) => d?.[tag]?.Value?.[0];
const instancePath = (i: { studyInstanceUID: string; seriesInstanceUID: string; sopInstanceUID: string }) =>
  `/dicom-web/studies/${i.studyInstanceUID}/series/${i.seriesInstanceUID}/instances/${i.sopInstanceUID}`;

function expectSame(via: Reply, dir: Reply): void {
  expect(via.status).toBe(dir.status);
  expect(via.headers['content-type']).toBe(dir.headers['content-type']);
  expect(sha(via.body)).toBe(sha(dir.body));
}

function expectSameParts(via: Reply, dir: Reply): void {
  expect(via.status).toBe(200);
  const a = parseMultipartRelated(String(via.headers['content-type']), via.body);
  const b = parseMultipartRelated(String(dir.headers['content-type']), dir.body);
  expect(a.length).toBeGreaterThan(0);
  // Orthanc picks a fresh boundary per response; the parts themselves must be identical.
  expect(a.map((p) => [p.headers['content-type'], sha(p.body)])).toEqual(b.map((p) => [p.headers['content-type'], sha(p.body)]));
}

describe('through a public route, byte for byte', () => {
  test('QIDO-RS studies', async () => {
    const q = '/dicom-web/studies?includefield=00081030&includefield=00080060';
    const via = await viaOpen(q);
    expectSame(via, await direct(q, '/open-pacs'));
    const uids = (JSON.parse(via.text) as DicomJson[]).map((s) => value(s, '0020000D')).sort();
    expect(uids).toEqual(data.studyInstanceUIDs);
  });

  test('QIDO-RS with a wildcard name search', async () => {
    const q = '/dicom-web/studies?PatientName=DOE*';
    const via = await viaOpen(q);
    expectSame(via, await direct(q, '/open-pacs'));
    expect((JSON.parse(via.text) as DicomJson[]).map((s) => value(s, '00100010'))).toEqual([{ Alphabetic: 'DOE^ALICE' }]);
  });

  test('WADO-RS metadata, whose bulk data links lead back through the gateway', async () => {
    const i = data.synthetic.find((s) => s.rows === 512) as SyntheticInstance;
    const q = `/dicom-web/studies/${i.studyInstanceUID}/metadata`;
    const via = await viaOpen(q);
    expectSame(via, await direct(q, '/open-pacs'));
    const first = (JSON.parse(via.text) as DicomJson[])[0];
    const bulk = first?.['7FE00010']?.BulkDataURI as string;
    expect(bulk.startsWith(`http://pacs.test:8443/open-pacs/dicom-web/studies/${i.studyInstanceUID}/`)).toBe(true);
    const followed = await request(gw.url, new URL(bulk).pathname);
    expect(followed.status).toBe(200);
  });

  test('WADO-RS frames of a 512×512 16-bit image', async () => {
    const i = data.synthetic.find((s) => s.rows === 512) as SyntheticInstance;
    const q = `${instancePath(i)}/frames/1`;
    const via = await viaOpen(q);
    expectSameParts(via, await direct(q, '/open-pacs'));
    const [frame] = parseMultipartRelated(String(via.headers['content-type']), via.body);
    expect(frame?.body.equals(i.pixelData)).toBe(true);
  });

  test('WADO-RS of a whole 40 MB study streams through intact', async () => {
    const study = data.large[0]?.studyInstanceUID as string;
    const q = `/dicom-web/studies/${study}`;
    const via = await viaOpen(q, { accept: 'multipart/related; type="application/dicom"' });
    expect(via.body.length).toBeGreaterThan(40 * 1024 * 1024);
    expectSameParts(via, await direct(q, '/open-pacs', { accept: 'multipart/related; type="application/dicom"' }));
  });

  test('WADO-URI returns each real sample file exactly as it was stored', async () => {
    expect(data.samples.length).toBe(4);
    for (const s of data.samples) {
      const q = `/wado?requestType=WADO&studyUID=${s.studyInstanceUID}&seriesUID=${s.seriesInstanceUID}&objectUID=${s.sopInstanceUID}&contentType=application/dicom`; // Orthanc does not decode this parameter
      const via = await viaOpen(q);
      expect(via.status).toBe(200);
      expect(via.body.equals(s.file)).toBe(true);
    }
  });

  test('every real sample\'s frame comes back for OHIF\'s Accept (transfer-syntax=*): the JPEG files Orthanc cannot hand out as stored come uncompressed', async () => {
    const accept = 'multipart/related; type="application/octet-stream"; transfer-syntax=*';
    for (const s of data.samples) {
      const q = `${instancePath(s)}/frames/1`;
      const direct = await request(orthanc.url, q, { headers: { authorization: orthanc.authHeader, accept } });
      const via = await viaOpen(q, { accept });
      expect({ sample: s.file.length, status: via.status }).toEqual({ sample: s.file.length, status: 200 });
      const parts = parseMultipartRelated(String(via.headers['content-type']), via.body);
      expect(parts.length).toBe(1);
      if (direct.status === 200) {
        // Orthanc serves it as stored: passed on as it is (the same frame bytes, the same type).
        const own = parseMultipartRelated(String(direct.headers['content-type']), direct.body);
        expect(sha(parts[0]!.body)).toBe(sha(own[0]!.body));
        expect(String(via.headers['content-type']).replace(/boundary=[^;]+/, '')).toBe(String(direct.headers['content-type']).replace(/boundary=[^;]+/, ''));
      } else {
        // The quirk (400 "Bad file format"): the frame decompressed, 512 × 512 × 2 bytes for these CTs.
        expect(direct.status).toBe(400);
        expect(String(via.headers['content-type'])).toContain('transfer-syntax=1.2.840.10008.1.2.1');
        const meta = JSON.parse((await request(orthanc.url, `${instancePath(s)}/metadata`, { headers: { authorization: orthanc.authHeader, accept: 'application/dicom+json' } })).text) as DicomJson[];
        const rows = Number(value(meta[0], '00280010'));
        const columns = Number(value(meta[0], '00280011'));
        const bits = Number(value(meta[0], '00280100'));
        const samples = Number(value(meta[0], '00280002'));
        expect(parts[0]!.body.length).toBe(rows * columns * samples * (bits / 8));
      }
    }
    // Two of the four are that JPEG case, or this test would prove nothing.
    let refused = 0;
    for (const s of data.samples) refused += (await request(orthanc.url, `${instancePath(s)}/frames/1`, { headers: { authorization: orthanc.authHeader, accept } })).status === 400 ? 1 : 0;
    expect(refused).toBe(2);
  });

  test('Orthanc Explorer pages and assets', async () => {
    for (const path of ['/app/explorer.html', '/app/explorer.js', '/app/libs/jquery.min.js']) {
      const via = await request(gw.url, `/pacs-admin${path}`);
      expect(via.status).toBe(200);
      expectSame(via, await request(orthanc.url, path, { headers: { authorization: orthanc.authHeader } }));
    }
    const system = await request(gw.url, '/pacs-admin/system');
    expect(JSON.parse(system.text)).toMatchObject({ Name: expect.any(String), ApiVersion: expect.any(Number) });
  });

  test('Orthanc answers nobody without the gateway', async () => {
    expect((await request(orthanc.url, '/dicom-web/studies')).status).toBe(401);
    expect((await request(orthanc.url, '/dicom-web/studies', { headers: { authorization: 'Basic Z2F0ZXdheTp3cm9uZw==' } })).status).toBe(401);
  });
});

describe('through the bearer route', () => {
  const token = (roles: string[]) => idp.issueAccessToken({ realmRoles: roles });

  test('QIDO with a viewer token equals the direct answer; without a token it is refused', async () => {
    const auth = { authorization: `Bearer ${await token(['viewer'])}` };
    expectSame(await request(gw.url, '/pacs/dicom-web/studies', { headers: auth }), await direct('/dicom-web/studies', '/pacs'));
    expect((await request(gw.url, '/pacs/dicom-web/studies')).status).toBe(401);
  });

  test('STOW-RS: an uploader stores a new study; a viewer cannot', async () => {
    const [fresh] = oneInstance('STOW-1', 'STOW^TEST', 'CT');
    const { contentType, body } = multipartRelated([(fresh as SyntheticInstance).file]);
    const denied = await request(gw.url, '/pacs/dicom-web/studies', { method: 'POST', body, headers: { 'content-type': contentType, authorization: `Bearer ${await token(['viewer'])}` } });
    expect(denied.status).toBe(403);
    const uid = (fresh as SyntheticInstance).studyInstanceUID;
    expect((await direct(`/dicom-web/studies?StudyInstanceUID=${uid}`, '/pacs')).text).toBe('[]');
    const stored = await request(gw.url, '/pacs/dicom-web/studies', { method: 'POST', body, headers: { 'content-type': contentType, accept: 'application/dicom+json', authorization: `Bearer ${await token(['uploader'])}` } });
    expect(stored.status).toBe(200);
    expect(stored.text).toContain(`http://pacs.test:8443/pacs/dicom-web/studies/${uid}`); // RetrieveURL through the gateway
    const found = JSON.parse((await direct(`/dicom-web/studies?StudyInstanceUID=${uid}`, '/pacs')).text) as DicomJson[];
    expect(found).toHaveLength(1);
  });

  test('a real DICOMweb client library searches, retrieves and stores with a token', async () => {
    const { default: XHR } = await import('xhr2') as { default: unknown };
    (globalThis as { XMLHttpRequest?: unknown }).XMLHttpRequest = XHR;
    const { api } = await import('dicomweb-client') as unknown as { api: { DICOMwebClient: new (o: object) => DicomWebClient } };
    const client = new api.DICOMwebClient({ url: `${gw.url}/pacs/dicom-web`, headers: { Authorization: `Bearer ${await token(['viewer', 'uploader'])}` } });
    const studies = await client.searchForStudies({ queryParams: { PatientID: 'PAT-0001' } });
    expect(studies.map((s) => value(s, '00100020'))).toEqual(['PAT-0001']);
    const i = data.synthetic.find((s) => s.patientId === 'PAT-0001') as SyntheticInstance;
    const metadata = await client.retrieveInstanceMetadata({ studyInstanceUID: i.studyInstanceUID, seriesInstanceUID: i.seriesInstanceUID, sopInstanceUID: i.sopInstanceUID });
    expect(value(metadata[0], '00080018')).toBe(i.sopInstanceUID);
    const frames = await client.retrieveInstanceFrames({ studyInstanceUID: i.studyInstanceUID, seriesInstanceUID: i.seriesInstanceUID, sopInstanceUID: i.sopInstanceUID, frameNumbers: [1] });
    expect(Buffer.from(frames[0] as ArrayBuffer).equals(i.pixelData)).toBe(true);
    const [fresh] = oneInstance('LIB-1', 'LIB^CLIENT', 'MR');
    await client.storeInstances({ datasets: [new Uint8Array((fresh as SyntheticInstance).file).buffer] });
    const back = await client.searchForStudies({ queryParams: { PatientID: 'LIB-1' } });
    expect(back).toHaveLength(1);
    const anonymous = new api.DICOMwebClient({ url: `${gw.url}/pacs/dicom-web` });
    // dicomweb-client prints every failed request; this failure is the expected answer.
    const quiet = jest.spyOn(console, 'error').mockImplementation(() => undefined);
    try {
      await expect(anonymous.searchForStudies({})).rejects.toMatchObject({ status: 401 });
    } finally {
      quiet.mockRestore();
    }
  });
});

/** A single small instance Orthanc has never seen. */
function oneInstance(id: string, name: string, modality: 'CT' | 'MR'): SyntheticInstance[] {
  return generateStudies({ seed: randomUUID(), patients: [{ id, name, birthDate: '19700101', sex: 'O', studies: [{
    description: 'Uploaded through the gateway', date: '20260101', accessionNumber: 'ACC1',
    series: [{ modality, description: 'one slice', slices: 1, rows: 64, columns: 64 }],
  }] }] });
}

interface DicomWebClient {
  searchForStudies(o: { queryParams?: Record<string, string> }): Promise<DicomJson[]>;
  retrieveInstanceMetadata(o: Record<string, string>): Promise<DicomJson[]>;
  retrieveInstanceFrames(o: Record<string, unknown>): Promise<ArrayBuffer[]>;
  storeInstances(o: { datasets: ArrayBuffer[] }): Promise<unknown>;
}
