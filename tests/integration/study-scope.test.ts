// Roles limited to some studies, with real parts: the shipped routes.yaml (its `external` role sees
// only NORTH CLINIC studies) plus a role whose institution comes from a token claim, in front of a
// real Orthanc holding studies of several institutions, real tokens from the test IdP. Every answer
// is compared with what Orthanc itself holds, asked directly and filtered by hand.
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { startGateway, waitReady, type RunningGateway } from '../support/gateway.js';
import { request, type Reply } from '../support/http-client.js';
import { loadDemoData, multipartRelated, uploadInstances, type DemoDataSummary } from '../support/load-studies.js';
import { startOrthanc, type OrthancHandle } from '../support/orthanc.js';
import { routesEnv } from '../support/stack-env.js';
import { generateStudies, rewriteDicom as dcmjsRewrite, type SyntheticInstance } from '../support/synthetic-dicom.js';
import { startTestIdp, type TestIdp } from '../support/test-idp.js';

type DicomJson = Record<string, { vr: string; Value?: unknown[] }>;

const INSTITUTIONS = ['NORTH CLINIC', 'GENERAL HOSPITAL', 'SOUTH LAB'] as const;

let orthanc: OrthancHandle;
let idp: TestIdp;
let gw: RunningGateway;
let data: DemoDataSummary;
/** 24 small studies, institutions in turn, for paging. */
let extra: SyntheticInstance[];
const tokens: Record<string, string> = {};

const yaml = readFileSync(new URL('../../routes.yaml', import.meta.url), 'utf8').replace(
  /\npermissions:\n/,
  '\npermissions:\n  site:\n    permissions: [view, download, upload]\n    studies: { InstitutionName: { claim: institution } }\n'
  + '  mine:\n    permissions: [view, upload]\n    ownUploads: true\n',
);

beforeAll(async () => {
  [orthanc, idp] = await Promise.all([startOrthanc(), startTestIdp({ algs: ['ES256'] })]);
  data = await loadDemoData(orthanc, { samples: false });
  extra = generateStudies({
    seed: 'pacs-gateway-study-scope-v1',
    patients: Array.from({ length: 24 }, (_, i) => ({
      name: `SCOPE^P${String(i).padStart(2, '0')}`, id: `PAT-SC-${i}`, birthDate: '19800101', sex: 'O' as const,
      studies: [{
        description: `SCOPE ${i}`, date: `2023${String((i % 12) + 1).padStart(2, '0')}15`, accessionNumber: `ACC-SC-${i}`,
        institution: INSTITUTIONS[i % 3],
        series: [{ modality: 'CT' as const, description: 'one', slices: 2, rows: 16, columns: 16 }],
      }],
    })),
  });
  await uploadInstances(orthanc, extra.map((i) => i.file));
  gw = await startGateway(yaml, routesEnv({ listen: '127.0.0.1:0', publicUrl: 'http://127.0.0.1:8080', adminListen: '127.0.0.1:0', orthanc, idp }));
  const issue = (username: string, realmRoles: string[], extraClaims?: Record<string, unknown>) =>
    idp.issueAccessToken({ username, realmRoles, ttl: 3600, ...(extraClaims ? { extraClaims } : {}) });
  tokens.external = await issue('erin', ['external']);
  tokens.viewer = await issue('alice', ['viewer']);
  tokens.both = await issue('frank', ['external', 'viewer']);
  tokens.general = await issue('gina', ['site'], { institution: 'GENERAL HOSPITAL' });
  tokens.twoSites = await issue('hank', ['site'], { institution: ['SOUTH LAB', 'NORTH CLINIC'] });
  tokens.noClaim = await issue('ivan', ['site']);
  await waitReady(gw);
}, 120_000);

afterAll(async () => {
  await gw?.stop();
  await Promise.all([orthanc?.stop(), idp?.stop()]);
});

