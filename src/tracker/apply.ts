import type { CatalogOp } from '../catalog/index.ts';
import type { PtrackMap } from '../map/index.ts';
import { type DecodedRecord, fileEvents, impliedBlockRefs, type Lsn } from '../wal/index.ts';

type Observation = {
  spc: number;
  db: number;
  rel: number;
  fork: number;
  maxBlock: number;
  firstLsn: Lsn;
  lastLsn: Lsn;
};

const CATALOG_EVENTS = new Set(['create', 'truncate', 'drop', 'dbcopy', 'dbcreate', 'dbdrop']);

/**
 * Applies decoded records to the map (every explicit and implied block, marked with the record's end
 * LSN) and collects what the catalog must learn, in LSN order: block observations coalesced per fork
 * between file events, and the file events. `takeOps()` hands a batch to Catalog.applyOps.
 */
export class WalApplier {
  readonly #map: PtrackMap;
  readonly #blockSize: number;
  #pending = new Map<string, Observation>();
  #last: Observation | undefined;
  #ops: CatalogOp[] = [];
  #appliedLsn: Lsn;
  #blocksMarked = 0;

  constructor(map: PtrackMap, blockSize: number, startLsn: Lsn) {
    this.#map = map;
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
    this.#flushObservations();
    const ops = this.#ops;
    this.#ops = [];
    return ops;
  }

  #mark(spc: number, db: number, rel: number, fork: number, block: number, lsn: number): void {
    this.#map.markBlock(spc, db, rel, fork, block, lsn);
    this.#blocksMarked++;
    // Records touch the same fork again and again: check the last one before building a key.
    let seen = this.#last;
    if (seen === undefined || seen.rel !== rel || seen.fork !== fork || seen.db !== db || seen.spc !== spc) {
      const key = `${spc}/${db}/${rel}/${fork}`;
      seen = this.#pending.get(key);
      if (seen === undefined) {
        seen = { spc, db, rel, fork, maxBlock: block, firstLsn: lsn, lastLsn: lsn };
        this.#pending.set(key, seen);
      }
      this.#last = seen;
    }
    if (block > seen.maxBlock) seen.maxBlock = block;
    seen.lastLsn = lsn;
  }

  #flushObservations(): void {
    for (const o of this.#pending.values()) this.#ops.push({ op: 'observe', ...o });
    this.#pending.clear();
    this.#last = undefined;
  }
}
