// The gateway's own HTML pages: every template renders, escapes every value, and is served (with its
// stylesheet) under the strict page headers by a real node:http server.
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { loadPages, PAGE_CSP, type PageName, type PageVars, type Pages } from '../../proxy/endpoints/pages.js';

const PAGES_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../static/pages');
const STRICT_CSP = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";
const HOSTILE = `<script>alert("x")</script>'`;
const HOSTILE_ESCAPED = '&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&#39;';

/** Each page with every variable it shows, set to a recognisable value. */
const FULL: Record<PageName, PageVars> = {
  error: { title: 'Upstream unavailable', requestId: 'req-1', status: '502', reason: 'Orthanc did not answer' },
  'login-error': { title: 'Sign-in failed', requestId: 'req-2', reason: 'the state did not match', retryUrl: '/_gateway/login?next=%2F' },
  forbidden: {
    title: 'Forbidden', requestId: 'req-3', username: 'alice', reason: 'uploading studies needs the "upload" permission',
    roles: ['viewer', 'reader'], logoutUrl: '/_gateway/logout', csrf: 'csrf-token-3',
  },
  'no-role': { title: 'No access', requestId: 'req-4', username: 'carol', logoutUrl: '/_gateway/logout', csrf: 'csrf-token-4' },
  'logged-out': { title: 'Signed out', requestId: 'req-5', loginUrl: '/_gateway/login' },
  'share-ended': { title: 'Share link expired', requestId: 'req-6', status: '410', reason: 'This share link has expired.' },
  'share-password': { title: 'Password needed', requestId: 'req-7', action: '/_gateway/s/abc', reason: 'That password is not the right one.' },
};
const NAMES = Object.keys(FULL) as PageName[];

let pages: Pages;
beforeAll(() => { pages = loadPages(); });

