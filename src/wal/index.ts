export {
  FORK_NAMES,
  ForkNumber,
  heapBlocksPerVmPage,
  MAGIC_TO_MAJOR,
  Rmgr,
  rmgrName,
  SIZE_OF_LONG_PAGE_HEADER,
  SIZE_OF_SHORT_PAGE_HEADER,
  XLOG_SWITCH,
} from './constants.ts';
export { crc32c } from './crc32c.ts';
export { recordTypeName } from './describe.ts';
export { prevLinkError, WalDecodeError, type WalDecodeErrorCode } from './errors.ts';
export {
  type FileEvent,
  fileEvents,
  type ImpliedBlockRef,
  impliedBlockRefs,
  vmPagesCleared,
} from './events.ts';
export { formatLsn, formatLsnPadded, type Lsn, LsnFormatError, parseLsn } from './lsn.ts';
export type { BlockRef, DecodedRecord } from './record.ts';
export { type PageHeader, WalStreamDecoder, type WalStreamDecoderOptions } from './stream.ts';
