import { closeSync, fstatSync, openSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { crc32c } from '@node-rs/crc32';
import { readAt, writeAll } from './durable.ts';
import { type DirtyLines, dirtyWordsOf, LINE_ENTRIES, linesOf, type PtrackMap } from './map.ts';

/**
 * ptrack.map.log: what the checkpoints since the map file was last written whole changed. A checkpoint
 * appends one record, the lines whose dirty bit it took (PtrackMap.takeDirtyLines) with their entries
 * as they were then; loading replays the records over the map file, keeping each entry's maximum, as
 * far as the catalog says the log is durable (anything after that is a checkpoint that never counted).
 * Little-endian, like the map file:
 *
 *   0..3    magic "ptkl"
 *   4..7    uint32 version = 1
 *   8..11   uint32 entries of the map the record is for
 *   12..15  uint32 lines in the record, c
 *   16..23  uint64 the checkpoint LSN
 *   24..27  uint32 CRC-32C of the lines' entries
 *   28..31  uint32 CRC-32C of bytes 0..27 and the line numbers
 *   32..    c uint32 line numbers (line n holds entries [8n, 8n + 8)), ascending
 *   then    c lines of 8 uint64 entries (a short last line is padded with zeros)
 */
const LOG_MAGIC = 0x6c6b7470; // "ptkl" read as a little-endian uint32
const LOG_VERSION = 1;
const RECORD_HEADER = 32;
const LINE_BYTES = LINE_ENTRIES * 8;
const TWO_32 = 0x1_0000_0000;

/**
 * The catalog keeps a bit per region of REGION_LINES lines (32 words of dirty bits) that the log holds:
 * a log record too damaged to say which lines it held costs false positives in those regions only.
 */
const REGION_LINES = 32 * 32;

export function logRecordSize(lines: number): number {
  return RECORD_HEADER + lines * (4 + LINE_BYTES);
}

/** How many lines a set of taken dirty bits names. */
export function countDirtyLines(taken: DirtyLines): number {
  let n = 0;
  for (let k = 0; k < taken.bits.length; k++) {
    let v = taken.bits[k];
    while (v !== 0) {
      v &= v - 1;
      n++;
    }
  }
  return n;
}

/** Words of a region bitmap for a map of `entries` entries. */
export function regionWordsOf(entries: number): number {
  return Math.ceil(dirtyWordsOf(entries) / 32);
}

/** A region bitmap holding both (neither is changed). */
export function unionRegions(a: Uint32Array | null, b: Uint32Array): Uint32Array {
  const out = Uint32Array.from(b);
  if (a?.length === b.length) for (let i = 0; i < out.length; i++) out[i] |= a[i];
  return out;
}

/** The checkpoint log says less than the catalog says it durably holds: the caller writes the whole map. */
export class MapLogError extends Error {
  override readonly name = 'MapLogError';
}

/** Lines a record is written and read in at a time: 1 MB of entries and 64 kB of line numbers. */
const PIECE_LINES = 16384;

/** The line numbers whose dirty bits are set in `taken`, ascending, a piece of up to PIECE_LINES at a time. */
function* linePieces(taken: DirtyLines, into: Uint32Array): Generator<Uint32Array> {
  let n = 0;
  for (let k = 0; k < taken.words.length; k++) {
    const w = taken.words[k];
    const bits = taken.bits[k];
    for (let b = 0; b < 32; b++) {
      if (!(bits & (1 << b))) continue;
      into[n++] = w * 32 + b;
      if (n === into.length) {
        yield into;
        n = 0;
      }
    }
  }
  if (n > 0) yield into.subarray(0, n);
}

function bytesOf(words: Uint32Array): Uint8Array {
  return new Uint8Array(words.buffer, words.byteOffset, words.byteLength);
}

export interface LogRecordWritten {
  /** The record's size in bytes. */
  readonly bytes: number;
  /** The regions its lines are in (a bit per REGION_LINES lines). */
  readonly regions: Uint32Array;
}

/**
 * Appends the record of a checkpoint as of `lsn` — the lines whose dirty bits it took, as the map has them
 * now — at byte `at`, where the durable log ends by the catalog (overwriting a record that never
 * counted), and fsyncs it. It is written a piece at a time (a record is never held whole: under heavy
 * load one may be a quarter of the map), the header with both CRCs last. The catalog counts it only
 * after this resolves.
 */
export async function appendLogRecord(
  path: string,
  at: number,
  map: PtrackMap,
  taken: DirtyLines,
  lsn: number,
): Promise<LogRecordWritten> {
  const lines = countDirtyLines(taken);
  const listBuffer = new Uint32Array(PIECE_LINES);
  const data = new Uint32Array(PIECE_LINES * LINE_ENTRIES * 2);
  const regions = new Uint32Array(regionWordsOf(map.entries));
  const file = await open(path, at === 0 ? 'w' : 'r+', 0o600);
  try {
    const size = (await file.stat()).size;
    if (size < at) {
      throw new MapLogError(`${path} is ${size} bytes, but the catalog counts ${at} bytes of it as written`);
    }
    let dataCrc = 0;
    let k = 0;
    for (const list of linePieces(taken, listBuffer)) {
      const piece = data.subarray(0, list.length * LINE_ENTRIES * 2);
      piece.fill(0);
      map.copyLines(list, piece);
      dataCrc = crc32c(bytesOf(piece), dataCrc);
      for (const line of list) {
        const region = Math.floor(line / REGION_LINES);
        regions[region >>> 5] |= 1 << (region & 31);
      }
      await writeAll(file, bytesOf(list), at + RECORD_HEADER + k * 4);
      await writeAll(file, bytesOf(piece), at + RECORD_HEADER + lines * 4 + k * LINE_BYTES);
      k += list.length;
    }
    const header = new Uint8Array(RECORD_HEADER);
    const head = new DataView(header.buffer);
    head.setUint32(0, LOG_MAGIC, true);
    head.setUint32(4, LOG_VERSION, true);
    head.setUint32(8, map.entries, true);
    head.setUint32(12, lines, true);
    head.setUint32(16, lsn % TWO_32, true);
    head.setUint32(20, Math.floor(lsn / TWO_32), true);
    head.setUint32(24, dataCrc, true);
    let headCrc = crc32c(header.subarray(0, 28));
    for (const list of linePieces(taken, listBuffer)) headCrc = crc32c(bytesOf(list), headCrc);
    head.setUint32(28, headCrc, true);
    await writeAll(file, header, at);
    await file.datasync();
  } finally {
    await file.close();
  }
  return { bytes: logRecordSize(lines), regions };
}

/** What the catalog says of the log: how much of it is durable, which regions it holds, its repair LSN. */
export interface LogState {
  readonly logBytes: number;
  readonly logRegions: Uint32Array | null;
  /** The checkpoint LSN: entries whose log record is damaged are set to it (false positives only). */
  readonly checkpointLsn: number;
}

export interface LogReplay {
  readonly records: number;
  /** What was damaged and repaired, if anything. */
  readonly damage?: string;
}

/**
 * Replays the first `logBytes` bytes of the log at `path` over `map` (each entry raised to the record's
 * value). A record whose entries fail their CRC has its lines set to the checkpoint LSN; one whose line
 * numbers cannot be trusted (or a log missing or shorter than the catalog says) has every region the
 * log holds set to it, and ends the replay. Either way WAL replayed from the checkpoint LSN restores
 * what changed after it, so damage costs false positives only.
 */
export function replayMapLog(path: string, map: PtrackMap, state: LogState): LogReplay {
  if (state.logBytes === 0) return { records: 0 };
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    return { records: 0, damage: repairRegions(map, state, `the checkpoint log ${path} is missing`) };
  }
  try {
    return replayFrom(fd, map, state);
  } finally {
    closeSync(fd);
  }
}

