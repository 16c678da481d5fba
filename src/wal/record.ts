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
import { i32At, u16At, u32At } from './reader.ts';

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

/** What a record's layout depends on besides its bytes. */
export interface RecordContext {
  readonly major: number;
  /** BLCKSZ, the data page size (images are checked against it). */
  readonly blockSize: number;
  readonly verifyCrc: boolean;
}

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
  } else if (start === 0 && totLen <= CRC_SCRATCH_SIZE) {
    // One native call over a copy (the data, then the header) costs less than one call per fragment.
    const copy = crcScratch;
    copy.set(bytes, 0);
    let at = bytes.length;
    for (const part of rest) {
      copy.set(part, at);
      at += part.length;
    }
    for (let i = 0; i < 20; i++) copy[at + i] = bytes[i];
    return crc32c(copy, SIZE_OF_XLOG_RECORD, at + 20) === u32At(bytes, 20);
  } else {
    crc = crc32c(bytes, start + SIZE_OF_XLOG_RECORD, bytes.length);
    for (const part of rest) crc = crc32c(part, 0, part.length, crc);
  }
  return crc32c(bytes, start, start + 20, crc) === u32At(bytes, start + 20);
}

const CRC_SCRATCH_SIZE = 64 * 1024;
const crcScratch = new Uint8Array(CRC_SCRATCH_SIZE + 20);

/** The fragments of a record after its first page, when it was not copied into one piece. */
export type RecordTail = readonly Uint8Array[] | null;

/**
 * DecodeXLogRecord: verifies the CRC, then parses the fragment headers. The record starts at
 * bytes[start]; with `rest` null it is bytes[start, start + totLen), otherwise it continues in the
 * fragments of `rest` and bytes holds at least its whole header region (MAX_HEADER_REGION). Nothing in
 * the record is trusted before the CRC. mainData is cut out when first read: a view into the record's
 * bytes where it lies in one piece, a copy where it straddles fragments; until then the record refers to
 * the bytes it was decoded from, like the views WalStreamDecoder documents.
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
  if (totLen < SIZE_OF_XLOG_RECORD || i32At(bytes, start) !== totLen || firstEnd > bytes.length) {
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
  // A cursor over the header region, each fragment header checked for length once before it is read.
  let o = start + SIZE_OF_XLOG_RECORD;
  let blocks: BlockRef[] | undefined;
  let declared = 0;
  let mainLen = 0;
  let maxId = -1;
  let spc = 0;
  let db = 0;
  let rel = 0;
  let haveRel = false;
  let fpiLength = 0;
  while (end - o > declared) {
    if (o + 1 > firstEnd) throw tooShort(lsn, 1, o, firstEnd);
    const id = bytes[o++];
    if (id === XLR_BLOCK_ID_DATA_SHORT) {
      if (o + 1 > firstEnd) throw tooShort(lsn, 1, o, firstEnd);
      mainLen = bytes[o++];
      declared += mainLen;
      break;
    }
    if (id === XLR_BLOCK_ID_DATA_LONG) {
      if (o + 4 > firstEnd) throw tooShort(lsn, 4, o, firstEnd);
      mainLen = u32At(bytes, o);
      o += 4;
      declared += mainLen;
      break;
    }
    if (id === XLR_BLOCK_ID_ORIGIN) {
      if (o + 2 > firstEnd) throw tooShort(lsn, 2, o, firstEnd);
      o += 2;
      continue;
    }
    if (id === XLR_BLOCK_ID_TOPLEVEL_XID && major >= 14) {
      if (o + 4 > firstEnd) throw tooShort(lsn, 4, o, firstEnd);
      o += 4;
      continue;
    }
    if (id > XLR_MAX_BLOCK_ID || id <= maxId) {
      throw new WalDecodeError('bad-block-ref', `invalid block_id ${id}`, lsn);
    }
    maxId = id;
    if (o + 3 > firstEnd) throw tooShort(lsn, 3, o, firstEnd);
    const forkFlags = bytes[o];
    const dataLength = bytes[o + 1] | (bytes[o + 2] << 8);
    o += 3;
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
    const sameRel = (forkFlags & BKPBLOCK_SAME_REL) !== 0;
    // The image header (5 bytes, a compressed hole adds 2 below), RelFileLocator (12) unless SAME_REL, block (4).
    const fixed = (hasImage ? 5 : 0) + (sameRel ? 0 : 12) + 4;
    if (o + fixed > firstEnd) throw tooShort(lsn, fixed, o, firstEnd);
    let applyImage = false;
    let imageLength = 0;
    if (hasImage) {
      imageLength = u16At(bytes, o);
      const holeOffset = u16At(bytes, o + 2);
      const bimgInfo = bytes[o + 4];
      o += 5;
      const compressed = major <= 14 ? (bimgInfo & 0x02) !== 0 : (bimgInfo & 0x1c) !== 0;
      applyImage = major <= 14 ? (bimgInfo & 0x04) !== 0 : (bimgInfo & 0x02) !== 0;
      const hasHole = (bimgInfo & BKPIMAGE_HAS_HOLE) !== 0;
      let holeLength = 0;
      if (hasHole && compressed) {
        if (o + 2 + fixed - 5 > firstEnd) throw tooShort(lsn, 2 + fixed - 5, o, firstEnd);
        holeLength = u16At(bytes, o);
        o += 2;
      } else if (hasHole) {
        holeLength = blockSize - imageLength;
      }
      checkImage(lsn, blockSize, imageLength, holeOffset, holeLength, hasHole, compressed);
      declared += imageLength;
      fpiLength += imageLength;
    }
    if (!sameRel) {
      spc = u32At(bytes, o);
      db = u32At(bytes, o + 4);
      rel = u32At(bytes, o + 8);
      o += 12;
      haveRel = true;
    } else if (!haveRel) {
      throw new WalDecodeError('bad-block-ref', 'BKPBLOCK_SAME_REL set but no previous rel', lsn);
    }
    const block = u32At(bytes, o);
    o += 4;
    const ref: BlockRef = {
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
    };
    // An array literal is allocated at its size; push() onto [] would reserve room for 17.
    if (blocks === undefined) blocks = [ref];
    else blocks.push(ref);
  }
  if (end - o !== declared) {
    throw new WalDecodeError(
      'bad-block-ref',
      `record length mismatch: ${end - o} bytes of data, headers declare ${declared}`,
      lsn,
    );
  }
  return new DecodedRecord(
    lsn,
    endLsn,
    prevLsn,
    totLen,
    xid,
    rmid,
    info,
    blocks ?? NO_BLOCKS,
    fpiLength,
    major,
    bytes,
    end,
    mainLen,
    rest,
  );
}

/**
 * A decoded record. Its main data is cut out only when first asked for: few records' main data is ever
 * read (file events), and making a view for every record cost more than parsing its block headers.
 */
