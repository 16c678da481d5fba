import {
  BKPBLOCK_FORK_MASK,
  BKPBLOCK_HAS_DATA,
  BKPBLOCK_HAS_IMAGE,
  BKPBLOCK_SAME_REL,
  BKPBLOCK_WILL_INIT,
  BKPIMAGE_HAS_HOLE,
  isValidRmid,
  MAX_FORKNUM,
  SIZE_OF_XLOG_RECORD,
  XLR_BLOCK_ID_DATA_LONG,
  XLR_BLOCK_ID_DATA_SHORT,
  XLR_BLOCK_ID_ORIGIN,
  XLR_BLOCK_ID_TOPLEVEL_XID,
  XLR_MAX_BLOCK_ID,
} from './constants.ts';
import { crc32c } from './crc32c.ts';
import { WalDecodeError } from './errors.ts';
import { type Lsn, lsnFromHalves } from './lsn.ts';
import { u32At, WalReader } from './reader.ts';

/** One block reference of a record: (spcOid, dbOid, relNumber, fork, block) plus its header flags. */
export interface BlockRef {
  readonly id: number;
  readonly spc: number;
  readonly db: number;
  readonly rel: number;
  readonly fork: number;
  readonly block: number;
  readonly hasImage: boolean;
  /** The image is replayed (clear: it exists only for wal_consistency_checking). */
  readonly applyImage: boolean;
  readonly willInit: boolean;
  /** Bytes of the image as stored (after hole removal or compression). */
  readonly imageLength: number;
}

export interface DecodedRecord {
  readonly lsn: Lsn;
  /** EndRecPtr: the first byte after the record (for XLOG_SWITCH, the start of the next segment). */
  readonly endLsn: Lsn;
  readonly prevLsn: Lsn;
  readonly totLen: number;
  readonly xid: number;
  readonly rmid: number;
  /** xl_info: the high nibble is the rmgr's opcode, the low nibble generic flags. */
  readonly info: number;
  readonly blocks: readonly BlockRef[];
  readonly mainData: Uint8Array;
  /** Sum of the stored image lengths (pg_waldump's "FPI size"). */
  readonly fpiLength: number;
  /** PostgreSQL major version whose layouts were used (from the page magic). */
  readonly major: number;
}

/** What a record's layout depends on besides its bytes. */
export interface RecordContext {
  readonly major: number;
  /** BLCKSZ, the data page size (images are checked against it). */
  readonly blockSize: number;
  readonly verifyCrc: boolean;
}

const reader = new WalReader();

// Not frozen: a frozen array has another elements kind, which made every reader of `blocks` polymorphic.
const NO_BLOCKS: readonly BlockRef[] = [];
const NO_DATA = new Uint8Array(0);

/** Checks xl_rmid, as ValidXLogRecordHeader does before a long record is assembled. */
export function checkRecordHeader(bytes: Uint8Array, start: number, lsn: Lsn, major: number): void {
  const rmid = bytes[start + 17];
  if (!isValidRmid(rmid, major)) {
    throw new WalDecodeError('bad-record-header', `invalid resource manager ID ${rmid}`, lsn);
  }
}

/**
 * ValidXLogRecord: the CRC covers everything after the header, then the header up to xl_crc. The record
 * is bytes[start, ...) followed by the fragments in `rest` (its later pages), or bytes[start, start +
 * totLen) when `rest` is null.
 */
export function recordCrcMatches(
  bytes: Uint8Array,
  start: number,
  totLen: number,
  rest: RecordTail,
): boolean {
  let crc: number;
  if (rest === null) {
    crc = crc32c(bytes, start + SIZE_OF_XLOG_RECORD, start + totLen);
  } else {
    crc = crc32c(bytes, start + SIZE_OF_XLOG_RECORD, bytes.length);
    for (const part of rest) crc = crc32c(part, 0, part.length, crc);
  }
  return crc32c(bytes, start, start + 20, crc) === u32At(bytes, start + 20);
}

