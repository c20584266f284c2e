// Putting test data into an Orthanc: synthetic studies, the real sample files, and the
// multipart/related helpers needed to STOW instances and read WADO-RS answers.
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { OrthancHandle } from './orthanc.js';
import {
  DEFAULT_DEMO_SPEC,
  generateStudies,
  largeStudy,
  readDicomIdentifiers,
  type DicomIdentifiers,
  type SyntheticInstance,
} from './synthetic-dicom.js';

/** What is needed to talk to an Orthanc: a started test instance or any other one. */
export type OrthancTarget = Pick<OrthancHandle, 'url' | 'authHeader'>;

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
/** Real Part-10 files with compressed transfer syntaxes, kept outside the repository. */
export const SAMPLES_DIR = path.resolve(REPO_ROOT, '..', 'shared', 'dicom-samples');

const UPLOAD_CONCURRENCY = 4;

// ---------------------------------------------------------------------------------------------
// Uploading

/** One answer of Orthanc's `POST /instances`. */
export interface UploadResult {
  /** Orthanc's own instance id (not a DICOM UID). */
  ID: string;
  /** 'Success' or 'AlreadyStored'. */
  Status: string;
  ParentPatient: string;
  ParentStudy: string;
  ParentSeries: string;
}

/** Stores files through Orthanc's REST API, a few at a time; fails on the first refusal. */
export async function uploadInstances(orthanc: OrthancTarget, files: Buffer[]): Promise<UploadResult[]> {
  const results = new Array<UploadResult>(files.length);
  let next = 0;
  const worker = async () => {
    while (next < files.length) {
      const index = next++;
      results[index] = await uploadOne(orthanc, files[index]!, index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(UPLOAD_CONCURRENCY, files.length) }, worker));
  return results;
}

// Orthanc 1.10 (fixed in 1.12.5) loses a race between concurrent uploads. It stores each file as
// storage/xx/yy/<uuid>, xx and yy being the first four hex digits of a random UUID, and
// FilesystemStorage::Create does: if the directory xx/yy does not exist, `create_directories` it,
// and if that returns false, fail with "Unable to create a subdirectory or a file in the file
// storage" (HTTP 500, OrthancStatus 2001). Boost returns false when the directory already exists,
// which it does when another upload thread created it between the check and the call. So two
// concurrent uploads whose UUIDs share four hex digits, in a directory not created before, can
// fail: rare with random UUIDs (estimated at about 1 in several thousand loads of the demo set at our
// concurrency), but it made the suites flaky. Nothing is stored in that case (the file is written
// before the index is touched) and the directory exists afterwards, so sending the file again is
// safe and succeeds. Pre-creating all 65,536 directories instead costs seconds and 256 MB of disk per
// test Orthanc here.
const STORAGE_DIRECTORY_RACE = 'Unable to create a subdirectory or a file in the file storage';
const UPLOAD_ATTEMPTS = 5;

async function uploadOne(orthanc: OrthancTarget, file: Buffer, index: number): Promise<UploadResult> {
  for (let attempt = 1; ; attempt++) {
    const res = await fetch(`${orthanc.url}/instances`, {
      method: 'POST',
      headers: { authorization: orthanc.authHeader, 'content-type': 'application/dicom' },
      body: asFetchBody(file),
    });
    const text = await res.text();
    if (res.status === 200) return JSON.parse(text) as UploadResult;
    if (res.status === 500 && text.includes(STORAGE_DIRECTORY_RACE) && attempt < UPLOAD_ATTEMPTS) continue;
    throw new Error(`POST /instances (file #${index}, ${file.length} bytes) answered ${res.status}: ${text}`);
  }
}

// Node's fetch sends any Uint8Array; its typings only admit views over a plain ArrayBuffer,
// which a Buffer's declared type (ArrayBufferLike) does not promise.
function asFetchBody(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return bytes as Uint8Array<ArrayBuffer>;
}

// ---------------------------------------------------------------------------------------------
// The demo / test data set

export interface LoadDemoDataOptions {
  /** Also load one large synthetic CT study (see `largeMegabytes`). Default false. */
  large?: boolean;
  /** Size of the large study in MiB. Default 40. */
  largeMegabytes?: number;
  /** Also load the real sample files from SAMPLES_DIR, if present. Default true. */
  samples?: boolean;
}

export type StudySource = 'synthetic' | 'large' | 'sample';

export interface LoadedStudy {
  studyInstanceUID: string;
  /** Empty for the US sample, which has no PatientID. */
  patientId: string;
  source: StudySource;
  seriesInstanceUIDs: string[];
  sopInstanceUIDs: string[];
}

export interface LoadedSample extends DicomIdentifiers {
  path: string;
  file: Buffer;
}

export interface DemoDataSummary {
  /** Sorted by StudyInstanceUID. */
  studies: LoadedStudy[];
  /** Every loaded StudyInstanceUID, sorted: what an unfiltered QIDO `/studies` should list. */
  studyInstanceUIDs: string[];
  instanceCount: number;
  bytes: number;
  /** Generated instances (demo spec, then the large study if asked), with their bytes. */
  synthetic: SyntheticInstance[];
  /** The large study's instances only (empty unless `large`). */
  large: SyntheticInstance[];
  /** The real sample files that were found and loaded. */
  samples: LoadedSample[];
  elapsedMs: number;
}

