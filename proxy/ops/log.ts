// Structured JSON logging (pino). Nothing here ever receives headers, tokens or cookies.
import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * Logs to stdout asynchronously: lines written while a write is in flight are coalesced into the
 * next one, so under load a line does not cost a write(2) of its own, and an idle gateway's lines
 * still appear at once. pino flushes what is pending when the process exits.
 */
export function createLogger(level: string, destination?: NodeJS.WritableStream | ReturnType<typeof pino.destination>): Logger {
  return pino({ level, base: { svc: 'pacs-gateway' }, timestamp: pino.stdTimeFunctions.isoTime },
    destination ?? pino.destination({ dest: 1, sync: false }));
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
