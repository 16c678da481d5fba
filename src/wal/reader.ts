import { WalDecodeError, type WalDecodeErrorCode } from './errors.ts';
import type { Lsn } from './lsn.ts';

/**
 * A little-endian cursor over a record's main data, like pg-protocol's BufferReader (block headers, on
 * the hot path, are read in place by decodeRecord). Every read checks the bytes left first (xlogreader's
 * COPY_HEADER_FIELD), so short or lying input becomes a WalDecodeError naming the record, never an
 * out-of-bounds read.
 */
export class WalReader {
  bytes: Uint8Array = new Uint8Array(0);
  offset = 0;
  end = 0;
  lsn: Lsn = 0;
  code: WalDecodeErrorCode = 'bad-record-header';
  what = 'record';

  /** Points the reader at bytes[start, end) of the record at `lsn`. */
  reset(
    bytes: Uint8Array,
    start: number,
    end: number,
    lsn: Lsn,
    code: WalDecodeErrorCode,
    what: string,
  ): this {
    this.bytes = bytes;
    this.offset = start;
    this.end = end;
    this.lsn = lsn;
    this.code = code;
    this.what = what;
    return this;
  }

  get remaining(): number {
    return this.end - this.offset;
  }

  need(n: number): void {
    if (this.offset + n > this.end) {
      throw new WalDecodeError(
        this.code,
        `${this.what} too short: needed ${n} more bytes at offset ${this.offset}, ${this.end - this.offset} left`,
        this.lsn,
      );
    }
  }

  skip(n: number): void {
    this.need(n);
    this.offset += n;
  }

  u32le(): number {
    this.need(4);
    const b = this.bytes;
    const o = this.offset;
    this.offset = o + 4;
    return (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0;
  }

  i32le(): number {
    return this.u32le() | 0;
  }

  /** A uint64 as a number; positions beyond 2^53 are refused (see Lsn). */
  u64le(): number {
    const lo = this.u32le();
    const hi = this.u32le();
    if (hi >= 0x200000)
      throw new WalDecodeError('unsupported', `64-bit value beyond 2^53 in ${this.what}`, this.lsn);
    return hi * 0x1_0000_0000 + lo;
  }

  /** A NUL-terminated string (tablespace paths, 2PC GIDs). */
  cstring(): string {
    const start = this.offset;
    const nul = this.bytes.indexOf(0, start);
    if (nul < 0 || nul >= this.end) {
      throw new WalDecodeError(this.code, `${this.what}: unterminated string at offset ${start}`, this.lsn);
    }
    this.offset = nul + 1;
    return Buffer.from(this.bytes.buffer, this.bytes.byteOffset + start, nul - start).toString('utf8');
  }
}

export function u32At(b: Uint8Array, o: number): number {
  return (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0;
}

/**
 * A little-endian 32-bit word as an int32: for bit patterns (CRC input) and for uint32s already known to
 * be below 2^31 (bounded lengths). V8 keeps arithmetic on it in integer registers, where a uint32 would
 * make it floating-point.
 */
export function i32At(b: Uint8Array, o: number): number {
  return b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24);
}

export function u16At(b: Uint8Array, o: number): number {
  return b[o] | (b[o + 1] << 8);
}
