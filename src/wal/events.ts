import { ForkNumber, heapBlocksPerVmPage, Rmgr } from './constants.ts';
import { WalDecodeError } from './errors.ts';
import type { Lsn } from './lsn.ts';
import { WalReader } from './reader.ts';
import type { BlockRef, DecodedRecord } from './record.ts';

/**
 * A change to files (or to where WAL continues) that block references do not describe. `lsn` is the
 * record's start, `endLsn` its end (see DecodedRecord).
 */
export type FileEvent = { readonly lsn: Lsn; readonly endLsn: Lsn } & (
  | {
      readonly kind: 'create';
      readonly spc: number;
      readonly db: number;
      readonly rel: number;
      readonly fork: number;
    }
  | {
      readonly kind: 'truncate';
      readonly spc: number;
      readonly db: number;
      readonly rel: number;
      readonly nblocks: number;
      /** SMGR_TRUNCATE_HEAP 1 | VM 2 | FSM 4 */
      readonly flags: number;
    }
  | { readonly kind: 'drop'; readonly spc: number; readonly db: number; readonly rel: number }
  | {
      readonly kind: 'dbcopy';
      readonly spc: number;
      readonly db: number;
      readonly srcSpc: number;
      readonly srcDb: number;
    }
  | { readonly kind: 'dbcreate'; readonly spc: number; readonly db: number }
  | { readonly kind: 'dbdrop'; readonly spc: number; readonly db: number }
  | { readonly kind: 'tblspc-create'; readonly spc: number; readonly path: string }
  | { readonly kind: 'tblspc-drop'; readonly spc: number }
  | { readonly kind: 'relmap'; readonly spc: number; readonly db: number }
  | {
      readonly kind: 'checkpoint';
      readonly redo: Lsn;
      readonly tli: number;
      readonly prevTli: number;
      readonly shutdown: boolean;
    }
  | { readonly kind: 'end-of-recovery'; readonly tli: number; readonly prevTli: number }
  | { readonly kind: 'overwrite-contrecord'; readonly overwrittenLsn: Lsn }
);

export const SMGR_TRUNCATE_HEAP = 1;
export const SMGR_TRUNCATE_VM = 2;
export const SMGR_TRUNCATE_FSM = 4;

const XACT_XINFO_HAS_DBINFO = 0x01;
const XACT_XINFO_HAS_SUBXACTS = 0x02;
const XACT_XINFO_HAS_RELFILELOCATORS = 0x04;
const XLOG_XACT_HAS_INFO = 0x80;

const reader = new WalReader();

function mainData(rec: DecodedRecord, what: string): WalReader {
  return reader.reset(rec.mainData, 0, rec.mainData.length, rec.lsn, 'bad-main-data', what);
}

/** The file-level events of one record, in the order they take effect (empty for most records). */
export function fileEvents(rec: DecodedRecord): FileEvent[] {
  const op = rec.info & 0xf0;
  const at = { lsn: rec.lsn, endLsn: rec.endLsn };
  switch (rec.rmid) {
    case Rmgr.Storage: {
      if (op === 0x10) {
        const r = mainData(rec, 'xl_smgr_create');
        const spc = r.u32le();
        const db = r.u32le();
        const rel = r.u32le();
        const fork = r.i32le();
        if (fork < 0 || fork > 3)
          throw new WalDecodeError('bad-main-data', `SMGR_CREATE of invalid fork ${fork}`, rec.lsn);
        return [{ ...at, kind: 'create', spc, db, rel, fork }];
      }
      if (op === 0x20) {
        const r = mainData(rec, 'xl_smgr_truncate');
        const nblocks = r.u32le();
        const spc = r.u32le();
        const db = r.u32le();
        const rel = r.u32le();
        const flags = r.i32le();
        return [{ ...at, kind: 'truncate', spc, db, rel, nblocks, flags }];
      }
      return [];
    }
    case Rmgr.Database:
      return databaseEvents(rec, op, at);
    case Rmgr.Transaction:
      return droppedRelations(rec, at);
    case Rmgr.Tablespace: {
      const r = mainData(rec, 'tablespace record');
      if (op === 0x00) {
        const spc = r.u32le();
        return [{ ...at, kind: 'tblspc-create', spc, path: r.cstring() }];
      }
      if (op === 0x10) return [{ ...at, kind: 'tblspc-drop', spc: r.u32le() }];
      return [];
    }
    case Rmgr.RelMap: {
      if (op !== 0x00) return [];
      const r = mainData(rec, 'xl_relmap_update');
      const db = r.u32le();
      const spc = r.u32le();
      return [{ ...at, kind: 'relmap', spc, db }];
    }
    case Rmgr.XLOG:
      return xlogEvents(rec, op, at);
    default:
      return [];
  }
}

