import { hashBlockId, hashOut, mod64 } from './hash.ts';
import { entriesForMapSize, HEADER_SIZE, INIT_LSN_OFFSET, MAP_MAGIC, MAP_VERSION } from './layout.ts';

/** LSNs are exact integers below 2^53 here, as in all of ptrackd (see wal/lsn.ts). */
const TWO_32 = 0x1_0000_0000;
/**
 * An LSN below 2^53 leaves the top 11 bits of an entry's high word free; the top one locks the entry
 * while a writer replaces its two halves. It is never set in a map at rest, nor in a checkpoint file.
 */
const LOCKED = 0x8000_0000;

/** Entries per line: a checkpoint writes changed lines, not the map (64 bytes, a cache line). */
export const LINE_ENTRIES = 8;
/**
 * The bookkeeping buffer: word 0 counts the entries in use; then a summary bit per word of dirty bits
 * (set when that word goes from 0), so that a checkpoint reads what changed, not the whole bitmap; then
 * the dirty bits, one per line.
 */
const USED = 0;
const SUMMARY_AT = 1;

/** What threads share of a map: its bytes (ptrack's layout) and its bookkeeping (see PtrackMap). */
export interface MapBuffers {
  readonly buffer: SharedArrayBuffer;
  readonly bookkeeping: SharedArrayBuffer;
}

/** Lines in a map of `entries` entries (the last one may be short). */
export function linesOf(entries: number): number {
  return Math.ceil(entries / LINE_ENTRIES);
}

/** 32-bit words of dirty bits for a map of `entries` entries, one bit per line. */
export function dirtyWordsOf(entries: number): number {
  return Math.ceil(linesOf(entries) / 32);
}

function bookkeepingWords(entries: number): number {
  const dirty = dirtyWordsOf(entries);
  return SUMMARY_AT + Math.ceil(dirty / 32) + dirty;
}

/** Dirty bits taken from a map (PtrackMap.takeDirtyLines): the words of the bitmap that held any, and their bits. */
export interface DirtyLines {
  readonly words: Uint32Array;
  readonly bits: Uint32Array;
}

/**
 * The changed-block map: ptrack's hash table of uint64 LSNs on a SharedArrayBuffer that decoder workers,
 * the tracker and the query worker share (each wraps the same buffer in its own PtrackMap).
 *
 * A block is marked in two slots (hash % N and rotl64(hash, 32) % N) with a monotonic max, and counts as
 * changed since X when both slots are >= X. Collisions only ever add false positives.
 *
 * Each entry is two 32-bit words driven through Atomics (sequentially consistent), so no BigInt is made:
 * - a writer whose LSN is not above the entry stops after two loads; values only grow, so even if a
 *   concurrent writer changed the entry between them, what was read is never above the entry's value;
 * - otherwise it locks the entry (compareExchange sets the high word's top bit), re-reads the low word,
 *   stores the new low word, then stores the new high word, which also unlocks;
 * - a reader loads high, low, high again and retries while the entry is locked or the high word moved,
 *   so it only ever sees values some writer completed.
 *
 * Beside it, a bookkeeping buffer the same threads share: the count of entries in use (an entry goes
 * from 0 once, under its lock, so the writer that does it adds one), and a dirty bit per line of
 * LINE_ENTRIES entries. A writer sets the line's bit (an atomic OR; a second, for the summary, when its
 * word of bits was 0) after it raised an entry; a checkpoint clears the bits it takes before it reads
 * the lines (takeDirtyLines), so a raise it may have missed leaves its bit set for the next one.
 */
export class PtrackMap {
  readonly buffer: SharedArrayBuffer;
  readonly bookkeeping: SharedArrayBuffer;
  readonly entries: number;
  readonly #u32: Uint32Array;
  readonly #book: Int32Array;
  /** Where the dirty bits start in #book, after the summary words. */
  readonly #dirtyAt: number;

