// Share links with real parts: the shipped routes.yaml (shares enabled, /pacs and the viewer admit
// share visitors) in front of a real Orthanc, real tokens from the test IdP. A link is made over the
// API, redeemed like a browser would (the code in the path, a cookie back, a redirect), and then
// everything the visitor can and cannot reach is asked of the gateway and checked against Orthanc.
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { startGateway, waitReady, type RunningGateway } from '../support/gateway.js';
import { request, type Reply } from '../support/http-client.js';
import { loadDemoData, multipartRelated, uploadInstances, type DemoDataSummary } from '../support/load-studies.js';
import { startOrthanc, type OrthancHandle } from '../support/orthanc.js';
import { routesEnv } from '../support/stack-env.js';
import { generateStudies } from '../support/synthetic-dicom.js';
import { startTestIdp, type TestIdp } from '../support/test-idp.js';
import yauzl from 'yauzl';

type DicomJson = Record<string, { vr: string; Value?: unknown[] }>;

let orthanc: OrthancHandle;
let idp: TestIdp;
let gw: RunningGateway;
let data: DemoDataSummary;
const tokens: Record<string, string> = {};

// The shipped file, with one more role: a sharer limited to NORTH CLINIC's studies.
const yaml = readFileSync(new URL('../../routes.yaml', import.meta.url), 'utf8').replace(
  /\npermissions:\n/,
  '\npermissions:\n  northSharer:\n    permissions: [view, share]\n    studies: { InstitutionName: [NORTH CLINIC] }\n',
);

beforeAll(async () => {
  [orthanc, idp] = await Promise.all([startOrthanc(), startTestIdp({ algs: ['ES256'] })]);
  data = await loadDemoData(orthanc, { samples: false });
  gw = await startGateway(yaml, routesEnv({ listen: '127.0.0.1:0', publicUrl: 'http://127.0.0.1:8080', adminListen: '127.0.0.1:0', orthanc, idp }));
  const issue = (username: string, realmRoles: string[]) => idp.issueAccessToken({ username, sub: `sub-${username}`, realmRoles, ttl: 3600 });
  tokens.admin = await issue('admin', ['viewer', 'uploader', 'admin']);
  tokens.alice = await issue('alice', ['viewer']);
  tokens.nora = await issue('nora', ['northSharer']);
  tokens.other = await issue('otto', ['admin']);
  await waitReady(gw);
}, 120_000);

afterAll(async () => {
  await gw?.stop();
  await Promise.all([orthanc?.stop(), idp?.stop()]);
});

const studyOf = (patientId: string) => data.studies.find((s) => s.patientId === patientId)!.studyInstanceUID;
const instanceOf = (patientId: string) => data.synthetic.find((i) => i.patientId === patientId)!;
const json = <T = unknown>(r: Reply): T => JSON.parse(r.text) as T;

function api(method: string, path: string, as: string | undefined, body?: unknown, headers: Record<string, string> = {}): Promise<Reply> {
  const text = body === undefined ? undefined : JSON.stringify(body);
  return request(gw.url, path, {
    method,
    headers: {
      ...(as ? { authorization: `Bearer ${tokens[as]}` } : {}),
      ...(text !== undefined ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)) } : {}),
      accept: 'application/json', ...headers,
    },
    ...(text !== undefined ? { body: text } : {}),
  });
}

interface Made { id: string; url: string; expiresAt: string; kind: string; studies: string[]; oneTime: boolean; state: string }
async function share(as: string, body: Record<string, unknown>): Promise<Made> {
  const r = await api('POST', '/_gateway/shares', as, body);
  expect({ status: r.status, body: r.status === 201 ? 'ok' : r.text }).toEqual({ status: 201, body: 'ok' });
  return json<Made>(r);
}

/** Opens the link as a browser would: its path on the gateway; the share cookie that comes back. */
async function redeem(url: string): Promise<{ reply: Reply; cookie: string | undefined }> {
  const u = new URL(url);
  const reply = await request(gw.url, u.pathname, { headers: { accept: 'text/html', 'sec-fetch-mode': 'navigate' } });
  const set = ([] as string[]).concat(reply.headers['set-cookie'] ?? []).find((c) => c.startsWith('pgw_share='));
  return { reply, cookie: set?.split(';')[0] };
}