function databaseEvents(rec: DecodedRecord, op: number, at: { lsn: Lsn; endLsn: Lsn }): FileEvent[] {
  // The opcodes moved in 15: 13/14 have CREATE 0x00 and DROP 0x10; 15+ have CREATE_FILE_COPY 0x00,
  // CREATE_WAL_LOG 0x10 and DROP 0x20.
  const dropOp = rec.major <= 14 ? 0x10 : 0x20;
  const r = mainData(rec, 'database record');
  if (op === 0x00) {
    const db = r.u32le();
    const spc = r.u32le();
    const srcDb = r.u32le();
    const srcSpc = r.u32le();
    return [{ ...at, kind: 'dbcopy', spc, db, srcSpc, srcDb }];
  }
  if (op === dropOp) {
    const db = r.u32le();
    const n = r.i32le();
    if (n < 0) throw new WalDecodeError('bad-main-data', `database DROP with ${n} tablespaces`, rec.lsn);
    const events: FileEvent[] = [];
    for (let i = 0; i < n; i++) events.push({ ...at, kind: 'dbdrop', spc: r.u32le(), db });
    return events;
  }
  if (op === 0x10 && rec.major >= 15) {
    const db = r.u32le();
    const spc = r.u32le();
    return [{ ...at, kind: 'dbcreate', spc, db }];
  }
  return [];
}

/** COMMIT, ABORT, COMMIT_PREPARED and ABORT_PREPARED list the relfilenodes they remove (ParseCommitRecord). */
function droppedRelations(rec: DecodedRecord, at: { lsn: Lsn; endLsn: Lsn }): FileEvent[] {
  const op = rec.info & 0x70;
  if (op !== 0x00 && op !== 0x20 && op !== 0x30 && op !== 0x40) return [];
  const r = mainData(rec, 'commit/abort record');
  r.skip(8);
  const xinfo = (rec.info & XLOG_XACT_HAS_INFO) !== 0 ? r.u32le() : 0;
  if ((xinfo & XACT_XINFO_HAS_DBINFO) !== 0) r.skip(8);
  if ((xinfo & XACT_XINFO_HAS_SUBXACTS) !== 0) r.skip(4 * count(r, rec, 'subtransactions'));
  if ((xinfo & XACT_XINFO_HAS_RELFILELOCATORS) === 0) return [];
  const n = count(r, rec, 'relations');
  const events: FileEvent[] = [];
  for (let i = 0; i < n; i++) {
    const spc = r.u32le();
    const db = r.u32le();
    const rel = r.u32le();
    events.push({ ...at, kind: 'drop', spc, db, rel });
  }
  return events;
}

function count(r: WalReader, rec: DecodedRecord, what: string): number {
  const n = r.i32le();
  if (n < 0 || n * 4 > r.remaining) {
    throw new WalDecodeError('bad-main-data', `transaction record claims ${n} ${what}`, rec.lsn);
  }
  return n;
}

function xlogEvents(rec: DecodedRecord, op: number, at: { lsn: Lsn; endLsn: Lsn }): FileEvent[] {
  if (op === 0x00 || op === 0x10) {
    const r = mainData(rec, 'CheckPoint');
    const redo = r.u64le();
    const tli = r.u32le();
    const prevTli = r.u32le();
    return [{ ...at, kind: 'checkpoint', redo, tli, prevTli, shutdown: op === 0x00 }];
  }
  if (op === 0x90) {
    const r = mainData(rec, 'xl_end_of_recovery');
    r.skip(8);
    const tli = r.u32le();
    const prevTli = r.u32le();
    return [{ ...at, kind: 'end-of-recovery', tli, prevTli }];
  }
  if (op === 0xd0) {
    return [
      {
        ...at,
        kind: 'overwrite-contrecord',
        overwrittenLsn: mainData(rec, 'xl_overwrite_contrecord').u64le(),
      },
    ];
  }
  return [];
}