/** Leftovers of a template or of a JavaScript value: none may reach a page. */
function expectClean(html: string): void {
  expect(html).not.toMatch(/undefined|null|NaN|\[object /);
  expect(html).not.toContain('{{');
  expect(html).not.toContain('}}');
}

describe('render', () => {
  test.each(NAMES)('%s: a whole document in the layout, with its values and the request id', (name) => {
    const vars = FULL[name];
    const html = pages.render(name, vars);
    expect(html.startsWith('<!doctype html>')).toBe(true);
    expect(html).toContain('<html lang="en">');
    expect(html).toContain('<meta charset="utf-8">');
    expect(html).toContain('<meta name="viewport"');
    expect(html).toContain(`<title>${vars.title}</title>`);
    expect(html).toContain('PACS gateway');
    expect(html).toContain(`request id: ${vars.requestId}`);
    expect(html).toMatch(/<link rel="stylesheet" href="\/_gateway\/static\/gateway\.css\?v=[\w-]+">/);
    for (const [key, value] of Object.entries(vars)) {
      const shown = Array.isArray(value) ? value.join(', ') : String(value);
      expect({ key, shown: html.includes(shown.replace(/"/g, '&quot;')) }).toEqual({ key, shown: true });
    }
    expectClean(html);
  });

  test('the page-specific parts: status, retry link, sign-out forms, sign-in link', () => {
    expect(pages.render('error', FULL.error)).toMatch(/502[\s\S]*<h1>Upstream unavailable<\/h1>[\s\S]*Orthanc did not answer/);
    expect(pages.render('login-error', FULL['login-error'])).toMatch(/<a [^>]*href="\/_gateway\/login\?next=%2F"[^>]*>Try again<\/a>/);
    for (const name of ['forbidden', 'no-role'] as const) {
      const html = pages.render(name, FULL[name]);
      expect(html).toMatch(/<form [^>]*method="post" action="\/_gateway\/logout">/);
      expect(html).toContain(`<input type="hidden" name="csrf" value="${FULL[name].csrf as string}">`);
      expect(html).toMatch(/<button type="submit">Sign out<\/button>/);
      expect(html).toContain(`<strong>${FULL[name].username as string}</strong>`);
    }
    expect(pages.render('no-role', FULL['no-role'])).toMatch(/administrator/);
    expect(pages.render('logged-out', FULL['logged-out'])).toMatch(/<a [^>]*href="\/_gateway\/login"[^>]*>Sign in again<\/a>/);
  });

  test('roles: a comma list, or "no roles" when there are none', () => {
    const base = FULL.forbidden;
    expect(pages.render('forbidden', base)).toContain('viewer, reader');
    expect(pages.render('forbidden', base)).not.toContain('no roles');
    for (const roles of [[], undefined, '']) {
      const html = pages.render('forbidden', { ...base, roles });
      expect(html).toContain('Your roles: no roles.');
      expectClean(html);
    }
  });

  test.each(NAMES)('%s: with only a title and a request id, nothing is left over', (name) => {
    expectClean(pages.render(name, { title: 'T', requestId: 'r' }));
  });

  test.each(NAMES)('%s: a hostile value is escaped in every position', (name) => {
    for (const key of Object.keys(FULL[name])) {
      const value = Array.isArray(FULL[name][key]) ? ['viewer', HOSTILE] : HOSTILE;
      const html = pages.render(name, { ...FULL[name], [key]: value });
      expect({ key, raw: html.includes('<script') || html.includes(`"x"`) }).toEqual({ key, raw: false });
      expect({ key, escaped: html.includes(HOSTILE_ESCAPED) }).toEqual({ key, escaped: true });
      // A quote cannot end an attribute: every attribute value is still one quoted token.
      expect(html).not.toMatch(/=["'][^"'<>]*["'][^\s>/]/);
    }
  });

  test('a value that looks like a tag is shown as text, not read as one', () => {
    const html = pages.render('error', { ...FULL.error, reason: '{{{body}}} {{title}}' });
    expect(html).toContain('{{{body}}} {{title}}');
    expect(html.match(/<h1>/g)).toHaveLength(1);
  });

  test.each(NAMES)('%s: no inline style or script anywhere (the CSP would block them)', (name) => {
    const html = pages.render(name, FULL[name]);
    expect(html).not.toMatch(/<style|\sstyle\s*=|<script|\son[a-z]+\s*=|javascript:/i);
  });
});

describe('loading', () => {
  const dirs: string[] = [];
  const copy = (): string => {
    const dir = mkdtempSync(path.join(tmpdir(), 'pgw-pages-'));
    dirs.push(dir);
    cpSync(PAGES_DIR, dir, { recursive: true });
    return dir;
  };
  afterAll(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

  test('a missing directory throws naming the first file it needs', () => {
    const missing = path.join(tmpdir(), 'pgw-no-such-pages-dir');
    expect(() => loadPages(missing)).toThrow(path.join(missing, 'layout.html'));
  });

  test.each(['forbidden.html', 'gateway.css'])('a missing %s throws naming it', (file) => {
    const dir = copy();
    rmSync(path.join(dir, file));
    expect(() => loadPages(dir)).toThrow(path.join(dir, file));
  });

  test('templates are read once: rendering goes on after the files are gone', () => {
    const dir = copy();
    const loaded = loadPages(dir);
    rmSync(dir, { recursive: true, force: true });
    expect(loaded.render('logged-out', FULL['logged-out'])).toContain('Sign in again');
  });

  test.each([
    ['error.html', '<p>{{{reason}}}</p>', 'unescaped'],
    ['error.html', '<p>{{#reason}}x</p>', 'never closed'],
    ['error.html', '<p>{{reason}</p>', 'malformed'],
    ['error.html', '<p>{{{reason}}</p>', 'unbalanced'],
    ['error.html', '<p>{{/reason}}</p>', 'closes nothing'],
    ['layout.html', '<html><body></body></html>', 'no {{{body}}}'],
  ])('a broken %s (%s) is a start-up error naming it', (file, text, message) => {
    const dir = copy();
    writeFileSync(path.join(dir, file), text);
    expect(() => loadPages(dir)).toThrow(file);
    expect(() => loadPages(dir)).toThrow(message);
  });
});

describe('over HTTP', () => {
  let server: Server;
  let base: string;
  beforeAll(async () => {
    server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      if (url.pathname === '/page') {
        pages.send(res, 403, 'forbidden', FULL.forbidden, { 'X-Extra': 'yes', 'Content-Security-Policy': "default-src *" });
        return;
      }
      if (url.pathname === '/error') {
        pages.send(res, 502, 'error', { title: 'Upstream unavailable', requestId: 'req-e', reason: 'down' });
        return;
      }
      if (!pages.serveAsset(req, res, url.pathname)) {
        res.statusCode = 404;
        res.end('not an asset');
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  test('send: the status, the page, and exactly the strict headers', async () => {
    const res = await fetch(`${base}/page`);
    const body = await res.text();
    expect(res.status).toBe(403);
    expect(body).toBe(pages.render('forbidden', { status: '403', ...FULL.forbidden }));
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(res.headers.get('content-security-policy')).toBe(STRICT_CSP);
    expect(PAGE_CSP).toBe(STRICT_CSP);
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('referrer-policy')).toBe('no-referrer');
    expect(res.headers.get('x-frame-options')).toBe('DENY');
    expect(res.headers.get('x-request-id')).toBe('req-3');
    expect(res.headers.get('content-length')).toBe(String(Buffer.byteLength(body)));
    // Extra headers pass, but cannot replace the security ones.
    expect(res.headers.get('x-extra')).toBe('yes');
  });

  test('send: the status becomes the error page\'s {{status}}', async () => {
    const res = await fetch(`${base}/error`);
    expect(res.status).toBe(502);
    expect(await res.text()).toMatch(/Error 502[\s\S]*Upstream unavailable[\s\S]*request id: req-e/);
  });

  test('send: HEAD gets the headers and the length, no body', async () => {
    const get = await fetch(`${base}/page`);
    const length = get.headers.get('content-length');
    await get.text();
    const head = await fetch(`${base}/page`, { method: 'HEAD' });
    expect(head.status).toBe(403);
    expect(head.headers.get('content-length')).toBe(length);
    expect(head.headers.get('content-security-policy')).toBe(STRICT_CSP);
    expect(await head.text()).toBe('');
  });

  test('the page\'s stylesheet link is served: text/css, ETag, cached for good at its versioned URL', async () => {
    const href = /<link rel="stylesheet" href="([^"]+)">/.exec(await (await fetch(`${base}/page`)).text())?.[1];
    expect(href).toMatch(/^\/_gateway\/static\/gateway\.css\?v=/);
    const res = await fetch(`${base}${href as string}`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/css; charset=utf-8');
    expect(res.headers.get('etag')).toMatch(/^"[\w-]+"$/);
    expect(res.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(await res.text()).toBe(readFileSync(path.join(PAGES_DIR, 'gateway.css'), 'utf8'));
  });

  test('the stylesheet: 304 on If-None-Match (strong, weak, in a list); HEAD has no body', async () => {
    const first = await fetch(`${base}/_gateway/static/gateway.css`);
    const etag = first.headers.get('etag') as string;
    const length = first.headers.get('content-length');
    await first.text();
    for (const inm of [etag, `W/${etag}`, `"other", ${etag}`, '*']) {
      const res = await fetch(`${base}/_gateway/static/gateway.css`, { headers: { 'If-None-Match': inm } });
      expect({ inm, status: res.status }).toEqual({ inm, status: 304 });
      expect(res.headers.get('etag')).toBe(etag);
      expect(await res.text()).toBe('');
    }
    const stale = await fetch(`${base}/_gateway/static/gateway.css`, { headers: { 'If-None-Match': '"other"' } });
    expect(stale.status).toBe(200);
    await stale.text();
    const head = await fetch(`${base}/_gateway/static/gateway.css`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe(length);
    expect(await head.text()).toBe('');
  });

  test('the stylesheet without the current version revalidates instead of being cached for good', async () => {
    for (const q of ['', '?v=old']) {
      const res = await fetch(`${base}/_gateway/static/gateway.css${q}`);
      expect(res.status).toBe(200);
      expect(res.headers.get('cache-control')).toBe('no-cache');
      await res.text();
    }
  });

  test('serveAsset: other methods get 405; other paths are not its business', async () => {
    const post = await fetch(`${base}/_gateway/static/gateway.css`, { method: 'POST', body: 'x' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
    await post.text();
    for (const p of ['/_gateway/static/other.css', '/_gateway/static/gateway.css/', '/gateway.css', '/_gateway/static/']) {
      const res = await fetch(`${base}${p}`);
      expect({ p, status: res.status, body: await res.text() }).toEqual({ p, status: 404, body: 'not an asset' });
    }
  });
});
