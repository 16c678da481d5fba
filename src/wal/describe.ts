import { Rmgr } from './constants.ts';
import type { DecodedRecord } from './record.ts';

type Names = Readonly<Record<number, string>>;

/** Opcode (xl_info & 0xF0, or & 0x70 where noted) → pg_waldump's record type, per resource manager. */
const XLOG_NAMES: Names = {
  0: 'CHECKPOINT_SHUTDOWN',
  16: 'CHECKPOINT_ONLINE',
  32: 'NOOP',
  48: 'NEXTOID',
  64: 'SWITCH',
  80: 'BACKUP_END',
  96: 'PARAMETER_CHANGE',
  112: 'RESTORE_POINT',
  128: 'FPW_CHANGE',
  144: 'END_OF_RECOVERY',
  160: 'FPI_FOR_HINT',
  176: 'FPI',
  208: 'OVERWRITE_CONTRECORD',
  224: 'CHECKPOINT_REDO',
};
const XACT_NAMES: Names = {
  0: 'COMMIT',
  16: 'PREPARE',
  32: 'ABORT',
  48: 'COMMIT_PREPARED',
  64: 'ABORT_PREPARED',
  80: 'ASSIGNMENT',
  96: 'INVALIDATION',
};
const HEAP_NAMES: Names = {
  0: 'INSERT',
  16: 'DELETE',
  32: 'UPDATE',
  48: 'TRUNCATE',
  64: 'HOT_UPDATE',
  80: 'CONFIRM',
  96: 'LOCK',
  112: 'INPLACE',
};
const HEAP2_NAMES_13: Names = {
  0: 'REWRITE',
  16: 'CLEAN',
  32: 'FREEZE_PAGE',
  48: 'CLEANUP_INFO',
  64: 'VISIBLE',
  80: 'MULTI_INSERT',
  96: 'LOCK_UPDATED',
  112: 'NEW_CID',
};
const HEAP2_NAMES_14: Names = { ...HEAP2_NAMES_13, 16: 'PRUNE', 32: 'VACUUM', 48: 'FREEZE_PAGE' };
const HEAP2_NAMES_17: Names = {
  ...HEAP2_NAMES_13,
  16: 'PRUNE_ON_ACCESS',
  32: 'PRUNE_VACUUM_SCAN',
  48: 'PRUNE_VACUUM_CLEANUP',
};
const BTREE_NAMES: Names = {
  0: 'INSERT_LEAF',
  16: 'INSERT_UPPER',
  32: 'INSERT_META',
  48: 'SPLIT_L',
  64: 'SPLIT_R',
  80: 'INSERT_POST',
  96: 'DEDUP',
  112: 'DELETE',
  128: 'UNLINK_PAGE',
  144: 'UNLINK_PAGE_META',
  160: 'NEWROOT',
  176: 'MARK_PAGE_HALFDEAD',
  192: 'VACUUM',
  208: 'REUSE_PAGE',
  224: 'META_CLEANUP',
};
const HASH_NAMES: Names = {
  0: 'INIT_META_PAGE',
  16: 'INIT_BITMAP_PAGE',
  32: 'INSERT',
  48: 'ADD_OVFL_PAGE',
  64: 'SPLIT_ALLOCATE_PAGE',
  80: 'SPLIT_PAGE',
  96: 'SPLIT_COMPLETE',
  112: 'MOVE_PAGE_CONTENTS',
  128: 'SQUEEZE_PAGE',
  144: 'DELETE',
  160: 'SPLIT_CLEANUP',
  176: 'UPDATE_META_PAGE',
  192: 'VACUUM_ONE_PAGE',
};
const GIN_NAMES: Names = {
  16: 'CREATE_PTREE',
  32: 'INSERT',
  48: 'SPLIT',
  64: 'VACUUM_PAGE',
  80: 'DELETE_PAGE',
  96: 'UPDATE_META_PAGE',
  112: 'INSERT_LISTPAGE',
  128: 'DELETE_LISTPAGE',
  144: 'VACUUM_DATA_LEAF_PAGE',
};
const GIST_NAMES: Names = {
  0: 'PAGE_UPDATE',
  16: 'DELETE',
  32: 'PAGE_REUSE',
  48: 'PAGE_SPLIT',
  96: 'PAGE_DELETE',
  112: 'ASSIGN_LSN',
};
const SPGIST_NAMES: Names = {
  16: 'ADD_LEAF',
  32: 'MOVE_LEAFS',
  48: 'ADD_NODE',
  64: 'SPLIT_TUPLE',
  80: 'PICKSPLIT',
  96: 'VACUUM_LEAF',
  112: 'VACUUM_ROOT',
  128: 'VACUUM_REDIRECT',
};
const BRIN_NAMES: Names = {
  0: 'CREATE_INDEX',
  16: 'INSERT',
  32: 'UPDATE',
  48: 'SAMEPAGE_UPDATE',
  64: 'REVMAP_EXTEND',
  80: 'DESUMMARIZE',
};

