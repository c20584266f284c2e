// Synthetic DICOM Part-10 files (Explicit VR Little Endian, uncompressed) with real pixel data:
// a few patients with CT- and MR-like series that OHIF can stack into volumes. UIDs are derived
// from a seed, so the same spec always yields the same files and tests can assert exact values.
import { createHash } from 'node:crypto';
// @ts-expect-error -- dcmjs ships no type declarations; the few members used are typed below.
import dcmjsUntyped from 'dcmjs';

// Under Jest, code runs in a vm context where every global lookup (`Math`) goes through slow
// interceptors; taken once here, the per-pixel loops below are ~7x faster overall there (the demo
// set generates in ~1 s instead of ~6.5 s).
const { round, min, max } = Math;

// ---------------------------------------------------------------------------------------------
// Public API

export type Modality = 'CT' | 'MR';
export type Orientation = 'axial' | 'sagittal' | 'coronal';

export interface SeriesSpec {
  modality: Modality;
  description: string;
  slices: number;
  /** Default 512 for CT, 256 for MR. */
  rows?: number;
  columns?: number;
  orientation?: Orientation;
  /** CT only: PixelRepresentation 1 storing HU directly (intercept 0) instead of unsigned + -1024. */
  signed?: boolean;
  /** MR only: which tissues are bright. Default T1. */
  weighting?: 'T1' | 'T2';
  /** mm; defaults give a ~360 mm CT / ~240 mm MR field of view. */
  pixelSpacing?: number;
  sliceThickness?: number;
}

export interface StudySpec {
  description: string;
  /** YYYYMMDD */
  date: string;
  accessionNumber: string;
  /** InstitutionName (0008,0080) of every instance; absent: none. */
  institution?: string;
  series: SeriesSpec[];
}

export interface PatientSpec {
  /** DICOM PN, e.g. 'DOE^ALICE' */
  name: string;
  id: string;
  birthDate: string;
  sex: 'F' | 'M' | 'O';
  studies: StudySpec[];
}

export interface DemoSpec {
  /** Same seed + same spec → same UIDs and bytes. Use a random seed for never-seen instances. */
  seed: string;
  patients: PatientSpec[];
}

export interface SyntheticInstance {
  patientId: string;
  patientName: string;
  studyInstanceUID: string;
  seriesInstanceUID: string;
  sopInstanceUID: string;
  sopClassUID: string;
  modality: Modality;
  studyDescription: string;
  seriesDescription: string;
  instanceNumber: number;
  rows: number;
  columns: number;
  /** The Part-10 file. */
  file: Buffer;
  /** View into `file`: the single frame's bytes, exactly what a WADO-RS frame retrieve returns. */
  pixelData: Buffer;
}

export const CT_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.2';
export const MR_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.4';
export const EXPLICIT_VR_LITTLE_ENDIAN = '1.2.840.10008.1.2.1';

