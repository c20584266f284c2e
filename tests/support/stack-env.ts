// The environment the shipped routes.yaml reads, for a gateway in front of a test Orthanc and IdP.
import { randomBytes } from 'node:crypto';
import type { OrthancHandle } from './orthanc.js';
import type { TestIdp } from './test-idp.js';

export function routesEnv(o: { listen: string; publicUrl: string; adminListen: string; orthanc: OrthancHandle; idp: TestIdp }): Record<string, string> {
  return {
    GATEWAY_LISTEN: o.listen,
    PUBLIC_URL: o.publicUrl,
    GATEWAY_ADMIN_LISTEN: o.adminListen,
    ORTHANC_URL: o.orthanc.url,
    ORTHANC_USER: o.orthanc.username,
    ORTHANC_PASSWORD: o.orthanc.password,
    OIDC_ISSUER: o.idp.issuer,
    OIDC_INTERNAL_URL: o.idp.internalUrl,
    OIDC_UPSTREAM: new URL(o.idp.internalUrl).origin,
    // The test IdP shares one secret among its confidential clients (the gateway's client: gatewayClient()).
    OIDC_CLIENT_SECRET: o.idp.clientSecret,
    SESSION_SECRET: randomBytes(32).toString('base64url'),
  };
}
