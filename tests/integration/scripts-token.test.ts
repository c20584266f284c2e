// A script's way in, as the README gives it: a confidential client's own token from the IdP's token
// endpoint (client credentials, its service account holding viewer and uploader), then DICOMweb with
// it — search and store through the shipped routes.yaml, against a real Orthanc.
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { startGateway, waitReady, type RunningGateway } from '../support/gateway.js';
import { request } from '../support/http-client.js';
import { multipartRelated } from '../support/load-studies.js';
import { startOrthanc, type OrthancHandle } from '../support/orthanc.js';
import { routesEnv } from '../support/stack-env.js';
import { generateStudies } from '../support/synthetic-dicom.js';
import { scriptsClient, startTestIdp, type TestIdp } from '../support/test-idp.js';

let orthanc: OrthancHandle;
let idp: TestIdp;
let gw: RunningGateway;

beforeAll(async () => {
  [orthanc, idp] = await Promise.all([startOrthanc(), startTestIdp({
    algs: ['RS256'], clients: { 'pacs-scripts': scriptsClient() }, serviceAccounts: { 'pacs-scripts': { realmRoles: ['viewer', 'uploader'] } },
  })]);
  gw = await startGateway(readFileSync(new URL('../../routes.yaml', import.meta.url), 'utf8'),
    routesEnv({ listen: '127.0.0.1:0', publicUrl: 'http://127.0.0.1:8080', adminListen: '127.0.0.1:0', orthanc, idp }));
  await waitReady(gw);
}, 60_000);

afterAll(async () => {
  await gw?.stop();
  await Promise.all([orthanc?.stop(), idp?.stop()]);
});

async function clientCredentials(secret: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const r = await fetch(idp.tokenEndpoint, {
    method: 'POST',
    headers: { authorization: `Basic ${Buffer.from(`pacs-scripts:${secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: 'grant_type=client_credentials',
  });
  return { status: r.status, body: (await r.json()) as Record<string, unknown> };
}

test('client credentials give a token that searches and stores through /pacs; a wrong secret gives none', async () => {
  const { status, body } = await clientCredentials(idp.clientSecret);
  expect(status).toBe(200);
  const token = body.access_token as string;
  expect(token).toMatch(/^eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+$/);
  const search = await request(gw.url, '/pacs/dicom-web/studies', { headers: { authorization: `Bearer ${token}`, accept: 'application/dicom+json' } });
  expect(search.status).toBe(200);
  const [file] = generateStudies({ seed: randomUUID(), patients: [{ name: 'SCRIPT^STORE', id: 'PAT-SCRIPT', birthDate: '19900101', sex: 'O', studies: [
    { description: 'BY SCRIPT', date: '20240101', accessionNumber: 'ACC-S', series: [{ modality: 'CT', description: 'x', slices: 1, rows: 16, columns: 16 }] }] }] });
  const { body: stow, contentType } = multipartRelated([file!.file]);
  const stored = await request(gw.url, '/pacs/dicom-web/studies', {
    method: 'POST', body: stow, headers: { authorization: `Bearer ${token}`, 'content-type': contentType, 'content-length': String(stow.length), accept: 'application/dicom+json' },
  });
  expect(stored.status).toBe(200);
  const found = await fetch(`${orthanc.url}/dicom-web/studies?StudyInstanceUID=${file!.studyInstanceUID}`, { headers: { authorization: orthanc.authHeader } });
  expect(((await found.json()) as unknown[]).length).toBe(1);
  // The service account has no download or admin: originals and /pacs-admin stay closed.
  const original = await request(gw.url, `/pacs/dicom-web/studies/${file!.studyInstanceUID}`, { headers: { authorization: `Bearer ${token}`, accept: 'multipart/related; type="application/dicom"' } });
  expect(original.status).toBe(403);
  expect((await clientCredentials('not-the-secret')).status).toBe(401);
});
