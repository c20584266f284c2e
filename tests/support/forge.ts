// Forged and tampered tokens for attack tests: each is what an attacker could really send.
import { createHmac, generateKeyPairSync } from 'node:crypto';
import { importJWK, SignJWT, type JWK, type JWTPayload } from 'jose';
import type { TestIdp } from './test-idp.js';

const b64url = (v: unknown): string => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

export function decode(token: string): { header: Record<string, unknown>; payload: JWTPayload } {
  const [h, p] = token.split('.');
  return { header: JSON.parse(Buffer.from(h as string, 'base64url').toString()), payload: JSON.parse(Buffer.from(p as string, 'base64url').toString()) };
}

/** Signs arbitrary claims with the IdP's own private key (for claim-level attacks: nbf, iss, typ…). */
export async function signWithIdpKey(idp: TestIdp, payload: JWTPayload, header: Record<string, unknown> = {}, alg = 'RS256'): Promise<string> {
  const jwk = idp.privateJwks().keys.find((k: JWK) => k.alg === alg) as JWK;
  const key = await importJWK(jwk, alg);
  return new SignJWT(payload).setProtectedHeader({ alg, kid: jwk.kid as string, typ: 'at+jwt', ...header }).sign(key);
}

/** Re-encodes a real token's claims unsigned, with alg "none". */
export function algNone(token: string): string {
  const { header, payload } = decode(token);
  return `${b64url({ ...header, alg: 'none' })}.${b64url(payload)}.`;
}

/** The classic key-confusion attack: HS256 with the IdP's public key (as PEM and as JWK n) for the secret. */
export function hs256WithPublicKey(idp: TestIdp, token: string): string[] {
  const { header, payload } = decode(token);
  const pub = idp.publicJwks().keys.find((k: JWK) => k.kty === 'RSA') as JWK;
  const secrets = [JSON.stringify(pub), pub.n as string];
  return secrets.map((secret) => {
    const head = `${b64url({ ...header, alg: 'HS256' })}.${b64url(payload)}`;
    return `${head}.${createHmac('sha256', secret).update(head).digest('base64url')}`;
  });
}

/** Same claims and kid, signed by a key the IdP never published. */
export async function signWithForeignKey(token: string): Promise<string> {
  const { header, payload } = decode(token);
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return new SignJWT(payload).setProtectedHeader({ alg: 'RS256', kid: header.kid as string, typ: 'at+jwt' }).sign(privateKey);
}
