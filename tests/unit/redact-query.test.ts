// redactQuery (what the access log writes for a query) and withoutAccessToken (what goes upstream),
// table by table.
import { redactQuery, redactText } from '../../proxy/ops/log.js';
import { withoutAccessToken } from '../../proxy/forward/proxy.js';

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
/** Shaped like a real JWS: base64url JSON header and payload, then a signature. */
const JWT = `${b64({ alg: 'RS256', typ: 'JWT', kid: 'k1' })}.${b64({ sub: 'u1', nonce: 'n' })}.${Buffer.from('signature-bytes-here').toString('base64url')}`;
/** A JWE (five parts) and an unsigned JWT (empty signature). */
const JWE = `${b64({ alg: 'RSA-OAEP', enc: 'A256GCM' })}.a2V5.aXY.Y2lwaGVy.dGFn`;
const UNSIGNED = `${b64({ alg: 'none' })}.${b64({ sub: 'u1' })}.`;

describe('redactQuery: credential-like parameter names', () => {
  const NAMES = [
    // OAuth 2.0 / OIDC (RFC 6749, 6750, 7521/7523, 7636, 8628, OIDC logout)
    'access_token', 'refresh_token', 'id_token', 'id_token_hint', 'code', 'state', 'nonce', 'session_state',
    'client_secret', 'client_assertion', 'assertion', 'code_verifier', 'user_code',
    // API keys, share codes, passwords, signatures
    'api_key', 'apikey', 'apiKey', 'API-KEY', 'key', 'x-api-key', 'X-Api-Key', 'private_key', 'share', 'share_code',
    'password', 'passwd', 'db_password', 'sig', 'signature', 'token', 'secret', 'oauth_token', 'accessToken', 'access-token', 'auth.token',
  ];
  test.each(NAMES)('%s', (name) => {
    expect(redactQuery(`${name}=S3cr3t`)).toBe(`${name}=[redacted]`);
  });

  test.each([
    // [query as sent, as logged]: the name is judged decoded, trimmed and in any case; the logged name is as sent.
    ['%69d_token_hint=S3cr3t', '%69d_token_hint=[redacted]'],
    ['id%5Ftoken%5Fhint=S3cr3t', 'id%5Ftoken%5Fhint=[redacted]'],
    ['%61ccess_token=S3cr3t', '%61ccess_token=[redacted]'],
    ['%61%63%63%65%73%73%5F%74%6F%6B%65%6E=S3cr3t', '%61%63%63%65%73%73%5F%74%6F%6B%65%6E=[redacted]'],
    ['ACCESS_TOKEN=S3cr3t', 'ACCESS_TOKEN=[redacted]'],
    ['Id_Token_Hint=S3cr3t', 'Id_Token_Hint=[redacted]'],
    ['Client_Secret=S3cr3t', 'Client_Secret=[redacted]'],
    ['co%64e=S3cr3t', 'co%64e=[redacted]'],
    ['code+=S3cr3t', 'code+=[redacted]'],
    ['+state=S3cr3t', '+state=[redacted]'],
    ['code%20%20=S3cr3t', 'code%20%20=[redacted]'],
    ['%09code=S3cr3t', '%09code=[redacted]'],
  ])('%s → %s', (query, logged) => {
    expect(redactQuery(query)).toBe(logged);
  });

  test.each([
    ['empty value', 'code=', 'code=[redacted]'],
    ['value holding "="', 'client_secret=a=b==', 'client_secret=[redacted]'],
    ['malformed escape in the value', 'password=%ZZ%E0', 'password=[redacted]'],
    ['value that is itself a URL', 'state=https%3A%2F%2Fx%2F%3Fa%3D1', 'state=[redacted]'],
  ])('%s', (_what, query, logged) => {
    expect(redactQuery(query)).toBe(logged);
  });
});

describe('redactQuery: JWTs under any name, or none', () => {
  test.each([
    ['under an innocuous name', `foo=${JWT}`, 'foo=[redacted]'],
    ['as the whole query (no name)', JWT, '[redacted]'],
    ['as a parameter name', `${JWT}=x`, '[redacted]'],
    ['with percent-encoded dots (%2e)', `foo=${JWT.replace(/\./g, '%2e')}`, 'foo=[redacted]'],
    ['with percent-encoded dots (%2E)', `foo=${JWT.replace(/\./g, '%2E')}`, 'foo=[redacted]'],
    ['inside an encoded URL', `next=%2Fcallback%3Ftoken%3D${JWT}`, 'next=[redacted]'],
    ['after a scheme word', `h=Bearer%20${JWT}`, 'h=[redacted]'],
    ['a JWE (five parts)', `blob=${JWE}`, 'blob=[redacted]'],
    ['an unsigned JWT', `u=${UNSIGNED}`, 'u=[redacted]'],
  ])('%s', (_what, query, logged) => {
    expect(redactQuery(query)).toBe(logged);
  });

  test('a realistic logout query: the hint goes, the redirect stays', () => {
    expect(redactQuery(`id_token_hint=${JWT}&post_logout_redirect_uri=http%3A%2F%2F127.0.0.1%3A8080%2F&state=abc123`))
      .toBe('id_token_hint=[redacted]&post_logout_redirect_uri=http%3A%2F%2F127.0.0.1%3A8080%2F&state=[redacted]');
  });
});