  /** Wraps a map's shared buffers (another thread's PtrackMap.buffers). */
  constructor({ buffer, bookkeeping }: MapBuffers) {
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
    this.#u32 = new Uint32Array(buffer, HEADER_SIZE);
    if (bookkeeping.byteLength !== bookkeepingWords(this.entries) * 4) {
      throw new RangeError(`the bookkeeping buffer does not fit a map of ${this.entries} entries`);
    }
    this.bookkeeping = bookkeeping;
    this.#book = new Int32Array(bookkeeping);
    this.#dirtyAt = bookkeepingWords(this.entries) - dirtyWordsOf(this.entries);
  }

  /** What another thread needs to wrap the same map. */
  get buffers(): MapBuffers {
    return { buffer: this.buffer, bookkeeping: this.bookkeeping };
  }

  /** An empty map of `mapSizeMb` MB (ptrack.map_size) whose history starts at initLsn. */
  static create(mapSizeMb: number, initLsn: number): PtrackMap {
    return PtrackMap.withEntries(entriesForMapSize(mapSizeMb), initLsn);
  }

  static withEntries(entries: number, initLsn: number): PtrackMap {
    if (!Number.isInteger(entries) || entries < 1 || entries >= 2 ** 32) {
      throw new RangeError(`entries must be from 1 to 2^32 - 1, got ${entries}`);
    }
    const buffer = new SharedArrayBuffer(HEADER_SIZE + entries * 8);
    new Uint8Array(buffer).set(MAP_MAGIC, 0);
    new DataView(buffer).setUint32(4, MAP_VERSION, true);
    const bookkeeping = new SharedArrayBuffer(bookkeepingWords(entries) * 4);
    const map = new PtrackMap({ buffer, bookkeeping });
    map.initLsn = initLsn;
    return map;
  }

  get initLsn(): number {
    const dv = new DataView(this.buffer);
    return dv.getUint32(INIT_LSN_OFFSET + 4, true) * TWO_32 + dv.getUint32(INIT_LSN_OFFSET, true);
  }

  set initLsn(lsn: number) {
    checkLsn(lsn);
    const dv = new DataView(this.buffer);
    dv.setUint32(INIT_LSN_OFFSET, lsn % TWO_32, true);
    dv.setUint32(INIT_LSN_OFFSET + 4, Math.floor(lsn / TWO_32), true);
  }

  /** Records that a block changed at `lsn` (a record's end LSN). Safe from any thread. */
  markBlock(spc: number, db: number, rel: number, fork: number, block: number, lsn: number): void {
    checkLsn(lsn);
    hashBlockId(spc, db, rel, fork, block);
    const hi = hashOut[0];
    const lo = hashOut[1];
    const n = this.entries;
    this.#raise(mod64(hi, lo, n), lsn);
    this.#raise(mod64(lo, hi, n), lsn);
  }

  /** Whether the map says the block changed at or after `since` (both slots >= since). */
  isChanged(spc: number, db: number, rel: number, fork: number, block: number, since: number): boolean {
    hashBlockId(spc, db, rel, fork, block);
    const hi = hashOut[0];
    const lo = hashOut[1];
    const n = this.entries;
    return this.entry(mod64(hi, lo, n)) >= since && this.entry(mod64(lo, hi, n)) >= since;
  }

  /**
   * The LSN the map holds for a block: the lower of its two slots, so that isChanged(since) is exactly
   * blockLsn >= since (0: never marked, nor any block sharing both slots).
   */
  blockLsn(spc: number, db: number, rel: number, fork: number, block: number): number {
    hashBlockId(spc, db, rel, fork, block);
    const hi = hashOut[0];
    const lo = hashOut[1];
    const n = this.entries;
    return Math.min(this.entry(mod64(hi, lo, n)), this.entry(mod64(lo, hi, n)));
  }

  /** The block's two slot indexes (for tools and tests). */
  slotsOf(spc: number, db: number, rel: number, fork: number, block: number): [number, number] {
    hashBlockId(spc, db, rel, fork, block);
    return [mod64(hashOut[0], hashOut[1], this.entries), mod64(hashOut[1], hashOut[0], this.entries)];
  }

  /** An entry's LSN, as some writer completed it. */
  entry(slot: number): number {
    const u32 = this.#u32;
    for (;;) {
      const hi = Atomics.load(u32, slot * 2 + 1);
      if (hi & LOCKED) continue;
      const lo = Atomics.load(u32, slot * 2);
      if (Atomics.load(u32, slot * 2 + 1) === hi) return hi * TWO_32 + lo;
    }
  }