/** Four patients, five studies, seven series: 92 instances, ~26 MB. */
export const DEFAULT_DEMO_SPEC: DemoSpec = {
  seed: 'pacs-gateway-demo-v1',
  patients: [
    {
      name: 'DOE^ALICE',
      id: 'PAT-0001',
      birthDate: '19710304',
      sex: 'F',
      studies: [
        {
          description: 'CT CHEST',
          date: '20240115',
          accessionNumber: 'ACC-1001',
          institution: 'GENERAL HOSPITAL',
          series: [{ modality: 'CT', description: 'Chest axial 2.5mm', slices: 16, signed: true }],
        },
      ],
    },
    {
      name: 'SMITH^BOB',
      id: 'PAT-0002',
      birthDate: '19630922',
      sex: 'M',
      studies: [
        {
          description: 'MR BRAIN',
          date: '20240203',
          accessionNumber: 'ACC-1002',
          institution: 'GENERAL HOSPITAL',
          series: [
            { modality: 'MR', description: 'T1 axial', slices: 16, weighting: 'T1' },
            { modality: 'MR', description: 'T2 axial', slices: 16, weighting: 'T2' },
            { modality: 'MR', description: 'T1 sagittal', slices: 12, weighting: 'T1', orientation: 'sagittal' },
          ],
        },
      ],
    },
    {
      name: 'MILLER^CAROL',
      id: 'PAT-0003',
      birthDate: '19850611',
      sex: 'F',
      studies: [
        {
          description: 'CT ABDOMEN',
          date: '20240318',
          accessionNumber: 'ACC-1003',
          institution: 'NORTH CLINIC',
          series: [{ modality: 'CT', description: 'Abdomen axial 5mm', slices: 12, sliceThickness: 5 }],
        },
      ],
    },
    {
      name: 'NGUYEN^DAVID',
      id: 'PAT-0004',
      birthDate: '19920129',
      sex: 'M',
      studies: [
        {
          description: 'MR BRAIN FOLLOW-UP',
          date: '20230710',
          accessionNumber: 'ACC-1004',
          institution: 'NORTH CLINIC',
          series: [{ modality: 'MR', description: 'T2 coronal', slices: 12, weighting: 'T2', orientation: 'coronal' }],
        },
        {
          description: 'CT HEAD',
          date: '20240422',
          accessionNumber: 'ACC-1005',
          institution: 'GENERAL HOSPITAL',
          series: [
            { modality: 'CT', description: 'Head axial 5mm', slices: 8, sliceThickness: 5, pixelSpacing: 0.5 },
          ],
        },
      ],
    },
  ],
};

/** All instances of all studies in the spec, in patient / study / series / instance order. */
export function generateStudies(spec: DemoSpec = DEFAULT_DEMO_SPEC): SyntheticInstance[] {
  const instances: SyntheticInstance[] = [];
  for (const patient of spec.patients) {
    patient.studies.forEach((study, studyIndex) => {
      const studyKey = `${spec.seed}/${patient.id}/${studyIndex}`;
      const studyUids = { study: uidFor(studyKey), frameOfReference: uidFor(`${studyKey}/for`) };
      study.series.forEach((series, seriesIndex) => {
        const seriesUid = uidFor(`${studyKey}/${seriesIndex}`);
        for (let slice = 0; slice < series.slices; slice++) {
          const ctx = { patient, study, series, seriesNumber: seriesIndex + 1, slice, studyUids, seriesUid };
          instances.push(buildInstance(ctx, uidFor(`${studyKey}/${seriesIndex}/${slice}`)));
        }
      });
    });
  }
  return instances;
}

/**
 * One CT study of 512×512 slices (512 KiB of pixels each) adding up to about `megabytes` MiB,
 * for tests that stream large answers.
 */
export function largeStudy(opts: { megabytes: number; seed?: string }): SyntheticInstance[] {
  const sliceBytes = 512 * 512 * 2;
  const slices = Math.max(1, Math.ceil((opts.megabytes * 1024 * 1024) / sliceBytes));
  return generateStudies({
    seed: opts.seed ?? 'pacs-gateway-large-v1',
    patients: [
      {
        name: 'LARGE^STUDY',
        id: 'PAT-LARGE',
        birthDate: '19800101',
        sex: 'O',
        studies: [
          {
            description: `CT LARGE ${opts.megabytes} MB`,
            date: '20240501',
            accessionNumber: 'ACC-LARGE',
            series: [{ modality: 'CT', description: 'Large axial 1mm', slices, sliceThickness: 1 }],
          },
        ],
      },
    ],
  });
}

export interface DicomIdentifiers {
  /** '' when the file has none (the US sample). */
  patientId: string;
  studyInstanceUID: string;
  seriesInstanceUID: string;
  sopInstanceUID: string;
  sopClassUID: string;
  transferSyntaxUID: string;
}