const asVisitor = (cookie: string, path: string, headers: Record<string, string> = {}, method = 'GET', body?: Buffer) => request(gw.url, path, {
  method, headers: { cookie, accept: 'application/dicom+json', ...headers, ...(body ? { 'content-length': String(body.length) } : {}) }, ...(body ? { body } : {}),
});
const uidsOf = (r: Reply) => json<DicomJson[]>(r).map((d) => String(d['0020000D']?.Value?.[0]));

describe('a view link', () => {
  let made: Made;
  let cookie: string;
  const carol = () => studyOf('PAT-0003');

  beforeAll(async () => {
    made = await share('admin', { studies: [carol()], expiresIn: '1h', kind: 'view' });
    const r = await redeem(made.url);
    expect(r.reply.status).toBe(303);
    cookie = r.cookie!;
  });

  test('is made with a long random code, an id and an expiry; the code is in the URL only', async () => {
    expect(made.url).toMatch(/^http:\/\/127\.0\.0\.1:8080\/_gateway\/s\/[A-Za-z0-9_-]{43}$/);
    expect(made.id).toMatch(/^[A-Za-z0-9_-]{16}$/);
    expect(made).toMatchObject({ kind: 'view', studies: [carol()], oneTime: false, state: 'active' });
    const ttl = Date.parse(made.expiresAt) - Date.now();
    expect(ttl).toBeGreaterThan(3500_000);
    expect(ttl).toBeLessThanOrEqual(3600_000);
    const code = made.url.split('/').pop()!;
    // The code is never written to the log (the access log line of the redemption included).
    expect(gw.rawLogs()).not.toContain(code);
    expect(gw.logs.some((l) => l.msg === 'request' && l.path === '/_gateway/s/…')).toBe(true);
    const listed = json<{ shares: Made[] }>(await api('GET', '/_gateway/shares', 'admin')).shares;
    expect(listed.find((s) => s.id === made.id)).toMatchObject({ state: 'active', studies: [carol()] });
    expect(JSON.stringify(listed)).not.toContain(code);
  });

  test('redeeming sends the browser to the study in OHIF, with an HttpOnly cookie and no referrer', async () => {
    const again = await redeem(made.url);
    expect(again.reply.status).toBe(303);
    expect(again.reply.headers.location).toBe(`/viewer?StudyInstanceUIDs=${carol()}`);
    expect(again.reply.headers['referrer-policy']).toBe('no-referrer');
    expect(again.reply.headers['cache-control']).toBe('no-store');
    const set = ([] as string[]).concat(again.reply.headers['set-cookie'] ?? []).find((c) => c.startsWith('pgw_share='))!;
    expect(set).toMatch(/HttpOnly/);
    expect(set).toMatch(/SameSite=Lax/);
    expect(set).toMatch(/Path=\//);
    expect(set).not.toContain(made.url.split('/').pop()!);
  });

  test('the visitor reads the shared study: search finds it alone, metadata and frames are served', async () => {
    const all = await asVisitor(cookie, '/pacs/dicom-web/studies');
    expect(all.status).toBe(200);
    expect(uidsOf(all)).toEqual([carol()]);
    const meta = await asVisitor(cookie, `/pacs/dicom-web/studies/${carol()}/metadata`);
    expect(meta.status).toBe(200);
    const i = instanceOf('PAT-0003');
    const frame = await asVisitor(cookie, `/pacs/dicom-web/studies/${carol()}/series/${i.seriesInstanceUID}/instances/${i.sopInstanceUID}/frames/1`,
      { accept: 'multipart/related; type="application/octet-stream"; transfer-syntax=*' });
    expect(frame.status).toBe(200);
    expect(frame.body.includes(i.pixelData.subarray(0, 64))).toBe(true);
  });

  test('another study is not there for the visitor; originals, uploads and /pacs-admin are refused', async () => {
    const alice = instanceOf('PAT-0001');
    const foreign = await asVisitor(cookie, `/pacs/dicom-web/studies/${alice.studyInstanceUID}/metadata`);
    const missing = await asVisitor(cookie, `/pacs/dicom-web/studies/2.25.${BigInt(`0x${randomUUID().replace(/-/g, '')}`)}/metadata`);
    expect(foreign.status).toBe(404);
    expect({ ...json<Record<string, unknown>>(foreign), requestId: 0 }).toEqual({ ...json<Record<string, unknown>>(missing), requestId: 0 });
    expect(uidsOf(await asVisitor(cookie, `/pacs/dicom-web/studies?PatientID=PAT-0001`))).toEqual([]);
    const original = await asVisitor(cookie, `/pacs/dicom-web/studies/${carol()}`, { accept: 'multipart/related; type="application/dicom"' });
    expect(original.status).toBe(403);
    const [file] = generateStudies({ seed: randomUUID(), patients: [{ name: 'X^Y', id: 'PAT-X', birthDate: '19900101', sex: 'O', studies: [
      { description: 'X', date: '20240101', accessionNumber: 'ACC-X', series: [{ modality: 'CT', description: 'x', slices: 1, rows: 16, columns: 16 }] }] }] });
    const { body, contentType } = multipartRelated([file!.file]);
    const stow = await asVisitor(cookie, '/pacs/dicom-web/studies', { 'content-type': contentType, origin: 'http://127.0.0.1:8080' }, 'POST', body);
    expect({ status: stow.status, error: json<{ error: string }>(stow).error }).toEqual({ status: 403, error: 'FORBIDDEN' });
    const admin = await asVisitor(cookie, '/pacs-admin/system', { accept: 'application/json' });
    expect(admin.status).toBe(401);
  });

  test('the viewer opens for the visitor with a configuration without study list or login; without the cookie it asks for a login', async () => {
    const page = await request(gw.url, `/viewer?StudyInstanceUIDs=${carol()}`, { headers: { cookie, accept: 'text/html', 'sec-fetch-mode': 'navigate' } });
    expect(page.status).toBe(200);
    const config = await request(gw.url, '/app-config.js', { headers: { cookie } });
    expect(config.text).toContain('"showStudyList":false');
    expect(config.text).not.toMatch(/oidc/i);
    const anonymous = await request(gw.url, `/viewer?StudyInstanceUIDs=${carol()}`, { headers: { accept: 'text/html', 'sec-fetch-mode': 'navigate' } });
    expect(anonymous.status).toBe(302);
    expect(anonymous.headers.location).toMatch(/^\/_gateway\/login/);
  });
});

/** The entries of a ZIP: name → bytes. */
async function unzip(buffer: Buffer): Promise<Map<string, Buffer>> {
  const zip = await yauzl.fromBufferPromise(buffer, { lazyEntries: true });
  const out = new Map<string, Buffer>();
  await new Promise<void>((ok, ko) => {
    zip.on('error', ko);
    zip.on('end', () => ok());
    zip.on('entry', (entry: yauzl.Entry) => {
      zip.openReadStreamPromise(entry).then(async (stream) => {
        const chunks: Buffer[] = [];
        for await (const c of stream) chunks.push(c as Buffer);
        out.set(entry.fileName, Buffer.concat(chunks));
        zip.readEntry();
      }, ko);
    });
    zip.readEntry();
  });
  return out;
}

describe('a download link', () => {
  test('also gives the original files, and the whole study as a ZIP (each file as Orthanc stores it); a view link gives neither', async () => {
    const study = studyOf('PAT-0002'); // bob's MR brain: three series
    const files = generateStudies().filter((i) => i.studyInstanceUID === study);
    const made = await share('admin', { studies: [study], expiresIn: '1h', kind: 'download' });
    const { cookie } = await redeem(made.url);
    const zip = await asVisitor(cookie!, `/pacs/dicom-web/studies/${study}`, { accept: 'application/zip' });
    expect(zip.status).toBe(200);
    expect(zip.headers['content-type']).toBe('application/zip');
    expect(zip.headers['content-disposition']).toBe(`attachment; filename="${study}.zip"`);
    const entries = await unzip(zip.body);
    expect([...entries.keys()].sort()).toEqual(files.map((f) => `${f.seriesInstanceUID}/${f.sopInstanceUID}.dcm`).sort());
    for (const f of files) expect(entries.get(`${f.seriesInstanceUID}/${f.sopInstanceUID}.dcm`)!.equals(f.file)).toBe(true);
    // One series alone.
    const one = files[0]!;
    const series = await unzip((await asVisitor(cookie!, `/pacs/dicom-web/studies/${study}/series/${one.seriesInstanceUID}`, { accept: 'application/zip' })).body);
    expect([...series.keys()].every((k) => k.startsWith(`${one.seriesInstanceUID}/`))).toBe(true);
    expect(series.size).toBe(files.filter((f) => f.seriesInstanceUID === one.seriesInstanceUID).length);
    // Another study, as a ZIP: not there for this visitor.
    expect((await asVisitor(cookie!, `/pacs/dicom-web/studies/${studyOf('PAT-0001')}`, { accept: 'application/zip' })).status).toBe(404);
    // A view link: no originals, zipped or not.
    const view = await share('admin', { studies: [study], expiresIn: '1h', kind: 'view' });
    const viewer = (await redeem(view.url)).cookie!;
    expect((await asVisitor(viewer, `/pacs/dicom-web/studies/${study}`, { accept: 'application/zip' })).status).toBe(403);
  });
});

describe('a contribute link', () => {
  test('stores into the shared study only, from the gateway\'s own pages; a body with a foreign part stores nothing', async () => {
    const [first, second] = generateStudies({ seed: randomUUID(), patients: [{ name: 'CONTRIB^ONE', id: `PAT-C-${randomUUID().slice(0, 6)}`, birthDate: '19900101', sex: 'O', studies: [
      { description: 'CONTRIB', date: '20240101', accessionNumber: 'ACC-C', series: [{ modality: 'CT', description: 'x', slices: 2, rows: 16, columns: 16 }] }] }] });
    await uploadInstances(orthanc, [first!.file]);
    const study = first!.studyInstanceUID;
    const made = await share('admin', { studies: [study], expiresIn: '1h', kind: 'contribute' });
    const { cookie } = await redeem(made.url);
    const count = async () => ((await (await fetch(`${orthanc.url}/dicom-web/studies/${study}/instances`, { headers: { authorization: orthanc.authHeader } })).json()) as unknown[]).length;
    const stow = (files: Buffer[], headers: Record<string, string>) => {
      const { body, contentType } = multipartRelated(files);
      return asVisitor(cookie!, '/pacs/dicom-web/studies', { 'content-type': contentType, ...headers }, 'POST', body);
    };
    // From another site: refused before anything is read.
    const cross = await stow([second!.file], { origin: 'https://evil.example' });
    expect({ status: cross.status, error: json<{ error: string }>(cross).error }).toEqual({ status: 403, error: 'CROSS_ORIGIN' });
    expect(await count()).toBe(1);
    const PUBLIC = 'http://127.0.0.1:8080'; // the gateway's public URL (routesEnv), its pages' origin
    // A part of another study after one of the shared study: refused, and neither is stored.
    const other = instanceOf('PAT-0001');
    const otherFile = generateStudies().find((i) => i.sopInstanceUID === other.sopInstanceUID)!.file;
    const mixed = await stow([second!.file, otherFile], { origin: PUBLIC });
    expect({ status: mixed.status, error: json<{ error: string; message: string }>(mixed).error }).toEqual({ status: 403, error: 'FORBIDDEN' });
    expect(json<{ message: string }>(mixed).message).toMatch(/part 2 /);
    expect(await count()).toBe(1);
    // The shared study's own new instance: stored.
    const ok = await stow([second!.file], { origin: PUBLIC });
    expect(ok.status).toBe(200);
    expect(await count()).toBe(2);
  });
});

describe('a password-protected link', () => {
  const PUBLIC = 'http://127.0.0.1:8080';
  const form = (url: string, password: string, origin = PUBLIC) => {
    const body = `password=${encodeURIComponent(password)}`;
    return request(gw.url, new URL(url).pathname, {
      method: 'POST', body,
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': String(body.length), origin, accept: 'text/html', 'sec-fetch-mode': 'navigate' },
    });
  };
  const shareCookie = (r: Reply) => ([] as string[]).concat(r.headers['set-cookie'] ?? []).find((c) => c.startsWith('pgw_share='));

  test('asks for its password on the gateway\'s page; a wrong one is refused, the right one opens it', async () => {
    const made = await share('admin', { studies: [studyOf('PAT-0003')], expiresIn: '1h', password: 'correct horse battery' });
    expect(made).toMatchObject({ passwordProtected: true });
    expect(JSON.stringify(json(await api('GET', '/_gateway/shares', 'admin')))).not.toMatch(/correct horse|"salt"|"hash"/);
    const first = await redeem(made.url);
    expect(first.reply.status).toBe(200);
    expect(first.cookie).toBeUndefined();
    expect(first.reply.text).toMatch(/<form[^>]+method="post"[^>]+action="\/_gateway\/s\/[A-Za-z0-9_-]{43}"/);
    expect(first.reply.text).toMatch(/type="password"/);
    const wrong = await form(made.url, 'wrong horse battery');
    expect(wrong.status).toBe(401);
    expect(shareCookie(wrong)).toBeUndefined();
    expect(wrong.text).toMatch(/not the right one/);
    const foreign = await form(made.url, 'correct horse battery', 'https://evil.example');
    expect(foreign.status).toBe(403);
    expect(shareCookie(foreign)).toBeUndefined();
    const right = await form(made.url, 'correct horse battery');
    expect(right.status).toBe(303);
    expect(right.headers.location).toBe(`/viewer?StudyInstanceUIDs=${studyOf('PAT-0003')}`);
    expect((await asVisitor(shareCookie(right)!.split(';')[0]!, '/pacs/dicom-web/studies')).status).toBe(200);
    expect(gw.rawLogs()).not.toContain('correct horse');
  });

  test('five wrong passwords lock the link for a while, even for the right one', async () => {
    const made = await share('admin', { studies: [studyOf('PAT-0003')], expiresIn: '1h', password: 'a long passphrase' });
    for (let i = 0; i < 5; i++) expect((await form(made.url, `guess number ${i}`)).status).toBe(401);
    const locked = await form(made.url, 'a long passphrase');
    expect(locked.status).toBe(429);
    expect(Number(locked.headers['retry-after'])).toBeGreaterThan(60);
    expect(locked.text).toMatch(/Too many wrong passwords/);
    expect(shareCookie(locked)).toBeUndefined();
    // Another link is not locked by this one's attempts.
    const other = await share('admin', { studies: [studyOf('PAT-0003')], expiresIn: '1h', password: 'a long passphrase' });
    expect((await form(other.url, 'a long passphrase')).status).toBe(303);
  });

  test('a password shorter than 8 characters is refused when the link is made', async () => {
    const r = await api('POST', '/_gateway/shares', 'admin', { studies: [studyOf('PAT-0003')], expiresIn: '1h', password: 'short' });
    expect({ status: r.status, error: json<{ error: string }>(r).error }).toEqual({ status: 400, error: 'BAD_REQUEST' });
  });
});

describe('making links', () => {
  test('needs the share permission, a known study the maker can read, and a valid request', async () => {
    const carol = studyOf('PAT-0003');
    const alice = studyOf('PAT-0001');
    const cases: Array<[string, string | undefined, unknown, number, string]> = [
      ['no credentials', undefined, { studies: [carol], expiresIn: '1h' }, 401, 'UNAUTHENTICATED'],
      ['a viewer without share', 'alice', { studies: [carol], expiresIn: '1h' }, 403, 'FORBIDDEN'],
      ['a study out of the maker\'s scope (as if missing)', 'nora', { studies: [carol, alice], expiresIn: '1h' }, 404, 'NOT_FOUND'],
      ['a study that is not there', 'admin', { studies: ['1.2.3.4.5.6.7.999'], expiresIn: '1h' }, 404, 'NOT_FOUND'],
      ['a download link from a maker who may only view', 'nora', { studies: [carol], expiresIn: '1h', kind: 'download' }, 403, 'FORBIDDEN'],
      ['no expiry', 'admin', { studies: [carol] }, 400, 'BAD_REQUEST'],
      ['an expiry beyond the maximum', 'admin', { studies: [carol], expiresIn: '31d' }, 400, 'BAD_REQUEST'],
      ['an unreadable expiry', 'admin', { studies: [carol], expiresIn: 'soon' }, 400, 'BAD_REQUEST'],
      ['a bad UID', 'admin', { studies: ['1.2.x'], expiresIn: '1h' }, 400, 'BAD_REQUEST'],
      ['no studies', 'admin', { studies: [], expiresIn: '1h' }, 400, 'BAD_REQUEST'],
      ['an unknown kind', 'admin', { studies: [carol], expiresIn: '1h', kind: 'edit' }, 400, 'BAD_REQUEST'],
      ['an unknown field', 'admin', { studies: [carol], expiresIn: '1h', secret: 'x' }, 400, 'BAD_REQUEST'],
      ['not an object', 'admin', [carol], 400, 'BAD_REQUEST'],
    ];
    for (const [label, as, body, status, error] of cases) {
      const r = await api('POST', '/_gateway/shares', as, body);
      expect({ label, status: r.status, error: json<{ error: string }>(r).error }).toEqual({ label, status, error });
    }
    // The limited sharer's own study works.
    expect((await share('nora', { studies: [carol], expiresIn: 600 })).studies).toEqual([carol]);
  });

  test('a bearer-token caller is not held to the Origin check: no cookie rides along, so no cross-site request can forge it', async () => {
    const r = await api('POST', '/_gateway/shares', 'admin', { studies: [studyOf('PAT-0003')], expiresIn: '1h' }, { origin: 'https://evil.example' });
    expect(r.status).toBe(201);
  });
});

describe('links that end', () => {
  test('an expired link shows the expiry page, and its cookie stops working', async () => {
    const made = await share('admin', { studies: [studyOf('PAT-0003')], expiresIn: 2 });
    const { cookie } = await redeem(made.url);
    expect((await asVisitor(cookie!, '/pacs/dicom-web/studies')).status).toBe(200);
    await new Promise((ok) => setTimeout(ok, 2300));
    const after = await asVisitor(cookie!, '/pacs/dicom-web/studies', { accept: 'application/json' });
    expect(after.status).toBe(410);
    expect(json<{ error: string; message: string }>(after)).toMatchObject({ error: 'SHARE_ENDED', message: expect.stringMatching(/expired/) });
    const page = await redeem(made.url);
    expect(page.reply.status).toBe(410);
    expect(page.reply.headers['content-type']).toMatch(/text\/html/);
    expect(page.reply.text).toMatch(/has expired/);
    expect(page.reply.text).not.toMatch(/<div id="root"|app-config/);
  });

  test('revoked by its maker: the next request of a redeemed browser fails within a second, the link shows the revocation page', async () => {
    const made = await share('admin', { studies: [studyOf('PAT-0003')], expiresIn: '1h' });
    const { cookie } = await redeem(made.url);
    expect((await asVisitor(cookie!, '/pacs/dicom-web/studies')).status).toBe(200);
    // Someone else cannot revoke it (not even see it); its maker can.
    expect((await api('DELETE', `/_gateway/shares/${made.id}`, 'alice')).status).toBe(404);
    const revoked = await api('DELETE', `/_gateway/shares/${made.id}`, 'admin');
    expect(revoked.status).toBe(204);
    const t = Date.now();
    let status = 0;
    while (Date.now() - t < 1000) {
      status = (await asVisitor(cookie!, '/pacs/dicom-web/studies', { accept: 'application/json' })).status;
      if (status === 410) break;
      await new Promise((ok) => setTimeout(ok, 50));
    }
    expect(status).toBe(410);
    const page = await redeem(made.url);
    expect(page.reply.status).toBe(410);
    expect(page.reply.text).toMatch(/revoked/);
    expect((await api('DELETE', `/_gateway/shares/${made.id}`, 'admin')).status).toBe(404);
    const listed = json<{ shares: Made[] }>(await api('GET', '/_gateway/shares', 'admin')).shares;
    expect(listed.find((s) => s.id === made.id)?.state).toBe('revoked');
  });

  test('a one-time link opens once; a tampered link is "not valid"', async () => {
    const made = await share('admin', { studies: [studyOf('PAT-0003')], expiresIn: '1h', oneTime: true });
    expect((await redeem(made.url)).reply.status).toBe(303);
    const second = await redeem(made.url);
    expect(second.reply.status).toBe(410);
    expect(second.reply.text).toMatch(/opened already/);
    expect(second.cookie).toBeUndefined();
    const code = made.url.split('/').pop()!;
    const tampered = `${made.url.slice(0, -code.length)}${code[0] === 'A' ? 'B' : 'A'}${code.slice(1)}`;
    for (const url of [tampered, `${made.url.slice(0, -1)}`, `${made.url}x`]) {
      const r = await redeem(url);
      expect({ url: url.length, status: r.reply.status }).toEqual({ url: url.length, status: 404 });
      expect(r.reply.text).toMatch(/not valid/);
    }
  });

  test('a forged share cookie is refused, never taken for a share', async () => {
    const r = await asVisitor('pgw_share=s%3Aabc.def', '/pacs/dicom-web/studies', { accept: 'application/json' });
    expect(r.status).toBe(404);
    expect(json<{ error: string }>(r).error).toBe('NOT_FOUND');
  });
});
