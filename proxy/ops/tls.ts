// TLS on the public listener: the certificate and key are PEM files, read at start and read again
// whenever either changes (certbot and cert-manager replace them in place), without a restart.
// A file that cannot be read or does not match keeps the previous pair in service.
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import type https from 'node:https';
import { createSecureContext } from 'node:tls';

export interface TlsFiles { readonly cert: string; readonly key: string }

export const readPair = (files: TlsFiles): { cert: Buffer; key: Buffer } => {
  const pair = { cert: readFileSync(files.cert), key: readFileSync(files.key) };
  createSecureContext(pair); // throws when they do not belong together or cannot be parsed
  return pair;
};

/** Watches both files (polling: survives replaced files and symlink swaps); returns the stop function. */
export function reloadOnChange(server: https.Server, files: TlsFiles, log: { info(o: object, m: string): void; warn(o: object, m: string): void }, intervalMs = 1000): () => void {
  let timer: NodeJS.Timeout | undefined;
  const reload = () => {
    // Both files change, one after the other: wait for the pair to settle.
    clearTimeout(timer);
    timer = setTimeout(() => {
      try {
        server.setSecureContext({ ...readPair(files), minVersion: 'TLSv1.2' });
        log.info({ cert: files.cert }, 'tls certificate reloaded');
      } catch (err) {
        log.warn({ cert: files.cert, err: (err as Error).message }, 'tls certificate not reloaded; the previous one stays in service');
      }
    }, 200);
    timer.unref();
  };
  for (const f of [files.cert, files.key]) watchFile(f, { interval: intervalMs, persistent: false }, reload);
  return () => {
    clearTimeout(timer);
    for (const f of [files.cert, files.key]) unwatchFile(f, reload);
  };
}