/** The fragments of a record after its first page, when it was not copied into one piece. */
export type RecordTail = readonly Uint8Array[] | null;

/**
 * DecodeXLogRecord: verifies the CRC, then parses the fragment headers. The record starts at
 * bytes[start]; with `rest` null it is bytes[start, start + totLen), otherwise it continues in the
 * fragments of `rest` and bytes holds at least its whole header region (MAX_HEADER_REGION). Nothing in
 * the record is trusted before the CRC. mainData is a view into the record's bytes where it lies in one
 * piece, a copy where it straddles fragments.
 */
export function decodeRecord(
  bytes: Uint8Array,
  start: number,
  totLen: number,
  lsn: Lsn,
  endLsn: Lsn,
  ctx: RecordContext,
  rest: RecordTail = null,
): DecodedRecord {
  const { major, blockSize } = ctx;
  const firstEnd = rest === null ? start + totLen : bytes.length;
  if (totLen < SIZE_OF_XLOG_RECORD || u32At(bytes, start) !== totLen || firstEnd > bytes.length) {
    throw new WalDecodeError(
      'bad-record-length',
      `record length ${u32At(bytes, start)} does not match ${totLen} bytes`,
      lsn,
    );
  }
  const xid = u32At(bytes, start + 4);
  const prevLsn = lsnFromHalves(u32At(bytes, start + 8), u32At(bytes, start + 12));
  const info = bytes[start + 16];
  const rmid = bytes[start + 17];
  checkRecordHeader(bytes, start, lsn, major);
  if (ctx.verifyCrc && !recordCrcMatches(bytes, start, totLen, rest)) {
    const crc = u32At(bytes, start + 20);
    throw new WalDecodeError(
      'bad-crc',
      `incorrect resource manager data checksum 0x${hex32(crc)} in record`,
      lsn,
    );
  }

  const end = start + totLen;
  const r = reader.reset(bytes, start + SIZE_OF_XLOG_RECORD, firstEnd, lsn, 'bad-block-ref', 'record');
  let blocks: BlockRef[] | undefined;
  let declared = 0;
  let mainLen = 0;
  let maxId = -1;
  let spc = 0;
  let db = 0;
  let rel = 0;
  let haveRel = false;
  let fpiLength = 0;
  while (end - r.offset > declared) {
    const id = r.u8();
    if (id === XLR_BLOCK_ID_DATA_SHORT) {
      mainLen = r.u8();
      declared += mainLen;
      break;
    }
    if (id === XLR_BLOCK_ID_DATA_LONG) {
      mainLen = r.u32le();
      declared += mainLen;
      break;
    }
    if (id === XLR_BLOCK_ID_ORIGIN) {
      r.skip(2);
      continue;
    }
    if (id === XLR_BLOCK_ID_TOPLEVEL_XID && major >= 14) {
      r.skip(4);
      continue;
    }
    if (id > XLR_MAX_BLOCK_ID || id <= maxId) {
      throw new WalDecodeError('bad-block-ref', `invalid block_id ${id}`, lsn);
    }
    maxId = id;
    const forkFlags = r.u8();
    const dataLength = r.u16le();
    const fork = forkFlags & BKPBLOCK_FORK_MASK;
    if (fork > MAX_FORKNUM) throw new WalDecodeError('bad-block-ref', `invalid fork number ${fork}`, lsn);
    if (((forkFlags & BKPBLOCK_HAS_DATA) !== 0) !== dataLength > 0) {
      throw new WalDecodeError(
        'bad-block-ref',
        `BKPBLOCK_HAS_DATA does not match data length ${dataLength}`,
        lsn,
      );
    }
    declared += dataLength;
    const hasImage = (forkFlags & BKPBLOCK_HAS_IMAGE) !== 0;
    let applyImage = false;
    let imageLength = 0;
    if (hasImage) {
      imageLength = r.u16le();
      const holeOffset = r.u16le();
      const bimgInfo = r.u8();
      const compressed = major <= 14 ? (bimgInfo & 0x02) !== 0 : (bimgInfo & 0x1c) !== 0;
      applyImage = major <= 14 ? (bimgInfo & 0x04) !== 0 : (bimgInfo & 0x02) !== 0;
      const hasHole = (bimgInfo & BKPIMAGE_HAS_HOLE) !== 0;
      let holeLength = 0;
      if (hasHole) holeLength = compressed ? r.u16le() : blockSize - imageLength;
      checkImage(lsn, blockSize, imageLength, holeOffset, holeLength, hasHole, compressed);
      declared += imageLength;
      fpiLength += imageLength;
    }
    if ((forkFlags & BKPBLOCK_SAME_REL) === 0) {
      spc = r.u32le();
      db = r.u32le();
      rel = r.u32le();
      haveRel = true;
    } else if (!haveRel) {
      throw new WalDecodeError('bad-block-ref', 'BKPBLOCK_SAME_REL set but no previous rel', lsn);
    }
    const block = r.u32le();
    blocks ??= [];
    blocks.push({
      id,
      spc,
      db,
      rel,
      fork,
      block,
      hasImage,
      applyImage,
      willInit: (forkFlags & BKPBLOCK_WILL_INIT) !== 0,
      imageLength,
    });
  }
  if (end - r.offset !== declared) {
    throw new WalDecodeError(
      'bad-block-ref',
      `record length mismatch: ${end - r.offset} bytes of data, headers declare ${declared}`,
      lsn,
    );
  }
  const mainData =
    mainLen === 0 ? NO_DATA : rest === null ? bytes.subarray(end - mainLen, end) : tail(bytes, rest, mainLen);
  return {
    lsn,
    endLsn,
    prevLsn,
    totLen,
    xid,
    rmid,
    info,
    blocks: blocks ?? NO_BLOCKS,
    mainData,
    fpiLength,
    major,
  };
}

