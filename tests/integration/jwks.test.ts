// The issuer's key set over time: rotation, floods of unknown kids, IdP outages, late IdP start.
import { signWithIdpKey, decode } from '../support/forge.js';
import { startEchoUpstream, type EchoUpstream } from '../support/echo-upstream.js';
import { startGateway, type RunningGateway } from '../support/gateway.js';
import { request } from '../support/http-client.js';
import { startTestIdp, type TestIdp } from '../support/test-idp.js';

let echo: EchoUpstream;
beforeAll(async () => { echo = await startEchoUpstream(); });
afterAll(async () => { await echo?.stop(); });

const config = (issuer: string, cooldown: string) => `
server: { listen: 127.0.0.1:0, admin: { listen: 127.0.0.1:0 } }
identity:
  issuer: ${issuer}
  audience: pacs
  jwks: { cooldown: ${cooldown}, timeout: 1s }
routes:
  - { name: api, path: /pacs, upstream: ${echo.url}, expose: dicomweb, auth: [bearer], allow: [view] }
`;

const get = (gw: RunningGateway, token: string) => request(gw.url, '/pacs/dicom-web/studies', { headers: { authorization: `Bearer ${token}` } });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(what: string, fn: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}
const ready = async (gw: RunningGateway) => (await request(gw.adminUrl!, '/readyz')).status === 200;
const metric = async (gw: RunningGateway, name: string) => Number(new RegExp(`^${name.replace(/[{}"]/g, '\\$&')} (\\d+)`, 'm').exec((await request(gw.adminUrl!, '/metrics')).text)?.[1] ?? 0);

describe('with a running IdP', () => {
  let idp: TestIdp;
  let gw: RunningGateway;
  beforeAll(async () => {
    idp = await startTestIdp({ algs: ['RS256', 'ES256'] });
    gw = await startGateway(config(idp.issuer, '600ms'));
    await until('ready', () => ready(gw));
  });
  afterAll(async () => { await gw?.stop(); await idp?.stop(); });

  async function burst(tokens: string[]): Promise<Set<number>> {
    const statuses = new Set<number>();
    for (let i = 0; i < tokens.length; i += 100) {
      for (const r of await Promise.all(tokens.slice(i, i + 100).map((t) => get(gw, t)))) statuses.add(r.status);
    }
    return statuses;
  }

  test('a burst of 1000 unknown kids costs at most one key set fetch per cooldown', async () => {
    const real = decode(await idp.issueAccessToken({ realmRoles: ['viewer'] })).payload;
    const tokens = await Promise.all(Array.from({ length: 1000 }, (_, i) => signWithIdpKey(idp, real, { kid: `bogus-${i}` })));
    await sleep(700); // past the cooldown of the last fetch
    const before = idp.jwksFetchCount();
    const started = Date.now();
    expect(await burst(tokens)).toEqual(new Set([401]));
    const fetches = idp.jwksFetchCount() - before;
    expect(fetches).toBeGreaterThanOrEqual(1);
    expect(fetches).toBeLessThanOrEqual(Math.ceil((Date.now() - started) / 600));
  });

  test('the cooldown holds while the IdP is failing, too', async () => {
    const real = decode(await idp.issueAccessToken({ realmRoles: ['viewer'] })).payload;
    const tokens = await Promise.all(Array.from({ length: 300 }, (_, i) => signWithIdpKey(idp, real, { kid: `outage-${i}` })));
    await sleep(700);
    idp.setDown(true);
    try {
      const before = idp.jwksFetchCount();
      const started = Date.now();
      expect(await burst(tokens)).toEqual(new Set([401]));
      // jose alone would refetch for every unknown kid once its last *successful* fetch is older than the cooldown.
      expect(idp.jwksFetchCount() - before).toBeLessThanOrEqual(Math.ceil((Date.now() - started) / 600));
    } finally {
      idp.setDown(false);
    }
  });

  test('key rotation: new keys work without restart, old tokens keep working while their key is published', async () => {
    const oldToken = await idp.issueAccessToken({ realmRoles: ['viewer'] });
    await idp.rotateKeys();
    const newToken = await idp.issueAccessToken({ realmRoles: ['viewer'] });
    expect(decode(newToken).header.kid).not.toBe(decode(oldToken).header.kid);
    await sleep(700);
    expect((await get(gw, newToken)).status).toBe(200);
    expect((await get(gw, oldToken)).status).toBe(200);
    const oldEs = await idp.issueAccessToken({ alg: 'ES256', realmRoles: ['viewer'] });
    expect((await get(gw, oldEs)).status).toBe(200);
  });

  test('IdP down: held keys keep verifying (stale-if-error), and it shows in readiness and metrics', async () => {
    const fresh = await idp.issueAccessToken({ realmRoles: ['viewer'] });
    const real = decode(fresh).payload;
    idp.setDown(true);
    try {
      await sleep(700);
      // An unknown kid forces a refetch, which fails.
      expect((await get(gw, await signWithIdpKey(idp, real, { kid: 'unknown-during-outage' }))).status).toBe(401);
      await until('stale flag', async () => (await metric(gw, 'pacs_gateway_jwks_stale')) === 1);
      expect(await metric(gw, 'pacs_gateway_jwks_fetches_total{result="error"}')).toBeGreaterThanOrEqual(1);
      const r = await request(gw.adminUrl!, '/readyz');
      expect(r.status).toBe(200);
      expect(JSON.parse(r.text).checks.identity.detail).toMatch(/stale/);
      // A token never seen before (not in the verified-token cache) still verifies with the held key.
      expect((await get(gw, fresh)).status).toBe(200);
    } finally {
      idp.setDown(false);
    }
  });
});

test('the gateway starts while the IdP is down, fails closed, and recovers when it comes up', async () => {
  const idp = await startTestIdp({ algs: ['ES256'] });
  idp.setDown(true);
  const gw = await startGateway(config(idp.issuer, '30s'));
  try {
    const token = await idp.issueAccessToken({ realmRoles: ['viewer'] });
    const r = await get(gw, token);
    expect(r.status).toBe(503);
    expect(JSON.parse(r.text)).toMatchObject({ error: 'IDP_UNAVAILABLE' });
    expect((await request(gw.adminUrl!, '/readyz')).status).toBe(503);
    idp.setDown(false);
    await until('ready after the IdP came up', () => ready(gw), 15_000);
    expect((await get(gw, token)).status).toBe(200);
  } finally {
    await gw.stop();
    await idp.stop();
  }
});

test('discovery refuses a document whose issuer is not the configured one (fail closed)', async () => {
  const idp = await startTestIdp({ algs: ['ES256'], issuerPath: '/auth/realms/ohif' });
  // The public issuer uses "localhost"; the gateway itself is told to use 127.0.0.1.
  const publicIssuer = idp.issuer.replace('127.0.0.1', 'localhost');
  const yaml = config(publicIssuer, '30s').replace(`issuer: ${publicIssuer}`, `issuer: ${publicIssuer}\n  internalUrl: ${idp.issuer}`);
  const gw = await startGateway(yaml);
  try {
    // The IdP's documents say 127.0.0.1, so discovery refuses the mismatched issuer: fail closed.
    await sleep(300);
    expect((await request(gw.adminUrl!, '/readyz')).status).toBe(503);
  } finally {
    await gw.stop();
    await idp.stop();
  }
});