describe('redactQuery: what stays readable', () => {
  test.each([
    'PatientName=DOE%5EJOHN*',
    'PatientName=DOE^JOHN*&StudyDate=20240101-20241231&ModalitiesInStudy=CT',
    'includefield=00081030&includefield=0020000D&limit=25&offset=0&fuzzymatching=true',
    'requestType=WADO&studyUID=1.2.840.1&seriesUID=1.2.840.1.2&objectUID=1.2.840.1.2.3&contentType=image%2Fjpeg',
    'post_logout_redirect_uri=http%3A%2F%2F127.0.0.1%3A8080%2F&client_id=ohif&ui_locales=en',
    'response_type=code&scope=openid%20profile&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256',
    'token_type=Bearer&keyword=x&tokens=3&keys=a',
    'x_access_token_type=1&access_token_type=2',
    'foo=eyJhbGciOiJSUzI1NiJ9', // base64url JSON without the dots of a JWS
    'flag&other',
    'code', // a name without a value has nothing to hide
    '%ZZ=1&a=%ZZ', // malformed escapes are kept as sent
    'a=1&&b=2&',
  ])('%s', (query) => {
    expect(redactQuery(query)).toBe(query);
  });

  test('empty query', () => {
    expect(redactQuery('')).toBe('');
  });

  test('only the credential parts change, in place, in order', () => {
    expect(redactQuery(`PatientName=DOE*&code=S1&limit=10&&${JWT}&api_key=S2&offset=5&`))
      .toBe('PatientName=DOE*&code=[redacted]&limit=10&&[redacted]&api_key=[redacted]&offset=5&');
  });
});

describe('withoutAccessToken: what goes upstream', () => {
  test.each([
    ['access_token=S&x=1', 'x=1'],
    ['x=1&access_token=S', 'x=1'],
    ['x=1&access_token=S&y=2', 'x=1&y=2'],
    ['%61ccess_token=S&x=1', 'x=1'],
    ['%61%63%63%65%73%73%5F%74%6F%6B%65%6E=S&x=1', 'x=1'],
    ['access%5Ftoken=S&x=1', 'x=1'],
    ['ACCESS_TOKEN=S&x=1', 'x=1'],
    ['Access_Token=S&x=1', 'x=1'],
    ['access_token+=S&x=1', 'x=1'],
    ['+access_token=S&x=1', 'x=1'],
    ['access_token=a&x=1&access_token=b', 'x=1'],
    ['x=1&access_token&y=2', 'x=1&y=2'],
    ['access_token=', ''],
    ['x=%ZZ&access_token=S', 'x=%ZZ'],
  ])('%s → %s', (query, upstream) => {
    expect(withoutAccessToken(query)).toBe(upstream);
  });

  test.each([
    '', 'x=1', 'PatientName=DOE%5EJOHN*&limit=10', 'x_access_token=1&access_token_type=2&accesstoken=3', '%ZZ=1', 'id_token_hint=S&code=S',
  ])('%s is forwarded unchanged', (query) => {
    expect(withoutAccessToken(query)).toBe(query);
  });
});

describe('redactText: an upstream\'s error text, as logged', () => {
  test.each<[string, string]>([
    ['{"Uri":"/x?access_token=abc&code=def&ok=1"}', '{"Uri":"/x?access_token=[redacted]&code=[redacted]&ok=1"}'],
    ['{"password": "hunter2", "user": "u"}', '{"password": "[redacted]", "user": "u"}'],
    ['Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln rejected', 'Bearer [redacted] rejected'],
    ['state=xyz; PatientID=P1', 'state=[redacted]; PatientID=P1'],
    ['TCP Initialization Error: Connection refused', 'TCP Initialization Error: Connection refused'],
  ])('%s', (text, logged) => {
    expect(redactText(text)).toBe(logged);
  });
});
