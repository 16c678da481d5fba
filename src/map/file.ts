import { closeSync, fstatSync, openSync } from 'node:fs';
import { crc32c } from '@node-rs/crc32';
import { readAt, writeFileDurably, writeFileDurablyAsync } from './durable.ts';
import {
  FILE_CRC_SIZE,
  fileSizeForEntries,
  HEADER_SIZE,
  INIT_LSN_OFFSET,
  MAP_MAGIC,
  MAP_VERSION,
} from './layout.ts';
import { PtrackMap } from './map.ts';

/** The map file is checked in blocks of this many bytes; damage costs false positives in that block only. */
export const CRC_BLOCK_SIZE = 65536;

/** The file is written through a buffer of this many bytes: a whole number of CRC blocks. */
const PIECE_SIZE = 16 * CRC_BLOCK_SIZE;

/**
 * The live map as ptrack 2.4's file with its trailing CRC-32C, a piece at a time through one small
 * buffer (see PtrackMap.copyRange), so that writing never holds a second copy of a large map; each
 * file block's CRC-32C goes into `blockCrcs` as its piece is made.
 */
function* mapFilePieces(map: PtrackMap, blockCrcs: Uint32Array): Generator<Uint8Array> {
  const size = map.buffer.byteLength;
  const fileSize = size + FILE_CRC_SIZE;
  const buffer = new Uint8Array(PIECE_SIZE);
  let crc = 0;
  for (let at = 0; at < fileSize; at += PIECE_SIZE) {
    const piece = buffer.subarray(0, Math.min(PIECE_SIZE, fileSize - at));
    const mapPart = piece.subarray(0, Math.min(piece.length, size - at));
    map.copyRange(mapPart, at);
    crc = crc32c(mapPart, crc);
    // The CRC (4 bytes at an offset that is a multiple of 8) never straddles two pieces.
    if (mapPart.length < piece.length) new DataView(piece.buffer).setUint32(mapPart.length, crc, true);
    for (let b = 0; b < piece.length; b += CRC_BLOCK_SIZE) {
      blockCrcs[(at + b) / CRC_BLOCK_SIZE] = crc32c(piece.subarray(b, b + CRC_BLOCK_SIZE));
    }
    yield piece;
  }
}

function blockCrcsFor(map: PtrackMap): Uint32Array {
  return new Uint32Array(Math.ceil((map.buffer.byteLength + FILE_CRC_SIZE) / CRC_BLOCK_SIZE));
}

/** Writes the live map to `path` and fsyncs it (see writeFileDurably); returns its block CRCs. */
export function writeMapFile(path: string, map: PtrackMap): Uint32Array {
  const blockCrcs = blockCrcsFor(map);
  writeFileDurably(path, mapFilePieces(map, blockCrcs));
  return blockCrcs;
}

/** writeMapFile with the writes and the fsync off the event loop (a checkpoint of a running daemon). */
export async function writeMapFileAsync(path: string, map: PtrackMap): Promise<Uint32Array> {
  const blockCrcs = blockCrcsFor(map);
  await writeFileDurablyAsync(path, mapFilePieces(map, blockCrcs));
  return blockCrcs;
}

/** What the catalog knows about the last durable checkpoint: it ties a file to it. */
export interface CheckpointRecord {
  readonly entries: number;
  readonly initLsn: number;
  readonly checkpointLsn: number;
  readonly blockCrcs: Uint32Array | null;
  /** The CRCs of a newer file recorded before it replaced the checkpoint's (Catalog.mapState). */
  readonly pendingBlockCrcs: Uint32Array | null;
}

export interface LoadedMap {
  readonly map: PtrackMap;
  /** Indexes of the file blocks whose CRC failed (their entries now hold the checkpoint LSN). */
  readonly damagedBlocks: readonly number[];
  /**
   * What the catalog should hold for the file as it is: each whole block's CRC, and for a damaged block
   * one its bytes do not have (it stays damaged until a checkpoint rewrites it); null when the whole
   * file was damaged.
   */
  readonly blockCrcs: Uint32Array | null;
  /** Why the whole file was treated as damaged, if it was. */
  readonly wholeFileDamage?: string;
  /** The init_lsn the file's header holds (null when the whole file was treated as damaged). */
  readonly fileInitLsn: number | null;
}