const send = (path: string, as: string, headers: Record<string, string> = {}, method = 'GET', body?: Buffer): Promise<Reply> => request(gw.url, path, {
  method, headers: { authorization: `Bearer ${tokens[as]}`, accept: 'application/dicom+json', ...headers, ...(body ? { 'content-length': String(body.length) } : {}) },
  ...(body ? { body } : {}),
});
const json = (r: Reply): DicomJson[] => JSON.parse(r.text) as DicomJson[];
const value = (d: DicomJson, tag: string): string => {
  const v = d[tag]?.Value?.[0];
  return typeof v === 'object' && v !== null ? (v as { Alphabetic: string }).Alphabetic : String(v ?? '');
};
const uids = (r: Reply): string[] => json(r).map((d) => value(d, '0020000D'));

/** Orthanc's own answer, with the gateway's credentials, straight to Orthanc. */
async function direct(path: string): Promise<DicomJson[]> {
  const r = await fetch(`${orthanc.url}${path}`, { headers: { authorization: orthanc.authHeader, accept: 'application/dicom+json' } });
  expect(r.status).toBe(200);
  return (await r.json()) as DicomJson[];
}

/** Every study Orthanc holds, in its order, with the institution of each. */
async function allStudies(): Promise<Array<{ uid: string; institution: string }>> {
  return (await direct('/dicom-web/studies?includefield=00080080')).map((d) => ({ uid: value(d, '0020000D'), institution: value(d, '00080080') }));
}
const of = (studies: Array<{ uid: string; institution: string }>, ...inst: string[]) => studies.filter((s) => inst.includes(s.institution)).map((s) => s.uid);

describe('searches', () => {
  test('the external role finds exactly the NORTH CLINIC studies; a plain viewer finds all; a caller with both roles finds all', async () => {
    const all = await allStudies();
    const north = of(all, 'NORTH CLINIC');
    expect(north.length).toBe(10); // 8 of the 24 + carol's and david's follow-up
    const r = await send('/pacs/dicom-web/studies', 'external');
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe('application/dicom+json');
    expect(uids(r)).toEqual(north);
    expect(uids(await send('/pacs/dicom-web/studies', 'viewer'))).toEqual(all.map((s) => s.uid));
    expect(uids(await send('/pacs/dicom-web/studies', 'both'))).toEqual(all.map((s) => s.uid));
  });

  test('limit and offset page through the allowed studies only: the pages put together are the allowed list, in order', async () => {
    const north = of(await allStudies(), 'NORTH CLINIC');
    for (const limit of [1, 3, 4]) {
      const pages: string[] = [];
      for (let offset = 0; offset < north.length + limit; offset += limit) {
        const r = await send(`/pacs/dicom-web/studies?limit=${limit}&offset=${offset}`, 'external');
        expect(r.status).toBe(200);
        const page = uids(r);
        expect(page.length).toBe(Math.max(0, Math.min(limit, north.length - offset)));
        pages.push(...page);
      }
      expect(pages).toEqual(north);
    }
  });

  test('the values of a claim: one institution, two institutions, no claim at all (nothing)', async () => {
    const all = await allStudies();
    expect(uids(await send('/pacs/dicom-web/studies', 'general'))).toEqual(of(all, 'GENERAL HOSPITAL'));
    expect(uids(await send('/pacs/dicom-web/studies', 'twoSites'))).toEqual(of(all, 'SOUTH LAB', 'NORTH CLINIC'));
    expect(uids(await send('/pacs/dicom-web/studies', 'noClaim'))).toEqual([]);
  });

  test('search keys still apply, and the fields the filter needed are not added to what the caller asked for', async () => {
    const carol = data.studies.find((s) => s.patientId === 'PAT-0003')!;
    const alice = data.studies.find((s) => s.patientId === 'PAT-0001')!;
    expect(uids(await send('/pacs/dicom-web/studies?PatientID=PAT-0003', 'external'))).toEqual([carol.studyInstanceUID]);
    expect(uids(await send('/pacs/dicom-web/studies?PatientID=PAT-0001', 'external'))).toEqual([]);
    expect(uids(await send(`/pacs/dicom-web/studies?StudyInstanceUID=${alice.studyInstanceUID}`, 'external'))).toEqual([]);
    const plain = json(await send('/pacs/dicom-web/studies?PatientID=PAT-0003', 'external'))[0]!;
    const asViewer = json(await send('/pacs/dicom-web/studies?PatientID=PAT-0003', 'viewer'))[0]!;
    expect(Object.keys(plain).sort()).toEqual(Object.keys(asViewer).sort());
    expect(plain['00080080']).toBeUndefined();
    const asked = json(await send('/pacs/dicom-web/studies?PatientID=PAT-0003&includefield=InstitutionName', 'external'))[0]!;
    expect(value(asked, '00080080')).toBe('NORTH CLINIC');
  });

  test('searches for series and instances across studies return only those of allowed studies', async () => {
    const north = new Set(of(await allStudies(), 'NORTH CLINIC'));
    const allSeries = await direct('/dicom-web/series?includefield=0020000D');
    const series = json(await send('/pacs/dicom-web/series?includefield=0020000D', 'external'));
    expect(series.map((d) => value(d, '0020000E'))).toEqual(allSeries.filter((d) => north.has(value(d, '0020000D'))).map((d) => value(d, '0020000E')));
    const allInstances = await direct('/dicom-web/instances?includefield=0020000D');
    const instances = json(await send('/pacs/dicom-web/instances?limit=5&offset=2', 'external'));
    expect(instances.map((d) => value(d, '00080018'))).toEqual(allInstances.filter((d) => north.has(value(d, '0020000D'))).slice(2, 7).map((d) => value(d, '00080018')));
  });

  test('a search the upstream refuses keeps its answer; XML-only Accept is refused with 406', async () => {
    const xml = await send('/pacs/dicom-web/studies', 'external', { accept: 'multipart/related; type="application/dicom+xml"' });
    expect(xml.status).toBe(406);
    expect(JSON.parse(xml.text).error).toBe('NOT_ACCEPTABLE');
    const bad = await send('/pacs/dicom-web/studies?limit=-1', 'external');
    expect(bad.status).toBe(400);
  });
});

