// The gateway's own HTML pages (errors, sign-in outcomes): templates from static/pages/, parsed once
// at start-up, sent under a CSP that allows nothing but the gateway's stylesheet.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export type PageName = 'error' | 'login-error' | 'forbidden' | 'no-role' | 'logged-out' | 'share-ended' | 'share-password';
export interface PageVars { title: string; requestId: string; [k: string]: string | readonly string[] | undefined }

export interface Pages {
  /** The full HTML document: the page's body inside layout.html. */
  render(name: PageName, vars: PageVars): string;
  /** Sends a page with the strict page headers. `status` is also the page's {{status}} unless vars set it. */
  send(res: ServerResponse, status: number, name: PageName, vars: PageVars, extraHeaders?: Record<string, string>): void;
  /** Answers GET/HEAD /_gateway/static/gateway.css (long cache with an ETag, text/css); returns false for any other path. */
  serveAsset(req: IncomingMessage, res: ServerResponse, path: string): boolean;
}

/** The pages have no script at all, and load nothing but the stylesheet. */
export const PAGE_CSP = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";
export const STYLESHEET_PATH = '/_gateway/static/gateway.css';

const PAGE_NAMES: readonly PageName[] = ['error', 'login-error', 'forbidden', 'no-role', 'logged-out', 'share-ended', 'share-password'];
const STYLESHEET_FILE = 'gateway.css';
// Pages are no-store, so a page always links the current ?v=: that URL may be cached for good.
// A request without it (or with an old one) revalidates with the ETag instead.
const CACHE_VERSIONED = 'public, max-age=31536000, immutable';
const CACHE_UNVERSIONED = 'no-cache';

// A local copy rather than errors.ts's: errors.ts is meant to render its HTML through this module,
// and importing back from it would make an import cycle.
const HTML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
const escapeHtml = (s: string): string => s.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c] ?? c);

type Node =
  | { readonly t: 'text'; readonly s: string }
  | { readonly t: 'var'; readonly name: string }
  | { readonly t: 'raw'; readonly name: string }
  | { readonly t: 'if' | 'unless'; readonly name: string; readonly body: readonly Node[] };

type Values = Readonly<Record<string, string | readonly string[] | undefined>>;