/**
 * Loads the checkpoint file at `path`, read straight into the map's shared memory, against the catalog's
 * record of that checkpoint. A block is whole if its CRC is the record's or the pending file's (that file
 * holds every mark the checkpoint does, and later ones). A block whose CRC fails has all its entries set
 * to the checkpoint LSN; a file that cannot be tied to the record at all (missing, wrong size, bad
 * header, no recorded CRCs) is treated as wholly damaged the same way. init_lsn comes from the record,
 * so repairable damage never moves it.
 */
export function loadMapFile(path: string, record: CheckpointRecord): LoadedMap {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return loadFrom(null, record);
    throw e;
  }
  try {
    return loadFrom(fd, record);
  } finally {
    closeSync(fd);
  }
}

function loadFrom(fd: number | null, record: CheckpointRecord): LoadedMap {
  const map = PtrackMap.withEntries(record.entries, record.initLsn);
  const whole = (why: string): LoadedMap => {
    map.fillEntries(0, record.entries, record.checkpointLsn);
    return { map, damagedBlocks: [], blockCrcs: null, wholeFileDamage: why, fileInitLsn: null };
  };
  const expectedSize = fileSizeForEntries(record.entries);
  if (fd === null) return whole('the map file is missing');
  const size = fstatSync(fd).size;
  if (size !== expectedSize) return whole(`the map file is ${size} bytes, expected ${expectedSize}`);
  const blocks = Math.ceil(expectedSize / CRC_BLOCK_SIZE);
  const known = [record.blockCrcs, record.pendingBlockCrcs].filter(
    (c): c is Uint32Array => c?.length === blocks,
  );
  if (known.length === 0) return whole('the catalog holds no block checksums for this checkpoint');
  // The entries go straight into the shared buffer; the file's header and CRC are read aside, so the
  // map keeps the header made from the record.
  const header = new Uint8Array(HEADER_SIZE);
  const trailer = new Uint8Array(FILE_CRC_SIZE);
  const entries = new Uint8Array(map.buffer, HEADER_SIZE);
  readAt(fd, header, 0);
  readAt(fd, entries, HEADER_SIZE);
  readAt(fd, trailer, expectedSize - FILE_CRC_SIZE);
  map.countUsedEntries();
  const headerOk =
    MAP_MAGIC.every((b, i) => header[i] === b) &&
    new DataView(header.buffer).getUint32(4, true) === MAP_VERSION;
  const blockCrcs = new Uint32Array(blocks);
  const damaged: number[] = [];
  for (let i = 0; i < blocks; i++) {
    const crc = fileBlockCrc(header, entries, trailer, i);
    const intact = known.some((c) => c[i] === crc);
    blockCrcs[i] = intact ? crc : ~crc >>> 0;
    if (!intact) damaged.push(i);
  }
  if (!headerOk && !damaged.includes(0))
    return whole('the map file header is not ptrack 2.4 (magic "ptk\\0", version 220)');
  for (const block of damaged) {
    const firstByte = block * CRC_BLOCK_SIZE;
    const from = Math.max(0, Math.floor((firstByte - HEADER_SIZE) / 8));
    const to = Math.min(record.entries, Math.ceil((firstByte + CRC_BLOCK_SIZE - HEADER_SIZE) / 8));
    map.fillEntries(from, to, record.checkpointLsn);
  }
  const head = new DataView(header.buffer);
  const fileInitLsn =
    head.getUint32(INIT_LSN_OFFSET + 4, true) * 2 ** 32 + head.getUint32(INIT_LSN_OFFSET, true);
  return { map, damagedBlocks: damaged, blockCrcs, fileInitLsn };
}

/** The CRC-32C of file block `i`, the file being header + entries + trailer. */
function fileBlockCrc(header: Uint8Array, entries: Uint8Array, trailer: Uint8Array, i: number): number {
  const from = i * CRC_BLOCK_SIZE;
  const to = Math.min(from + CRC_BLOCK_SIZE, HEADER_SIZE + entries.length + trailer.length);
  let crc = 0;
  if (from < HEADER_SIZE) crc = crc32c(header.subarray(from), crc);
  const a = Math.max(from, HEADER_SIZE) - HEADER_SIZE;
  const b = Math.min(to - HEADER_SIZE, entries.length);
  if (b > a) crc = crc32c(entries.subarray(a, b), crc);
  if (to > HEADER_SIZE + entries.length) {
    crc = crc32c(
      trailer.subarray(Math.max(0, from - HEADER_SIZE - entries.length), to - HEADER_SIZE - entries.length),
      crc,
    );
  }
  return crc;
}
