// Checks a STOW-RS body part by part while it streams to the upstream: each part's DICOM header is
// read (dicom-parser) as far as the attributes a scope needs, the part is judged, and only then do
// its bytes go on. Bytes of a part not yet judged are held back (at most MAX_HEAD bytes of it); a
// refused part stops the whole request before its bytes leave the gateway, so the upstream (which
// stores a STOW-RS request only once it has read all of it) stores nothing of it.
// The body's structure is read by forward/multipart.ts.
import { Transform, type TransformCallback } from 'node:stream';
import dicomParser from 'dicom-parser';
import { GatewayError } from '../errors.js';
import { MultipartScanner } from '../forward/multipart.js';

export { multipartBoundary } from '../forward/multipart.js';

/** How much of a part is read, at most, to find its header's attributes. */
export const MAX_HEAD = 1024 * 1024;

/** Judges one part by what its header says: resolves to nothing, or throws a GatewayError. */
export type PartJudge = (part: { index: number; study: string; values: ReadonlyMap<string, readonly string[]> }) => Promise<void>;

const tagKey = (tag: string) => `x${tag.toLowerCase()}`;

/** Reads the attributes from a part's first bytes; undefined while more bytes are needed (and may come). */
export function readPartHeader(head: Buffer, tags: readonly string[], complete: boolean): { study: string; values: Map<string, string[]> } | undefined {
  const last = [...tags, '0020000D'].map((t) => t.toUpperCase()).sort().pop()!;
  let ds: dicomParser.DataSet;
  try {
    ds = dicomParser.parseDicom(new Uint8Array(head.buffer, head.byteOffset, head.length), { untilTag: tagKey(last) });
  } catch (err) {
    // Running out of bytes is expected while the head grows; anything else is not DICOM we can read.
    const text = String((err as { exception?: string })?.exception ?? err);
    if (!complete && /overread|buffer|beyond|end of/i.test(text)) return undefined;
    throw new GatewayError('BAD_REQUEST', 'a part of the upload is not a DICOM file the gateway can read (Part 10, with its meta header)');
  }
  const element = ds.elements[tagKey('0020000D')];
  if (!element || element.dataOffset + element.length > head.length) {
    if (!complete && head.length < MAX_HEAD) return undefined;
    throw new GatewayError('BAD_REQUEST', 'a part of the upload has no StudyInstanceUID within its first megabyte');
  }
  const values = new Map<string, string[]>();
  for (const t of tags) {
    const e = ds.elements[tagKey(t)];
    if (!e) { values.set(t, []); continue; }
    if (e.dataOffset + e.length > head.length) return undefined;
    const raw = ds.string(tagKey(t)) ?? '';
    values.set(t, raw === '' ? [] : raw.split('\\').map((v) => v.trimEnd()));
  }
  const study = (ds.string(tagKey('0020000D')) ?? '').replace(/\0+$/, '').trim();
  if (!study) throw new GatewayError('BAD_REQUEST', 'a part of the upload has an empty StudyInstanceUID');
  return { study, values };
}

/**
 * A pass-through stream for a multipart/related body that lets each part's bytes through only once
 * `judge` accepted it. Errors (a GatewayError) end the stream: the caller answers with that error.
 */
export class StowGuard extends Transform {
  private readonly scanner: MultipartScanner;
  /** Bytes received but not passed on: the current part is being judged. */
  private held: Buffer[] = [];
  private head: Buffer[] = [];
  private headLength = 0;
  private judged = true;
  private index = 0;
  private lastTry = 0;

  constructor(boundary: string, private readonly tags: readonly string[], private readonly judge: PartJudge) {
    super();
    this.scanner = new MultipartScanner(boundary);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.held.push(chunk);
    this.consume(chunk).then(() => {
      if (this.judged) this.release();
      done();
    }, (err: unknown) => done(err as Error));
  }

  override _flush(done: TransformCallback): void {
    if (!this.scanner.finished) {
      done(new GatewayError('BAD_REQUEST', 'the upload ended before its closing multipart boundary'));
      return;
    }
    this.release();
    done();
  }

  private release(): void {
    for (const b of this.held) this.push(b);
    this.held = [];
  }

  private async consume(chunk: Buffer): Promise<void> {
    for (const e of this.scanner.feed(chunk)) {
      if (e.type === 'part') {
        this.index++;
        this.head = [];
        this.headLength = 0;
        this.lastTry = 0;
        this.judged = false;
      } else if (e.type === 'data') {
        if (!this.judged) await this.grow(e.bytes, false);
      } else if (e.type === 'end') {
        if (!this.judged) await this.grow(Buffer.alloc(0), true);
      }
    }
  }

  /** Adds body bytes of the current part to its head; judges it once its header is readable. */
  private async grow(bytes: Buffer, partEnded: boolean): Promise<void> {
    const room = MAX_HEAD - this.headLength;
    if (room > 0 && bytes.length) {
      const take = bytes.subarray(0, room);
      this.head.push(Buffer.from(take));
      this.headLength += take.length;
    }
    const complete = partEnded || this.headLength >= MAX_HEAD;
    // Parsing starts over from the part's first byte: try when the head has doubled, or is all there.
    if (!complete && this.headLength < Math.max(4096, this.lastTry * 2)) return;
    this.lastTry = this.headLength;
    const head = this.head.length === 1 ? this.head[0]! : Buffer.concat(this.head);
    this.head = [head];
    const header = readPartHeader(head, this.tags, complete);
    if (!header) {
      if (complete) throw new GatewayError('BAD_REQUEST', 'a part of the upload has attributes the gateway needs beyond its first megabyte');
      return;
    }
    await this.judge({ index: this.index, study: header.study, values: header.values });
    this.judged = true;
    this.head = [];
  }
}
