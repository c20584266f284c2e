// Structured JSON logging (pino). Nothing here ever receives headers, tokens or cookies.
import { pino, type Logger } from 'pino';
import { decodeQueryComponent } from '../query.js';

export type { Logger };

/** How long a log line may wait in the batch before it is written. */
const FLUSH_EVERY_MS = 200;
/** Lines are handed to the destination in writes of at least this many characters. */
const BATCH_CHARS = 4096;

interface LineDestination { write(chunk: string): unknown }

/**
 * Collects log lines and hands them to a destination in ≥ 4 KB writes (or every 200 ms, or at exit),
 * so a busy gateway does not pay a write(2) per access-log line. Lines are kept in an array and
 * joined once per batch: sonic-boom's own minLength buffering measures the byte length of its whole
 * pending string on every write, which on 2 KB replies cost about a tenth of the gateway's throughput
 * (bench/), more than building the line itself.
 */
export class LineBatcher implements LineDestination {
  private lines: string[] = [];
  private chars = 0;
  constructor(private readonly dest: LineDestination, private readonly batchChars = BATCH_CHARS) {}

  write(line: string): boolean {
    this.lines.push(line);
    this.chars += line.length;
    if (this.chars >= this.batchChars) this.flush();
    return true;
  }

  flush(): void {
    if (this.chars === 0) return;
    const data = this.lines.join('');
    this.lines = [];
    this.chars = 0;
    this.dest.write(data);
  }
}

/**
 * The production log sink: batched lines written synchronously to a file descriptor or path (stdout
 * by default) through sonic-boom, as Node itself writes to stdout pipes and files on Linux. A sync
 * write needs no libuv worker thread per batch (the asynchronous mode's thread hand-off cost ~7 % of
 * small-reply throughput on a single core); sonic-boom retries EAGAIN on a non-blocking descriptor.
 */
export function createLogSink(dest: number | string = 1): LineBatcher {
  const boom = pino.destination({ dest, sync: true });
  const batch = new LineBatcher(boom);
  setInterval(() => batch.flush(), FLUSH_EVERY_MS).unref();
  process.once('exit', () => batch.flush());
  return batch;
}

/** A pino logger with ISO timestamps and the gateway's bindings; stdout through createLogSink() by default. */
export function createLogger(level: string, destination: LineDestination = createLogSink()): Logger {
  return pino({ level, base: { svc: 'pacs-gateway' }, timestamp: isoTime }, destination as NodeJS.WritableStream);
}

let lastMs = NaN;
let lastIso = '';
let lastSecond = NaN;
let secondPrefix = '';
/**
 * The time `ms` (epoch milliseconds) as ISO 8601, exactly as Date#toISOString writes it. Date's own
 * formatting costs several thousand instructions, so it runs once per second for the part up to the
 * seconds, and each new millisecond only appends its three digits.
 */
export function isoTimeOf(ms: number): string {
  if (ms === lastMs) return lastIso;
  const second = Math.floor(ms / 1000);
  const milli = ms - second * 1000;
  if (!Number.isInteger(milli)) return new Date(ms).toISOString(); // not a whole millisecond: let Date decide
  if (second !== lastSecond) {
    const iso = new Date(second * 1000).toISOString(); // …T12:34:56.000Z (the year may be longer than 4 digits)
    secondPrefix = iso.slice(0, -4);
    lastSecond = second;
  }
  lastMs = ms;
  lastIso = `${secondPrefix}${milli < 10 ? '00' : milli < 100 ? '0' : ''}${milli}Z`;
  return lastIso;
}
const nowIso = (): string => isoTimeOf(Date.now());
const isoTime = (): string => `,"time":"${nowIso()}"`;

/** One access-log line: what the gateway did with a request (never a header, token or cookie). */
export interface AccessRecord {
  readonly reqId: string;
  readonly method: string;
  readonly path: string;
  /** The query string with credential-like values redacted (redactQuery). */
  readonly query: string | undefined;
  readonly route: string;
  /** The operation (operation table), or "-" where none applies. */
  readonly operation: string;
  readonly status: number;
  /** Time to the end of the response, in milliseconds (written rounded to a tenth). */
  readonly ms: number;
  readonly bytes: number;
  readonly sub: string | undefined;
  readonly error: string | undefined;
  readonly aborted: boolean;
}

export type AccessLog = (r: AccessRecord) => void;

const str = JSON.stringify;
/** Printable ASCII without `"` and `\`: such a string is its own JSON body (most paths, every request id). */
const PLAIN = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;
const q = (s: string): string => (PLAIN.test(s) ? `"${s}"` : str(s));
/** A number as JSON: NaN and ±Infinity become null, as JSON.stringify writes them. */
const n = (x: number): string => (Number.isFinite(x) ? `${x}` : 'null');
/** Milliseconds with one decimal ("12.3"), formatted from whole tenths (cheaper than a float to string). */
const ms1 = (x: number): string => {
  if (!Number.isFinite(x)) return 'null';
  const tenths = Math.round(Math.abs(x) * 10);
  return `${x < 0 && tenths > 0 ? '-' : ''}${(tenths - (tenths % 10)) / 10}.${tenths % 10}`;
};

/**
 * JSON for values drawn from a small set that repeats on every line (methods, route names): the
 * same string objects come back each time, so a map lookup replaces the character scan. Values
 * beyond the bound are quoted each time, so a flood of odd methods cannot grow it.
 */
