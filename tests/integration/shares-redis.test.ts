// Share links on two gateway processes sharing a real Redis (the shipped routes.yaml with
// STORE_URL=redis://…): a link made and redeemed on A works on B; revoked on B, it stops on A within
// a second; the share survives a restart of A.
import { readFileSync } from 'node:fs';
import { startGateway, waitReady, type RunningGateway } from '../support/gateway.js';
import { request, type Reply } from '../support/http-client.js';
import { randomUUID } from 'node:crypto';
import { loadDemoData, multipartRelated, type DemoDataSummary } from '../support/load-studies.js';
import { generateStudies } from '../support/synthetic-dicom.js';
import { startOrthanc, type OrthancHandle } from '../support/orthanc.js';
import { startRedis, type RedisHandle } from '../support/redis.js';
import { routesEnv } from '../support/stack-env.js';
import { startTestIdp, type TestIdp } from '../support/test-idp.js';

let redis: RedisHandle;
let orthanc: OrthancHandle;
let idp: TestIdp;
let data: DemoDataSummary;
let env: Record<string, string>;
let gwA: RunningGateway;
let gwB: RunningGateway;
let adminToken: string;
// The shipped file, plus a role whose scope is the caller's own uploads (recorded in the store).
const YAML = readFileSync(new URL('../../routes.yaml', import.meta.url), 'utf8')
  .replace(/\npermissions:\n/, '\npermissions:\n  mine:\n    permissions: [view, upload]\n    ownUploads: true\n');

async function start(): Promise<RunningGateway> {
  const g = await startGateway(YAML, env);
  await waitReady(g);
  return g;
}

beforeAll(async () => {
  [redis, orthanc, idp] = await Promise.all([startRedis(), startOrthanc(), startTestIdp({ algs: ['ES256'] })]);
  data = await loadDemoData(orthanc, { samples: false });
  // One environment (one session secret) for both processes, as a deployment has.
  env = { ...routesEnv({ listen: '127.0.0.1:0', publicUrl: 'http://127.0.0.1:8080', adminListen: '127.0.0.1:0', orthanc, idp }), STORE_URL: redis.url };
  [gwA, gwB] = await Promise.all([start(), start()]);
  adminToken = await idp.issueAccessToken({ username: 'admin', sub: 'sub-admin', realmRoles: ['admin'], ttl: 3600 });
}, 90_000);

afterAll(async () => {
  await Promise.all([gwA?.stop(), gwB?.stop()]);
  await Promise.all([orthanc?.stop(), idp?.stop(), redis?.stop()]);
});

const carol = () => data.studies.find((s) => s.patientId === 'PAT-0003')!.studyInstanceUID;
const studies = (g: RunningGateway, cookie: string): Promise<Reply> =>
  request(g.url, '/pacs/dicom-web/studies', { headers: { cookie, accept: 'application/dicom+json' } });
function adminApi(g: RunningGateway, method: string, path: string, body?: unknown): Promise<Reply> {
  const text = body === undefined ? undefined : JSON.stringify(body);
  return request(g.url, path, {
    method,
    headers: { authorization: `Bearer ${adminToken}`, accept: 'application/json', ...(text ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)) } : {}) },
    ...(text ? { body: text } : {}),
  });
}

async function makeAndRedeemOnA(): Promise<{ id: string; cookie: string }> {
  const made = await adminApi(gwA, 'POST', '/_gateway/shares', { studies: [carol()], expiresIn: '1h' });
  expect(made.status).toBe(201);
  const { id, url } = JSON.parse(made.text) as { id: string; url: string };
  const opened = await request(gwA.url, new URL(url).pathname, { headers: { accept: 'text/html' } });
  expect(opened.status).toBe(303);
  const cookie = ([] as string[]).concat(opened.headers['set-cookie'] ?? []).find((c) => c.startsWith('pgw_share='))!.split(';')[0]!;
  return { id, cookie };
}

test('made and redeemed on A, the link\'s cookie works on B; B lists the share', async () => {
  const { id, cookie } = await makeAndRedeemOnA();
  for (const g of [gwA, gwB]) {
    const r = await studies(g, cookie);
    expect(r.status).toBe(200);
    expect((JSON.parse(r.text) as Array<Record<string, { Value: string[] }>>).map((d) => d['0020000D']!.Value[0])).toEqual([carol()]);
  }
  const listed = JSON.parse((await adminApi(gwB, 'GET', '/_gateway/shares')).text) as { shares: Array<{ id: string }> };
  expect(listed.shares.map((s) => s.id)).toContain(id);
});

test('revoked on B, the browser that opened it on A is refused within a second', async () => {
  const { id, cookie } = await makeAndRedeemOnA();
  expect((await studies(gwA, cookie)).status).toBe(200); // A has just read (and briefly remembers) the share
  expect((await adminApi(gwB, 'DELETE', `/_gateway/shares/${id}`)).status).toBe(204);
  const t = Date.now();
  let last = 0;
  while (Date.now() - t < 1000) {
    last = (await studies(gwA, cookie)).status;
    if (last === 410) break;
    await new Promise((ok) => setTimeout(ok, 50));
  }
  expect(last).toBe(410);
  expect(Date.now() - t).toBeLessThan(1000);
});

test('a share and its redeemed browser survive a restart of A (Redis keeps them)', async () => {
  const { cookie } = await makeAndRedeemOnA();
  await gwA.stop();
  gwA = await start();
  expect((await studies(gwA, cookie)).status).toBe(200);
});

test('"my uploads" live in Redis: stored through A, the study is the uploader\'s on B and after a restart of A', async () => {
  const token = await idp.issueAccessToken({ username: 'una', sub: 'sub-una-redis', realmRoles: ['mine'], ttl: 600 });
  const [file] = generateStudies({ seed: randomUUID(), patients: [{ name: 'MINE^REDIS', id: 'PAT-MINE-R', birthDate: '19900101', sex: 'O', studies: [
    { description: 'MINE', date: '20240101', accessionNumber: 'ACC-MR', series: [{ modality: 'CT', description: 'x', slices: 1, rows: 16, columns: 16 }] }] }] });
  const { body, contentType } = multipartRelated([file!.file]);
  const stored = await request(gwA.url, '/pacs/dicom-web/studies', {
    method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': contentType, 'content-length': String(body.length), accept: 'application/dicom+json' }, body,
  });
  expect(stored.status).toBe(200);
  const mine = async (g: RunningGateway) => (JSON.parse((await request(g.url, '/pacs/dicom-web/studies', { headers: { authorization: `Bearer ${token}`, accept: 'application/dicom+json' } })).text) as Array<Record<string, { Value: string[] }>>)
    .map((d) => d['0020000D']!.Value[0]);
  expect(await mine(gwB)).toEqual([file!.studyInstanceUID]);
  await gwA.stop();
  gwA = await start();
  expect(await mine(gwA)).toEqual([file!.studyInstanceUID]);
});
