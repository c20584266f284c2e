// A streaming scanner for multipart/related bodies (STOW-RS requests, WADO-RS retrieves): fed chunk
// by chunk, it reports where each part starts, its body bytes and where it ends, keeping only a
// boundary's length of bytes between chunks. multipart/related has no maintained streaming parser
// on npm (busboy and its successors read multipart/form-data only; dicer is deprecated), so this
// small, strict scanner is ours.
import { GatewayError } from '../errors.js';

export type MultipartEvent =
  | { readonly type: 'part' }
  | { readonly type: 'data'; readonly bytes: Buffer }
  | { readonly type: 'end' }
  | { readonly type: 'done' };

/** The boundary of a multipart/related Content-Type, or undefined. */
export function multipartBoundary(contentType: string | undefined): string | undefined {
  if (!contentType || !/^\s*multipart\/related\s*;/i.test(contentType)) return undefined;
  const m = /;\s*boundary=(?:"([^"]{1,70})"|([^\s;"]{1,70}))/i.exec(contentType);
  return m ? (m[1] ?? m[2]) : undefined;
}

const CRLF2 = Buffer.from('\r\n\r\n');
const MAX_PART_HEADERS = 16 * 1024;

export class MultipartScanner {
  private readonly first: Buffer;
  private readonly delimiter: Buffer;
  private scan: Buffer = Buffer.alloc(0);
  private state: 'preamble' | 'headers' | 'body' | 'done' = 'preamble';

  constructor(boundary: string) {
    this.first = Buffer.from(`--${boundary}`);
    this.delimiter = Buffer.from(`\r\n--${boundary}`);
  }

  get finished(): boolean { return this.state === 'done'; }

  /** The events a chunk completes, in order. Throws a GatewayError on a malformed body. */
  feed(chunk: Buffer): MultipartEvent[] {
    const events: MultipartEvent[] = [];
    this.scan = this.scan.length ? Buffer.concat([this.scan, chunk]) : chunk;
    for (;;) {
      if (this.state === 'done') { this.scan = Buffer.alloc(0); return events; }
      if (this.state === 'preamble') {
        const at = this.scan.indexOf(this.first);
        if (at < 0) {
          if (this.scan.length > this.first.length) this.scan = this.scan.subarray(this.scan.length - this.first.length);
          return events;
        }
        this.scan = this.scan.subarray(at + this.first.length);
        this.state = 'headers';
        continue;
      }
      if (this.state === 'headers') {
        // Right after a boundary: "--" closes the body; otherwise the part's header lines, then a blank line.
        if (this.scan.length < 2) return events;
        if (this.scan[0] === 0x2d && this.scan[1] === 0x2d) { this.state = 'done'; events.push({ type: 'done' }); continue; }
        const end = this.scan.indexOf(CRLF2);
        if (end < 0) {
          if (this.scan.length > MAX_PART_HEADERS) throw new GatewayError('BAD_REQUEST', 'a multipart part has over 16 KB of headers');
          return events;
        }
        this.scan = this.scan.subarray(end + CRLF2.length);
        this.state = 'body';
        events.push({ type: 'part' });
        continue;
      }
      // body: everything up to the next delimiter belongs to the current part; a delimiter's length
      // of bytes is kept back while no delimiter is in sight (it may start at the chunk's end).
      const at = this.scan.indexOf(this.delimiter);
      const bodyEnd = at < 0 ? Math.max(0, this.scan.length - this.delimiter.length) : at;
      if (bodyEnd > 0) events.push({ type: 'data', bytes: this.scan.subarray(0, bodyEnd) });
      if (at < 0) { this.scan = this.scan.subarray(bodyEnd); return events; }
      events.push({ type: 'end' });
      this.scan = this.scan.subarray(at + this.delimiter.length);
      this.state = 'headers';
    }
  }
}
