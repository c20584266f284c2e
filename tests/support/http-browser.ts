// A browser over plain HTTP for login tests: one cookie jar per host (cookies ignore ports, as in
// browsers), navigation headers, manual redirects that can be followed or inspected step by step,
// and the development IdP's login form submitted like a person would. node:http, not fetch: fetch
// sets Sec-Fetch-Mode itself (cors), and the gateway tells navigations from API calls by it.
import http from 'node:http';

interface RawReply { status: number; headers: Headers; text: string }

function send(url: string, method: string, headers: Record<string, string>, body?: string): Promise<RawReply> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, path: `${u.pathname}${u.search}`, method, headers: body === undefined ? headers : { ...headers, 'content-length': String(Buffer.byteLength(body)) }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const h = new Headers();
        for (let i = 0; i < res.rawHeaders.length; i += 2) h.append(res.rawHeaders[i]!, res.rawHeaders[i + 1]!);
        resolve({ status: res.statusCode ?? 0, headers: h, text: Buffer.concat(chunks).toString('utf8') });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

export interface Step { readonly url: string; readonly status: number; readonly location?: string; readonly headers: Headers; readonly text: string }

interface JarCookie { value: string; path: string }

const NAVIGATE = { accept: 'text/html,application/xhtml+xml', 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document' };

export class HttpBrowser {
  /** host → name → cookie */
  readonly jar = new Map<string, Map<string, JarCookie>>();

  cookiesFor(url: string): Map<string, JarCookie> {
    const host = new URL(url).hostname;
    let m = this.jar.get(host);
    if (!m) this.jar.set(host, (m = new Map()));
    return m;
  }

  cookieHeader(url: string): string | undefined {
    const path = new URL(url).pathname;
    const pairs = [...this.cookiesFor(url)].filter(([, c]) => path.startsWith(c.path)).map(([k, c]) => `${k}=${c.value}`);
    return pairs.length ? pairs.join('; ') : undefined;
  }

  setCookie(url: string, name: string, value: string, path = '/'): void {
    this.cookiesFor(url).set(name, { value, path });
  }

  private store(url: string, res: RawReply): void {
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';');
      const eq = pair!.indexOf('=');
      const name = pair!.slice(0, eq).trim();
      const value = pair!.slice(eq + 1).trim();
      const path = attrs.map((a) => a.trim()).find((a) => /^path=/i.test(a))?.slice(5) ?? '/';
      const expired = attrs.some((a) => /^\s*expires=Thu, 01 Jan 1970/i.test(a) || /^\s*max-age=0$/i.test(a));
      if (expired || value === '') this.cookiesFor(url).delete(name);
      else this.cookiesFor(url).set(name, { value, path });
    }
  }

  /** One request, no redirect followed. `navigate` adds what a browser sends for a top-level page load. */
  async request(url: string, init: { method?: string; headers?: Record<string, string>; body?: string; navigate?: boolean } = {}): Promise<Step> {
    const headers: Record<string, string> = { ...(init.navigate === false ? {} : NAVIGATE), ...init.headers };
    const cookie = this.cookieHeader(url);
    if (cookie) headers.cookie = cookie;
    const res = await send(url, init.method ?? 'GET', headers, init.body);
    this.store(url, res);
    const text = res.text;
    const location = res.headers.get('location');
    return { url, status: res.status, headers: res.headers, text, ...(location ? { location: new URL(location, url).href } : {}) };
  }

  /** Follows redirects (GET after 302/303) until a non-redirect answer; returns every step. */
  async follow(url: string, init: Parameters<HttpBrowser['request']>[1] = {}, max = 12): Promise<Step[]> {
    const steps: Step[] = [];
    let step = await this.request(url, init);
    steps.push(step);
    while (step.location && step.status >= 300 && step.status < 400) {
      if (steps.length > max) throw new Error(`too many redirects: ${steps.map((s) => s.url).join(' → ')}`);
      step = await this.request(step.location, { navigate: init.navigate ?? true });
      steps.push(step);
    }
    return steps;
  }

  /**
   * From the IdP's login form (the last step's page), signs in and follows redirects back. With
   * `stopAt`, stops before requesting a URL starting with it (e.g. to inspect or replay the callback).
   */
  async submitLogin(formPage: Step, username: string, password: string, stopAt?: string): Promise<Step[]> {
    const action = /<form method="post" action="([^"]+)"/.exec(formPage.text)?.[1];
    if (!action) throw new Error(`no login form at ${formPage.url} (HTTP ${formPage.status}): ${formPage.text.slice(0, 200)}`);
    const target = new URL(action.replace(/&amp;/g, '&'), formPage.url).href;
    const steps: Step[] = [];
    let step = await this.request(target, {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', origin: new URL(formPage.url).origin },
      body: new URLSearchParams({ username, password }).toString(),
    });
    steps.push(step);
    while (step.location && step.status >= 300 && step.status < 400) {
      if (stopAt && step.location.startsWith(stopAt)) return steps;
      step = await this.request(step.location);
      steps.push(step);
      if (steps.length > 12) throw new Error('too many redirects after the login form');
    }
    return steps;
  }

  /** Navigates to `url`, signs in at the IdP when asked, and returns the final page. */
  async loginThrough(url: string, username: string, password = username): Promise<Step> {
    const steps = await this.follow(url);
    const last = steps[steps.length - 1]!;
    if (!last.text.includes('<form method="post"')) return last;
    const after = await this.submitLogin(last, username, password);
    return after[after.length - 1]!;
  }
}
