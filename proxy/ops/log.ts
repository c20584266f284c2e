// Structured JSON logging (pino). Nothing here ever receives headers, tokens or cookies.
import { pino, type Logger } from 'pino';

export type { Logger };

/** How long a log line may wait in the buffer before it is written. */
const FLUSH_EVERY_MS = 200;

/**
 * Logs to stdout through a 4 KB buffer written asynchronously, so an access-log line does not cost
 * a write(2) of its own under load; a timer flushes the buffer so an idle gateway's lines still
 * appear within FLUSH_EVERY_MS. pino flushes what is pending when the process exits.
 */
export function createLogger(level: string, destination?: NodeJS.WritableStream | ReturnType<typeof pino.destination>): Logger {
  let dest = destination;
  if (!dest) {
    const boom = pino.destination({ dest: 1, sync: false, minLength: 4096 });
    setInterval(() => { try { boom.flush(); } catch { /* a write is in flight: the next tick flushes */ } }, FLUSH_EVERY_MS).unref();
    dest = boom;
  }
  return pino({ level, base: { svc: 'pacs-gateway' }, timestamp: pino.stdTimeFunctions.isoTime }, dest);
}

const SENSITIVE_QUERY = /^(access_token|token|id_token|refresh_token|code|state|password|key|api_key|share)$/i;

/** The query string with the values of credential-like parameters replaced, for log lines. */
export function redactQuery(query: string): string {
  if (!query) return '';
  return query.split('&').map((pair) => {
    const eq = pair.indexOf('=');
    const name = eq < 0 ? pair : pair.slice(0, eq);
    let decoded = name;
    try { decoded = decodeURIComponent(name); } catch { /* keep raw */ }
    return eq >= 0 && SENSITIVE_QUERY.test(decoded) ? `${name}=[redacted]` : pair;
  }).join('&');
}