export class DecodedRecord {
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
  /** Sum of the stored image lengths (pg_waldump's "FPI size"). */
  readonly fpiLength: number;
  /** PostgreSQL major version whose layouts were used (from the page magic). */
  readonly major: number;
  readonly #bytes: Uint8Array;
  /** Where the record ends in #bytes when #rest is null. */
  readonly #end: number;
  readonly #mainLen: number;
  readonly #rest: RecordTail;
  #mainData: Uint8Array | undefined = undefined;

  constructor(
    lsn: Lsn,
    endLsn: Lsn,
    prevLsn: Lsn,
    totLen: number,
    xid: number,
    rmid: number,
    info: number,
    blocks: readonly BlockRef[],
    fpiLength: number,
    major: number,
    bytes: Uint8Array,
    end: number,
    mainLen: number,
    rest: RecordTail,
  ) {
    this.lsn = lsn;
    this.endLsn = endLsn;
    this.prevLsn = prevLsn;
    this.totLen = totLen;
    this.xid = xid;
    this.rmid = rmid;
    this.info = info;
    this.blocks = blocks;
    this.fpiLength = fpiLength;
    this.major = major;
    this.#bytes = bytes;
    this.#end = end;
    this.#mainLen = mainLen;
    this.#rest = rest;
  }

  get mainData(): Uint8Array {
    if (this.#mainData === undefined) {
      const n = this.#mainLen;
      const rest = this.#rest;
      this.#mainData =
        n === 0
          ? NO_DATA
          : rest === null
            ? this.#bytes.subarray(this.#end - n, this.#end)
            : tail(this.#bytes, rest, n);
    }
    return this.#mainData;
  }
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

/** The header region ends (at `end`, the end of the record or of its first piece) before a field does. */
function tooShort(lsn: Lsn, needed: number, at: number, end: number): WalDecodeError {
  return new WalDecodeError(
    'bad-block-ref',
    `record too short: needed ${needed} more bytes at offset ${at}, ${Math.max(0, end - at)} left`,
    lsn,
  );
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