/** The identifying UIDs of any Part-10 file (parsing stops before the pixel data). */
export function readDicomIdentifiers(file: Buffer): DicomIdentifiers {
  const parsed = dcmjs.data.DicomMessage.readFile(new Uint8Array(file).buffer, { untilTag: '7FE00010' });
  const ds = dcmjs.data.DicomMetaDictionary.naturalizeDataset(parsed.dict);
  const meta = dcmjs.data.DicomMetaDictionary.naturalizeDataset(parsed.meta);
  return {
    patientId: String(ds.PatientID ?? ''),
    studyInstanceUID: String(ds.StudyInstanceUID),
    seriesInstanceUID: String(ds.SeriesInstanceUID),
    sopInstanceUID: String(ds.SOPInstanceUID),
    sopClassUID: String(ds.SOPClassUID),
    transferSyntaxUID: String(meta.TransferSyntaxUID),
  };
}

/** The same Part-10 file with some attributes replaced (e.g. another StudyInstanceUID), pixel data kept. */
export function rewriteDicom(file: Buffer, changes: NaturalizedDataset): Buffer {
  const parsed = dcmjs.data.DicomMessage.readFile(new Uint8Array(file).buffer, { untilTag: '' });
  const ds = { ...dcmjs.data.DicomMetaDictionary.naturalizeDataset(parsed.dict), ...changes };
  const dict = new dcmjs.data.DicomDict(parsed.meta);
  dict.dict = dcmjs.data.DicomMetaDictionary.denaturalizeDataset(ds);
  return Buffer.from(dict.write());
}

/**
 * A UUID-derived UID (PS3.5 B.2: "2.25." + the UUID as one decimal integer). The UUID is
 * name-based (version 5 layout over SHA-1) so it is stable for a given name.
 */
export function uidFor(name: string): string {
  const bytes = createHash('sha1').update(name).digest().subarray(0, 16);
  bytes[6] = (bytes[6]! & 0x0f) | 0x50;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  return `2.25.${BigInt(`0x${bytes.toString('hex')}`).toString(10)}`;
}

// ---------------------------------------------------------------------------------------------
// dcmjs, typed as far as used here

type DenaturalizedDataset = Record<string, unknown>;
type NaturalizedDataset = Record<string, unknown>;
interface Dcmjs {
  data: {
    DicomDict: new (meta: DenaturalizedDataset) => { dict: DenaturalizedDataset; write(): ArrayBuffer };
    DicomMessage: {
      readFile(
        buffer: ArrayBuffer,
        options: { untilTag: string },
      ): { meta: DenaturalizedDataset; dict: DenaturalizedDataset };
    };
    DicomMetaDictionary: {
      denaturalizeDataset(dataset: NaturalizedDataset): DenaturalizedDataset;
      naturalizeDataset(dataset: DenaturalizedDataset): NaturalizedDataset;
    };
  };
}
const dcmjs = dcmjsUntyped as Dcmjs;

const IMPLEMENTATION_CLASS_UID = uidFor('pacs-gateway synthetic-dicom');

// ---------------------------------------------------------------------------------------------
// Building one instance

interface InstanceContext {
  patient: PatientSpec;
  study: StudySpec;
  series: SeriesSpec;
  seriesNumber: number;
  slice: number;
  studyUids: { study: string; frameOfReference: string };
  seriesUid: string;
}