// {{name}}, {{{name}}}, {{#name}}, {{^name}}, {{/name}}.
const TAG = /\{\{(\{?)\s*([#^/]?)\s*([A-Za-z][\w-]*)\s*\}\}(\}?)/g;

/** Parses one template; every mistake is a start-up error naming the file, never a broken page later. */
function parse(source: string, file: string, rawAllowed: readonly string[]): Node[] {
  const root: Node[] = [];
  const stack: { name: string; nodes: Node[] }[] = [];
  let nodes = root;
  let last = 0;
  const text = (s: string): void => {
    // A "{{" the tag pattern did not take is a typo that would otherwise reach the browser verbatim.
    if (s.includes('{{')) throw new Error(`page template ${file}: malformed tag near "${s.slice(s.indexOf('{{'), s.indexOf('{{') + 30)}"`);
    if (s) nodes.push({ t: 'text', s });
  };
  for (const m of source.matchAll(TAG)) {
    text(source.slice(last, m.index));
    last = m.index + m[0].length;
    const [tag, open = '', kind = '', name = '', close = ''] = m;
    if (!open !== !close) throw new Error(`page template ${file}: unbalanced braces in ${tag}`);
    if (open) {
      if (kind || !rawAllowed.includes(name)) throw new Error(`page template ${file}: unescaped ${tag} is not allowed here`);
      nodes.push({ t: 'raw', name });
    } else if (kind === '#' || kind === '^') {
      const body: Node[] = [];
      nodes.push({ t: kind === '#' ? 'if' : 'unless', name, body });
      stack.push({ name, nodes });
      nodes = body;
    } else if (kind === '/') {
      const top = stack.pop();
      if (!top || top.name !== name) throw new Error(`page template ${file}: ${tag} closes ${top ? `{{#${top.name}}}` : 'nothing'}`);
      nodes = top.nodes;
    } else {
      nodes.push({ t: 'var', name });
    }
  }
  text(source.slice(last));
  if (stack.length) throw new Error(`page template ${file}: {{#${stack[stack.length - 1]?.name}}} is never closed`);
  return root;
}

/** A value as HTML text: escaped, a list joined with commas, absent as nothing. */
function textOf(v: string | readonly string[] | undefined): string {
  if (v === undefined) return '';
  if (typeof v === 'string') return escapeHtml(v);
  return v.map(escapeHtml).join(', ');
}

function renderNodes(nodes: readonly Node[], vars: Values, raw: Readonly<Record<string, string>>): string {
  let out = '';
  for (const n of nodes) {
    switch (n.t) {
      case 'text': out += n.s; break;
      case 'var': out += textOf(vars[n.name]); break;
      case 'raw': out += raw[n.name] ?? ''; break;
      case 'if': if (textOf(vars[n.name]) !== '') out += renderNodes(n.body, vars, raw); break;
      case 'unless': if (textOf(vars[n.name]) === '') out += renderNodes(n.body, vars, raw); break;
    }
  }
  return out;
}

const hasRaw = (nodes: readonly Node[], name: string): boolean =>
  nodes.some((n) => (n.t === 'raw' && n.name === name) || ((n.t === 'if' || n.t === 'unless') && hasRaw(n.body, name)));

function readTemplate(dir: string, file: string): string {
  const full = path.join(dir, file);
  try {
    return readFileSync(full, 'utf8');
  } catch (err) {
    throw new Error(`page template missing: ${full} (${(err as NodeJS.ErrnoException).code ?? String(err)})`, { cause: err });
  }
}

/** <project root>/static/pages: the root is found by its package.json, the same from proxy/ (tsx, jest) and dist/proxy/. */
function defaultDir(): string {
  const from = path.dirname(fileURLToPath(import.meta.url));
  for (let dir = from; ; dir = path.dirname(dir)) {
    const pkg = path.join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'pacs-gateway') {
      return path.join(dir, 'static', 'pages');
    }
    if (path.dirname(dir) === dir) throw new Error(`no pacs-gateway package.json above ${from}: cannot locate static/pages`);
  }
}

/** RFC 9110 weak comparison, as If-None-Match requires. */
function etagMatches(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  return header.split(',').some((t) => {
    const tag = t.trim();
    return tag === '*' || tag.replace(/^W\//, '') === etag;
  });
}

/** Loads and pre-parses every template once (at start-up); throws naming the file if one is missing. */
/**
 * `formOrigins`: where the pages' forms may lead besides the gateway itself. The Sign out form posts
 * to /_gateway/logout, which redirects to the IdP's end-session page, and browsers apply
 * form-action to that redirect too: an IdP on another origin must be listed.
 */
export function loadPages(dir: string = defaultDir(), opts: { formOrigins?: readonly string[] } = {}): Pages {
  const csp = opts.formOrigins?.length ? PAGE_CSP.replace("form-action 'self'", `form-action 'self' ${opts.formOrigins.join(' ')}`) : PAGE_CSP;
  const layout = parse(readTemplate(dir, 'layout.html'), path.join(dir, 'layout.html'), ['body']);
  if (!hasRaw(layout, 'body')) throw new Error(`page template ${path.join(dir, 'layout.html')}: no {{{body}}} slot`);
  const bodies = new Map(PAGE_NAMES.map((name) => [name, parse(readTemplate(dir, `${name}.html`), path.join(dir, `${name}.html`), [])] as const));

  const css = Buffer.from(readTemplate(dir, STYLESHEET_FILE), 'utf8');
  const hash = createHash('sha256').update(css).digest('base64url');
  const etag = `"${hash.slice(0, 27)}"`;
  const cssVersion = hash.slice(0, 12);

  const render = (name: PageName, vars: PageVars): string => {
    const body = bodies.get(name);
    if (!body) throw new Error(`unknown page ${String(name)}`);
    // cssVersion is the gateway's, not the caller's: it must always name the stylesheet being served.
    const all: Values = { ...vars, cssVersion };
    return renderNodes(layout, all, { body: renderNodes(body, all, {}) });
  };

  const send: Pages['send'] = (res, status, name, vars, extraHeaders = {}) => {
    if (res.headersSent) {
      // Mid-stream: the status is gone; cutting the connection is the only honest signal.
      res.destroy();
      return;
    }
    const html = Buffer.from(render(name, { status: String(status), ...vars }), 'utf8');
    res.statusCode = status;
    for (const [k, v] of Object.entries(extraHeaders)) res.setHeader(k, v);
    // Set after the extras so that no caller can weaken them; the pages may carry a CSRF token, hence no-store.
    res.setHeader('Content-Type', 'text/html; charset=utf-8');
    res.setHeader('Content-Security-Policy', csp);
    res.setHeader('Cache-Control', 'no-store');
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('Referrer-Policy', 'no-referrer');
    res.setHeader('X-Frame-Options', 'DENY');
    res.setHeader('X-Request-Id', vars.requestId);
    res.setHeader('Content-Length', html.length);
    res.end(res.req?.method === 'HEAD' ? undefined : html);
  };

  const serveAsset: Pages['serveAsset'] = (req, res, requestPath) => {
    const q = requestPath.indexOf('?');
    if ((q < 0 ? requestPath : requestPath.slice(0, q)) !== STYLESHEET_PATH) return false;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.statusCode = 405;
      res.setHeader('Allow', 'GET, HEAD');
      res.setHeader('Content-Length', 0);
      res.end();
      return true;
    }
    // The version is read from the request's own URL: callers may pass the path without its query.
    const query = req.url?.includes('?') ? req.url.slice(req.url.indexOf('?') + 1) : '';
    res.setHeader('Cache-Control', new URLSearchParams(query).get('v') === cssVersion ? CACHE_VERSIONED : CACHE_UNVERSIONED);
    res.setHeader('ETag', etag);
    res.setHeader('X-Content-Type-Options', 'nosniff');
    if (etagMatches(req.headers['if-none-match'], etag)) {
      res.statusCode = 304;
      res.end();
      return true;
    }
    res.statusCode = 200;
    res.setHeader('Content-Type', 'text/css; charset=utf-8');
    res.setHeader('Content-Length', css.length);
    res.end(req.method === 'HEAD' ? undefined : css);
    return true;
  };

  return { render, send, serveAsset };
}