function quotedOnce(bound = 256): (s: string) => string {
  const seen = new Map<string, string>();
  return (s) => {
    let json = seen.get(s);
    if (json === undefined) {
      json = q(s);
      if (seen.size < bound) seen.set(s, json);
    }
    return json;
  };
}

/**
 * The access log: one JSON line per request, in the same shape pino gives every other line
 * (level, time, bindings, fields, msg) and written to the same destination, so lines never
 * interleave out of order. It is built directly rather than through pino's generic serializer,
 * which costs about twice as much per line (bench/). A string is written as is only when it is
 * printable ASCII without quote or backslash; anything else goes through JSON.stringify, so a
 * path or subject can never break the line. Undefined when the logger is below info.
 */
export function createAccessLog(log: Logger): AccessLog | undefined {
  if (!log.isLevelEnabled('info')) return undefined;
  const stream = (log as unknown as Record<symbol, { write(line: string): unknown }>)[pino.symbols.streamSym];
  if (!stream) return (r) => log.info(r, 'request');
  const bindings = str(log.bindings()).slice(1, -1);
  const head = `{"level":${log.levels.values.info},"time":"`;
  const afterTime = `"${bindings ? `,${bindings}` : ''},"reqId":`;
  const method = quotedOnce();
  const route = quotedOnce();
  const operation = quotedOnce();
  return (r) => {
    stream.write(`${head}${nowIso()}${afterTime}${q(r.reqId)},"method":${method(r.method)},"path":${q(r.path)}${
      r.query ? `,"query":${q(r.query)}` : ''},"route":${route(r.route)},"op":${operation(r.operation)},"status":${n(r.status)},"ms":${ms1(r.ms)},"bytes":${n(r.bytes)}${
      r.sub !== undefined ? `,"sub":${q(r.sub)}` : ''}${r.error !== undefined ? `,"error":${q(r.error)}` : ''}${
      r.aborted ? ',"aborted":true' : ''},"msg":"request"}\n`);
  };
}

/**
 * Query parameters whose values are credentials or single-use secrets: OAuth/OIDC (RFC 6749, 6750,
 * 7636, 8628, OIDC logout), signed-URL parameters, API keys and share codes. Names are compared
 * decoded (twice), in any case, without a trailing "[]"/"[0]" or control characters; anything ending
 * in token, secret, password, key, code, credential(s), signature, verifier or assertion counts.
 */
const SENSITIVE_QUERY = /^(?:state|nonce|session_state|id_token_hint|authorization|auth|pass|pwd|passphrase|share|sig|[a-z0-9_.-]*(?:token|secret|password|passwd|key|code|credentials?|signature|verifier|assertion))$/i;

/** A JWS/JWT in compact form ("eyJ…" header, two dots), wherever it stands, its first letter encoded or not. */
const LOOKS_LIKE_JWT = /(?:e|%65)yJ[A-Za-z0-9_-]{4,}(?:\.|%2e)[A-Za-z0-9_-]*(?:\.|%2e)/i;

/** A parameter name as a server would read it: decoded (twice, for double encoding), without "[]"/"[n]" or control characters. */
function parameterName(raw: string): string {
  const once = decodeQueryComponent(raw) ?? raw;
  const name = decodeQueryComponent(once) ?? once;
  // eslint-disable-next-line no-control-regex
  return name.replace(/[\u0000-\u001f\u007f]/g, '').replace(/\[[^\]]*\]$/, '').trim();
}

/**
 * The query string with the values of credential-like parameters replaced, for log lines. A part
 * that carries a JWT under any other name (or no name) is redacted as well. Both & and ; separate.
 */
export function redactQuery(query: string): string {
  if (!query) return '';
  return query.split(/([&;])/).map((pair) => {
    if (pair === '&' || pair === ';') return pair;
    const eq = pair.indexOf('=');
    const name = eq < 0 ? pair : pair.slice(0, eq);
    if (eq >= 0 && SENSITIVE_QUERY.test(parameterName(name))) return `${name}=[redacted]`;
    if (LOOKS_LIKE_JWT.test(pair)) return eq >= 0 && !LOOKS_LIKE_JWT.test(name) ? `${name}=[redacted]` : '[redacted]';
    return pair;
  }).join('');
}

const SENSITIVE_IN_TEXT = /([?&;"' ]|^)((?:[a-z0-9_.-]*(?:token|secret|password|passwd|code|key|signature|assertion|verifier))|state|nonce|share|pwd|pass)(=|"\s*:\s*")([^&;"'\s]+)/gi;
const JWT_IN_TEXT = /(?:e|%65)yJ[A-Za-z0-9_-]{4,}(?:\.|%2e)[A-Za-z0-9_-]*(?:(?:\.|%2e)[A-Za-z0-9_-]*)?/gi;

/**
 * Free text from elsewhere (an upstream's error page, which may echo the request's URL) with JWTs
 * and credential-like name=value pairs replaced, for log lines.
 */
export function redactText(text: string): string {
  return text.replace(JWT_IN_TEXT, '[redacted]').replace(SENSITIVE_IN_TEXT, (_m, pre: string, name: string, sep: string) => `${pre}${name}${sep}[redacted]`);
}
