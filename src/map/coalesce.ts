import type { PtrackMap } from './map.ts';

/** Blocks held at once: a power of two, small enough to stay in a core's cache. */
const SLOTS_BITS = 12;
const SLOTS = 1 << SLOTS_BITS;

/**
 * Coalesces a thread's marks before they reach the shared map. WAL marks the same hot blocks over and
 * over (a pgbench branch page in every transaction), and each mark of the map costs two atomic
 * read-modify-writes on cache lines other threads share. This holds the latest LSN of the blocks marked
 * recently, in a direct-mapped cache; a block pushed out by another is marked in the map then, and
 * flush() marks every block still held. Marks commute and keep the maximum, so the map ends exactly as
 * if each mark had gone straight to it; whoever relies on the marks (a chunk's result, which moves the
 * applied LSN) flushes first.
 */
export class MarkCache {
  readonly #map: PtrackMap;
  readonly #spc = new Uint32Array(SLOTS);
  readonly #db = new Uint32Array(SLOTS);
  readonly #rel = new Uint32Array(SLOTS);
  readonly #fork = new Uint8Array(SLOTS);
  readonly #block = new Uint32Array(SLOTS);
  /** 0: the slot holds nothing (no record ends at LSN 0). */
  readonly #lsn = new Float64Array(SLOTS);

  constructor(map: PtrackMap) {
    this.#map = map;
  }

  mark(spc: number, db: number, rel: number, fork: number, block: number, lsn: number): void {
    const i = (Math.imul(block + fork, 0x9e3779b1) ^ Math.imul(rel, 0x85ebca77)) >>> (32 - SLOTS_BITS);
    const held = this.#lsn[i];
    if (held !== 0) {
      if (
        this.#block[i] === block &&
        this.#rel[i] === rel &&
        this.#fork[i] === fork &&
        this.#db[i] === db &&
        this.#spc[i] === spc
      ) {
        if (lsn > held) this.#lsn[i] = lsn;
        return;
      }
      this.#map.markBlock(this.#spc[i], this.#db[i], this.#rel[i], this.#fork[i], this.#block[i], held);
    }
    this.#spc[i] = spc;
    this.#db[i] = db;
    this.#rel[i] = rel;
    this.#fork[i] = fork;
    this.#block[i] = block;
    this.#lsn[i] = lsn;
  }

  /** Marks every block held in the map. */
  flush(): void {
    const lsns = this.#lsn;
    for (let i = 0; i < SLOTS; i++) {
      if (lsns[i] === 0) continue;
      this.#map.markBlock(this.#spc[i], this.#db[i], this.#rel[i], this.#fork[i], this.#block[i], lsns[i]);
      lsns[i] = 0;
    }
  }
}