describe('a study out of scope is a study that does not exist', () => {
  /** Status and body of an answer, the request id left out. */
  const shape = (r: Reply) => {
    let body: unknown = r.text;
    try { const j = JSON.parse(r.text) as Record<string, unknown>; delete j.requestId; body = j; } catch { /* not JSON */ }
    return { status: r.status, type: r.headers['content-type'], body };
  };

  function pathsFor(study: string, series: string, instance: string): string[] {
    const s = `/pacs/dicom-web/studies/${study}`;
    const se = `${s}/series/${series}`;
    const i = `${se}/instances/${instance}`;
    return [
      s, `${s}/metadata`, `${s}/rendered`, `${s}/thumbnail`, `${s}/series`, `${s}/instances`,
      se, `${se}/metadata`, `${se}/rendered`, `${se}/thumbnail`, `${se}/instances`,
      i, `${i}/metadata`, `${i}/rendered`, `${i}/thumbnail`, `${i}/frames/1`, `${i}/frames/1/rendered`, `${i}/bulk/7FE00010`,
      `/pacs/wado?requestType=WADO&studyUID=${study}&seriesUID=${series}&objectUID=${instance}`,
      `/pacs/wado?requestType=WADO&studyUID=${study}&seriesUID=${series}&objectUID=${instance}&contentType=application%2Fdicom`,
    ];
  }

  test('every path shape with a foreign study answers as one with a study that is not there', async () => {
    const foreign = data.synthetic.find((i) => i.patientId === 'PAT-0001')!; // GENERAL HOSPITAL
    const missing = { study: `2.25.${BigInt(`0x${randomUUID().replace(/-/g, '')}`)}`, series: `2.25.${BigInt(`0x${randomUUID().replace(/-/g, '')}`)}`, instance: `2.25.${BigInt(`0x${randomUUID().replace(/-/g, '')}`)}` };
    const foreignPaths = pathsFor(foreign.studyInstanceUID, foreign.seriesInstanceUID, foreign.sopInstanceUID);
    const missingPaths = pathsFor(missing.study, missing.series, missing.instance);
    for (const [k, path] of foreignPaths.entries()) {
      // twoSites (SOUTH LAB, NORTH CLINIC; with download, so both kinds of WADO-URI are in play).
      const a = await send(path, 'twoSites', { accept: '*/*' });
      const b = await send(missingPaths[k]!, 'twoSites', { accept: '*/*' });
      expect({ path, ...shape(a) }).toEqual({ path, ...shape(b) });
      expect([200, 404]).toContain(a.status);
      if (a.status === 200) expect(a.text).toBe('[]');
      // The same path for a caller the study is open to reaches Orthanc (not the gateway's "not there").
      const allowed = await send(path, 'viewer', { accept: '*/*' });
      const answer = allowed.status === 200 ? '' : String((JSON.parse(allowed.text) as { error?: string; HttpError?: string }).error ?? 'orthanc');
      expect({ path, answer }).not.toEqual({ path, answer: 'NOT_FOUND' });
    }
  });

  test('a series of a foreign study, named under an allowed study, is not there either (nesting is checked, not trusted)', async () => {
    const allowed = data.synthetic.find((i) => i.patientId === 'PAT-0003')!; // NORTH CLINIC
    const foreign = data.synthetic.find((i) => i.patientId === 'PAT-0001')!;
    const base = `/pacs/dicom-web/studies/${allowed.studyInstanceUID}`;
    for (const path of [
      `${base}/series/${foreign.seriesInstanceUID}/metadata`,
      `${base}/series/${foreign.seriesInstanceUID}/instances/${foreign.sopInstanceUID}/frames/1`,
      `${base}/series/${allowed.seriesInstanceUID}/instances/${foreign.sopInstanceUID}/metadata`,
      `/pacs/wado?requestType=WADO&studyUID=${allowed.studyInstanceUID}&seriesUID=${foreign.seriesInstanceUID}&objectUID=${foreign.sopInstanceUID}`,
    ]) {
      const r = await send(path, 'external', { accept: '*/*' });
      expect({ path, status: r.status, error: JSON.parse(r.text).error }).toEqual({ path, status: 404, error: 'NOT_FOUND' });
    }
    const empty = await send(`${base}/series/${foreign.seriesInstanceUID}/instances`, 'external');
    expect(empty.status).toBe(200);
    expect(empty.text).toBe('[]');
    // And the allowed study itself reads: metadata, a frame, WADO-URI.
    const meta = await send(`${base}/metadata`, 'external');
    expect(meta.status).toBe(200);
    expect(json(meta).length).toBeGreaterThan(0);
    const frame = await send(`${base}/series/${allowed.seriesInstanceUID}/instances/${allowed.sopInstanceUID}/frames/1`, 'external', { accept: 'multipart/related; type="application/octet-stream"; transfer-syntax=*' });
    expect(frame.status).toBe(200);
    expect(frame.body.includes(allowed.pixelData.subarray(0, 64))).toBe(true);
    const wado = await send(`/pacs/wado?requestType=WADO&studyUID=${allowed.studyInstanceUID}&seriesUID=${allowed.seriesInstanceUID}&objectUID=${allowed.sopInstanceUID}`, 'external', { accept: 'image/jpeg' });
    expect(wado.status).toBe(200);
    expect(wado.headers['content-type']).toMatch(/^image\//);
  });

  test('lookups are cached: a study\'s every frame costs at most one lookup of the study, of its series and of each series\' instances', async () => {
    const lookups = async () => (await gw.gateway.metrics.scopeLookups.get()).values.reduce((n, v) => n + v.value, 0);
    const north = extra.filter((i) => i.patientId === 'PAT-SC-0'); // patient 0: NORTH CLINIC, two slices
    expect(north.length).toBe(2);
    const before = await lookups();
    for (let round = 0; round < 5; round++) {
      for (const i of north) {
        const r = await send(`/pacs/dicom-web/studies/${i.studyInstanceUID}/series/${i.seriesInstanceUID}/instances/${i.sopInstanceUID}/frames/1`, 'external',
          { accept: 'multipart/related; type="application/octet-stream"; transfer-syntax=*' });
        expect(r.status).toBe(200);
      }
    }
    // 10 frames: one study lookup, one series list, one instance list.
    const made = (await lookups()) - before;
    expect(made).toBeGreaterThanOrEqual(1);
    expect(made).toBeLessThanOrEqual(3);
  });

  test('a limited role keeps its own permissions: the external role may not download originals even of its studies', async () => {
    const allowed = data.synthetic.find((i) => i.patientId === 'PAT-0003')!;
    const r = await send(`/pacs/dicom-web/studies/${allowed.studyInstanceUID}`, 'external', { accept: 'multipart/related; type="application/dicom"' });
    expect(r.status).toBe(403);
  });

  test('a limited uploader stores into studies of its scope only, judged part by part; a refused body stores nothing', async () => {
    tokens.limitedUploader = await idp.issueAccessToken({ username: 'up', realmRoles: ['site'], ttl: 600, extraClaims: { institution: 'GENERAL HOSPITAL' } });
    const fresh = (institution: string, slices = 1) => generateStudies({ seed: randomUUID(), patients: [{ name: 'NEW^ONE', id: `PAT-NEW-${randomUUID().slice(0, 6)}`, birthDate: '19900101', sex: 'O', studies: [
      { description: 'NEW', date: '20240101', accessionNumber: 'ACC-NEW', institution, series: [{ modality: 'CT', description: 'x', slices, rows: 16, columns: 16 }] }] }] });
    const stow = (files: Buffer[], path = '/pacs/dicom-web/studies') => {
      const { body, contentType } = multipartRelated(files);
      return send(path, 'limitedUploader', { 'content-type': contentType }, 'POST', body);
    };
    const inOrthanc = async (study: string) => (await direct(`/dicom-web/studies?StudyInstanceUID=${study}`)).length;

    // A new study of its own institution: stored, and readable right away.
    const ours = fresh('GENERAL HOSPITAL', 2);
    const ok = await stow(ours.map((f) => f.file));
    expect(ok.status).toBe(200);
    expect(await inOrthanc(ours[0]!.studyInstanceUID)).toBe(1);
    expect((await send(`/pacs/dicom-web/studies/${ours[0]!.studyInstanceUID}/metadata`, 'limitedUploader')).status).toBe(200);

    // Another institution's new study: refused, not stored.
    const theirs = fresh('NORTH CLINIC');
    const refused = await stow([theirs[0]!.file]);
    expect(refused.status).toBe(403);
    expect(JSON.parse(refused.text)).toMatchObject({ error: 'FORBIDDEN', message: expect.stringMatching(/part 1 /) });
    expect(await inOrthanc(theirs[0]!.studyInstanceUID)).toBe(0);

    // First part fine, second part foreign: refused as a whole, the first part not stored either.
    const mixedOk = fresh('GENERAL HOSPITAL');
    const mixedBad = fresh('SOUTH LAB');
    const mixed = await stow([mixedOk[0]!.file, mixedBad[0]!.file]);
    expect(mixed.status).toBe(403);
    expect(JSON.parse(mixed.text).message).toMatch(/part 2 /);
    expect(await inOrthanc(mixedOk[0]!.studyInstanceUID)).toBe(0);
    expect(await inOrthanc(mixedBad[0]!.studyInstanceUID)).toBe(0);

    // An instance claiming GENERAL HOSPITAL, into an existing NORTH CLINIC study: the upstream's study decides.
    const north = data.synthetic.find((i) => i.patientId === 'PAT-0003')!;
    const forged = dcmjsRewrite(fresh('GENERAL HOSPITAL')[0]!.file, { StudyInstanceUID: north.studyInstanceUID });
    const before = (await direct(`/dicom-web/studies/${north.studyInstanceUID}/instances`)).length;
    expect((await stow([forged])).status).toBe(403);
    expect((await direct(`/dicom-web/studies/${north.studyInstanceUID}/instances`)).length).toBe(before);

    // Not multipart: refused before anything goes upstream.
    const single = await send('/pacs/dicom-web/studies', 'limitedUploader', { 'content-type': 'application/dicom' }, 'POST', ours[0]!.file);
    expect(single.status).toBe(400);
    // And the route exposing Orthanc's whole API stays closed to a limited caller.
    expect((await send('/pacs-admin/system', 'limitedUploader', { accept: 'application/json' })).status).toBe(403);
  });
});

describe('my uploads (ownUploads)', () => {
  const fresh = (slices = 1) => generateStudies({ seed: randomUUID(), patients: [{ name: 'MINE^ONE', id: `PAT-MINE-${randomUUID().slice(0, 6)}`, birthDate: '19900101', sex: 'O', studies: [
    { description: 'MINE', date: '20240101', accessionNumber: 'ACC-MINE', series: [{ modality: 'CT', description: 'x', slices, rows: 16, columns: 16 }] }] }] });
  const stow = (as: string, files: Buffer[]) => {
    const { body, contentType } = multipartRelated(files);
    return send('/pacs/dicom-web/studies', as, { 'content-type': contentType }, 'POST', body);
  };

  test('a study its caller stored is theirs: found, read and added to by them only; nobody else\'s study can be stored into', async () => {
    tokens.una = await idp.issueAccessToken({ username: 'una', sub: `una-${randomUUID()}`, realmRoles: ['mine'], ttl: 600 });
    tokens.vic = await idp.issueAccessToken({ username: 'vic', sub: `vic-${randomUUID()}`, realmRoles: ['mine'], ttl: 600 });
    // Before any upload: nothing at all.
    expect(uids(await send('/pacs/dicom-web/studies', 'una'))).toEqual([]);
    const [a1, a2] = fresh(2);
    expect((await stow('una', [a1!.file])).status).toBe(200);
    // Hers at once: search, metadata, and a second instance into it.
    expect(uids(await send('/pacs/dicom-web/studies', 'una'))).toEqual([a1!.studyInstanceUID]);
    expect((await send(`/pacs/dicom-web/studies/${a1!.studyInstanceUID}/metadata`, 'una')).status).toBe(200);
    expect((await stow('una', [a2!.file])).status).toBe(200);
    expect(json(await send(`/pacs/dicom-web/studies/${a1!.studyInstanceUID}/metadata`, 'una')).length).toBe(2);
    // Not vic's: not there for him, and he cannot add to it.
    expect(uids(await send('/pacs/dicom-web/studies', 'vic'))).toEqual([]);
    const foreign = await send(`/pacs/dicom-web/studies/${a1!.studyInstanceUID}/metadata`, 'vic');
    expect({ status: foreign.status, error: JSON.parse(foreign.text).error }).toEqual({ status: 404, error: 'NOT_FOUND' });
    const [, , v3] = fresh(3);
    const intoHers = dcmjsRewrite(v3!.file, { StudyInstanceUID: a1!.studyInstanceUID });
    expect((await stow('vic', [intoHers])).status).toBe(403);
    // Nor can una store into a study that existed before and is not hers (alice's).
    const alice = data.synthetic.find((i) => i.patientId === 'PAT-0001')!;
    const intoAlices = dcmjsRewrite(fresh()[0]!.file, { StudyInstanceUID: alice.studyInstanceUID });
    const before = (await direct(`/dicom-web/studies/${alice.studyInstanceUID}/instances`)).length;
    expect((await stow('una', [intoAlices])).status).toBe(403);
    expect((await direct(`/dicom-web/studies/${alice.studyInstanceUID}/instances`)).length).toBe(before);
  });
});