/** Loads DEFAULT_DEMO_SPEC (plus optional large study and real samples) into Orthanc. */
export async function loadDemoData(orthanc: OrthancTarget, opts: LoadDemoDataOptions = {}): Promise<DemoDataSummary> {
  const started = Date.now();
  const demo = generateStudies(DEFAULT_DEMO_SPEC);
  const large = opts.large ? largeStudy({ megabytes: opts.largeMegabytes ?? 40 }) : [];
  const samples = opts.samples === false ? [] : await readSamples();

  const synthetic = [...demo, ...large];
  const files = [...synthetic.map((i) => i.file), ...samples.map((s) => s.file)];
  await uploadInstances(orthanc, files);

  const studies = summarizeStudies([
    ...demo.map((i) => ({ ...i, source: 'synthetic' as const })),
    ...large.map((i) => ({ ...i, source: 'large' as const })),
    ...samples.map((s) => ({ ...s, source: 'sample' as const })),
  ]);
  return {
    studies,
    studyInstanceUIDs: studies.map((s) => s.studyInstanceUID),
    instanceCount: files.length,
    bytes: files.reduce((sum, f) => sum + f.length, 0),
    synthetic,
    large,
    samples,
    elapsedMs: Date.now() - started,
  };
}

async function readSamples(): Promise<LoadedSample[]> {
  if (!existsSync(SAMPLES_DIR)) {
    console.warn(`loadDemoData: no sample directory at ${SAMPLES_DIR}; loading synthetic studies only`);
    return [];
  }
  const names = (await readdir(SAMPLES_DIR)).filter((n) => n.toLowerCase().endsWith('.dcm')).sort();
  return Promise.all(
    names.map(async (name) => {
      const samplePath = path.join(SAMPLES_DIR, name);
      const file = await readFile(samplePath);
      return { path: samplePath, ...readDicomIdentifiers(file), file };
    }),
  );
}

interface InstanceRef {
  studyInstanceUID: string;
  seriesInstanceUID: string;
  sopInstanceUID: string;
  patientId: string;
  source: StudySource;
}

function summarizeStudies(instances: InstanceRef[]): LoadedStudy[] {
  const byStudy = new Map<string, LoadedStudy>();
  for (const i of instances) {
    let study = byStudy.get(i.studyInstanceUID);
    if (!study) {
      const { studyInstanceUID, patientId, source } = i;
      study = { studyInstanceUID, patientId, source, seriesInstanceUIDs: [], sopInstanceUIDs: [] };
      byStudy.set(i.studyInstanceUID, study);
    }
    if (!study.seriesInstanceUIDs.includes(i.seriesInstanceUID)) study.seriesInstanceUIDs.push(i.seriesInstanceUID);
    study.sopInstanceUIDs.push(i.sopInstanceUID);
  }
  return [...byStudy.values()].sort((a, b) => compare(a.studyInstanceUID, b.studyInstanceUID));
}

const compare = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

// ---------------------------------------------------------------------------------------------
// multipart/related (PS3.18 §8.6), as STOW-RS requests and WADO-RS answers use it

export interface MultipartPart {
  /** Header names in lower case. */
  headers: Record<string, string>;
  body: Buffer;
}

/** A STOW-RS request body and its Content-Type header. */
export function multipartRelated(
  parts: Buffer[],
  type = 'application/dicom',
): { contentType: string; body: Buffer } {
  const boundary = `pacs-gateway-${randomUUID()}`;
  const chunks: Buffer[] = [];
  for (const part of parts) {
    chunks.push(Buffer.from(`--${boundary}\r\nContent-Type: ${type}\r\n\r\n`), part, Buffer.from('\r\n'));
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return { contentType: `multipart/related; type="${type}"; boundary=${boundary}`, body: Buffer.concat(chunks) };
}

/** POST /dicom-web/studies with the files; returns the status and the parsed DICOM JSON answer. */
export async function stowInstances(
  orthanc: OrthancTarget,
  files: Buffer[],
  dicomWebRoot = '/dicom-web',
): Promise<{ status: number; body: unknown }> {
  const { contentType, body } = multipartRelated(files);
  const res = await fetch(`${orthanc.url}${dicomWebRoot}/studies`, {
    method: 'POST',
    headers: { authorization: orthanc.authHeader, 'content-type': contentType, accept: 'application/dicom+json' },
    body: asFetchBody(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as unknown) : undefined };
}

/** Splits a multipart/related answer into its parts (bodies are views into `body`). */
export function parseMultipartRelated(contentType: string, body: Buffer): MultipartPart[] {
  const boundary = /boundary="?([^";]+)"?/i.exec(contentType)?.[1];
  if (!boundary) throw new Error(`no boundary in Content-Type: ${contentType}`);
  const delimiter = Buffer.from(`--${boundary}`);
  const parts: MultipartPart[] = [];
  let cursor = body.indexOf(delimiter);
  while (cursor !== -1) {
    const afterDelimiter = cursor + delimiter.length;
    if (body.subarray(afterDelimiter, afterDelimiter + 2).toString() === '--') break; // close delimiter
    const headerEnd = body.indexOf('\r\n\r\n', afterDelimiter);
    if (headerEnd === -1) throw new Error('multipart part without a header terminator');
    const next = body.indexOf(Buffer.concat([Buffer.from('\r\n'), delimiter]), headerEnd + 4);
    if (next === -1) throw new Error('multipart body without a closing delimiter');
    const headers = parseHeaders(body.subarray(afterDelimiter, headerEnd).toString('latin1'));
    parts.push({ headers, body: body.subarray(headerEnd + 4, next) });
    cursor = next + 2;
  }
  return parts;
}

function parseHeaders(block: string): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const line of block.split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return headers;
}
