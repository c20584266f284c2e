// The request headers an upstream receives: what never passes, whatever a client sends.
import { upstreamCookies, upstreamHeaders } from '../../proxy/forward/headers.js';

const OPTS = { prefix: '/pacs', orthancLinks: false, forwardAuthorization: false, cookies: 'none' as const, upgrade: false };

test('method and path overrides never reach an upstream, even past the request checks', () => {
  const list = upstreamHeaders({
    accept: 'application/json', 'x-http-method-override': 'DELETE', 'x-http-method': 'PUT', 'x-method-override': 'DELETE',
    'x-original-url': '/tools/shutdown', 'x-rewrite-url': '/system', 'x-custom': 'kept',
  }, ['x-forwarded-for', '127.0.0.1'], OPTS);
  const names = list.filter((_v, i) => i % 2 === 0);
  expect(names).toEqual(['accept', 'x-custom', 'x-forwarded-for']);
});

test.each<[string, 'none' | 'all' | ReadonlySet<string>, string | undefined]>([
  ['a=1; pgw_sid=x; b=2', 'none', undefined],
  ['a=1; pgw_sid=x; PGW.y=1; __Host-pgw-z=2; __Secure-PGW_w=3; b=2', 'all', 'a=1; b=2'],
  ['a=1; A=2; b=3; pgw_a=4', new Set(['A', 'b', 'pgw_a']), 'A=2; b=3'],
  ['pgw_sid=x', 'all', undefined],
  ['  a=1 ;;  b=2 ', 'all', 'a=1; b=2'],
])('cookies %j under %p', (cookie, policy, expected) => {
  expect(upstreamCookies(cookie, policy)).toBe(expected);
});
