import { type FileEvent, ForkNumber, heapBlocksPerVmPage, type Lsn } from '../wal/index.ts';

/**
 * What a stretch of WAL tells the catalog, as an ordered list of operations: block observations
 * (coalesced per fork between file events) and the file events themselves. Order matters: a truncation
 * lowers a fork's known length, later references raise it again.
 */
export type CatalogOp =
  | {
      readonly op: 'observe';
      readonly spc: number;
      readonly db: number;
      readonly rel: number;
      readonly fork: number;
      readonly maxBlock: number;
      readonly firstLsn: Lsn;
      readonly lastLsn: Lsn;
      /**
       * Where in the fork: the last LSN a block of its first segment was named at (0: none), and each
       * later segment (segno >= 1) named with its last LSN. Without them, every segment up to maxBlock's
       * counts as named at lastLsn.
       */
      readonly segments?: { readonly seg0Lsn: Lsn; readonly later: ReadonlyMap<number, Lsn> };
    }
  | { readonly op: 'event'; readonly event: FileEvent };

export const ALL_FORKS = -1;
/** Blocks in a relation segment file (PostgreSQL's RELSEG_SIZE: 1 GB of 8 kB blocks). */
export const RELSEG_SIZE = 131072;
/** `rel` of a limit event that covers every file of a database directory. */
export const WHOLE_DATABASE = 0;

export interface LimitEvent {
  readonly lsn: Lsn;
  readonly spc: number;
  readonly db: number;
  readonly rel: number;
  readonly fork: number;
  readonly limitBlock: number;
  readonly kind: string;
}

/**
 * The limit events a file event implies (design.md §5), stamped with the record's end LSN: a question
 * about X counts the change when X <= that LSN, as for block references.
 * - SMGR_CREATE: the new fork is wholly changed (limit 0);
 * - SMGR_TRUNCATE to n blocks: main from n on (HEAP flag), VM from the page holding block n (VM flag);
 *   the file may have been re-extended with zero pages that no WAL shows;
 * - relations dropped at commit/abort: every fork, wholly;
 * - database copy, WAL_LOG create and drop: every file of the database directory.
 */
export function limitsOf(event: FileEvent, blockSize: number): LimitEvent[] {
  const lsn = event.endLsn;
  switch (event.kind) {
    case 'create':
      return [
        {
          lsn,
          spc: event.spc,
          db: event.db,
          rel: event.rel,
          fork: event.fork,
          limitBlock: 0,
          kind: 'create',
        },
      ];
    case 'truncate': {
      const out: LimitEvent[] = [];
      const at = { lsn, spc: event.spc, db: event.db, rel: event.rel, kind: 'truncate' };
      if (event.flags & 1) out.push({ ...at, fork: ForkNumber.main, limitBlock: event.nblocks });
      if (event.flags & 2) {
        out.push({
          ...at,
          fork: ForkNumber.vm,
          limitBlock: Math.floor(event.nblocks / heapBlocksPerVmPage(blockSize)),
        });
      }
      return out;
    }
    case 'drop':
      return [
        { lsn, spc: event.spc, db: event.db, rel: event.rel, fork: ALL_FORKS, limitBlock: 0, kind: 'drop' },
      ];
    case 'dbcopy':
    case 'dbcreate':
    case 'dbdrop':
      return [
        {
          lsn,
          spc: event.spc,
          db: event.db,
          rel: WHOLE_DATABASE,
          fork: ALL_FORKS,
          limitBlock: 0,
          kind: event.kind,
        },
      ];
    default:
      return [];
  }
}
