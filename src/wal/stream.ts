import {
  MAGIC_TO_MAJOR,
  MAX_HEADER_REGION,
  MAX_RECORD_LENGTH,
  MAXALIGN,
  Rmgr,
  SIZE_OF_LONG_PAGE_HEADER,
  SIZE_OF_SHORT_PAGE_HEADER,
  SIZE_OF_XLOG_RECORD,
  XLOG_SWITCH,
  XLP_ALL_FLAGS,
  XLP_FIRST_IS_CONTRECORD,
  XLP_FIRST_IS_OVERWRITE_CONTRECORD,
  XLP_LONG_HEADER,
} from './constants.ts';
import { prevLinkError, WalDecodeError } from './errors.ts';
import { formatLsn, type Lsn, lsnFromHalves, MAX_LSN } from './lsn.ts';
import { i32At, u16At, u32At } from './reader.ts';
import {
  checkRecordHeader,
  type DecodedRecord,
  decodeRecord,
  type RecordContext,
  type RecordTail,
} from './record.ts';

export interface WalStreamDecoderOptions {
  /** A record start, or a page boundary (the tail of a record begun earlier is then skipped). */
  readonly startLsn: Lsn;
  /** wal_segment_size in bytes. */
  readonly segmentSize: number;
  /** XLOG_BLCKSZ, the WAL page size. */
  readonly pageSize?: number;
  /** BLCKSZ, the data page size. */
  readonly blockSize?: number;
  /** The server's major version; needed only when startLsn is not page-aligned (no header seen yet). */
  readonly major?: number;
  /** Check each record's CRC-32C (default true). */
  readonly verifyCrc?: boolean;
}

/** A page header as read from WAL. */
export interface PageHeader {
  readonly magic: number;
  readonly info: number;
  readonly tli: number;
  readonly pageAddr: Lsn;
  readonly remLen: number;
  readonly size: number;
  /** Long headers only (the first page of a segment). */
  readonly systemId?: bigint;
  readonly segmentSize?: number;
  readonly pageSize?: number;
}

type State =
  | { readonly kind: 'record' }
  | { readonly kind: 'skip-continuation' }
  | {
      readonly kind: 'reassembling';
      readonly lsn: Lsn;
      readonly totLen: number;
      /** Fragments that are views into the current input buffer. */
      parts: Uint8Array[];
      got: number;
      /** Bytes copied out of earlier input buffers (see feed), in front of `parts`. */
      owned: OwnedBytes | null;
    };

/** A record's bytes copied out of input buffers that are gone, grown by doubling as more arrive. */
class OwnedBytes {
  bytes: Uint8Array;
  length = 0;
  readonly #limit: number;

  constructor(limit: number) {
    this.#limit = limit;
    this.bytes = new Uint8Array(Math.min(limit, 64 * 1024));
  }