function buildInstance(ctx: InstanceContext, sopInstanceUID: string): SyntheticInstance {
  const { patient, study, series } = ctx;
  const isCT = series.modality === 'CT';
  const rows = series.rows ?? (isCT ? 512 : 256);
  const columns = series.columns ?? rows;
  const geometry = sliceGeometry(series, rows, columns, ctx.slice);
  const pixels = isCT ? ctPixels(geometry, series.signed === true) : mrPixels(geometry, series.weighting ?? 'T1');
  const sopClassUID = isCT ? CT_IMAGE_STORAGE : MR_IMAGE_STORAGE;
  const instanceNumber = ctx.slice + 1;

  const dataset: NaturalizedDataset = {
    SOPClassUID: sopClassUID,
    SOPInstanceUID: sopInstanceUID,
    ImageType: ['ORIGINAL', 'PRIMARY', geometry.orientation.toUpperCase()],
    StudyDate: study.date,
    SeriesDate: study.date,
    ContentDate: study.date,
    StudyTime: '093000',
    SeriesTime: `09${String(30 + ctx.seriesNumber).padStart(2, '0')}00`,
    ContentTime: `09${String(30 + ctx.seriesNumber).padStart(2, '0')}${String(ctx.slice % 60).padStart(2, '0')}`,
    AccessionNumber: study.accessionNumber,
    Modality: series.modality,
    Manufacturer: 'pacs-gateway synthetic',
    ReferringPhysicianName: '',
    ...(study.institution ? { InstitutionName: study.institution } : {}),
    StudyDescription: study.description,
    SeriesDescription: series.description,
    PatientName: patient.name,
    PatientID: patient.id,
    PatientBirthDate: patient.birthDate,
    PatientSex: patient.sex,
    SliceThickness: geometry.sliceThickness,
    PatientPosition: 'HFS',
    StudyInstanceUID: ctx.studyUids.study,
    SeriesInstanceUID: ctx.seriesUid,
    StudyID: study.accessionNumber,
    SeriesNumber: ctx.seriesNumber,
    AcquisitionNumber: 1,
    InstanceNumber: instanceNumber,
    ImagePositionPatient: geometry.position.map(round6),
    ImageOrientationPatient: [...geometry.rowDirection, ...geometry.columnDirection],
    FrameOfReferenceUID: ctx.studyUids.frameOfReference,
    PositionReferenceIndicator: '',
    SliceLocation: round6(geometry.sliceLocation),
    SamplesPerPixel: 1,
    PhotometricInterpretation: 'MONOCHROME2',
    Rows: rows,
    Columns: columns,
    PixelSpacing: [geometry.pixelSpacing, geometry.pixelSpacing],
    BitsAllocated: 16,
    BitsStored: 12,
    HighBit: 11,
    PixelRepresentation: pixels.signed ? 1 : 0,
    ...(isCT ? ctAttributes(pixels.signed) : mrAttributes(series.weighting ?? 'T1')),
    PixelData: [pixels.data.buffer],
    // Dictionary says "OB or OW"; 16-bit pixels are OW.
    _vrMap: { PixelData: 'OW' },
  };
  const file = writePart10(dataset);
  const pixelBytes = pixels.data.byteLength;
  return {
    patientId: patient.id,
    patientName: patient.name,
    studyInstanceUID: ctx.studyUids.study,
    seriesInstanceUID: ctx.seriesUid,
    sopInstanceUID,
    sopClassUID,
    modality: series.modality,
    studyDescription: study.description,
    seriesDescription: series.description,
    instanceNumber,
    rows,
    columns,
    file,
    // Pixel Data is the last element and its length is even, so it ends the file unpadded.
    pixelData: file.subarray(file.length - pixelBytes),
  };
}

function ctAttributes(signed: boolean): NaturalizedDataset {
  return {
    KVP: 120,
    ConvolutionKernel: 'STANDARD',
    WindowCenter: 40,
    WindowWidth: 400,
    // Signed pixels store HU directly; unsigned ones are offset so air (-1000 HU) stays ≥ 0.
    RescaleIntercept: signed ? 0 : -1024,
    RescaleSlope: 1,
    RescaleType: 'HU',
  };
}

