// A person at a terminal: the device authorization grant (RFC 8628) of the demo IdP, through the
// gateway's /auth as a user would reach it — the CLI asks for a code, the person opens the
// verification page, confirms the code and signs in, the CLI gets a token and calls /pacs with it.
import { readFileSync } from 'node:fs';
import { freeLoopbackPort, startGateway, waitReady, type RunningGateway } from '../support/gateway.js';
import { HttpBrowser, type Step } from '../support/http-browser.js';
import { request } from '../support/http-client.js';
import { startOrthanc, type OrthancHandle } from '../support/orthanc.js';
import { routesEnv } from '../support/stack-env.js';
import { DEMO_USERS, deviceClient, gatewayClient, startTestIdp, type TestIdp } from '../support/test-idp.js';

let orthanc: OrthancHandle;
let idp: TestIdp;
let gw: RunningGateway;
const REALM_PATH = '/auth/realms/pacs';

beforeAll(async () => {
  const publicUrl = `http://127.0.0.1:${await freeLoopbackPort()}`;
  [orthanc, idp] = await Promise.all([startOrthanc(), startTestIdp({
    issuerUrl: `${publicUrl}${REALM_PATH}`, algs: ['RS256'], users: DEMO_USERS,
    clients: { 'pacs-cli': deviceClient(), 'pacs-gateway': gatewayClient(publicUrl) },
  })]);
  gw = await startGateway(readFileSync(new URL('../../routes.yaml', import.meta.url), 'utf8'),
    routesEnv({ listen: new URL(publicUrl).host, publicUrl, adminListen: '127.0.0.1:0', orthanc, idp }));
  await waitReady(gw);
}, 60_000);

afterAll(async () => {
  await gw?.stop();
  await Promise.all([orthanc?.stop(), idp?.stop()]);
});

/** Submits the first form of a page with its hidden fields (and `extra`), following redirects. */
async function submitForm(b: HttpBrowser, page: Step, extra: Record<string, string> = {}): Promise<Step[]> {
  const form = /<form[^>]*action="([^"]*)"[^>]*>([\s\S]*?)<\/form>/i.exec(page.text);
  if (!form) throw new Error(`no form at ${page.url}: ${page.text.slice(0, 300)}`);
  const fields = new URLSearchParams();
  for (const m of form[2]!.matchAll(/<input[^>]*>/gi)) {
    const name = /name="([^"]+)"/.exec(m[0])?.[1];
    const value = /value="([^"]*)"/.exec(m[0])?.[1] ?? '';
    if (name && /type="hidden"/i.test(m[0])) fields.set(name, value.replace(/&amp;/g, '&'));
  }
  for (const [k, v] of Object.entries(extra)) fields.set(k, v);
  const steps: Step[] = [];
  let step = await b.request(new URL(form[1]!.replace(/&amp;/g, '&'), page.url).href, {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', origin: new URL(page.url).origin }, body: fields.toString(),
  });
  steps.push(step);
  while (step.location && step.status >= 300 && step.status < 400) {
    step = await b.request(new URL(step.location, step.url).href);
    steps.push(step);
  }
  return steps;
}

test('device code → the person confirms and signs in through /auth → the terminal\'s token reads /pacs', async () => {
  const device = await fetch(`${idp.issuer}/protocol/openid-connect/auth/device`, {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'client_id=pacs-cli&scope=openid',
  });
  expect(device.status).toBe(200);
  const codes = await device.json() as { device_code: string; user_code: string; verification_uri: string; verification_uri_complete: string; interval: number };
  expect(codes.verification_uri).toBe(`${gw.url}${REALM_PATH}/device`);
  const poll = () => fetch(idp.tokenEndpoint, {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:device_code', device_code: codes.device_code, client_id: 'pacs-cli' }).toString(),
  });
  const pending = await poll();
  expect(pending.status).toBe(400);
  expect(((await pending.json()) as { error: string }).error).toBe('authorization_pending');

  // The person, in a browser: the verification page (code filled in), confirm, sign in.
  const b = new HttpBrowser();
  const steps = await b.follow(codes.verification_uri_complete);
  const confirm = steps[steps.length - 1]!;
  expect(confirm.status).toBe(200);
  let after = await submitForm(b, confirm, { confirm: 'yes' });
  let last = after[after.length - 1]!;
  if (/name="username"/.test(last.text)) {
    after = await b.submitLogin(last, 'alice', 'alice');
    last = after[after.length - 1]!;
  }
  expect(last.status).toBe(200);

  const granted = await poll();
  expect(granted.status).toBe(200);
  const { access_token: token } = await granted.json() as { access_token: string };
  const studies = await request(gw.url, '/pacs/dicom-web/studies', { headers: { authorization: `Bearer ${token}`, accept: 'application/dicom+json' } });
  expect(studies.status).toBe(200);
  // alice's roles, as with her browser login: no /pacs-admin.
  expect((await request(gw.url, '/pacs-admin/system', { headers: { authorization: `Bearer ${token}`, accept: 'application/json' } })).status).toBe(403);
});