function replayFrom(fd: number, map: PtrackMap, state: LogState): LogReplay {
  const size = fstatSync(fd).size;
  if (size < state.logBytes) {
    const why = `the checkpoint log is ${size} bytes, the catalog counts ${state.logBytes}`;
    return { records: 0, damage: repairRegions(map, state, why) };
  }
  const damaged: string[] = [];
  const listBuffer = new Uint32Array(PIECE_LINES);
  const dataBuffer = new Uint32Array(PIECE_LINES * LINE_ENTRIES * 2);
  const header = new Uint8Array(RECORD_HEADER);
  const head = new DataView(header.buffer);
  let records = 0;
  for (let at = 0; at < state.logBytes; records++) {
    const where = `checkpoint log record ${records + 1} (byte ${at})`;
    if (at + RECORD_HEADER > state.logBytes) {
      return { records, damage: repairRegions(map, state, `${where} is cut short`) };
    }
    readAt(fd, header, at);
    const lines = head.getUint32(12, true);
    const total = logRecordSize(lines);
    const fits =
      head.getUint32(0, true) === LOG_MAGIC &&
      head.getUint32(4, true) === LOG_VERSION &&
      head.getUint32(8, true) === map.entries &&
      lines <= linesOf(map.entries) &&
      at + total <= state.logBytes;
    // The record a piece at a time: first its CRCs are checked, then (only if its line numbers are
    // whole) its lines are applied, each as written or, if its entries failed, as the checkpoint LSN.
    const pieces = (visit: (list: Uint32Array, data: Uint32Array) => void) => {
      for (let k = 0; k < lines; k += PIECE_LINES) {
        const n = Math.min(PIECE_LINES, lines - k);
        const list = listBuffer.subarray(0, n);
        const data = dataBuffer.subarray(0, n * LINE_ENTRIES * 2);
        readAt(fd, bytesOf(list), at + RECORD_HEADER + k * 4);
        readAt(fd, bytesOf(data), at + RECORD_HEADER + lines * 4 + k * LINE_BYTES);
        visit(list, data);
      }
    };
    let headCrc = crc32c(header.subarray(0, 28));
    let dataCrc = 0;
    let linesInMap = true;
    if (fits) {
      pieces((list, data) => {
        headCrc = crc32c(bytesOf(list), headCrc);
        dataCrc = crc32c(bytesOf(data), dataCrc);
        for (const line of list) linesInMap &&= line < linesOf(map.entries);
      });
    }
    if (!fits || !linesInMap || headCrc !== head.getUint32(28, true)) {
      return { records, damage: repairRegions(map, state, `${where} has a damaged header or line list`) };
    }
    if (dataCrc === head.getUint32(24, true)) pieces((list, data) => map.raiseLines(list, data));
    else {
      pieces((list) => {
        for (const line of list) {
          map.fillEntries(
            line * LINE_ENTRIES,
            Math.min((line + 1) * LINE_ENTRIES, map.entries),
            state.checkpointLsn,
          );
        }
      });
      damaged.push(`${where} failed its CRC-32C: its ${lines} lines`);
    }
    at += total;
  }
  return damaged.length ? { records, damage: damaged.join('; ') } : { records };
}

/** Every region the catalog says the log holds (all of the map if it says none) set to the checkpoint LSN. */
function repairRegions(map: PtrackMap, state: LogState, why: string): string {
  const regions = state.logRegions;
  const regionEntries = REGION_LINES * LINE_ENTRIES;
  if (regions === null || regions.length !== regionWordsOf(map.entries)) {
    map.fillEntries(0, map.entries, state.checkpointLsn);
    return `${why}: every entry`;
  }
  let n = 0;
  for (let r = 0; r < regions.length * 32; r++) {
    if (!(regions[r >>> 5] & (1 << (r & 31)))) continue;
    const from = r * regionEntries;
    if (from >= map.entries) break;
    map.fillEntries(from, Math.min(from + regionEntries, map.entries), state.checkpointLsn);
    n++;
  }
  return `${why}: the ${n} regions of ${regionEntries} entries it held`;
}