/** pg_waldump's record type (its rm_identify), e.g. `INSERT+INIT`, `CREATE_WAL_LOG`. */
export function recordTypeName(rec: Pick<DecodedRecord, 'rmid' | 'info' | 'major'>): string {
  const op = rec.info & 0xf0;
  const op70 = rec.info & 0x70;
  const init = (rec.info & 0x80) !== 0 ? '+INIT' : '';
  const name = (names: Names, key: number) => names[key] ?? `UNKNOWN (${rec.info & 0xf0})`;
  switch (rec.rmid) {
    case Rmgr.XLOG:
      return name(XLOG_NAMES, op);
    case Rmgr.Transaction:
      return name(XACT_NAMES, op70);
    case Rmgr.Storage:
      return name({ 16: 'CREATE', 32: 'TRUNCATE' }, op);
    case Rmgr.CLOG:
    case Rmgr.CommitTs:
      return name({ 0: 'ZEROPAGE', 16: 'TRUNCATE' }, op);
    case Rmgr.Database:
      return rec.major <= 14
        ? name({ 0: 'CREATE', 16: 'DROP' }, op)
        : name({ 0: 'CREATE_FILE_COPY', 16: 'CREATE_WAL_LOG', 32: 'DROP' }, op);
    case Rmgr.Tablespace:
      return name({ 0: 'CREATE', 16: 'DROP' }, op);
    case Rmgr.MultiXact:
      return name({ 0: 'ZERO_OFF_PAGE', 16: 'ZERO_MEM_PAGE', 32: 'CREATE_ID', 48: 'TRUNCATE_ID' }, op);
    case Rmgr.RelMap:
      return name({ 0: 'UPDATE' }, op);
    case Rmgr.Standby:
      return name({ 0: 'LOCK', 16: 'RUNNING_XACTS', 32: 'INVALIDATIONS' }, op);
    case Rmgr.Heap2: {
      const names = rec.major <= 13 ? HEAP2_NAMES_13 : rec.major <= 16 ? HEAP2_NAMES_14 : HEAP2_NAMES_17;
      return name(names, op70) + (op70 === 0x50 ? init : '');
    }
    case Rmgr.Heap: {
      const withInit = op70 === 0x00 || op70 === 0x20 || op70 === 0x40;
      return name(HEAP_NAMES, op70) + (withInit ? init : '');
    }
    case Rmgr.Btree:
      return name(BTREE_NAMES, op);
    case Rmgr.Hash:
      return name(HASH_NAMES, op);
    case Rmgr.Gin:
      return name(GIN_NAMES, op);
    case Rmgr.Gist:
      return name(GIST_NAMES, op);
    case Rmgr.Sequence:
      return name({ 0: 'LOG' }, op);
    case Rmgr.SPGist:
      return name(SPGIST_NAMES, op);
    case Rmgr.BRIN:
      return name(BRIN_NAMES, op70) + init;
    case Rmgr.ReplicationOrigin:
      return name({ 0: 'SET', 16: 'DROP' }, op);
    case Rmgr.Generic:
      return 'Generic';
    case Rmgr.LogicalMessage:
      return name({ 0: 'MESSAGE' }, op);
    default:
      return `UNKNOWN (${rec.info & 0xf0})`;
  }
}
