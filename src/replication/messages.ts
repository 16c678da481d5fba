import type { Lsn } from '../wal/index.ts';

/**
 * The CopyData payloads of physical streaming replication (wal-format.md §6.4). Their integers are
 * big-endian, unlike the WAL they carry.
 */
export const ReplicationCode = {
  XLogData: 0x77, // w
  PrimaryKeepalive: 0x6b, // k
  StandbyStatusUpdate: 0x72, // r
} as const;

/** Microseconds between the Unix epoch and PostgreSQL's (2000-01-01). */
const PG_EPOCH_OFFSET_US = 946_684_800_000_000n;

export class ReplicationProtocolError extends Error {
  override readonly name = 'ReplicationProtocolError';
}

/** The big-endian LSN at `o`. */
export function lsnAt(b: Uint8Array, o: number): Lsn {
  const dv = new DataView(b.buffer, b.byteOffset + o, 8);
  const hi = dv.getUint32(0);
  if (hi >= 0x200000) throw new ReplicationProtocolError('LSN beyond 2^53 in a replication message');
  return hi * 0x1_0000_0000 + dv.getUint32(4);
}

export interface StandbyStatus {
  readonly write: Lsn;
  readonly flush: Lsn;
  readonly apply: Lsn;
  readonly replyRequested?: boolean;
  readonly now?: Date;
}

/** A Standby Status Update ('r', 34 bytes): the positions are "last byte + 1". */
export function standbyStatusUpdate(s: StandbyStatus): Buffer {
  const b = Buffer.alloc(34);
  b[0] = ReplicationCode.StandbyStatusUpdate;
  for (const [i, lsn] of [s.write, s.flush, s.apply].entries()) {
    if (!Number.isSafeInteger(lsn) || lsn < 0)
      throw new RangeError(`status update position ${lsn} is not an LSN`);
    b.writeUInt32BE(Math.floor(lsn / 0x1_0000_0000), 1 + i * 8);
    b.writeUInt32BE(lsn % 0x1_0000_0000, 5 + i * 8);
  }
  b.writeBigInt64BE(BigInt((s.now ?? new Date()).getTime()) * 1000n - PG_EPOCH_OFFSET_US, 25);
  b[33] = s.replyRequested ? 1 : 0;
  return b;
}
