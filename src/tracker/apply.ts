import { type CatalogOp, RELSEG_SIZE } from '../catalog/index.ts';
import { MarkCache, type PtrackMap } from '../map/index.ts';
import { type DecodedRecord, fileEvents, impliedBlockRefs, type Lsn } from '../wal/index.ts';

type Observation = {
  spc: number;
  db: number;
  rel: number;
  fork: number;
  maxBlock: number;
  firstLsn: Lsn;
  lastLsn: Lsn;
  /** The last LSN a block of the first 1 GB segment was named at (0: none). */
  seg0Lsn: Lsn;
  /** Later segments named, with their last LSN (most forks never have one). */
  later: Map<number, Lsn> | undefined;
};

const NO_LATER_SEGMENTS: ReadonlyMap<number, Lsn> = new Map();

/** How many forks #recent holds. */
const RECENT_FORKS = 8;

const CATALOG_EVENTS = new Set(['create', 'truncate', 'drop', 'dbcopy', 'dbcreate', 'dbdrop']);

/**
 * Applies decoded records to the map (every explicit and implied block, marked with the record's end
 * LSN) and collects what the catalog must learn, in LSN order: block observations coalesced per fork
 * between file events, and the file events. `takeOps()` hands a batch to Catalog.applyOps; the marks
 * of the records applied so far are all in the map once it returns (they are coalesced until then).
 */
export class WalApplier {
  readonly #marks: MarkCache;
  readonly #blockSize: number;
  #pending = new Map<string, Observation>();
  /**
   * The forks marked last: records touch a few forks in turn (a pgbench transaction: accounts, tellers,
   * branches, history), so most marks find theirs here without building a key.
   */
  readonly #recent: Observation[] = [];
  #recentNext = 0;
  #ops: CatalogOp[] = [];
  #appliedLsn: Lsn;
  #blocksMarked = 0;

  constructor(map: PtrackMap, blockSize: number, startLsn: Lsn) {
    this.#marks = new MarkCache(map);
    this.#blockSize = blockSize;
    this.#appliedLsn = startLsn;
  }

  /** The end of the last record applied. */
  get appliedLsn(): Lsn {
    return this.#appliedLsn;
  }

  apply(rec: DecodedRecord): void {
    const lsn = rec.endLsn;
    for (const b of rec.blocks) this.#mark(b.spc, b.db, b.rel, b.fork, b.block, lsn);
    for (const b of impliedBlockRefs(rec, this.#blockSize))
      this.#mark(b.spc, b.db, b.rel, b.fork, b.block, lsn);
    for (const event of fileEvents(rec)) {
      if (!CATALOG_EVENTS.has(event.kind)) continue;
      this.#flushObservations();
      this.#ops.push({ op: 'event', event });
    }
    this.#appliedLsn = rec.endLsn;
  }

  /** Block marks made so far, explicit and implied. */
  get blocksMarked(): number {
    return this.#blocksMarked;
  }

  takeOps(): CatalogOp[] {
    this.#marks.flush();
    this.#flushObservations();
    const ops = this.#ops;
    this.#ops = [];
    return ops;
  }

  #mark(spc: number, db: number, rel: number, fork: number, block: number, lsn: number): void {
    this.#marks.mark(spc, db, rel, fork, block, lsn);
    this.#blocksMarked++;
    const recent = this.#recent;
    let seen: Observation | undefined;
    for (let i = 0; i < recent.length; i++) {
      const o = recent[i];
      if (o.rel === rel && o.fork === fork && o.db === db && o.spc === spc) {
        seen = o;
        break;
      }
    }
    if (seen === undefined) {
      const key = `${spc}/${db}/${rel}/${fork}`;
      seen = this.#pending.get(key);
      if (seen === undefined) {
        seen = {
          spc,
          db,
          rel,
          fork,
          maxBlock: block,
          firstLsn: lsn,
          lastLsn: lsn,
          seg0Lsn: 0,
          later: undefined,
        };
        this.#pending.set(key, seen);
      }
      recent[this.#recentNext] = seen;
      this.#recentNext = (this.#recentNext + 1) % RECENT_FORKS;
    }
    if (block > seen.maxBlock) seen.maxBlock = block;
    seen.lastLsn = lsn;
    // which segment: a question reads only the segments named since its LSN
    if (block < RELSEG_SIZE) seen.seg0Lsn = lsn;
    else {
      seen.later ??= new Map();
      seen.later.set(Math.floor(block / RELSEG_SIZE), lsn);
    }
  }

  #flushObservations(): void {
    for (const { seg0Lsn, later, ...o } of this.#pending.values()) {
      this.#ops.push({ op: 'observe', ...o, segments: { seg0Lsn, later: later ?? NO_LATER_SEGMENTS } });
    }
    this.#pending.clear();
    this.#recent.length = 0;
    this.#recentNext = 0;
  }
}
