import { closeSync, fstatSync, openSync, readdirSync, readFileSync, readSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { formatLsn, type Lsn } from '../wal/index.ts';
import { ExitError } from './errors.ts';

/** A WAL segment file named as in pg_wal: TTTTTTTTXXXXXXXXYYYYYYYY, optionally gzipped. */
export interface SegmentFile {
  readonly path: string;
  readonly tli: number;
  /** The two halves of the name after the timeline (the segment number needs the segment size). */
  readonly logId: number;
  readonly segId: number;
  readonly gzip: boolean;
}

const SEGMENT_NAME = /^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})(\.gz)?$/;

export function parseSegmentName(path: string): SegmentFile | null {
  const m = SEGMENT_NAME.exec(basename(path));
  if (!m) return null;
  return {
    path,
    tli: Number.parseInt(m[1], 16),
    logId: Number.parseInt(m[2], 16),
    segId: Number.parseInt(m[3], 16),
    gzip: m[4] !== undefined,
  };
}

export function segmentNumber(f: SegmentFile, segmentSize: number): number {
  return f.logId * (0x1_0000_0000 / segmentSize) + f.segId;
}

/**
 * The segment files named by `paths` (files, or directories whose segment files are taken), one per
 * segment number — from `timeline` if given, else from the highest timeline that has it — in order.
 */
export function findSegmentFiles(paths: readonly string[], timeline?: number): SegmentFile[] {
  const found: SegmentFile[] = [];
  for (const p of paths) {
    let isDir: boolean;
    try {
      isDir = statSync(p).isDirectory();
    } catch {
      throw new ExitError(`could not open "${p}": no such file or directory`);
    }
    if (isDir) {
      for (const name of readdirSync(p)) {
        const f = parseSegmentName(join(p, name));
        if (f) found.push(f);
      }
    } else {
      const f = parseSegmentName(p);
      if (!f)
        throw new ExitError(`"${p}" is not named like a WAL segment file (TTTTTTTTXXXXXXXXYYYYYYYY[.gz])`);
      found.push(f);
    }
  }
  const bySegment = new Map<string, SegmentFile>();
  for (const f of found) {
    if (timeline !== undefined && f.tli !== timeline) continue;
    const key = `${f.logId}/${f.segId}`;
    const seen = bySegment.get(key);
    if (!seen || f.tli > seen.tli || (f.tli === seen.tli && !f.gzip)) bySegment.set(key, f);
  }
  const files = [...bySegment.values()].sort((a, b) => a.logId - b.logId || a.segId - b.segId);
  if (files.length === 0) {
    throw new ExitError(
      `no WAL segment files found in ${paths.join(', ')}${timeline ? ` on timeline ${timeline}` : ''}`,
    );
  }
  return files;
}

export function readSegment(f: SegmentFile): Buffer {
  const raw = readFileSync(f.path);
  if (!f.gzip) return raw;
  try {
    // Loaded only for a compressed file: importing node:zlib is a few ms of every waldump's start.
    return process.getBuiltinModule('node:zlib').gunzipSync(raw);
  } catch (e) {
    throw new ExitError(`could not decompress "${f.path}": ${(e as Error).message}`);
  }
}

/** The first `n` bytes of a segment file (fewer if it is shorter): a compressed one is read whole. */
function readSegmentStart(f: SegmentFile, n: number): Uint8Array {
  if (f.gzip) return readSegment(f).subarray(0, n);
  const fd = openSync(f.path, 'r');
  try {
    const bytes = new Uint8Array(n);
    return bytes.subarray(0, readSync(fd, bytes, 0, n, 0));
  } finally {
    closeSync(fd);
  }
}

/**
 * wal_segment_size, from the long page header of the first file that has one: pg_wal may also hold
 * preallocated segments of zeros, and those never come first in name order unless nothing precedes them.
 */
export function segmentSizeOfFiles(files: readonly SegmentFile[]): number {
  for (const f of files) {
    const bytes = readSegmentStart(f, 40);
    const dv = new DataView(bytes.buffer, bytes.byteOffset, Math.min(bytes.length, 40));
    if (bytes.length < 40 || (dv.getUint16(2, true) & 0x0002) === 0) continue;
    const size = dv.getUint32(32, true);
    if (size >= 1 << 20 && size <= 1 << 30 && (size & (size - 1)) === 0) return size;
  }
  throw new ExitError(
    `none of the ${files.length} files starts with a WAL long page header (not WAL segments?)`,
  );
}

export interface WalPiece {
  readonly file: SegmentFile;
  readonly lsn: Lsn;
  readonly bytes: Uint8Array;
}

/**
 * Reads segments in order, refusing gaps; a short (truncated) last file is passed on as it is.
 *
 * With `recycle`, plain files are read in 256 kB pieces into two alternating buffers instead of a fresh
 * buffer per file: no page faults on hundreds of MB of new memory, and each piece is still in the CPU
 * cache when the decoder reads it. A piece's bytes then stay valid only until the next-but-one piece is
 * read, which suits a WalStreamDecoder whose records are consumed as they come.
 */
export function* readSegments(
  files: readonly SegmentFile[],
  segmentSize: number,
  fromLsn = 0,
  options: { recycle?: boolean } = {},
): Generator<WalPiece> {
  let expected: number | undefined;
  const buffers = options.recycle
    ? [Buffer.allocUnsafeSlow(RECYCLED_PIECE), Buffer.allocUnsafeSlow(RECYCLED_PIECE)]
    : [];
  let turn = 0;
  for (const file of files) {
    const segno = segmentNumber(file, segmentSize);
    const lsn = segno * segmentSize;
    if (lsn + segmentSize <= fromLsn) continue;
    if (expected !== undefined && segno !== expected) {
      throw new ExitError(
        `missing WAL segment: after ${basename(files[0].path)}… the segment at ${formatLsn(expected * segmentSize)} is absent, next is ${basename(file.path)}`,
      );
    }
    expected = segno + 1;
    if (!options.recycle || file.gzip) {
      const bytes = readSegment(file);
      if (bytes.length > segmentSize) throw tooLarge(file, bytes.length, segmentSize);
      yield { file, lsn, bytes };
      continue;
    }
    const fd = openSync(file.path, 'r');
    try {
      const size = fstatSync(fd).size;
      if (size > segmentSize) throw tooLarge(file, size, segmentSize);
      for (let at = 0; at < size; ) {
        const buffer = buffers[turn++ % 2];
        const n = readSync(fd, buffer, 0, Math.min(buffer.length, size - at), at);
        if (n === 0) break;
        yield { file, lsn: lsn + at, bytes: buffer.subarray(0, n) };
        at += n;
      }
    } finally {
      closeSync(fd);
    }
  }
}

const RECYCLED_PIECE = 256 * 1024;

function tooLarge(f: SegmentFile, size: number, segmentSize: number): ExitError {
  return new ExitError(`"${f.path}" is ${size} bytes, larger than the segment size ${segmentSize}`);
}
