// Where a browser may be sent after login: a same-origin relative path and nothing that a browser
// or a later decoder could turn into another origin (//evil, /\evil, schemes, encoded slashes).

const BASE = 'http://gateway.invalid';
// One leading slash, then printable ASCII only: no spaces, tabs, newlines or backslashes anywhere.
const PLAIN_PATH = /^\/(?![/\\])[\x21-\x5b\x5d-\x7e]*$/;
// Percent-encoded slash, backslash or control characters: harmless to us, but a redirect target
// that is decoded again downstream could become //evil.
const ENCODED_TRICKS = /%(?:2f|5c|[01][0-9a-f]|7f)/i;
// Dot segments, plain or encoded: URL resolution removes them, and `/.//evil` or `/x/..//evil`
// would come out as the protocol-relative `//evil`.
const DOT_SEGMENT = /(?:^|\/)(?:\.|%2e){1,2}(?:\/|\?|#|$)/i;

export function safeReturnPath(raw: unknown, fallback = '/'): string {
  if (typeof raw !== 'string' || raw.length === 0 || raw.length > 2048) return fallback;
  if (!PLAIN_PATH.test(raw) || ENCODED_TRICKS.test(raw) || DOT_SEGMENT.test(raw.split('?')[0] as string)) return fallback;
  let url: URL;
  try {
    url = new URL(raw, BASE);
  } catch {
    return fallback;
  }
  // Whatever the checks above missed: the result must still be a path on this origin, not //host.
  if (url.origin !== BASE || /^\/[/\\]/.test(url.pathname)) return fallback;
  // Never back into the gateway's own login machinery (a loop), and never a fragment.
  if (url.pathname.startsWith('/_gateway/')) return fallback;
  return `${url.pathname}${url.search}`;
}