  /**
   * Sets entries [from, to) to `lsn`: repairs a damaged region at load time, before the map is shared.
   * With lsn = the checkpoint LSN, every block in it reads as changed for X <= lsn (false positives only),
   * and WAL replayed from lsn restores the rest.
   */
  fillEntries(from: number, to: number, lsn: number): void {
    checkLsn(lsn);
    const lo = lsn % TWO_32;
    const hi = Math.floor(lsn / TWO_32);
    for (let i = from; i < to; i++) {
      if (lsn !== 0 && (this.#u32[i * 2] | this.#u32[i * 2 + 1]) === 0) this.#book[USED]++;
      this.#u32[i * 2] = lo;
      this.#u32[i * 2 + 1] = hi;
    }
  }

  /**
   * Raises entries to the values in `lines`' data (LINE_ENTRIES entries a line, a line's short tail
   * ignored): a checkpoint log replayed at load time, before the map is shared (plain stores, as
   * fillEntries; no dirty bit is set: what is loaded is durable already).
   */
  raiseLines(lines: Uint32Array, data: Uint32Array): void {
    const u32 = this.#u32;
    let used = 0;
    for (let k = 0; k < lines.length; k++) {
      const first = lines[k] * LINE_ENTRIES;
      const last = Math.min(first + LINE_ENTRIES, this.entries);
      for (let e = first; e < last; e++) {
        const at = (k * LINE_ENTRIES + e - first) * 2;
        const lo = data[at];
        const hi = data[at + 1];
        const curLo = u32[e * 2];
        const curHi = u32[e * 2 + 1];
        if (hi < curHi || (hi === curHi && lo <= curLo)) continue;
        if ((curLo | curHi) === 0) used++;
        u32[e * 2] = lo;
        u32[e * 2 + 1] = hi;
      }
    }
    this.#book[USED] += used;
  }

  /**
   * Copies the entries of `lines` into `out`, LINE_ENTRIES entries (two words each) a line, each as some
   * writer completed it; a short last line's tail is left zero.
   */
  copyLines(lines: Uint32Array, out: Uint32Array): void {
    for (let k = 0; k < lines.length; k++) {
      const first = lines[k] * LINE_ENTRIES;
      const last = Math.min(first + LINE_ENTRIES, this.entries);
      for (let e = first; e < last; e++) {
        const lsn = this.entry(e);
        const at = (k * LINE_ENTRIES + e - first) * 2;
        out[at] = lsn % TWO_32;
        out[at + 1] = Math.floor(lsn / TWO_32);
      }
    }
  }

  /**
   * The dirty bits, taken: each word that holds any (found through the summary) exchanged for 0 before
   * the lines are read, so that a raise after this sets its bit again. The work grows with the words
   * that changed, not with the map.
   */
  takeDirtyLines(): DirtyLines {
    const book = this.#book;
    const words: number[] = [];
    const bits: number[] = [];
    for (let s = SUMMARY_AT; s < this.#dirtyAt; s++) {
      if (Atomics.load(book, s) === 0) continue;
      const groups = Atomics.exchange(book, s, 0);
      for (let g = 0; g < 32; g++) {
        if (!(groups & (1 << g))) continue;
        const w = (s - SUMMARY_AT) * 32 + g;
        const taken = Atomics.exchange(book, this.#dirtyAt + w, 0);
        if (taken === 0) continue;
        words.push(w);
        bits.push(taken >>> 0);
      }
    }
    return { words: Uint32Array.from(words), bits: Uint32Array.from(bits) };
  }

  /** Gives back dirty bits taken by a checkpoint that failed: its lines are written by the next one. */
  restoreDirtyLines(taken: DirtyLines): void {
    for (let k = 0; k < taken.words.length; k++) this.#markDirty(taken.words[k], taken.bits[k] | 0);
  }

  /**
   * ORs bits into a word of dirty bits; the word's summary bit is set when the word was 0 (else whoever
   * made it non-zero set it, or is about to, before its marks count).
   */
  #markDirty(word: number, bits: number): void {
    if (Atomics.or(this.#book, this.#dirtyAt + word, bits) === 0) {
      Atomics.or(this.#book, SUMMARY_AT + (word >>> 5), 1 << (word & 31));
    }
  }

  /** Entries in use (not zero). */
  usedEntries(): number {
    return Atomics.load(this.#book, USED) >>> 0;
  }

  /** Fraction of entries in use. */
  fillRatio(): number {
    return this.usedEntries() / this.entries;
  }

  /** Counts the entries in use: once, after the map's bytes were read from a file. */
  countUsedEntries(): void {
    Atomics.store(this.#book, USED, countUsed(this.#u32));
  }

  /** A copy of the whole buffer (header + entries), each entry as some writer completed it. */
  snapshot(): Uint8Array {
    const out = new Uint8Array(this.buffer.byteLength);
    this.copyRange(out, 0);
    return out;
  }

  /**
   * Copies the buffer's bytes [at, at + out.length) (header, then entries) into `out`, each entry as
   * some writer completed it, by the reader's protocol above on words (no LSN is rebuilt): every mark
   * made before the copy began is in it, maybe some later ones. `at` and the length are multiples of 8.
   */
  copyRange(out: Uint8Array, at: number): void {
    const end = at + out.length;
    if (at % 8 !== 0 || end % 8 !== 0 || out.byteOffset % 4 !== 0 || end > this.buffer.byteLength) {
      throw new RangeError(`cannot copy map bytes [${at}, ${end}) into a view at offset ${out.byteOffset}`);
    }
    const headerBytes = Math.max(0, Math.min(end, HEADER_SIZE) - at);
    if (headerBytes > 0) out.set(new Uint8Array(this.buffer, at, headerBytes), 0);
    const src = this.#u32;
    const first = (Math.max(at, HEADER_SIZE) - HEADER_SIZE) / 4;
    const words = (end - HEADER_SIZE) / 4 - first;
    if (words <= 0) return;
    const dst = new Uint32Array(out.buffer, out.byteOffset + headerBytes, words);
    for (let i = 0; i < words; i += 2) {
      for (;;) {
        const hi = Atomics.load(src, first + i + 1);
        if (hi & LOCKED) continue;
        const lo = Atomics.load(src, first + i);
        if (Atomics.load(src, first + i + 1) !== hi) continue;
        dst[i] = lo;
        dst[i + 1] = hi;
        break;
      }
    }
  }

  #raise(slot: number, lsn: number): void {
    const u32 = this.#u32;
    const hiAt = slot * 2 + 1;
    for (;;) {
      const hi = Atomics.load(u32, hiAt);
      if (hi & LOCKED) continue; // another writer is between its two stores
      if (hi * TWO_32 + Atomics.load(u32, slot * 2) >= lsn) return;
      if (Atomics.compareExchange(u32, hiAt, hi, hi | LOCKED) !== hi) continue;
      const lo = Atomics.load(u32, slot * 2);
      if (hi * TWO_32 + lo >= lsn) {
        Atomics.store(u32, hiAt, hi);
        return;
      }
      Atomics.store(u32, slot * 2, lsn % TWO_32);
      Atomics.store(u32, hiAt, Math.floor(lsn / TWO_32));
      if ((hi | lo) === 0) Atomics.add(this.#book, USED, 1);
      const line = Math.floor(slot / LINE_ENTRIES);
      this.#markDirty(line >>> 5, 1 << (line & 31));
      return;
    }
  }
}

function checkLsn(lsn: number): void {
  if (!(lsn >= 0 && lsn <= Number.MAX_SAFE_INTEGER && Number.isInteger(lsn))) {
    throw new RangeError(`an LSN must be an integer from 0 to 2^53 - 1, got ${lsn}`);
  }
}

/** Entries are word pairs; an entry is used when either word is not zero. */
function countUsed(words: Uint32Array): number {
  let used = 0;
  for (let i = 0; i < words.length; i += 2) if (words[i] !== 0 || words[i + 1] !== 0) used++;
  return used;
}
