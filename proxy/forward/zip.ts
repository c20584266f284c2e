// A study or series as a ZIP of its DICOM files (Accept: application/zip), for clients that want a
// download rather than a multipart/related stream: the upstream's WADO-RS answer
// (multipart/related; type="application/dicom") is split part by part as it arrives and each part
// becomes a stored (uncompressed) entry of a ZIP written by yazl as it goes — nothing is held whole.
import type { Readable } from 'node:stream';
import dicomParser from 'dicom-parser';
import { ZipFile } from 'yazl';
import { PassThrough } from 'node:stream';
import { GatewayError } from '../errors.js';
import type { Exchange } from '../exchange.js';
import { multipartBoundary, MultipartScanner } from './multipart.js';

/** Whether the client asks for a ZIP (and not for multipart/related as well). */
export function wantsZip(accept: string | undefined): boolean {
  return accept !== undefined && /(^|,)\s*application\/zip\s*(;|,|$)/i.test(accept) && !/multipart\/related/i.test(accept);
}

/** What to ask the upstream for instead. */
export const MULTIPART_DICOM = 'multipart/related; type="application/dicom"; transfer-syntax=*';

const NAME_HEAD = 64 * 1024;
const UID = /^[0-9.]{1,64}$/;

/** `<SeriesInstanceUID>/<SOPInstanceUID>.dcm` from the part's first bytes, or undefined. */
function entryName(head: Buffer): string | undefined {
  try {
    const ds = dicomParser.parseDicom(new Uint8Array(head.buffer, head.byteOffset, head.length), { untilTag: 'x0020000e' });
    const sop = ds.string('x00080018')?.replace(/\0+$/, '').trim();
    const series = ds.string('x0020000e')?.replace(/\0+$/, '').trim();
    if (sop && series && UID.test(sop) && UID.test(series)) return `${series}/${sop}.dcm`;
  } catch { /* a name from the part's number instead */ }
  return undefined;
}

/**
 * Writes the upstream's multipart answer to the client as a ZIP named `filename`. Resolves when
 * the ZIP is written; rejects (after cutting the connection mid-stream) when the upstream's body breaks.
 */
export async function relayAsZip(ex: Exchange, contentType: string | undefined, body: Readable, filename: string): Promise<void> {
  const boundary = multipartBoundary(contentType);
  if (!boundary) throw new GatewayError('UPSTREAM_ERROR', 'the upstream did not answer with multipart/related DICOM files');
  const { res } = ex;
  const zip = new ZipFile();
  res.writeHead(200, {
    'content-type': 'application/zip',
    'content-disposition': `attachment; filename="${filename}"`,
    'cache-control': 'no-store',
    'x-request-id': ex.id,
  });
  const written = new Promise<void>((ok, ko) => {
    zip.outputStream.on('error', ko);
    res.on('close', () => ok());
    zip.outputStream.pipe(res);
  });
  const scanner = new MultipartScanner(boundary);
  let index = 0;
  let current: PassThrough | undefined;
  let head: Buffer[] = [];
  let headLength = 0;
  const used = new Set<string>();

  /** The part's entry, once enough of its head is there to name it. */
  const open = (force: boolean): void => {
    if (current || (!force && headLength < NAME_HEAD)) return;
    const first = Buffer.concat(head);
    let name = entryName(first) ?? `instance-${String(index).padStart(5, '0')}.dcm`;
    if (used.has(name)) name = name.replace(/\.dcm$/, `-${index}.dcm`);
    used.add(name);
    current = new PassThrough();
    zip.addReadStream(current, name, { compress: false, mtime: new Date(0) });
    current.write(first);
    head = [];
  };

  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      if (res.destroyed) { body.destroy(); return; }
      for (const e of scanner.feed(chunk)) {
        if (e.type === 'part') { index++; current = undefined; head = []; headLength = 0; continue; }
        if (e.type === 'data') {
          if (!current) {
            head.push(Buffer.from(e.bytes));
            headLength += e.bytes.length;
            open(false);
          } else if (!current.write(e.bytes)) {
            await new Promise<void>((ok) => { current!.once('drain', ok); res.once('close', ok); });
          }
          continue;
        }
        if (e.type === 'end') { open(true); current!.end(); current = undefined; }
      }
    }
    if (!scanner.finished) throw new Error('the upstream\'s answer ended before its closing boundary');
  } catch (err) {
    // Mid-stream: the status is gone; cutting the connection is the honest signal.
    res.destroy();
    throw err;
  }
  zip.end();
  await written;
}
