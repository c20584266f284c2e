// The real-Orthanc test stack on its own (no gateway): the process helper, the synthetic data and
// the DICOMweb behaviour the gateway relies on.
import { randomUUID } from 'node:crypto';
import { startOrthanc, type OrthancHandle } from '../support/orthanc.js';
import { loadDemoData, parseMultipartRelated, stowInstances, type DemoDataSummary } from '../support/load-studies.js';
import { generateStudies, type SyntheticInstance } from '../support/synthetic-dicom.js';

type DicomJson = Record<string, { vr: string; Value?: unknown[]; BulkDataURI?: string }>;

let orthanc: OrthancHandle;
let data: DemoDataSummary;

beforeAll(async () => {
  orthanc = await startOrthanc();
  data = await loadDemoData(orthanc, { large: true, largeMegabytes: 40 });
}, 60_000);

afterAll(async () => {
  await orthanc?.stop();
});

async function getJson<T>(path: string, headers: Record<string, string> = {}): Promise<T> {
  const res = await fetch(`${orthanc.url}${path}`, { headers: { authorization: orthanc.authHeader, ...headers } });
  expect(res.status).toBe(200);
  return (await res.json()) as T;
}

function value(dataset: DicomJson | undefined, tag: string): unknown {
  return dataset?.[tag]?.Value?.[0];
}

function instancePath(i: Pick<SyntheticInstance, 'studyInstanceUID' | 'seriesInstanceUID' | 'sopInstanceUID'>) {
  return `/dicom-web/studies/${i.studyInstanceUID}/series/${i.seriesInstanceUID}/instances/${i.sopInstanceUID}`;
}

function first512(): SyntheticInstance {
  const instance = data.synthetic.find((i) => i.rows === 512 && i.columns === 512);
  if (!instance) throw new Error('the demo spec has no 512×512 instance');
  return instance;
}

test('refuses requests without credentials', async () => {
  const res = await fetch(`${orthanc.url}/system`);
  expect(res.status).toBe(401);
});

test('loaded every generated instance and the real samples', () => {
  expect(data.samples).toHaveLength(4);
  expect(data.instanceCount).toBe(data.synthetic.length + data.samples.length);
  expect(data.bytes).toBeGreaterThan(40 * 1024 * 1024);
});

test('QIDO-RS lists exactly the loaded studies', async () => {
  const studies = await getJson<DicomJson[]>('/dicom-web/studies');
  const uids = studies.map((s) => value(s, '0020000D') as string).sort();
  expect(uids).toEqual(data.studyInstanceUIDs);

  const alice = studies.find((s) => value(s, '00100020') === 'PAT-0001');
  expect(value(alice, '00100010')).toEqual({ Alphabetic: 'DOE^ALICE' });
});

test('WADO-RS metadata describes a 512×512 16-bit synthetic instance', async () => {
  const instance = first512();
  const [metadata] = await getJson<DicomJson[]>(`${instancePath(instance)}/metadata`);
  expect(value(metadata, '00280010')).toBe(512); // Rows
  expect(value(metadata, '00280011')).toBe(512); // Columns
  expect(value(metadata, '00280100')).toBe(16); // BitsAllocated
  expect(value(metadata, '00280101')).toBe(12); // BitsStored
  expect(value(metadata, '00080016')).toBe('1.2.840.10008.5.1.4.1.1.2');
});

test('frame retrieve answers multipart/related with the raw 512×512×2 pixel bytes', async () => {
  const instance = first512();
  const res = await fetch(`${orthanc.url}${instancePath(instance)}/frames/1`, {
    headers: { authorization: orthanc.authHeader, accept: 'multipart/related; type="application/octet-stream"' },
  });
  expect(res.status).toBe(200);
  const contentType = res.headers.get('content-type') ?? '';
  expect(contentType).toMatch(/^multipart\/related/i);

  const parts = parseMultipartRelated(contentType, Buffer.from(await res.arrayBuffer()));
  expect(parts).toHaveLength(1);
  expect(parts[0]!.headers['content-type']).toMatch(/^application\/octet-stream/);
  expect(parts[0]!.body.length).toBe(512 * 512 * 2);
  expect(parts[0]!.body.equals(instance.pixelData)).toBe(true);
});

test('WADO-RS streams the large study byte-for-byte', async () => {
  const study = data.large[0]!.studyInstanceUID;
  const res = await fetch(`${orthanc.url}/dicom-web/studies/${study}`, {
    headers: { authorization: orthanc.authHeader, accept: 'multipart/related; type="application/dicom"' },
  });
  expect(res.status).toBe(200);
  const parts = parseMultipartRelated(res.headers.get('content-type') ?? '', Buffer.from(await res.arrayBuffer()));

  expect(parts).toHaveLength(data.large.length);
  expect(parts.reduce((sum, p) => sum + p.body.length, 0)).toBeGreaterThan(40 * 1024 * 1024);
  for (const part of parts) {
    // Orthanc serves each instance exactly as it was stored.
    expect(data.large.some((i) => i.file.length === part.body.length && i.file.equals(part.body))).toBe(true);
  }
});

test('STOW-RS stores a new instance, which QIDO-RS then finds', async () => {
  const [instance] = generateStudies({
    seed: randomUUID(),
    patients: [
      {
        name: 'STOW^TEST',
        id: 'PAT-STOW',
        birthDate: '20000101',
        sex: 'O',
        studies: [
          {
            description: 'STOW-RS CHECK',
            date: '20240601',
            accessionNumber: 'ACC-STOW',
            series: [{ modality: 'MR', description: 'single', slices: 1, rows: 64 }],
          },
        ],
      },
    ],
  });
  const stow = await stowInstances(orthanc, [instance!.file]);
  expect(stow.status).toBe(200);
  const referenced = ((stow.body as DicomJson)['00081199']?.Value ?? []) as DicomJson[];
  expect(referenced.map((r) => value(r, '00081155'))).toEqual([instance!.sopInstanceUID]);

  const found = await getJson<DicomJson[]>(`/dicom-web/studies?StudyInstanceUID=${instance!.studyInstanceUID}`);
  expect(found.map((s) => value(s, '00100020'))).toEqual(['PAT-STOW']);
  const instances = await getJson<DicomJson[]>(
    `/dicom-web/studies/${instance!.studyInstanceUID}/series/${instance!.seriesInstanceUID}/instances`,
  );
  expect(instances.map((i) => value(i, '00080018'))).toEqual([instance!.sopInstanceUID]);
});

describe('absolute links in answers (what the gateway has to deal with)', () => {
  async function pixelBulkDataUri(headers: Record<string, string> = {}): Promise<string | undefined> {
    const [metadata] = await getJson<DicomJson[]>(`${instancePath(first512())}/metadata`, headers);
    return metadata?.['7FE00010']?.BulkDataURI;
  }

  test('are built from the Host header by default', async () => {
    expect(await pixelBulkDataUri()).toBe(`${orthanc.url}${instancePath(first512())}/bulk/7fe00010`);
  });

  test('follow Forwarded host and proto, a path in host included', async () => {
    const uri = await pixelBulkDataUri({ forwarded: 'host=example.org/pacs;proto=https' });
    expect(uri).toBe(`https://example.org/pacs${instancePath(first512())}/bulk/7fe00010`);
  });

  test('ignore X-Forwarded-Host / X-Forwarded-Proto (DICOMweb plugin 1.7)', async () => {
    const uri = await pixelBulkDataUri({ 'x-forwarded-host': 'example.org', 'x-forwarded-proto': 'https' });
    expect(uri).toBe(`${orthanc.url}${instancePath(first512())}/bulk/7fe00010`);
  });
});
