import pg from 'pg';
import { formatLsn, type Lsn, MAGIC_TO_MAJOR, parseLsn } from '../wal/index.ts';
import { CopyBothReader } from './copy-both.ts';
import { standbyStatusUpdate } from './messages.ts';

/** The versions whose WAL the decoder reads. */
export const SUPPORTED_MAJORS = [...MAGIC_TO_MAJOR.values()];

/** What ptrackd needs to know about the server before it follows it. */
export interface ServerInfo {
  readonly systemId: string;
  readonly timeline: number;
  /** The server's flush position (a standby: its replay/receive position). */
  readonly xlogPos: Lsn;
  readonly versionNum: number;
  readonly major: number;
  readonly segmentSize: number;
  readonly walBlockSize: number;
  readonly blockSize: number;
}

export class ReplicationError extends Error {
  override readonly name = 'ReplicationError';
  /** The server's SQLSTATE, when the server raised it. */
  readonly sqlState?: string;
  /** What was being done when the server raised it: START_REPLICATION, CREATE_REPLICATION_SLOT, … */
  readonly command?: string;
  constructor(message: string, sqlState?: string, command?: string) {
    super(message);
    this.sqlState = sqlState;
    this.command = command;
  }
}

export interface StreamHandlers {
  /**
   * WAL bytes in order, from `walStart` on, as they come off the socket (pieces of XLogData messages);
   * `walEnd` is the server's flush position (or the timeline's switch point) when it sent them. `bytes`
   * is valid only during the call: copy what must outlive it.
   */
  readonly onWal: (bytes: Uint8Array, walStart: Lsn, walEnd: Lsn) => void;
  /** The positions to report when the server asks for a reply (flush: the last durable checkpoint). */
  readonly positions: () => Lsn;
  /** Each keepalive that arrives (after the reply it asked for, if any). */
  readonly onKeepalive?: (walEnd: Lsn) => void;
  /**
   * With no message from the server for this long (ms) while reading, the connection is presumed lost
   * (a blocked port sends no reset) and the stream fails, as wal_receiver_timeout does. Default 60 s.
   */
  readonly timeoutMs?: number;
}

/** Status updates go out at least this often (ms), with the same positions. */
const STATUS_INTERVAL_MS = 10_000;

/**
 * Once a read has brought everything the server had flushed when it sent it (XLogData's walEnd), WAL is
 * trickling in (the walsender sends each commit's flush on its own), so the socket rests this long (ms)
 * before the next read, which then takes everything sent meanwhile. Without it, a busy server's ~1000
 * small messages a second each woke ptrackd: the wake-ups, not the bytes, were most of its CPU under
 * load, taken from the server. (Not "a short read": over TLS every read is one 16 kB record.) 30 ms, not
 * 10: the main thread's CPU under a scale-10 pgbench fell from 0.34-0.49 to 0.24-0.30 s per 10 s; a
 * record then waits at most 30 ms here before the pipeline's 50 ms chunk delay.
 */
const TRICKLE_REST_MS = 30;

/** How a stream ended: asked to stop, or the timeline ended (a promotion upstream) and where the next starts. */
export type StreamEnd =
  | { readonly kind: 'stopped' }
  | { readonly kind: 'timeline-end'; readonly nextTimeline: number; readonly nextStart: Lsn };

/**
 * A physical replication connection (replication=true, simple-query protocol only) over node-postgres:
 * IDENTIFY_SYSTEM, SHOW, slots, and START_REPLICATION in CopyBoth mode. Connection settings come from
 * the caller's pg config and the usual PG* variables and .pgpass, which pg reads itself.
 */
export class ReplicationConnection {
  readonly #client: pg.Client;

  private constructor(client: pg.Client) {
    this.#client = client;
  }

