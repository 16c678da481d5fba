import { crc32c } from '@node-rs/crc32';
import { FILE_CRC_SIZE, fileSizeForEntries, HEADER_SIZE, MAP_MAGIC, MAP_VERSION } from './layout.ts';
import { PtrackMap } from './map.ts';

/** The map file is checked in blocks of this many bytes; damage costs false positives in that block only. */
export const CRC_BLOCK_SIZE = 65536;

/** A checkpoint's bytes (ptrack 2.4 layout with its trailing CRC) and the CRC-32C of each file block. */
export interface MapFileImage {
  readonly bytes: Uint8Array;
  readonly blockCrcs: Uint32Array;
}

/** Builds the file image from a map snapshot (header + entries, see PtrackMap.snapshot). */
export function encodeMapFile(snapshot: Uint8Array): MapFileImage {
  const bytes = new Uint8Array(snapshot.length + FILE_CRC_SIZE);
  bytes.set(snapshot, 0);
  new DataView(bytes.buffer).setUint32(snapshot.length, crc32c(snapshot), true);
  return { bytes, blockCrcs: blockCrcsOf(bytes) };
}

export function blockCrcsOf(bytes: Uint8Array): Uint32Array {
  const crcs = new Uint32Array(Math.ceil(bytes.length / CRC_BLOCK_SIZE));
  for (let i = 0; i < crcs.length; i++) {
    crcs[i] = crc32c(bytes.subarray(i * CRC_BLOCK_SIZE, (i + 1) * CRC_BLOCK_SIZE));
  }
  return crcs;
}

/** What the catalog knows about the last durable checkpoint: it ties a file to it. */
export interface CheckpointRecord {
  readonly entries: number;
  readonly initLsn: number;
  readonly checkpointLsn: number;
  readonly blockCrcs: Uint32Array | null;
}

export interface LoadedMap {
  readonly map: PtrackMap;
  /** Indexes of the file blocks whose CRC failed (their entries now hold the checkpoint LSN). */
  readonly damagedBlocks: readonly number[];
  /** Why the whole file was treated as damaged, if it was. */
  readonly wholeFileDamage?: string;
}

/**
 * Loads a checkpoint file (or its absence, `null`) against the catalog's record of that checkpoint. A
 * block whose CRC fails has all its entries set to the checkpoint LSN; a file that cannot be tied to the
 * record at all (missing, wrong size, bad header, no recorded CRCs) is treated as wholly damaged the same
 * way. init_lsn comes from the record, so repairable damage never moves it.
 */
export function loadMapFile(file: Uint8Array | null, record: CheckpointRecord): LoadedMap {
  const map = PtrackMap.withEntries(record.entries, record.initLsn);
  const whole = (why: string): LoadedMap => {
    map.fillEntries(0, record.entries, record.checkpointLsn);
    return { map, damagedBlocks: [], wholeFileDamage: why };
  };
  const expectedSize = fileSizeForEntries(record.entries);
  if (file === null) return whole('the map file is missing');
  if (file.length !== expectedSize)
    return whole(`the map file is ${file.length} bytes, expected ${expectedSize}`);
  if (record.blockCrcs === null || record.blockCrcs.length !== Math.ceil(expectedSize / CRC_BLOCK_SIZE)) {
    return whole('the catalog holds no block checksums for this checkpoint');
  }
  const headerOk =
    MAP_MAGIC.every((b, i) => file[i] === b) &&
    new DataView(file.buffer, file.byteOffset).getUint32(4, true) === MAP_VERSION;
  const actual = blockCrcsOf(file);
  const damaged: number[] = [];
  for (let i = 0; i < actual.length; i++) if (actual[i] !== record.blockCrcs[i]) damaged.push(i);
  if (!headerOk && !damaged.includes(0))
    return whole('the map file header is not ptrack 2.4 (magic "ptk\\0", version 220)');
  new Uint8Array(map.buffer).set(file.subarray(HEADER_SIZE, expectedSize - FILE_CRC_SIZE), HEADER_SIZE);
  for (const block of damaged) {
    const firstByte = block * CRC_BLOCK_SIZE;
    const from = Math.max(0, Math.floor((firstByte - HEADER_SIZE) / 8));
    const to = Math.min(record.entries, Math.ceil((firstByte + CRC_BLOCK_SIZE - HEADER_SIZE) / 8));
    map.fillEntries(from, to, record.checkpointLsn);
  }
  return { map, damagedBlocks: damaged };
}
