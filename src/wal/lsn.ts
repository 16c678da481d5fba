/**
 * An LSN (XLogRecPtr) as a JavaScript number. PostgreSQL's LSN is a uint64 byte position; numbers are
 * exact up to 2^53 (8 PiB of WAL, centuries of writing at 1 GB/s), which lets the hot decode path avoid
 * BigInt. A position beyond that is refused loudly (assertLsn), never rounded.
 */
export type Lsn = number;

export const MAX_LSN: Lsn = Number.MAX_SAFE_INTEGER;
const TWO_32 = 0x1_0000_0000;

export class LsnFormatError extends Error {
  override readonly name = 'LsnFormatError';
  readonly input: string;
  constructor(input: string, why: string) {
    super(`invalid LSN "${input}": ${why} (expected the form X/X, e.g. 0/185C8C0)`);
    this.input = input;
  }
}

/** PostgreSQL's `%X/%X`: upper-case hex, no zero padding (what psql shows for a pg_lsn). */
export function formatLsn(lsn: Lsn): string {
  const hi = Math.floor(lsn / TWO_32);
  const lo = lsn - hi * TWO_32;
  return `${hi.toString(16).toUpperCase()}/${lo.toString(16).toUpperCase()}`;
}

/** pg_waldump's `%X/%08X`. */
export function formatLsnPadded(lsn: Lsn): string {
  const hi = Math.floor(lsn / TWO_32);
  const lo = lsn - hi * TWO_32;
  return `${hi.toString(16).toUpperCase()}/${lo.toString(16).toUpperCase().padStart(8, '0')}`;
}

const LSN_TEXT = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;

/** Parses `X/X` (optionally zero-padded, either case), as pg_lsn input does. */
export function parseLsn(text: string): Lsn {
  const m = LSN_TEXT.exec(text.trim());
  if (!m) throw new LsnFormatError(text, 'not two hexadecimal numbers of at most 8 digits separated by "/"');
  const lsn = Number.parseInt(m[1], 16) * TWO_32 + Number.parseInt(m[2], 16);
  if (lsn > MAX_LSN) throw new LsnFormatError(text, 'beyond 2^53, which ptrackd does not support');
  return lsn;
}

/** Combines the two little-endian halves of a uint64 position read from WAL. */
export function lsnFromHalves(lo: number, hi: number): Lsn {
  return hi * TWO_32 + lo;
}