function mrAttributes(weighting: 'T1' | 'T2'): NaturalizedDataset {
  const t1 = weighting === 'T1';
  return {
    ScanningSequence: 'SE',
    SequenceVariant: 'NONE',
    ScanOptions: '',
    MRAcquisitionType: '2D',
    RepetitionTime: t1 ? 500 : 4000,
    EchoTime: t1 ? 15 : 100,
    EchoTrainLength: t1 ? 1 : 16,
    MagneticFieldStrength: 1.5,
    WindowCenter: 1500,
    WindowWidth: 3000,
  };
}

function writePart10(dataset: NaturalizedDataset): Buffer {
  const meta = {
    FileMetaInformationVersion: new Uint8Array([0, 1]).buffer,
    MediaStorageSOPClassUID: dataset.SOPClassUID,
    MediaStorageSOPInstanceUID: dataset.SOPInstanceUID,
    TransferSyntaxUID: EXPLICIT_VR_LITTLE_ENDIAN,
    ImplementationClassUID: IMPLEMENTATION_CLASS_UID,
    ImplementationVersionName: 'PACSGW_SYNTH_1',
  };
  const dict = new dcmjs.data.DicomDict(dcmjs.data.DicomMetaDictionary.denaturalizeDataset(meta));
  dict.dict = dcmjs.data.DicomMetaDictionary.denaturalizeDataset(dataset);
  return Buffer.from(dict.write());
}

// ---------------------------------------------------------------------------------------------
// Geometry: every pixel maps to a point in patient space (mm), and the phantoms are defined in
// that space, so axial, sagittal and coronal series of one study show the same anatomy and
// OHIF's MPR of any series looks coherent.

type Vec3 = [number, number, number];

interface SliceGeometry {
  orientation: Orientation;
  rows: number;
  columns: number;
  pixelSpacing: number;
  sliceThickness: number;
  rowDirection: Vec3;
  columnDirection: Vec3;
  /** Patient coordinates of the centre of the first (top-left) pixel. */
  position: Vec3;
  sliceLocation: number;
}

const DIRECTIONS: Record<Orientation, { row: Vec3; column: Vec3; normal: Vec3 }> = {
  axial: { row: [1, 0, 0], column: [0, 1, 0], normal: [0, 0, 1] },
  sagittal: { row: [0, 1, 0], column: [0, 0, -1], normal: [1, 0, 0] },
  coronal: { row: [1, 0, 0], column: [0, 0, -1], normal: [0, 1, 0] },
};

function sliceGeometry(series: SeriesSpec, rows: number, columns: number, slice: number): SliceGeometry {
  const orientation = series.orientation ?? 'axial';
  const isCT = series.modality === 'CT';
  const pixelSpacing = series.pixelSpacing ?? (isCT ? 0.7 : 240 / Math.max(rows, columns));
  const sliceThickness = series.sliceThickness ?? (isCT ? 2.5 : 5);
  const { row, column, normal } = DIRECTIONS[orientation];
  // Slices are centred on the origin; the in-plane image is centred too.
  const sliceLocation = (slice - (series.slices - 1) / 2) * sliceThickness;
  const halfWidth = ((columns - 1) / 2) * pixelSpacing;
  const halfHeight = ((rows - 1) / 2) * pixelSpacing;
  const position = [0, 1, 2].map(
    (axis) => normal[axis]! * sliceLocation - row[axis]! * halfWidth - column[axis]! * halfHeight,
  ) as Vec3;
  return {
    orientation,
    rows,
    columns,
    pixelSpacing: round6(pixelSpacing),
    sliceThickness,
    rowDirection: row,
    columnDirection: column,
    position,
    sliceLocation,
  };
}

type Sampler = (x: number, y: number, z: number) => number;

/** Fills `out` with `value(x, y, z)` at every pixel centre, in row-major order (as stored). */
function sample(geometry: SliceGeometry, out: Int16Array | Uint16Array, value: Sampler): void {
  const { rows, columns, pixelSpacing: d, rowDirection: r, columnDirection: c, position: p } = geometry;
  let i = 0;
  for (let row = 0; row < rows; row++) {
    for (let col = 0; col < columns; col++) {
      out[i++] = value(
        p[0] + (r[0] * col + c[0] * row) * d,
        p[1] + (r[1] * col + c[1] * row) * d,
        p[2] + (r[2] * col + c[2] * row) * d,
      );
    }
  }
}

