/**
 * PostgreSQL's hash_bytes_extended (Bob Jenkins' lookup3, src/common/hashfn.c) with seed 0, specialised
 * to ptrack's 20-byte block id {spcOid, dbOid, relNumber, forkNum, blockNum} in native (little-endian)
 * order. Works on 32-bit halves in plain numbers so that hashing a block allocates nothing.
 */

const INIT = (0x9e3779b9 + 20 + 3923095) >>> 0;

function rot(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** The 64-bit hash's high and low halves are left here (b and c of lookup3), to avoid an allocation. */
export const hashOut = new Uint32Array(2);

// biome-ignore format: the rows of lookup3's mix() and final() read as in hashfn.c
export function hashBlockId(spc: number, db: number, rel: number, fork: number, block: number): void {
  let a = (INIT + spc) | 0;
  let b = (INIT + db) | 0;
  let c = (INIT + rel) | 0;
  // mix(a, b, c)
  a = (a - c) | 0; a ^= rot(c, 4); c = (c + b) | 0;
  b = (b - a) | 0; b ^= rot(a, 6); a = (a + c) | 0;
  c = (c - b) | 0; c ^= rot(b, 8); b = (b + a) | 0;
  a = (a - c) | 0; a ^= rot(c, 16); c = (c + b) | 0;
  b = (b - a) | 0; b ^= rot(a, 19); a = (a + c) | 0;
  c = (c - b) | 0; c ^= rot(b, 4); b = (b + a) | 0;
  // the last 8 bytes: case 8 of the tail switch
  b = (b + block) | 0;
  a = (a + fork) | 0;
  // final(a, b, c)
  c ^= b; c = (c - rot(b, 14)) | 0;
  a ^= c; a = (a - rot(c, 11)) | 0;
  b ^= a; b = (b - rot(a, 25)) | 0;
  c ^= b; c = (c - rot(b, 16)) | 0;
  a ^= c; a = (a - rot(c, 4)) | 0;
  b ^= a; b = (b - rot(a, 14)) | 0;
  c ^= b; c = (c - rot(b, 24)) | 0;
  hashOut[0] = b;
  hashOut[1] = c;
}

/** The whole hash as a bigint (tests and tools; the map itself uses hashOut). */
export function blockHash(spc: number, db: number, rel: number, fork: number, block: number): bigint {
  hashBlockId(spc, db, rel, fork, block);
  return (BigInt(hashOut[0]) << 32n) | BigInt(hashOut[1]);
}

/** (hi * 2^32 + lo) mod n, exactly, for n < 2^32 + 2^21 (any map up to 32 GB), without 64-bit arithmetic. */
export function mod64(hi: number, lo: number, n: number): number {
  let r = modExact(hi, n);
  r = modExact(r * 65536 + (lo >>> 16), n);
  return modExact(r * 65536 + (lo & 0xffff), n);
}

/**
 * x mod n for 0 <= x < 2^53. V8 computes `%` on values outside int32 by calling fmod, which dominated
 * marking; a floor division is exact enough that one correction step fixes its rounding.
 */
function modExact(x: number, n: number): number {
  const r = x - Math.floor(x / n) * n;
  return r < 0 ? r + n : r >= n ? r - n : r;
}
