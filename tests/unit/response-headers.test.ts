import { responseHeaderList } from '../../proxy/forward/headers.js';

const raw = (...pairs: string[]) => pairs.map((p) => Buffer.from(p, 'latin1'));
const list = (headers: string[], dropChallenge = false) => responseHeaderList(raw(...headers), { dropChallenge, requestId: 'gw-id' });
/** Every value of one header name in a flat [name, value, …] list. */
const values = (out: string[], name: string) => out.flatMap((v, i) => (i % 2 === 1 && out[i - 1] === name ? [v] : []));

test('hop-by-hop headers and those named in any Connection line are removed; the rest pass in order', () => {
  const out = list(['Content-Type', 'application/json', 'Connection', 'keep-alive, X-A', 'Keep-Alive', 'timeout=5',
    'X-A', 'secret', 'Connection', 'x-b', 'X-B', 'other', 'Transfer-Encoding', 'chunked', 'ETag', '"1"']);
  expect(out).toEqual(['content-type', 'application/json', 'etag', '"1"', 'x-content-type-options', 'nosniff', 'x-request-id', 'gw-id']);
});

test('repeated headers stay separate lines; the upstream request id is replaced by the gateway\'s', () => {
  const out = list(['Set-Cookie', 'a=1', 'Set-Cookie', 'b=2', 'X-Request-Id', 'upstream-id']);
  expect(values(out, 'set-cookie')).toEqual(['a=1', 'b=2']);
  expect(values(out, 'x-request-id')).toEqual(['gw-id']);
});

test('nosniff: kept once when the upstream sends it, added when it does not, re-added when its Connection header named it', () => {
  expect(values(list(['X-Content-Type-Options', 'nosniff']), 'x-content-type-options')).toEqual(['nosniff']);
  expect(values(list([]), 'x-content-type-options')).toEqual(['nosniff']);
  expect(values(list(['Connection', 'X-Content-Type-Options', 'X-Content-Type-Options', 'nosniff']), 'x-content-type-options')).toEqual(['nosniff']);
});

test('the upstream\'s challenge is dropped only when asked (it refused the gateway\'s own credentials)', () => {
  expect(values(list(['WWW-Authenticate', 'Basic realm="orthanc"'], true), 'www-authenticate')).toEqual([]);
  expect(values(list(['WWW-Authenticate', 'Basic realm="orthanc"'], false), 'www-authenticate')).toEqual(['Basic realm="orthanc"']);
});