/** A block the record changes without naming it: a visibility-map page whose bits a heap record cleared. */
export interface ImpliedBlockRef {
  readonly spc: number;
  readonly db: number;
  readonly rel: number;
  readonly fork: number;
  readonly block: number;
}

const ALL_VISIBLE_CLEARED = 0x01;
const NEW_ALL_VISIBLE_CLEARED = 0x02;

/**
 * Heap records clear visibility-map bits during redo with no VM block reference (13–16, 17.0–17.10,
 * 18.0–18.4; wal-format.md §5.6). Yields the VM page of each such clear, unless the record already
 * references that page explicitly (as 17.11+ and 18.6+ do).
 */
export function impliedBlockRefs(rec: DecodedRecord, blockSize: number): ImpliedBlockRef[] {
  const pages = vmPagesCleared(rec, blockSize);
  if (pages.length === 0) return pages;
  return pages.filter((p) => !rec.blocks.some((b) => sameBlock(b, p)));
}

/** The VM pages whose bits the record's flags say it clears, named explicitly or not. */
export function vmPagesCleared(rec: DecodedRecord, blockSize: number): ImpliedBlockRef[] {
  const cleared = vmClears(rec);
  if (cleared.length === 0) return [];
  const perPage = heapBlocksPerVmPage(blockSize);
  const out: ImpliedBlockRef[] = [];
  for (const heap of cleared) {
    const page = {
      spc: heap.spc,
      db: heap.db,
      rel: heap.rel,
      fork: ForkNumber.vm,
      block: Math.floor(heap.block / perPage),
    };
    if (!out.some((p) => sameBlock(p, page))) out.push(page);
  }
  return out;
}

function sameBlock(a: ImpliedBlockRef, b: ImpliedBlockRef): boolean {
  return a.block === b.block && a.fork === b.fork && a.rel === b.rel && a.db === b.db && a.spc === b.spc;
}

/** The heap block references whose all-visible/all-frozen bits the record clears. */
function vmClears(rec: DecodedRecord): BlockRef[] {
  const op = rec.info & 0x70;
  const d = rec.mainData;
  const flagAt = (offset: number, what: string): number => {
    if (d.length <= offset)
      throw new WalDecodeError('bad-main-data', `${what} main data too short (${d.length} bytes)`, rec.lsn);
    return d[offset];
  };
  const ref = (id: number): BlockRef => {
    const b = rec.blocks.find((x) => x.id === id);
    if (!b) throw new WalDecodeError('bad-block-ref', `heap record without block reference ${id}`, rec.lsn);
    return b;
  };
  if (rec.rmid === Rmgr.Heap) {
    if (op === 0x00) return flagAt(2, 'heap INSERT') & ALL_VISIBLE_CLEARED ? [ref(0)] : [];
    if (op === 0x10) return flagAt(7, 'heap DELETE') & ALL_VISIBLE_CLEARED ? [ref(0)] : [];
    if (op === 0x60) return flagAt(7, 'heap LOCK') & ALL_VISIBLE_CLEARED ? [ref(0)] : [];
    if (op === 0x20 || op === 0x40) {
      const flags = flagAt(7, 'heap UPDATE');
      const out: BlockRef[] = [];
      if (flags & ALL_VISIBLE_CLEARED) out.push(rec.blocks.find((x) => x.id === 1) ?? ref(0));
      if (flags & NEW_ALL_VISIBLE_CLEARED) out.push(ref(0));
      return out;
    }
  } else if (rec.rmid === Rmgr.Heap2) {
    if (op === 0x50) return flagAt(0, 'heap MULTI_INSERT') & ALL_VISIBLE_CLEARED ? [ref(0)] : [];
    if (op === 0x60) return flagAt(7, 'heap LOCK_UPDATED') & ALL_VISIBLE_CLEARED ? [ref(0)] : [];
  }
  return [];
}