/** An axis-aligned ellipsoid in patient space (mm): centre and semi-axes. */
type Ellipsoid = readonly [cx: number, cy: number, cz: number, rx: number, ry: number, rz: number];

// Indexing rather than destructuring the tuple: this runs for every pixel and destructuring
// goes through the iterator protocol, which made generation ~3x slower.
function inside(e: Ellipsoid, x: number, y: number, z: number): boolean {
  const dx = (x - e[0]) / e[3];
  const dy = (y - e[1]) / e[4];
  const dz = (z - e[2]) / e[5];
  return dx * dx + dy * dy + dz * dz <= 1;
}

// LPS axes: +x patient left, +y posterior, +z head.
const TORSO = {
  body: [0, 0, 0, 160, 115, 400],
  rightLung: [-70, -10, 20, 45, 60, 120],
  leftLung: [70, -10, 20, 45, 60, 120],
  spine: [0, 80, 0, 18, 18, 1000],
  lesion: [0, -60, 0, 20, 20, 20],
} as const satisfies Record<string, Ellipsoid>;

const HEAD = {
  scalp: [0, 0, 0, 80, 100, 75],
  brain: [0, 0, 0, 72, 92, 67],
  rightVentricle: [-12, -5, 10, 8, 30, 14],
  leftVentricle: [12, -5, 10, 8, 30, 14],
  lesion: [30, 35, 15, 12, 12, 12],
} as const satisfies Record<string, Ellipsoid>;

/** Torso phantom in HU: body with a left-right gradient, two lungs, a spine, a spherical lesion. */
function ctPixels(geometry: SliceGeometry, signed: boolean): { data: Int16Array | Uint16Array; signed: boolean } {
  const length = geometry.rows * geometry.columns;
  const data = signed ? new Int16Array(length) : new Uint16Array(length);
  const offset = signed ? 0 : 1024;
  sample(geometry, data, (x, y, z) => {
    let hu = -1000;
    if (inside(TORSO.body, x, y, z)) {
      hu = 40 + x * 0.5;
      if (inside(TORSO.rightLung, x, y, z) || inside(TORSO.leftLung, x, y, z)) hu = -800;
      if (inside(TORSO.spine, x, y, z)) hu = 700;
      if (inside(TORSO.lesion, x, y, z)) hu = 160;
    }
    // Stored values must fit 12 bits: -2048..2047 signed, 0..4095 unsigned.
    return min(max(round(hu + offset), signed ? -2048 : 0), signed ? 2047 : 4095);
  });
  return { data, signed };
}

/** Head phantom: scalp ring, brain with a smooth bias field, ventricles, a lesion. */
function mrPixels(geometry: SliceGeometry, weighting: 'T1' | 'T2'): { data: Uint16Array; signed: false } {
  const t1 = weighting === 'T1';
  const data = new Uint16Array(geometry.rows * geometry.columns);
  sample(geometry, data, (x, y, z) => {
    if (!inside(HEAD.scalp, x, y, z)) return 0;
    if (!inside(HEAD.brain, x, y, z)) return t1 ? 2600 : 900;
    if (inside(HEAD.rightVentricle, x, y, z) || inside(HEAD.leftVentricle, x, y, z)) return t1 ? 400 : 3600;
    if (inside(HEAD.lesion, x, y, z)) return t1 ? 900 : 3000;
    const bias = 1 + (y / 100) * 0.15; // coil sensitivity falls off front to back
    return round((t1 ? 1800 : 1400) * bias);
  });
  return { data, signed: false };
}

function round6(value: number): number {
  return round(value * 1e6) / 1e6;
}