function checkImage(
  lsn: Lsn,
  blockSize: number,
  length: number,
  holeOffset: number,
  holeLength: number,
  hasHole: boolean,
  compressed: boolean,
): void {
  let why = '';
  if (hasHole && (holeOffset === 0 || holeLength === 0 || length === blockSize)) {
    why = `BKPIMAGE_HAS_HOLE set, but hole offset ${holeOffset} length ${holeLength} block image length ${length}`;
  } else if (!hasHole && holeOffset !== 0) {
    why = `BKPIMAGE_HAS_HOLE not set, but hole offset ${holeOffset}`;
  } else if (compressed && length === blockSize) {
    why = `BKPIMAGE_COMPRESSED set, but block image length ${length}`;
  } else if (!hasHole && !compressed && length !== blockSize) {
    why = `neither BKPIMAGE_HAS_HOLE nor BKPIMAGE_COMPRESSED set, but block image length is ${length}`;
  } else if (length > blockSize || holeOffset + holeLength > blockSize) {
    why = `block image of ${length} bytes with a hole at ${holeOffset}+${holeLength} exceeds BLCKSZ ${blockSize}`;
  }
  if (why) throw new WalDecodeError('bad-block-ref', why, lsn);
}

function hex32(n: number): string {
  return n.toString(16).toUpperCase().padStart(8, '0');
}

/** The last n bytes of a record held as a first piece plus fragments. */
function tail(first: Uint8Array, rest: readonly Uint8Array[], n: number): Uint8Array {
  const last = rest[rest.length - 1];
  if (last.length >= n) return last.subarray(last.length - n);
  const out = new Uint8Array(n);
  let need = n;
  for (let i = rest.length - 1; i >= -1 && need > 0; i--) {
    const part = i >= 0 ? rest[i] : first;
    const take = Math.min(need, part.length);
    out.set(part.subarray(part.length - take), need - take);
    need -= take;
  }
  return out;
}
