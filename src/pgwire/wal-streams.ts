/**
 * The endpoint's relayed WAL streams, and the keepalive that wakes a backup tool's WAL receiver once its
 * backup has ended (WalStreams). RelaySession tracks the stream's messages and sends the keepalive at a
 * message boundary.
 */

/** A relayed replication session that can be sent a keepalive. */
export interface WalStreamSession {
  nudge(): void;
}

/** A backup ends: pg_backup_stop (15+) or pg_stop_backup (13, 14) called in a relayed statement. */
export const BACKUP_STOP = /\bpg_(?:backup_stop|stop_backup)\s*\(/i;
/** After a backup's end, how often and for how long its WAL stream is nudged (see WalStreams). */
const NUDGE_EVERY_MS = 250;
const NUDGE_FOR_MS = 15_000;

/**
 * The replication sessions relayed now. When a session's pg_backup_stop has been answered, each of
 * them is sent a keepalive (no reply asked) every NUDGE_EVERY_MS for NUDGE_FOR_MS. A backup tool's WAL
 * receiver (pg_receivewal's code, which pg_probackup --stream runs) checks whether it has reached the
 * stop LSN only when a message arrives or its 10 s status interval passes; on a server with no other
 * writes nothing arrives, and every backup waited up to 10 s for nothing, through ptrackd or straight to
 * the server alike (bench/anchor.ts). Keepalives are what the server itself sends an idle receiver.
 */
export class WalStreams {
  readonly #sessions = new Set<WalStreamSession>();
  #until = 0;
  #timer: NodeJS.Timeout | undefined;

  add(session: WalStreamSession): void {
    this.#sessions.add(session);
  }

  delete(session: WalStreamSession): void {
    this.#sessions.delete(session);
  }

  backupStopped(): void {
    this.#until = Date.now() + NUDGE_FOR_MS;
    this.#nudge();
    this.#timer ??= setInterval(() => this.#nudge(), NUDGE_EVERY_MS).unref();
  }

  #nudge(): void {
    if (Date.now() > this.#until) {
      clearInterval(this.#timer);
      this.#timer = undefined;
      return;
    }
    for (const session of this.#sessions) session.nudge();
  }
}

/** PostgreSQL's epoch, 2000-01-01, in Unix milliseconds: a keepalive's sendTime counts µs from it. */
const PG_EPOCH_MS = 946_684_800_000;

/** A primary keepalive message in its CopyData: 'k', walEnd, sendTime, no reply requested. */
export function keepalive(walEnd: Buffer): Buffer {
  const b = Buffer.alloc(1 + 4 + 1 + 8 + 8 + 1);
  b.write('d', 0, 'latin1');
  b.writeInt32BE(4 + 1 + 8 + 8 + 1, 1);
  b.write('k', 5, 'latin1');
  walEnd.copy(b, 6);
  b.writeBigInt64BE(BigInt(Date.now() - PG_EPOCH_MS) * 1000n, 14);
  return b;
}
