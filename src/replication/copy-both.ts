import type { Lsn } from '../wal/index.ts';
import { lsnAt, ReplicationCode, ReplicationProtocolError } from './messages.ts';

export interface CopyBothHandlers {
  /**
   * WAL `bytes` from `lsn` on: a piece of an XLogData message, a view of what came off the socket (valid
   * only during the call); `walEnd` is that message's walEnd.
   */
  readonly onWal: (bytes: Buffer, lsn: Lsn, walEnd: Lsn) => void;
  readonly onKeepalive: (walEnd: Lsn, replyRequested: boolean) => void;
  /** The bytes of every other backend message, in order: node-postgres's own parser takes them. */
  readonly onOther: (bytes: Buffer) => void;
}

const CopyData = 0x64; // d
/** A backend message's type byte and int32 length. */
const MESSAGE_HEADER = 5;
/** XLogData's header: 'w', dataStart, walEnd, sendTime. */
const XLOG_DATA_HEADER = 25;
/** A keepalive: 'k', walEnd, sendTime, replyRequested. */
const KEEPALIVE = 18;

/**
 * Reads a CopyBoth stream straight off the socket: XLogData's WAL goes to onWal as pieces of the chunks
 * the socket delivers, so a 128 kB message that spans reads is never reassembled (node-postgres's parser
 * copies it into a new buffer, then into the window: most of the main thread's time in a catch-up).
 * Every other message goes to node-postgres unchanged, which therefore still sees the CopyBothResponse,
 * CopyDone, errors, notices and the end of the command.
 */
export class CopyBothReader {
  readonly #h: CopyBothHandlers;
  /** The current message's header bytes: its type and length, then a CopyData's own header. */
  readonly #head = Buffer.alloc(MESSAGE_HEADER + XLOG_DATA_HEADER);
  #headLength = 0;
  /** Header bytes wanted before the body: 5, then 6 for a CopyData (its kind), then its whole header. */
  #headWanted = MESSAGE_HEADER;
  #body: 'wal' | 'other' | null = null;
  /** Body bytes of the current message still to come. */
  #left = 0;
  #lsn: Lsn = 0;
  #walEnd: Lsn = 0;

  constructor(handlers: CopyBothHandlers) {
    this.#h = handlers;
  }

  /** The next bytes read from the connection. */
  push(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.#body === null) {
        const n = Math.min(this.#headWanted - this.#headLength, chunk.length - at);
        chunk.copy(this.#head, this.#headLength, at, at + n);
        this.#headLength += n;
        at += n;
        if (this.#headLength === this.#headWanted) this.#headerDone();
        continue;
      }
      const n = Math.min(this.#left, chunk.length - at);
      if (this.#body === 'wal') {
        this.#h.onWal(chunk.subarray(at, at + n), this.#lsn, this.#walEnd);
        this.#lsn += n;
      } else this.#h.onOther(chunk.subarray(at, at + n));
      this.#left -= n;
      at += n;
      if (this.#left === 0) this.#nextMessage();
    }
  }

  #headerDone(): void {
    const head = this.#head;
    const length = head.readInt32BE(1) - 4;
    if (length < 0) throw new ReplicationProtocolError(`a backend message claims ${length + 4} bytes`);
    if (head[0] !== CopyData) {
      // A copy: node-postgres keeps a partial message's buffer, and this one is reused.
      this.#h.onOther(Buffer.from(head.subarray(0, MESSAGE_HEADER)));
      this.#startBody('other', length);
      return;
    }
    if (this.#headLength === MESSAGE_HEADER) {
      if (length === 0) throw new ReplicationProtocolError('an empty CopyData message');
      this.#headWanted = MESSAGE_HEADER + 1;
      return;
    }
    const kind = head[MESSAGE_HEADER];
    if (kind === ReplicationCode.PrimaryKeepalive) {
      if (length !== KEEPALIVE) throw new ReplicationProtocolError(`keepalive message of ${length} bytes`);
      if (!this.#headHas(KEEPALIVE)) return;
      this.#h.onKeepalive(lsnAt(head, MESSAGE_HEADER + 1), head[MESSAGE_HEADER + 17] === 1);
      this.#nextMessage();
      return;
    }
    if (kind !== ReplicationCode.XLogData) {
      throw new ReplicationProtocolError(`unexpected replication message type 0x${kind.toString(16)}`);
    }
    if (length < XLOG_DATA_HEADER) throw new ReplicationProtocolError(`XLogData message of ${length} bytes`);
    if (!this.#headHas(XLOG_DATA_HEADER)) return;
    this.#lsn = lsnAt(head, MESSAGE_HEADER + 1);
    this.#walEnd = lsnAt(head, MESSAGE_HEADER + 9);
    this.#startBody('wal', length - XLOG_DATA_HEADER);
  }

  /** Whether the CopyData's own header (`n` bytes) is all here; if not, asks for the rest of it. */
  #headHas(n: number): boolean {
    this.#headWanted = MESSAGE_HEADER + n;
    return this.#headLength === this.#headWanted;
  }

  #startBody(body: 'wal' | 'other', length: number): void {
    this.#body = body;
    this.#left = length;
    if (length === 0) this.#nextMessage();
  }

  #nextMessage(): void {
    this.#body = null;
    this.#headLength = 0;
    this.#headWanted = MESSAGE_HEADER;
  }
}