  static async connect(config: pg.ClientConfig): Promise<ReplicationConnection> {
    let client: pg.Client;
    try {
      client = new pg.Client({ ...config, replication: 'true' } as pg.ClientConfig);
    } catch {
      // Not the string itself in the message: it may hold a password.
      throw new ReplicationError(
        'the connection string is neither a valid postgresql:// URI nor a key=value list',
      );
    }
    await connectClient(client, 'could not connect for replication');
    return new ReplicationConnection(client);
  }

  /** Ends the connection; one that does not end within a few seconds (a dead peer) is torn down. */
  async close(): Promise<void> {
    const ended = this.#client.end();
    const timer = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 3000).unref());
    if ((await Promise.race([ended, timer])) === 'timeout') {
      (this.#client as unknown as { connection: PgConnection }).connection.stream.destroy();
    }
  }

  /** IDENTIFY_SYSTEM plus the settings that shape WAL; refuses servers outside PostgreSQL 13–18. */
  async serverInfo(): Promise<ServerInfo> {
    const id = (await this.#query('IDENTIFY_SYSTEM')).rows[0];
    const versionNum = Number(await this.show('server_version_num'));
    const major = Math.floor(versionNum / 10000);
    if (!SUPPORTED_MAJORS.includes(major)) {
      throw new ReplicationError(
        `the server is PostgreSQL ${major} (server_version_num ${versionNum}); ptrackd follows PostgreSQL 13 to 18`,
        '0A000', // feature_not_supported: this server will not become one ptrackd follows by waiting
      );
    }
    return {
      systemId: String(id.systemid),
      timeline: Number(id.timeline),
      xlogPos: parseLsn(String(id.xlogpos)),
      versionNum,
      major,
      segmentSize: parseSize(await this.show('wal_segment_size')),
      walBlockSize: Number(await this.show('wal_block_size')),
      blockSize: Number(await this.show('block_size')),
    };
  }

  async show(setting: string): Promise<string> {
    if (!/^[a-z_]+$/.test(setting)) throw new RangeError(`not a setting name: ${setting}`);
    return String(Object.values((await this.#query(`SHOW ${setting}`)).rows[0])[0]);
  }

  /** Creates the physical slot reserving WAL from now; false when it already exists. */
  async createPhysicalSlot(slot: string): Promise<boolean> {
    try {
      await this.#query(`CREATE_REPLICATION_SLOT ${quoteSlot(slot)} PHYSICAL RESERVE_WAL`);
      return true;
    } catch (e) {
      if (e instanceof ReplicationError && e.sqlState === '42710') return false;
      throw e;
    }
  }

  /** TIMELINE_HISTORY: the text of the server's history file for `tli` (a timeline after 1). */
  async timelineHistory(tli: number): Promise<string> {
    if (!Number.isInteger(tli) || tli < 2) throw new RangeError(`timeline ${tli} has no history file`);
    // The content column is bytea sent raw, not in bytea's text form: take it as it comes.
    const raw = { getTypeParser: () => (value: string) => value };
    try {
      const result = await this.#client.query({ text: `TIMELINE_HISTORY ${tli}`, types: raw });
      return String(result.rows[0].content);
    } catch (e) {
      throw serverError(e, 'TIMELINE_HISTORY');
    }
  }

  async dropSlot(slot: string): Promise<void> {
    await this.#query(`DROP_REPLICATION_SLOT ${quoteSlot(slot)}`);
  }

  /**
   * Streams WAL from `start` on `timeline` through `slot` until stop() or the end of the timeline.
   * Keepalives that ask for a reply are answered at once with handlers.positions().
   */
  startReplication(slot: string, start: Lsn, timeline: number, handlers: StreamHandlers): WalStream {
    return new WalStream(
      this.#client,
      `START_REPLICATION SLOT ${quoteSlot(slot)} PHYSICAL ${formatLsn(start)} TIMELINE ${timeline}`,
      handlers,
    );
  }

  async #query(sql: string): Promise<pg.QueryResult> {
    try {
      return await this.#client.query(sql);
    } catch (e) {
      throw serverError(e, sql.split(' ')[0]);
    }
  }
}

/** One START_REPLICATION: CopyData in, status updates out, until either side ends the copy. */
export class WalStream {
  readonly #client: pg.Client;
  readonly #done: Promise<StreamEnd>;
  #copyDoneSent = false;
  #paused = false;
  #resting: ReturnType<typeof setTimeout> | undefined;
  /** The WAL received reaches the server's flush position as of the last XLogData. */
  #caughtUp = false;
  #lastHeard = Date.now();
  #lastStatus = 0;

  constructor(client: pg.Client, sql: string, handlers: StreamHandlers) {
    this.#client = client;
    const connection = (client as unknown as { connection: PgConnection }).connection;
    let failure: unknown;
    /** A handler's error ends the copy; the server's messages up to the end of the command still count. */
    const guarded =
      <A extends unknown[]>(f: (...args: A) => void) =>
      (...args: A) => {
        if (failure) return;
        this.#lastHeard = Date.now();
        try {
          f(...args);
        } catch (e) {
          failure = e;
          this.stop();
        }
      };
    const reader = new CopyBothReader({
      onWal: guarded((bytes: Buffer, walStart: Lsn, walEnd: Lsn) => {
        this.#caughtUp = walStart + bytes.length >= walEnd;
        handlers.onWal(bytes, walStart, walEnd);
      }),
      onKeepalive: guarded((walEnd: Lsn, replyRequested: boolean) => {
        if (replyRequested) this.sendStatus(handlers.positions());
        handlers.onKeepalive?.(walEnd);
      }),
      onOther: (bytes) => pgParse(bytes),
    });
    // Ours reads the socket while the stream lasts and hands node-postgres every message but CopyData.
    // The connection is idle now, so its parser holds no partial message: both start at a boundary.
    const socket = connection.stream;
    const [pgParse, ...others] = socket.listeners('data');
    if (!pgParse || others.length > 0) {
      throw new ReplicationError('node-postgres reads its socket in a way this version does not know');
    }
    const onData = (bytes: Buffer) => {
      try {
        reader.push(bytes);
      } catch (e) {
        // Framing lost (a malformed message): nothing after it can be read, so the connection goes.
        failure ??= e;
        socket.destroy();
        return;
      }
      if (this.#caughtUp && this.#resting === undefined && !this.#copyDoneSent) {
        socket.pause();
        this.#resting = setTimeout(() => {
          this.#resting = undefined;
          if (!this.#paused) socket.resume();
        }, TRICKLE_REST_MS);
      }
    };
    socket.removeListener('data', pgParse);
    socket.on('data', onData);
    const onCopyDone = () => this.#endCopy(); // the server ended the timeline: answer CopyDone
    connection.on('copyDone', onCopyDone);
    const timeoutMs = handlers.timeoutMs ?? 60_000;
    let pinged = false;
    const watch = setInterval(
      () => {
        const now = Date.now();
        if (this.#paused) this.#lastHeard = now; // silence we asked for
        const silentMs = now - this.#lastHeard;
        if (silentMs < timeoutMs / 2) pinged = false;
        if (silentMs >= timeoutMs) {
          failure ??= new ReplicationError(
            `no message from the server for ${Math.round(silentMs / 1000)} s: the connection is presumed lost`,
          );
          this.#connection().stream.destroy();
        } else if (now - this.#lastStatus >= STATUS_INTERVAL_MS || (silentMs >= timeoutMs / 2 && !pinged)) {
          // Halfway to the timeout, ask for a reply, as the walreceiver does.
          pinged ||= silentMs >= timeoutMs / 2;
          this.sendStatus(handlers.positions(), pinged);
        }
      },
      Math.min(1000, timeoutMs / 4),
    );
    this.#done = client.query(sql).then(
      (result) => {
        if (failure) throw failure;
        const row = result.rows?.[0];
        return row?.next_tli !== undefined
          ? {
              kind: 'timeline-end' as const,
              nextTimeline: Number(row.next_tli),
              nextStart: parseLsn(String(row.next_tli_startpos)),
            }
          : { kind: 'stopped' as const };
      },
      (e) => {
        throw failure ?? serverError(e, 'START_REPLICATION');
      },
    );
    this.#done
      .finally(() => {
        clearInterval(watch);
        clearTimeout(this.#resting);
        this.#resting = undefined;
        socket.removeListener('data', onData);
        socket.on('data', pgParse);
        socket.resume();
        connection.removeListener('copyDone', onCopyDone);
      })
      .catch(() => {});
  }

  /** Resolves when the stream has ended (rejects with the server's error or a protocol error). */
  get done(): Promise<StreamEnd> {
    return this.#done;
  }

  /** Reports `flush` as the write, flush and apply positions: a physical slot's restart_lsn follows it. */
  sendStatus(flush: Lsn, replyRequested = false): void {
    if (this.#copyDoneSent) return;
    this.#lastStatus = Date.now();
    this.#connection().sendCopyFromChunk(
      standbyStatusUpdate({ write: flush, flush, apply: flush, replyRequested }),
    );
  }

  /** Stops reading from the socket (backpressure) until resume(). */
  pause(): void {
    this.#paused = true;
    this.#connection().stream.pause();
  }

  resume(): void {
    this.#paused = false;
    if (this.#resting === undefined) this.#connection().stream.resume();
  }

  /** Ends the copy from our side; `done` resolves once the server has finished too. */
  stop(): void {
    this.#endCopy();
  }

  #endCopy(): void {
    if (this.#copyDoneSent) return;
    this.#copyDoneSent = true;
    this.#connection().endCopyFrom();
  }

  #connection(): PgConnection {
    return (this.#client as unknown as { connection: PgConnection }).connection;
  }
}

/** The parts of node-postgres's Connection used here (not in its public typings). */
interface PgConnection {
  on(event: string, listener: (...args: never[]) => void): void;
  removeListener(event: string, listener: (...args: never[]) => void): void;
  sendCopyFromChunk(chunk: Buffer): void;
  endCopyFrom(): void;
  stream: {
    pause(): void;
    resume(): void;
    destroy(): void;
    listeners(event: 'data'): ((bytes: Buffer) => void)[];
    on(event: 'data', listener: (bytes: Buffer) => void): void;
    removeListener(event: 'data', listener: (bytes: Buffer) => void): void;
  };
}

function quoteSlot(slot: string): string {
  if (!/^[a-z0-9_]{1,63}$/.test(slot)) {
    throw new RangeError(
      `slot name "${slot}" must be 1 to 63 lower-case letters, digits and underscores, as PostgreSQL requires`,
    );
  }
  return slot;
}

/** `SHOW wal_segment_size` answers like `16MB` or `1GB` (pg_receivewal parses it the same way). */
export function parseSize(text: string): number {
  const m = /^(\d+)\s*(kB|MB|GB)$/.exec(text.trim());
  if (!m) throw new ReplicationError(`unexpected wal_segment_size "${text}"`);
  return Number(m[1]) * { kB: 1024, MB: 1 << 20, GB: 1 << 30 }[m[2] as 'kB' | 'MB' | 'GB'];
}

/**
 * Connects, or fails with a ReplicationError; a failed attempt's socket is closed at once, since the
 * server would otherwise hold it open until authentication_timeout (a minute) and keep the process up.
 */
export async function connectClient(client: pg.Client, what: string): Promise<void> {
  client.on('error', () => {}); // reported through the pending operation instead
  try {
    await client.connect();
  } catch (e) {
    (client as unknown as { connection: PgConnection }).connection.stream.destroy();
    throw e instanceof ReplicationError ? e : serverError(e, what);
  }
}

/** The server's error with its SQLSTATE, and nothing from the connection settings in the message. */
function serverError(e: unknown, what: string): ReplicationError {
  const err = e as { message?: string; code?: string };
  return new ReplicationError(
    `${what}: ${err?.message ?? String(e)}`,
    typeof err?.code === 'string' ? err.code : undefined,
    what,
  );
}