  /** Appends the fragments; the buffer never grows past the record's length or twice what it holds. */
  append(parts: readonly Uint8Array[]): void {
    let need = this.length;
    for (const p of parts) need += p.length;
    if (need > this.bytes.length) {
      const grown = new Uint8Array(Math.min(this.#limit, Math.max(need, this.bytes.length * 2)));
      grown.set(this.bytes.subarray(0, this.length));
      this.bytes = grown;
    }
    for (const p of parts) {
      this.bytes.set(p, this.length);
      this.length += p.length;
    }
  }
}

const EMPTY = new Uint8Array(0);
/** Keeps #buf (a fed piece plus less than a page held back) below 2^31 bytes, so offsets in it are int32s. */
const MAX_FEED_BYTES = 1 << 30;
const RECORD: State = { kind: 'record' };

/**
 * Turns WAL bytes, fed in pieces of any size, into decoded records in order (Neon's feed/poll shape):
 * `feed(bytes, lsn)` adds input; `next()` returns a record, `null` when it needs more bytes, or throws a
 * WalDecodeError naming the LSN. Page framing (headers, continuation records, XLOG_SWITCH padding,
 * OVERWRITE_CONTRECORD) lives here; record layout lives in record.ts.
 *
 * Fed bytes are referenced, not copied. Once the next feed() has returned the decoder holds no reference
 * to the previous buffer (a record still being reassembled is copied out of it then), but records it
 * returned keep views into it: a caller that recycles buffers must be done with those records first.
 */
export class WalStreamDecoder {
  readonly segmentSize: number;
  readonly pageSize: number;
  readonly blockSize: number;
  readonly verifyCrc: boolean;
  #major: number | undefined;
  #ctx: RecordContext | undefined;
  #state: State;
  /** LSN of the next byte to interpret. */
  #pos: Lsn;
  /** End of the page #pos is on; #pos === #pageEnd means a page header comes next. */
  #pageEnd: Lsn;
  #buf: Uint8Array = EMPTY;
  #bufLsn: Lsn;
  #fedEnd: Lsn | undefined;
  #lastRecordLsn: Lsn | undefined;
  #lastPageTli = 0;
  #systemId: bigint | undefined;
  #recordsDecoded = 0;
  #overwrittenLsn: Lsn | undefined;

  constructor(options: WalStreamDecoderOptions) {
    const pageSize = options.pageSize ?? 8192;
    const blockSize = options.blockSize ?? 8192;
    if (!isPowerOfTwo(pageSize) || pageSize < 1024 || pageSize > 65536) {
      throw new RangeError(`options.pageSize must be a power of two from 1024 to 65536, got ${pageSize}`);
    }
    if (!isPowerOfTwo(blockSize) || blockSize < 1024 || blockSize > 32768) {
      throw new RangeError(`options.blockSize must be a power of two from 1024 to 32768, got ${blockSize}`);
    }
    const seg = options.segmentSize;
    if (!isPowerOfTwo(seg) || seg < 1 << 20 || seg > 1 << 30) {
      throw new RangeError(`options.segmentSize must be a power of two from 1 MB to 1 GB, got ${seg}`);
    }
    const start = options.startLsn;
    if (!Number.isSafeInteger(start) || start < 0) {
      throw new RangeError(`options.startLsn must be a non-negative safe integer, got ${start}`);
    }
    const inPage = start % pageSize;
    if (inPage !== 0 && (inPage < SIZE_OF_SHORT_PAGE_HEADER || start % MAXALIGN !== 0)) {
      throw new RangeError(
        `options.startLsn ${formatLsn(start)} is neither a page boundary nor a possible record start`,
      );
    }
    if (options.major !== undefined && ![...MAGIC_TO_MAJOR.values()].includes(options.major)) {
      throw new RangeError(`options.major must be one of 13–18, got ${options.major}`);
    }
    if (inPage !== 0 && options.major === undefined) {
      throw new RangeError('options.major is required when options.startLsn is not page-aligned');
    }
    this.segmentSize = seg;
    this.pageSize = pageSize;
    this.blockSize = blockSize;
    this.verifyCrc = options.verifyCrc ?? true;
    this.#pos = start;
    this.#pageEnd = inPage === 0 ? start : start - inPage + pageSize;
    this.#bufLsn = start;
    this.#state = inPage === 0 ? { kind: 'skip-continuation' } : { kind: 'record' };
    if (options.major !== undefined) this.#setMajor(options.major);
  }

  /** Where decoding stands: the next record starts here or later. */
  get position(): Lsn {
    return this.#pos;
  }
  /**
   * Where a new decoder must start to return every record this one has not returned yet: the start of
   * a record still being assembled, else the current position. Everything before it (records returned,
   * alignment padding, page headers) is done with; a checkpoint may be taken there.
   */
  get resumeLsn(): Lsn {
    const state = this.#state;
    if (state.kind === 'reassembling') return state.lsn;
    // Inside the tail of a record begun before the start, only the page boundary is a place to resume.
    if (state.kind === 'skip-continuation') return this.#pos - (this.#pos % this.pageSize);
    return this.#pos;
  }
  get major(): number | undefined {
    return this.#major;
  }
  /** xlp_sysid of the last long page header seen. */
  get systemId(): bigint | undefined {
    return this.#systemId;
  }
  get recordsDecoded(): number {
    return this.#recordsDecoded;
  }
  /** Set when a page abandoned a half-read record (OVERWRITE_CONTRECORD): that record's LSN. */
  get overwrittenLsn(): Lsn | undefined {
    return this.#overwrittenLsn;
  }

  /** Adds WAL bytes covering [lsn, lsn + bytes.length). Pieces must follow each other without gaps. */
  feed(bytes: Uint8Array, lsn: Lsn): void {
    if (this.#fedEnd === undefined) {
      if (lsn > this.#pos) {
        throw new RangeError(
          `first WAL bytes start at ${formatLsn(lsn)}, after the start ${formatLsn(this.#pos)}`,
        );
      }
    } else if (lsn !== this.#fedEnd) {
      throw new RangeError(
        `WAL bytes at ${formatLsn(lsn)} do not follow the last ones, which end at ${formatLsn(this.#fedEnd)}`,
      );
    }
    if (bytes.length > MAX_FEED_BYTES) {
      throw new RangeError(`feed() takes at most ${MAX_FEED_BYTES} bytes at a time, got ${bytes.length}`);
    }
    // A Buffer's subarray() builds a Buffer each time; plain Uint8Array views are much cheaper per record.
    if (bytes instanceof Buffer) bytes = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length);
    const end = lsn + bytes.length;
    if (end > MAX_LSN) throw new WalDecodeError('unsupported', 'WAL position beyond 2^53', lsn);
    this.#fedEnd = end;
    const state = this.#state;
    if (state.kind === 'reassembling' && state.parts.length > 0) {
      // The caller may reuse the previous buffer: keep a copy of what the record has in it.
      state.owned ??= new OwnedBytes(state.totLen);
      state.owned.append(state.parts);
      state.parts = [];
    }
    const pos = this.#pos;
    const bufEnd = this.#bufLsn + this.#buf.length;
    if (pos >= end) {
      this.#buf = EMPTY;
      this.#bufLsn = end;
    } else if (pos < bufEnd && pos >= this.#bufLsn) {
      const rest = this.#buf.subarray(pos - this.#bufLsn);
      const joined = new Uint8Array(rest.length + bytes.length);
      joined.set(rest, 0);
      joined.set(bytes, rest.length);
      this.#buf = joined;
      this.#bufLsn = pos;
    } else {
      const from = Math.max(pos, lsn);
      this.#buf = bytes.subarray(from - lsn);
      this.#bufLsn = from;
    }
  }

  /** The next record, or null when more bytes are needed. Throws WalDecodeError on invalid WAL. */
  next(): DecodedRecord | null {
    for (;;) {
      const pos = this.#pos;
      const pageEnd = this.#pageEnd;
      if (pos === pageEnd) {
        const header = this.#readPageHeader();
        if (header === null) return null;
        this.#enterPage(header, pos);
        continue;
      }
      const state = this.#state;
      if (state.kind === 'reassembling') {
        const n = Math.min(state.totLen - state.got, pageEnd - pos);
        if (!this.#has(n)) return null;
        state.parts.push(this.#view(n));
        state.got += n;
        this.#pos = pos + n;
        if (state.got === state.totLen) {
          if (state.owned !== null) {
            state.owned.append(state.parts);
            return this.#finish(state.owned.bytes, 0, state.lsn);
          }
          const parts = state.parts;
          // Checked and parsed in its fragments when the first holds every header. Otherwise the first
          // MAX_HEADER_REGION bytes are copied into one piece, followed by the rest of the fragments.
          if (parts[0].length >= MAX_HEADER_REGION)
            return this.#finish(parts[0], 0, state.lsn, parts.slice(1));
          const head = Math.min(state.totLen, MAX_HEADER_REGION);
          const [bytes, at, rest] = copyFront(parts, head);
          if (head === state.totLen) return this.#finish(bytes, at, state.lsn);
          return this.#finish(bytes.subarray(at, at + head), 0, state.lsn, rest);
        }
        continue;
      }
      if (!this.#has(4)) return null;
      const b = this.#buf;
      const at = this.#offsetOf(pos);
      const totLen = u32At(b, at);
      if (totLen === 0) {
        throw new WalDecodeError(
          'end-of-wal',
          `invalid record length: expected at least ${SIZE_OF_XLOG_RECORD}, got 0`,
          pos,
        );
      }
      if (totLen < SIZE_OF_XLOG_RECORD || totLen > MAX_RECORD_LENGTH) {
        throw new WalDecodeError('bad-record-length', `invalid record length ${totLen}`, pos);
      }
      const onPage = pageEnd - pos;
      if (totLen <= onPage) {
        if (!this.#has(totLen)) return null;
        this.#pos = pos + totLen;
        return this.#finish(b, at, pos);
      }
      if (!this.#has(onPage)) return null;
      const first = this.#view(onPage);
      // Check what we can before committing to a long record, as xlogreader does before allocating.
      if (onPage >= SIZE_OF_XLOG_RECORD) {
        checkRecordHeader(first, 0, pos, this.#major!);
        this.#checkPrevLink(first, 0, pos);
      }
      this.#state = { kind: 'reassembling', lsn: pos, totLen, parts: [first], got: onPage, owned: null };
      this.#pos = pageEnd;
    }
  }

  #enterPage(h: PageHeader, pageStart: Lsn): void {
    const state = this.#state;
    const cont = (h.info & XLP_FIRST_IS_CONTRECORD) !== 0;
    this.#pos = pageStart + h.size;
    this.#pageEnd = pageStart + this.pageSize;
    if (state.kind === 'reassembling') {
      if ((h.info & XLP_FIRST_IS_OVERWRITE_CONTRECORD) !== 0) {
        // The rest of that record never reached disk before a crash; the page starts afresh.
        this.#overwrittenLsn = state.lsn;
        this.#state = RECORD;
        return;
      }
      if (!cont) throw new WalDecodeError('bad-page-header', 'there is no contrecord flag', pageStart);
      const expected = state.totLen - state.got;
      if (h.remLen === 0 || h.remLen !== expected) {
        throw new WalDecodeError(
          'bad-page-header',
          `invalid contrecord length ${h.remLen} (expected ${expected}) for record at ${formatLsn(state.lsn)}`,
          pageStart,
        );
      }
      return;
    }
    if (state.kind === 'skip-continuation') {
      if (!cont) {
        this.#state = RECORD;
        return;
      }
      const skip = align(h.remLen);
      if (skip >= this.pageSize - h.size) {
        this.#pos = pageStart + this.pageSize;
      } else {
        this.#pos += skip;
        this.#state = RECORD;
      }
      return;
    }
    if (cont) {
      throw new WalDecodeError(
        'bad-page-header',
        'page starts with a continuation where a new record was expected',
        pageStart,
      );
    }
  }

  /** XLogReaderValidatePageHeader; returns null until the whole header has been fed. */
  #readPageHeader(): PageHeader | null {
    const pos = this.#pos;
    if (!this.#has(SIZE_OF_SHORT_PAGE_HEADER)) return null;
    const b = this.#buf;
    const o = this.#offsetOf(pos);
    const magic = u16At(b, o);
    const info = u16At(b, o + 2);
    const long = (info & XLP_LONG_HEADER) !== 0;
    if (long && !this.#has(SIZE_OF_LONG_PAGE_HEADER)) return null;
    const major = MAGIC_TO_MAJOR.get(magic);
    if (major === undefined) {
      throw new WalDecodeError('bad-page-header', `invalid magic number 0x${hex16(magic)} in WAL page`, pos);
    }
    if (this.#major !== undefined && major !== this.#major) {
      throw new WalDecodeError(
        'bad-page-header',
        `WAL page magic 0x${hex16(magic)} is PostgreSQL ${major}, but this stream is PostgreSQL ${this.#major}`,
        pos,
      );
    }
    if ((info & ~XLP_ALL_FLAGS) !== 0) {
      throw new WalDecodeError('bad-page-header', `invalid info bits 0x${hex16(info)} in WAL page`, pos);
    }
    const segmentStart = pos % this.segmentSize === 0;
    if (segmentStart && !long) {
      throw new WalDecodeError('bad-page-header', 'first page of a WAL segment lacks a long header', pos);
    }
    if (!segmentStart && long) {
      throw new WalDecodeError('bad-page-header', 'long page header in the middle of a WAL segment', pos);
    }
    const pageAddr = lsnFromHalves(u32At(b, o + 8), u32At(b, o + 12));
    const tli = u32At(b, o + 4);
    const remLen = u32At(b, o + 16);
    let header: PageHeader = { magic, info, tli, pageAddr, remLen, size: SIZE_OF_SHORT_PAGE_HEADER };
    if (long) {
      const systemId = (BigInt(u32At(b, o + 28)) << 32n) | BigInt(u32At(b, o + 24));
      const segmentSize = u32At(b, o + 32);
      const pageSize = u32At(b, o + 36);
      if (segmentSize !== this.segmentSize) {
        throw new WalDecodeError(
          'bad-page-header',
          `WAL segment size ${segmentSize} in page header, expected ${this.segmentSize}`,
          pos,
        );
      }
      if (pageSize !== this.pageSize) {
        throw new WalDecodeError(
          'bad-page-header',
          `WAL page size ${pageSize} in page header, expected ${this.pageSize}`,
          pos,
        );
      }
      if (this.#systemId !== undefined && systemId !== this.#systemId) {
        throw new WalDecodeError(
          'bad-page-header',
          `WAL from system ${systemId}, expected system ${this.#systemId}`,
          pos,
        );
      }
      this.#systemId = systemId;
      header = { ...header, size: SIZE_OF_LONG_PAGE_HEADER, systemId, segmentSize, pageSize };
    }
    if (pageAddr !== pos) {
      throw new WalDecodeError(
        'bad-page-header',
        `unexpected pageaddr ${formatLsn(pageAddr)} in WAL page`,
        pos,
      );
    }
    if (tli < this.#lastPageTli) {
      throw new WalDecodeError(
        'bad-page-header',
        `out-of-sequence timeline ID ${tli} (after ${this.#lastPageTli})`,
        pos,
      );
    }
    this.#lastPageTli = tli;
    if (this.#major === undefined) this.#setMajor(major);
    return header;
  }

  /** In sequential reading xl_prev must name the previous record (decodeRecord checks the rest). */
  #checkPrevLink(bytes: Uint8Array, start: number, lsn: Lsn): void {
    const prev = lsnFromHalves(u32At(bytes, start + 8), u32At(bytes, start + 12));
    if (this.#lastRecordLsn !== undefined && prev !== this.#lastRecordLsn) {
      throw prevLinkError(lsn, prev, this.#lastRecordLsn);
    }
  }

  /** The record is bytes[start, start + xl_tot_len), with page headers already removed. */
  #finish(bytes: Uint8Array, start: number, lsn: Lsn, rest: RecordTail = null): DecodedRecord {
    this.#checkPrevLink(bytes, start, lsn);
    let endLsn = this.#pos;
    const isSwitch = bytes[start + 17] === Rmgr.XLOG && (bytes[start + 16] & 0xf0) === XLOG_SWITCH;
    if (isSwitch) {
      // The rest of the segment is zeros, page headers included; the next record opens the next segment.
      endLsn = Math.ceil(endLsn / this.segmentSize) * this.segmentSize;
    }
    const record = decodeRecord(bytes, start, i32At(bytes, start), lsn, endLsn, this.#ctx!, rest);
    this.#pos = isSwitch ? endLsn : align(endLsn);
    if (isSwitch) this.#pageEnd = endLsn;
    this.#state = RECORD;
    this.#lastRecordLsn = lsn;
    this.#recordsDecoded++;
    return record;
  }

  #setMajor(major: number): void {
    this.#major = major;
    this.#ctx = { major, blockSize: this.blockSize, verifyCrc: this.verifyCrc };
  }

  /** Where `lsn` is in #buf; an int32 (see MAX_FEED_BYTES), so the arithmetic on it stays integral. */
  #offsetOf(lsn: Lsn): number {
    return (lsn - this.#bufLsn) | 0;
  }

  #has(n: number): boolean {
    return this.#pos + n <= this.#bufLsn + this.#buf.length;
  }

  #view(n: number): Uint8Array {
    const at = this.#offsetOf(this.#pos);
    return this.#buf.subarray(at, at + n);
  }
}

// Small enough that malloc carves slabs from memory the process already has: a 1 MB slab was mmapped
// fresh each time, and the page faults of filling it made copyFront a seventh of decoding.
const SLAB_SIZE = 64 * 1024;
let slab = new Uint8Array(SLAB_SIZE);
let slabUsed = 0;

/**
 * Copies the first n bytes (at most MAX_HEADER_REGION) of a record's page fragments into one piece and
 * returns it with the fragments' remainder: only the header region has to lie in one piece, so a long
 * record (up to 1 GB) is never copied whole. The pieces are carved from a shared 64 kB slab (a fresh one
 * when it is full; records still using the old one keep it alive).
 */
function copyFront(parts: readonly Uint8Array[], n: number): [Uint8Array, number, Uint8Array[]] {
  if (slabUsed + n > SLAB_SIZE) {
    slab = new Uint8Array(SLAB_SIZE);
    slabUsed = 0;
  }
  const out = slab;
  const at = slabUsed;
  slabUsed = align(at + n);
  let p = at;
  let i = 0;
  for (; i < parts.length && p < at + n; i++) {
    const part = parts[i];
    const take = Math.min(part.length, at + n - p);
    out.set(take === part.length ? part : part.subarray(0, take), p);
    p += take;
    if (take < part.length) return [out, at, [part.subarray(take), ...parts.slice(i + 1)]];
  }
  return [out, at, parts.slice(i)];
}

/** Rounds an LSN up to MAXALIGN; `&` sees only the low 32 bits, which is all the rounding needs. */
function align(n: number): number {
  return n + (-n & (MAXALIGN - 1));
}

function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

function hex16(n: number): string {
  return n.toString(16).toUpperCase().padStart(4, '0');
}
