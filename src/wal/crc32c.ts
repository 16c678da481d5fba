import { crc32c as nativeCrc32c } from '@node-rs/crc32';
import { i32At } from './reader.ts';

/**
 * CRC-32C (Castagnoli) as PostgreSQL's pg_crc32c: init 0xFFFFFFFF, final xor 0xFFFFFFFF. `crc32c(b, prev)`
 * continues a finished CRC, so a record is checked in two calls without copying (see recordCrc).
 *
 * Short inputs use a table-driven loop here: the native SIMD routine is ~4.6 GB/s on long buffers but each
 * call across N-API costs ~190 ns, which is more than an average WAL record takes to checksum in
 * JavaScript. bench/crc32c.ts measures the crossover this threshold comes from.
 */
export const NATIVE_CRC_THRESHOLD = 256;

const TABLE = buildTables();

function buildTables(): Uint32Array {
  const t = new Uint32Array(8 * 256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c >>> 0;
  }
  for (let i = 0; i < 256; i++) {
    for (let s = 1; s < 8; s++)
      t[s * 256 + i] = (t[(s - 1) * 256 + i] >>> 8) ^ t[t[(s - 1) * 256 + i] & 0xff];
  }
  return t;
}

// WAL records are MAXALIGNed, so their bytes can be read a 32-bit word at a time: a quarter of the loads.
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
// The word view of the last input-sized array seen (most calls are for records of one input buffer); null
// when that array does not start on a 4-byte boundary. Short views (a record's fragments) use byte loads.
let wordsOf: Uint8Array | null = null;
let words: Int32Array | null = null;
const WORD_VIEW_MIN = 8192;

/** Table-driven slicing-by-8 over bytes[start, end), continuing `crc` (a finished value). */
export function crc32cTable(bytes: Uint8Array, start = 0, end = bytes.length, crc = 0): number {
  let c = ~crc;
  let i = start;
  const t = TABLE;
  if (bytes !== wordsOf && bytes.length >= WORD_VIEW_MIN && end - start >= 16) {
    wordsOf = bytes;
    words =
      bytes.byteOffset % 4 === 0 && LITTLE_ENDIAN
        ? new Int32Array(bytes.buffer, bytes.byteOffset, bytes.length >> 2)
        : null;
  }
  const w = words;
  if (bytes === wordsOf && w !== null && (start & 3) === 0) {
    for (let k = start >> 2; i + 8 <= end; i += 8, k += 2) c = slice8(t, c ^ w[k], w[k + 1]);
    if (i + 4 <= end) {
      const a = c ^ w[i >> 2];
      c = t[768 + (a & 0xff)] ^ t[512 + ((a >>> 8) & 0xff)] ^ t[256 + ((a >>> 16) & 0xff)] ^ t[a >>> 24];
      i += 4;
    }
  } else {
    for (; i + 8 <= end; i += 8) c = slice8(t, c ^ i32At(bytes, i), i32At(bytes, i + 4));
  }
  for (; i < end; i++) c = t[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

/** One slicing-by-8 step: the next 8 bytes as two little-endian words, the first already xored with the CRC. */
function slice8(t: Uint32Array, a: number, b: number): number {
  return (
    t[1792 + (a & 0xff)] ^
    t[1536 + ((a >>> 8) & 0xff)] ^
    t[1280 + ((a >>> 16) & 0xff)] ^
    t[1024 + (a >>> 24)] ^
    t[768 + (b & 0xff)] ^
    t[512 + ((b >>> 8) & 0xff)] ^
    t[256 + ((b >>> 16) & 0xff)] ^
    t[b >>> 24]
  );
}

/** CRC-32C of bytes[start, end), continuing `crc`; picks the faster routine for the length. */
export function crc32c(bytes: Uint8Array, start = 0, end = bytes.length, crc = 0): number {
  if (end - start < NATIVE_CRC_THRESHOLD) return crc32cTable(bytes, start, end, crc);
  return nativeCrc32c(start === 0 && end === bytes.length ? bytes : bytes.subarray(start, end), crc);
}
