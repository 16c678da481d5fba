import type { CatalogOp } from '../catalog/index.ts';
import { type MapBuffers, PtrackMap } from '../map/index.ts';
import { type Lsn, WalDecodeError, type WalDecodeErrorCode, WalStreamDecoder } from '../wal/index.ts';
import { WalApplier } from './apply.ts';
import { windowPieces } from './window.ts';

/**
 * One chunk of WAL for a decoder worker: the records that start in [from, stopBefore), read from the
 * shared window, which holds every byte of [from, dataEnd). `from` is a record start or a page boundary
 * (any page boundary is a resync point: the tail of a record begun earlier is skipped by xlp_rem_len);
 * `stopBefore` is a page boundary. A record that runs past stopBefore is finished here, from the bytes
 * after it.
 */
export interface ChunkTask {
  readonly window: SharedArrayBuffer;
  readonly map: MapBuffers;
  readonly from: Lsn;
  readonly stopBefore: Lsn;
  readonly dataEnd: Lsn;
  readonly segmentSize: number;
  readonly blockSize: number;
  readonly major: number;
}

export interface ChunkResult {
  /** What the catalog must learn from these records, in LSN order. */
  readonly ops: CatalogOp[];
  /** The first record decoded and its xl_prev, to check the chain across chunks; null when none. */
  readonly firstLsn: Lsn | null;
  readonly firstPrev: Lsn | null;
  /** The start of the last record decoded. */
  readonly lastLsn: Lsn | null;
  /**
   * Where the next record starts: at or after stopBefore when `complete`, else the start of a record
   * (or a page boundary) the window did not yet hold completely — the rest of this chunk starts there.
   */
  readonly resumeAt: Lsn;
  readonly complete: boolean;
  readonly records: number;
  readonly blocks: number;
  readonly error?: { readonly code: WalDecodeErrorCode; readonly detail: string; readonly lsn: Lsn };
}

/** Decodes a chunk and marks every block it changes in the map (see WalApplier); runs in a worker. */
export function decodeChunk(task: ChunkTask, map: PtrackMap = new PtrackMap(task.map)): ChunkResult {
  const decoder = new WalStreamDecoder({
    startLsn: task.from,
    segmentSize: task.segmentSize,
    blockSize: task.blockSize,
    major: task.major,
  });
  const feedMore = feeder(decoder, windowPieces(task.window, task.from, task.dataEnd));
  feedMore();
  const applier = new WalApplier(map, task.blockSize, task.from);
  let firstLsn: Lsn | null = null;
  let firstPrev: Lsn | null = null;
  let lastLsn: Lsn | null = null;
  let records = 0;
  const result = (complete: boolean, resumeAt: Lsn, error?: ChunkResult['error']): ChunkResult => ({
    ops: applier.takeOps(),
    firstLsn,
    firstPrev,
    lastLsn,
    resumeAt,
    complete,
    records,
    blocks: applier.blocksMarked,
    ...(error && { error }),
  });
  try {
    for (;;) {
      const resumeAt = decoder.resumeLsn;
      if (resumeAt >= task.stopBefore) return result(true, resumeAt);
      const record = decoder.next();
      if (record === null) {
        if (feedMore()) continue;
        const at = decoder.resumeLsn;
        return result(at >= task.stopBefore, at);
      }
      // It starts in the next chunk, which decodes it (found after skipping a long continuation).
      if (record.lsn >= task.stopBefore) return result(true, record.lsn);
      applier.apply(record);
      if (firstLsn === null) {
        firstLsn = record.lsn;
        firstPrev = record.prevLsn;
      }
      lastLsn = record.lsn;
      records++;
    }
  } catch (e) {
    if (!(e instanceof WalDecodeError)) throw e;
    return result(false, decoder.resumeLsn, { code: e.code, detail: e.detail, lsn: e.lsn });
  }
}

/** Bytes handed to the decoder at a time, ending on an LSN that is a multiple of it (so a page boundary). */
const FEED_BYTES = 1 << 20;

/**
 * Feeds the window's bytes to the decoder a piece at a time, as it runs out: a chunk's data may reach
 * far past its end (up to the window's end), and a decoder fed a second piece while it still holds the
 * first joins the two into one copy. Returns false once everything has been fed.
 */
function feeder(decoder: WalStreamDecoder, pieces: [Uint8Array, Lsn][]): () => boolean {
  let piece = 0;
  let offset = 0;
  return () => {
    if (piece >= pieces.length) return false;
    const [bytes, lsn] = pieces[piece];
    const at = lsn + offset;
    const n = Math.min(bytes.length - offset, FEED_BYTES - (at % FEED_BYTES));
    decoder.feed(bytes.subarray(offset, offset + n), at);
    offset += n;
    if (offset === bytes.length) {
      piece++;
      offset = 0;
    }
    return true;
  };
}
