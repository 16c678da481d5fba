/** Layout constants shared by PostgreSQL 13–18 (see docs/wal-format.md). */

/** XLOG_PAGE_MAGIC → major version. The magic is fixed for a major version's whole life. */
export const MAGIC_TO_MAJOR: ReadonlyMap<number, number> = new Map([
  [0xd106, 13],
  [0xd10d, 14],
  [0xd110, 15],
  [0xd113, 16],
  [0xd116, 17],
  [0xd118, 18],
]);

export const SIZE_OF_SHORT_PAGE_HEADER = 24;
export const SIZE_OF_LONG_PAGE_HEADER = 40;
export const SIZE_OF_XLOG_RECORD = 24;
export const MAXALIGN = 8;

export const XLP_FIRST_IS_CONTRECORD = 0x0001;
export const XLP_LONG_HEADER = 0x0002;
export const XLP_FIRST_IS_OVERWRITE_CONTRECORD = 0x0008;
export const XLP_ALL_FLAGS = 0x000f;

/** 16–18 refuse to write a longer record; 13–15 stop at the ~1 GB palloc limit. */
export const MAX_RECORD_LENGTH = 0x3fff_ffff;

export const XLR_MAX_BLOCK_ID = 32;
/**
 * The most bytes a valid record's headers can take: the fixed header, 33 block headers of at most 27
 * bytes, the origin (3) and top-level xid (5) fragments, and a long main-data header (5).
 */
export const MAX_HEADER_REGION = 24 + 33 * 27 + 3 + 5 + 5;
export const XLR_BLOCK_ID_TOPLEVEL_XID = 252;
export const XLR_BLOCK_ID_ORIGIN = 253;
export const XLR_BLOCK_ID_DATA_LONG = 254;
export const XLR_BLOCK_ID_DATA_SHORT = 255;

export const BKPBLOCK_FORK_MASK = 0x0f;
export const BKPBLOCK_HAS_IMAGE = 0x10;
export const BKPBLOCK_HAS_DATA = 0x20;
export const BKPBLOCK_WILL_INIT = 0x40;
export const BKPBLOCK_SAME_REL = 0x80;

export const BKPIMAGE_HAS_HOLE = 0x01;

export const Rmgr = {
  XLOG: 0,
  Transaction: 1,
  Storage: 2,
  CLOG: 3,
  Database: 4,
  Tablespace: 5,
  MultiXact: 6,
  RelMap: 7,
  Standby: 8,
  Heap2: 9,
  Heap: 10,
  Btree: 11,
  Hash: 12,
  Gin: 13,
  Gist: 14,
  Sequence: 15,
  SPGist: 16,
  BRIN: 17,
  CommitTs: 18,
  ReplicationOrigin: 19,
  Generic: 20,
  LogicalMessage: 21,
} as const;

export const RM_MAX_BUILTIN_ID = 21;
export const RM_MIN_CUSTOM_ID = 128;

export const RMGR_NAMES: readonly string[] = Object.keys(Rmgr);

/** pg_waldump's name for a resource manager, including custom ones (15+). */
export function rmgrName(rmid: number): string {
  return rmid <= RM_MAX_BUILTIN_ID ? RMGR_NAMES[rmid] : `custom${rmid.toString().padStart(3, '0')}`;
}

export function isValidRmid(rmid: number, major: number): boolean {
  return rmid <= RM_MAX_BUILTIN_ID || (major >= 15 && rmid >= RM_MIN_CUSTOM_ID);
}

export const ForkNumber = { main: 0, fsm: 1, vm: 2, init: 3 } as const;
export const MAX_FORKNUM = 3;
export const FORK_NAMES = ['main', 'fsm', 'vm', 'init'] as const;

export const XLOG_SWITCH = 0x40;

/** Heap blocks whose visibility bits one VM page holds: (BLCKSZ - page header) * 4. */
export function heapBlocksPerVmPage(blockSize: number): number {
  return (blockSize - 24) * 4;
}
