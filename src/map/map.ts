import { hashBlockId, hashOut, mod64 } from './hash.ts';
import { entriesForMapSize, HEADER_SIZE, INIT_LSN_OFFSET, MAP_MAGIC, MAP_VERSION } from './layout.ts';

/**
 * The changed-block map: ptrack's hash table of uint64 LSNs on a SharedArrayBuffer that decoder workers,
 * the tracker and the query worker share (each wraps the same buffer in its own PtrackMap).
 *
 * A block is marked in two slots (hash % N and rotl64(hash, 32) % N) with a monotonic max, and counts as
 * changed since X when both slots are >= X. Collisions only ever add false positives.
 *
 * Memory-ordering notes (every access to entries goes through Atomics, which are sequentially consistent):
 * - markBlock first reads the slot as two 32-bit halves, high then low. Values only grow, so that torn
 *   read is never above the slot's true value at the moment its low half is read: when it is already
 *   >= lsn, skipping the update is safe. Otherwise a 64-bit compareExchange loop does the max.
 * - snapshotEntries reads low then high, so a torn read is never below the slot's value before the read:
 *   a snapshot can overstate an entry (a false positive) but never lose a mark it should contain.
 */
export class PtrackMap {
  readonly buffer: SharedArrayBuffer;
  readonly entries: number;
  readonly #u64: BigUint64Array;
  readonly #u32: Uint32Array;

  constructor(buffer: SharedArrayBuffer) {
    if (buffer.byteLength < HEADER_SIZE + 8 || (buffer.byteLength - HEADER_SIZE) % 8 !== 0) {
      throw new RangeError(
        `a map buffer holds a 16-byte header and 8-byte entries, got ${buffer.byteLength} bytes`,
      );
    }
    const head = new Uint8Array(buffer, 0, HEADER_SIZE);
    if (
      !MAP_MAGIC.every((b, i) => head[i] === b) ||
      new DataView(buffer).getUint32(4, true) !== MAP_VERSION
    ) {
      throw new RangeError('buffer does not hold a ptrack map header (magic "ptk\\0", version 220)');
    }
    this.buffer = buffer;
    this.entries = (buffer.byteLength - HEADER_SIZE) / 8;
    this.#u64 = new BigUint64Array(buffer, HEADER_SIZE);
    this.#u32 = new Uint32Array(buffer, HEADER_SIZE);
  }

  /** An empty map of `mapSizeMb` MB (ptrack.map_size) whose history starts at initLsn. */
  static create(mapSizeMb: number, initLsn: bigint): PtrackMap {
    return PtrackMap.withEntries(entriesForMapSize(mapSizeMb), initLsn);
  }

  static withEntries(entries: number, initLsn: bigint): PtrackMap {
    if (!Number.isInteger(entries) || entries < 1 || entries >= 2 ** 32) {
      throw new RangeError(`entries must be from 1 to 2^32 - 1, got ${entries}`);
    }
    const buffer = new SharedArrayBuffer(HEADER_SIZE + entries * 8);
    new Uint8Array(buffer).set(MAP_MAGIC, 0);
    const dv = new DataView(buffer);
    dv.setUint32(4, MAP_VERSION, true);
    dv.setBigUint64(INIT_LSN_OFFSET, initLsn, true);
    return new PtrackMap(buffer);
  }

  get initLsn(): bigint {
    return new DataView(this.buffer).getBigUint64(INIT_LSN_OFFSET, true);
  }

  set initLsn(lsn: bigint) {
    new DataView(this.buffer).setBigUint64(INIT_LSN_OFFSET, lsn, true);
  }

  /** Records that a block changed at `lsn` (a record's end LSN). Safe from any thread. */
  markBlock(spc: number, db: number, rel: number, fork: number, block: number, lsn: bigint): void {
    hashBlockId(spc, db, rel, fork, block);
    const hi = hashOut[0];
    const lo = hashOut[1];
    const n = this.entries;
    this.#max(mod64(hi, lo, n), lsn);
    this.#max(mod64(lo, hi, n), lsn);
  }

  /** Whether the map says the block changed at or after `since` (both slots >= since). */
  isChanged(spc: number, db: number, rel: number, fork: number, block: number, since: bigint): boolean {
    hashBlockId(spc, db, rel, fork, block);
    const hi = hashOut[0];
    const lo = hashOut[1];
    const n = this.entries;
    return this.#atLeast(mod64(hi, lo, n), since) && this.#atLeast(mod64(lo, hi, n), since);
  }

  /** The block's two slot indexes (for tools and tests). */
  slotsOf(spc: number, db: number, rel: number, fork: number, block: number): [number, number] {
    hashBlockId(spc, db, rel, fork, block);
    return [mod64(hashOut[0], hashOut[1], this.entries), mod64(hashOut[1], hashOut[0], this.entries)];
  }

  entry(slot: number): bigint {
    return Atomics.load(this.#u64, slot);
  }

  /**
   * Sets entries [from, to) to `lsn`: repairs a damaged region at load time, before the map is shared.
   * With lsn = the checkpoint LSN, every block in it reads as changed for X <= lsn (false positives only),
   * and WAL replayed from lsn restores the rest.
   */
  fillEntries(from: number, to: number, lsn: bigint): void {
    this.#u64.fill(lsn, from, to);
  }

  /** Fraction of entries that are non-zero. */
  fillRatio(): number {
    let used = 0;
    const u32 = this.#u32;
    for (let i = 0; i < u32.length; i += 2) if (u32[i] !== 0 || u32[i + 1] !== 0) used++;
    return used / this.entries;
  }

  /** A consistent-enough copy of the whole buffer (header + entries) for a checkpoint; see the class notes. */
  snapshot(): Uint8Array {
    const out = new Uint8Array(this.buffer.byteLength);
    out.set(new Uint8Array(this.buffer, 0, HEADER_SIZE), 0);
    const dst = new Uint32Array(out.buffer, HEADER_SIZE);
    const src = this.#u32;
    for (let i = 0; i < src.length; i += 2) {
      dst[i] = Atomics.load(src, i);
      dst[i + 1] = Atomics.load(src, i + 1);
    }
    return out;
  }

  #atLeast(slot: number, since: bigint): boolean {
    return Atomics.load(this.#u64, slot) >= since;
  }

  #max(slot: number, lsn: bigint): void {
    const u32 = this.#u32;
    const hi = Atomics.load(u32, slot * 2 + 1);
    const lo = Atomics.load(u32, slot * 2);
    // The common check builds no BigInt; only an actual update does (the compareExchange loop).
    const target = Number(lsn);
    if (target <= Number.MAX_SAFE_INTEGER && hi * 0x1_0000_0000 + lo >= target) return;
    const a = this.#u64;
    let current = Atomics.load(a, slot);
    while (current < lsn) {
      const seen = Atomics.compareExchange(a, slot, current, lsn);
      if (seen === current) return;
      current = seen;
    }
  }
}
