import { formatLsn, type Lsn } from './lsn.ts';

/** Why decoding stopped; `end-of-wal` is the normal end of written WAL, everything else is damage. */
export type WalDecodeErrorCode =
  | 'end-of-wal'
  | 'bad-page-header'
  | 'bad-record-header'
  | 'bad-record-length'
  | 'bad-crc'
  | 'bad-block-ref'
  | 'bad-main-data'
  | 'unsupported';

/** Every decode failure names the LSN where it was found, like xlogreader's report_invalid_record. */
export class WalDecodeError extends Error {
  override readonly name = 'WalDecodeError';
  readonly lsn: Lsn;
  readonly code: WalDecodeErrorCode;
  /** The message without its LSN, to rebuild the error on the other side of a thread. */
  readonly detail: string;
  constructor(code: WalDecodeErrorCode, detail: string, lsn: Lsn) {
    super(`${detail} at ${formatLsn(lsn)}`);
    this.code = code;
    this.detail = detail;
    this.lsn = lsn;
  }
}

/** A record at `lsn` whose xl_prev is not the record before it. */
export function prevLinkError(lsn: Lsn, prev: Lsn, previousRecord: Lsn): WalDecodeError {
  return new WalDecodeError(
    'bad-record-header',
    `record with incorrect prev-link ${formatLsn(prev)} (previous record at ${formatLsn(previousRecord)})`,
    lsn,
  );
}
