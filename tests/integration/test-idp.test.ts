// Checks the test OpenID Provider (tests/support/test-idp.ts): real tokens from oidc-provider,
// verifiable through its published JWKS, Keycloak-shaped, with key rotation and outage simulation.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createRemoteJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose';

import { startTestIdp, type TestIdp } from '../support/test-idp.js';

/** A fresh key-set client with no cooldown, so every unknown kid triggers a refetch. */
function remoteJwks(idp: TestIdp) {
  return createRemoteJWKSet(new URL(idp.jwksUri), { cooldownDuration: 0, cacheMaxAge: 0, timeoutDuration: 2000 });
}

describe('test IdP (oidc-provider)', () => {
  let idp: TestIdp;

  beforeAll(async () => {
    idp = await startTestIdp({ issuerPath: '/auth/realms/ohif', accessTokenTtl: 300 });
  });

  afterAll(async () => {
    await idp?.stop();
  });

  it('serves a discovery document whose issuer matches, on 127.0.0.1', async () => {
    expect(idp.issuer).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/auth\/realms\/ohif$/);
    const res = await fetch(idp.discoveryUrl);
    expect(res.status).toBe(200);
    const doc = (await res.json()) as Record<string, unknown>;
    expect(doc.issuer).toBe(idp.issuer);
    expect(doc.jwks_uri).toBe(idp.jwksUri);
    expect(doc.token_endpoint).toBe(idp.tokenEndpoint);
    expect(doc.authorization_endpoint).toBe(idp.authorizationEndpoint);
    expect(idp.discoveryFetchCount()).toBeGreaterThanOrEqual(1);
  });

  it('issues a real access token that verifies against the remote JWKS, with Keycloak-shaped claims', async () => {
    const token = await idp.issueAccessToken({
      sub: 'user-1',
      username: 'alice',
      realmRoles: ['radiologist', 'offline_access'],
      clientRoles: { 'pacs-gateway': ['read'] },
      email: 'alice@example.org',
    });
    const { payload, protectedHeader } = await jwtVerify(token, remoteJwks(idp), {
      issuer: idp.issuer,
      audience: idp.defaultAudience,
      typ: 'at+jwt',
    });
    expect(protectedHeader.alg).toBe(idp.algs[0]);
    expect(protectedHeader.kid).toBe(idp.currentKids()[idp.algs[0]!]);
    expect(payload.sub).toBe('user-1');
    expect(payload.preferred_username).toBe('alice');
    expect(payload.realm_access).toEqual({ roles: ['radiologist', 'offline_access'] });
    expect(payload.resource_access).toEqual({ 'pacs-gateway': { roles: ['read'] } });
    expect(payload.azp).toBe(idp.defaultClientId);
    expect(payload.client_id).toBe(idp.defaultClientId);
    expect(payload.typ).toBe('Bearer');
    expect(payload.email).toBe('alice@example.org');
    expect(payload.scope).toBe('openid profile email');
    expect(payload.exp! - payload.iat!).toBe(300);
  });

  it.each(['RS256', 'ES256', 'PS256'] as const)('signs access tokens with %s on request', async (alg) => {
    const token = await idp.issueAccessToken({ alg, username: `u-${alg}` });
    const { protectedHeader, payload } = await jwtVerify(token, remoteJwks(idp), {
      issuer: idp.issuer,
      algorithms: [alg],
    });
    expect(protectedHeader.alg).toBe(alg);
    expect(protectedHeader.typ).toBe('at+jwt');
    expect(payload.preferred_username).toBe(`u-${alg}`);
  });

  it('lets the test pick audience, client, lifetime, scope and the Keycloak header profile', async () => {
    const token = await idp.issueAccessToken({
      audience: ['https://pacs.example/', 'account'],
      clientId: 'other-client',
      ttl: 60,
      scope: 'openid profile pacs.read',
      style: 'keycloak',
    });
    const { payload, protectedHeader } = await jwtVerify(token, remoteJwks(idp), { issuer: idp.issuer });
    expect(protectedHeader.typ).toBe('JWT');
    expect(payload.aud).toEqual(['https://pacs.example/', 'account']);
    expect(payload.azp).toBe('other-client');
    expect(payload.client_id).toBeUndefined();
    expect(payload.exp! - payload.iat!).toBe(60);
    expect(payload.scope).toBe('openid profile pacs.read');
  });

  it('issues a service-account token through client_credentials', async () => {
    const token = await idp.issueAccessToken({ grant: 'client_credentials', clientId: 'svc', realmRoles: ['admin'] });
    const { payload, protectedHeader } = await jwtVerify(token, remoteJwks(idp), {
      issuer: idp.issuer,
      audience: idp.defaultAudience,
      typ: 'at+jwt',
    });
    expect(protectedHeader.typ).toBe('at+jwt');
    expect(payload.sub).toBe('svc');
    expect(payload.azp).toBe('svc');
    expect(payload.preferred_username).toBe('service-account-svc');
    expect(payload.realm_access).toEqual({ roles: ['admin'] });
  });

  it('issues a real expired token on request (timeShift)', async () => {
    const token = await idp.issueAccessToken({ timeShift: -3600 });
    await expect(jwtVerify(token, remoteJwks(idp), { issuer: idp.issuer })).rejects.toMatchObject({
      code: 'ERR_JWT_EXPIRED',
    });
  });

  it('issues ID tokens (aud = client) and opaque refresh tokens that redeem', async () => {
    const set = await idp.issueTokens({ sub: 'user-2', username: 'bob', alg: 'ES256' });
    expect(set.token_type).toBe('Bearer');
    const { payload, protectedHeader } = await jwtVerify(set.id_token!, remoteJwks(idp), {
      issuer: idp.issuer,
      audience: idp.defaultClientId,
    });
    expect(protectedHeader.alg).toBe('ES256');
    expect(protectedHeader.typ).not.toBe('at+jwt');
    expect(payload.sub).toBe('user-2');
    expect(payload.preferred_username).toBe('bob');
    expect(payload.typ).toBe('ID'); // Keycloak's ID token marker
    expect(payload.azp).toBe(idp.defaultClientId);
    expect(payload.realm_access).toBeUndefined();
    expect(typeof payload.nonce).toBe('string');

    expect(set.refresh_token).toBeDefined();
    expect(set.refresh_token!.split('.')).toHaveLength(1); // opaque, not a JWT
    const refreshed = await idp.refresh(set.refresh_token!);
    const again = decodeJwt(refreshed.access_token);
    expect(again.sub).toBe('user-2');
    expect(again.preferred_username).toBe('bob');
    expect(decodeProtectedHeader(refreshed.access_token).alg).toBe('ES256');
  });

  it('rotates keys: new kid first, old tokens still verify; dropOldKeys retires them', async () => {
    const oldToken = await idp.issueAccessToken({ username: 'before-rotation' });
    const oldKid = decodeProtectedHeader(oldToken).kid;
    const beforeKids = idp.currentKids();

    await idp.rotateKeys();

    const newToken = await idp.issueAccessToken({ username: 'after-rotation' });
    const newKid = decodeProtectedHeader(newToken).kid;
    expect(newKid).not.toBe(oldKid);
    expect(newKid).toBe(idp.currentKids()[idp.algs[0]!]);
    for (const alg of idp.algs) expect(idp.currentKids()[alg]).not.toBe(beforeKids[alg]);

    const published = ((await (await fetch(idp.jwksUri)).json()) as { keys: { kid: string }[] }).keys.map((k) => k.kid);
    expect(published[0]).toBe(newKid);
    expect(published).toContain(oldKid);

    const jwks = remoteJwks(idp);
    await expect(jwtVerify(newToken, jwks, { issuer: idp.issuer })).resolves.toBeDefined();
    await expect(jwtVerify(oldToken, jwks, { issuer: idp.issuer })).resolves.toBeDefined();

    await idp.dropOldKeys();
    await expect(jwtVerify(oldToken, remoteJwks(idp), { issuer: idp.issuer })).rejects.toMatchObject({
      code: 'ERR_JWKS_NO_MATCHING_KEY',
    });
    await expect(jwtVerify(newToken, remoteJwks(idp), { issuer: idp.issuer })).resolves.toBeDefined();
  });

  it('counts JWKS fetches', async () => {
    idp.resetCounters();
    const token = await idp.issueAccessToken({});
    expect(idp.jwksFetchCount()).toBe(0); // issuing does not touch the JWKS endpoint
    const jwks = createRemoteJWKSet(new URL(idp.jwksUri)); // default caching
    await jwtVerify(token, jwks);
    expect(idp.jwksFetchCount()).toBe(1);
    await jwtVerify(token, jwks); // cached
    expect(idp.jwksFetchCount()).toBe(1);
    await jwtVerify(token, remoteJwks(idp));
    expect(idp.jwksFetchCount()).toBe(2);
  });

  it('setDown makes JWKS fetches fail (reset and 503) while issuing keeps working', async () => {
    const token = await idp.issueAccessToken({});
    try {
      idp.setDown(true);
      const before = idp.jwksFetchCount();
      await expect(jwtVerify(token, remoteJwks(idp))).rejects.toThrow();
      expect(idp.jwksFetchCount()).toBe(before + 1);
      await expect(fetch(idp.discoveryUrl)).rejects.toThrow();

      // issue*() bypasses the outage
      const during = await idp.issueAccessToken({ username: 'during-outage' });
      expect(decodeJwt(during).preferred_username).toBe('during-outage');

      idp.setDown(true, '503');
      const res = await fetch(idp.jwksUri);
      expect(res.status).toBe(503);
      await res.arrayBuffer();
      await expect(jwtVerify(token, remoteJwks(idp))).rejects.toThrow();
    } finally {
      idp.setDown(false);
    }
    await expect(jwtVerify(token, remoteJwks(idp))).resolves.toBeDefined();
  });

  it('exposes the private signing keys (for forging attack tokens)', () => {
    const { keys } = idp.privateJwks();
    expect(keys.length).toBe(idp.algs.length);
    for (const k of keys) expect(k.d).toBeDefined();
    for (const k of idp.publicJwks().keys) expect(k.d).toBeUndefined();
  });
});

describe('test IdP with issuer at the origin root', () => {
  it('works with the default issuerPath and a single ES256 key', async () => {
    const idp = await startTestIdp({ algs: ['ES256'] });
    try {
      expect(idp.issuer).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      const doc = (await (await fetch(idp.discoveryUrl)).json()) as { issuer: string };
      expect(doc.issuer).toBe(idp.issuer);
      const token = await idp.issueAccessToken({ realmRoles: ['r'] });
      const { protectedHeader, payload } = await jwtVerify(token, remoteJwks(idp), {
        issuer: idp.issuer,
        audience: 'pacs',
        typ: 'at+jwt',
      });
      expect(protectedHeader.alg).toBe('ES256');
      expect(payload.realm_access).toEqual({ roles: ['r'] });
      await expect(idp.issueAccessToken({ alg: 'RS256' })).rejects.toThrow(/no key for alg RS256/);
    } finally {
      await idp.stop();
    }
  });
});
