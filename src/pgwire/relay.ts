import { createServer, type Server, type Socket } from 'node:net';
import { type SecureContextOptions, TLSSocket } from 'node:tls';
import type { WireAnswers, WireResult } from './answers.ts';
import { resultFields, WireError } from './answers.ts';
import {
  BIND_COMPLETE,
  CANCEL_REQUEST,
  commandComplete,
  dataRow,
  type ErrorFields,
  errorResponse,
  GSSENC_REQUEST,
  MAX_STARTUP_LENGTH,
  NO_DATA,
  PARSE_COMPLETE,
  PgWireProtocolError,
  parameterDescription,
  parseBind,
  parseParse,
  parseQuery,
  parseStartupParameters,
  parseTarget,
  readyForQuery,
  rowDescription,
  SSL_REQUEST,
  type TransactionStatus,
} from './messages.ts';
import { type PtrackStatement, recognise } from './statements.ts';
import { connectUpstream, socketTo, type Upstream } from './upstream.ts';
import { BACKUP_STOP, keepalive, WalStreams } from './wal-streams.ts';

export interface PgEndpointOptions {
  readonly host: string;
  readonly port: number;
  readonly upstream: Upstream;
  /** The schema ptrack's functions are named in (pg_probackup reads it from pg_extension). */
  readonly schema: string;
  readonly answers: WireAnswers;
  /** A certificate and key: clients may then use TLS to ptrackd (else an SSLRequest is answered N). */
  readonly tls?: SecureContextOptions;
  readonly log: (level: 'info' | 'warn', message: string) => void;
}

/** Statements of ptrack are a few hundred bytes; a Query or Parse this long is relayed without a look. */
const MAX_INSPECTED = 64 * 1024;

/**
 * The PostgreSQL-protocol endpoint: every connection is relayed to the server, startup and the whole
 * authentication exchange untouched (the server's pg_hba.conf and passwords decide; ptrackd learns no
 * password). Once the server has authenticated the session (AuthenticationOk and its first
 * ReadyForQuery), ptrack's statements are answered by ptrackd instead of being sent on. Replication
 * connections and CancelRequests are relayed as they are.
 */
export function listenPgWire(o: PgEndpointOptions): Promise<Server> {
  const streams = new WalStreams();
  const server = createServer((socket) => {
    const peer = `${socket.remoteAddress}:${socket.remotePort}`;
    socket.setNoDelay(true);
    accept(socket, o, streams).catch((e: Error) => {
      o.log('warn', `pg endpoint: connection from ${peer} closed: ${e.message}`);
      socket.destroy();
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

/** Bytes read from a socket before the relay takes it over (the startup exchange). */
class StartupReader {
  readonly #socket: Socket;
  #buffered = Buffer.alloc(0);
  #wake: (() => void) | undefined;
  #ended: Error | undefined;
  readonly #onData = (chunk: Buffer) => {
    this.#buffered = Buffer.concat([this.#buffered, chunk]);
    this.#wake?.();
  };
  readonly #onEnd = () => {
    this.#ended = new Error('the client closed the connection during startup');
    this.#wake?.();
  };

  constructor(socket: Socket) {
    this.#socket = socket;
    socket.on('data', this.#onData);
    socket.on('end', this.#onEnd);
    socket.on('error', this.#onEnd);
  }

  async read(n: number): Promise<Buffer> {
    while (this.#buffered.length < n) {
      if (this.#ended) throw this.#ended;
      await new Promise<void>((r) => {
        this.#wake = r;
      });
    }
    const out = this.#buffered.subarray(0, n);
    this.#buffered = this.#buffered.subarray(n);
    return out;
  }

  /** One untyped startup-phase packet: its length word, then the rest. */
  async packet(): Promise<Buffer> {
    const head = await this.read(4);
    const length = head.readInt32BE(0);
    if (length < 8 || length > MAX_STARTUP_LENGTH) {
      throw new PgWireProtocolError(`not a PostgreSQL client: a startup packet of length ${length}`);
    }
    return Buffer.concat([head, await this.read(length - 4)]);
  }

  /** Stops reading; returns what was read beyond the last packet taken. */
  release(): Buffer {
    this.#socket.off('data', this.#onData);
    this.#socket.off('end', this.#onEnd);
    this.#socket.off('error', this.#onEnd);
    return this.#buffered;
  }
}

async function accept(socket: Socket, o: PgEndpointOptions, streams: WalStreams): Promise<void> {
  let client: Socket = socket;
  let reader = new StartupReader(client);
  for (;;) {
    const packet = await reader.packet();
    const code = packet.readInt32BE(4);
    if (code === SSL_REQUEST && o.tls && !(client instanceof TLSSocket)) {
      reader.release();
      client.write('S');
      client = new TLSSocket(client, { isServer: true, ...o.tls });
      reader = new StartupReader(client);
    } else if (code === SSL_REQUEST || code === GSSENC_REQUEST) {
      client.write('N'); // the client may go on in plain text, or give up, as its sslmode says
    } else if (code === CANCEL_REQUEST) {
      // The session's BackendKeyData is the server's own, relayed: the request goes to it unchanged.
      reader.release();
      client.end();
      const cancel = socketTo(o.upstream);
      cancel.on('error', () => {});
      cancel.end(packet);
      return;
    } else if (code >> 16 === 3) {
      const params = parseStartupParameters(packet.subarray(4));
      const upstream = await connectUpstream(o.upstream).catch((e: Error) => {
        // Said to the client as the server would, then the connection ends.
        client.end(errorResponse({ severity: 'FATAL', code: '08006', message: `ptrackd: ${e.message}` }));
        throw e;
      });
      upstream.write(packet);
      const replication = (params.get('replication') ?? 'false').toLowerCase() !== 'false';
      new RelaySession(client, upstream, { replication, leftover: reader.release(), streams, ...o });
      return;
    } else {
      throw new PgWireProtocolError(`unsupported protocol or request code ${code}`);
    }
  }
}

/** An extended-protocol exchange (Parse … Sync) that ptrackd answers itself. */
interface LocalBatch {
  statement: PtrackStatement;
  params: (string | null)[];
  out: Buffer[];
  /** An error was sent: the rest up to Sync is skipped, as the server does. */
  failed: boolean;
}

/**
 * One client session relayed to one server session. Bytes from the server go to the client as they
 * come (their message headers are read to follow ReadyForQuery). Bytes from the client are cut into
 * messages only to look at Query and Parse once the session is authenticated; every other message, and
 * every byte of a replication session, passes as views of the bytes read, never copied.
 */
class RelaySession {
  readonly #client: Socket;
  readonly #upstream: Socket;
  /** The session has ended (#end): its one log line is said. */
  #over = false;
  readonly #o: PgEndpointOptions & { replication: boolean; streams: WalStreams };
  #authenticated = false;
  /** The last transaction status the server reported. */
  #status: TransactionStatus = 'I';
  /** Queries and Syncs relayed whose ReadyForQuery has not come back yet. */
  #awaitingReady = 0;
  #whenIdle: (() => void)[] = [];
  // client → server framing
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  /** Bytes of the current message still to relay without a look (0: at a message boundary). */
  #passThrough = 0;
  #batch: LocalBatch | undefined;
  /** An extended-protocol exchange relayed to the server is open (its Sync not yet relayed). */
  #relayingExchange = false;
  #executions: { batch: LocalBatch; slot: number; statement: PtrackStatement; params: (string | null)[] }[] =
    [];
  #busy = false;
  // server → client header tracking: a message's type and length, ReadyForQuery's status, and the
  // kind and walEnd of a replication stream's CopyData
  #serverHeader = Buffer.alloc(5 + WAL_HEADER);
  #serverHeaderBytes = 0;
  /** How much of the current message's start is kept in #serverHeader (0: not known yet). */
  #serverHeaderWanted = 0;
  #serverRemaining = 0;
  /** The server is streaming WAL (CopyBothResponse seen, its CopyDone not yet). */
  #streaming = false;
  /** The walEnd of the server's last XLogData or keepalive. */
  readonly #walEnd = Buffer.alloc(8);
  /** A keepalive waits for the next message boundary. */
  #nudgePending = false;
  /** A pg_backup_stop was relayed; its ReadyForQuery has not come back yet. */
  #backupStopping = false;

  constructor(
    client: Socket,
    upstream: Socket,
    o: PgEndpointOptions & { replication: boolean; streams: WalStreams; leftover: Buffer },
  ) {
    this.#client = client;
    this.#upstream = upstream;
    this.#o = o;
    if (o.replication) o.streams.add(this);
    const close = (why: string) => () => {
      o.streams.delete(this);
      this.#end('info', `session ended (${why})`);
    };
    upstream.on('data', (chunk: Buffer) => this.#fromServer(chunk));
    upstream.on('close', close('the server closed it'));
    upstream.on('error', close('server connection error'));
    client.on('data', (chunk: Buffer) => this.#fromClient(chunk));
    client.on('close', close('the client closed it'));
    client.on('error', close('client connection error'));
    if (o.leftover.length > 0) this.#fromClient(o.leftover);
  }

  /**
   * Ends the session, once, with one log line: the first of a side closing, a side's error, or a fault
   * of ptrackd's answering says why. (Asking whether both sockets were destroyed could not tell: both
   * can be, a client's end and a server's FATAL at once, before either 'close' is heard.)
   */
  #end(level: 'info' | 'warn', why: string): void {
    if (this.#over) return;
    this.#over = true;
    this.#o.log(level, `pg endpoint: ${why}`);
    this.#client.destroy();
    this.#upstream.destroy();
  }

  #fromServer(chunk: Buffer): void {
    this.#client.write(chunk);
    // Follow the message headers: ReadyForQuery tells when the server has answered what was relayed.
    let at = 0;
    while (at < chunk.length) {
      if (this.#serverRemaining > 0) {
        const n = Math.min(this.#serverRemaining, chunk.length - at);
        this.#serverRemaining -= n;
        at += n;
        continue;
      }
      this.#serverHeader[this.#serverHeaderBytes++] = chunk[at++];
      if (this.#serverHeaderBytes < 5) continue;
      const type = String.fromCharCode(this.#serverHeader[0]);
      const length = this.#serverHeader.readInt32BE(1);
      // Beyond type and length: ReadyForQuery's status; a WAL stream's CopyData kind and positions.
      this.#serverHeaderWanted ||=
        5 + (type === 'Z' ? 1 : type === 'd' && this.#streaming ? Math.min(WAL_HEADER, length - 4) : 0);
      if (this.#serverHeaderBytes < this.#serverHeaderWanted) continue;
      this.#serverRemaining = length + 1 - this.#serverHeaderWanted;
      this.#serverHeaderBytes = 0;
      this.#serverHeaderWanted = 0;
      this.#serverMessage(type, length);
    }
    if (this.#nudgePending) this.nudge();
  }

  /** A message from the server whose start (#serverHeader) has been relayed. */
  #serverMessage(type: string, length: number): void {
    const head = this.#serverHeader;
    if (type === 'Z') {
      this.#streaming = false;
      this.#ready(String.fromCharCode(head[5]) as TransactionStatus);
    } else if (type === 'W') this.#streaming = this.#o.replication;
    else if (type === 'c' || type === 'E') this.#streaming = false;
    else if (type === 'd' && this.#streaming && length - 4 >= WAL_HEADER) {
      // XLogData: 'w', walStart, walEnd, …; a keepalive: 'k', walEnd, …
      if (head[5] === 0x77) head.copy(this.#walEnd, 0, 5 + 9, 5 + 17);
      else if (head[5] === 0x6b) head.copy(this.#walEnd, 0, 5 + 1, 5 + 9);
    }
  }

  /**
   * Sends the client a keepalive now if the server's stream is at a message boundary, else at the next
   * one (WalStreams says when and why); nothing once the server has ended the stream.
   */
  nudge(): void {
    this.#nudgePending = false;
    if (!this.#streaming || this.#client.destroyed) return;
    if (this.#serverRemaining > 0 || this.#serverHeaderBytes > 0) {
      this.#nudgePending = true;
      return;
    }
    this.#client.write(keepalive(this.#walEnd));
  }

  #ready(status: TransactionStatus): void {
    this.#status = status;
    if (!this.#authenticated) {
      this.#authenticated = true; // the first ReadyForQuery: authentication is over
      return;
    }
    if (this.#backupStopping) {
      this.#backupStopping = false;
      this.#o.streams.backupStopped();
    }
    if (this.#awaitingReady > 0) this.#awaitingReady--;
    if (this.#awaitingReady === 0) for (const wake of this.#whenIdle.splice(0)) wake();
  }

  #fromClient(chunk: Buffer): void {
    if (!this.#authenticated || this.#o.replication) {
      this.#upstream.write(chunk);
      return;
    }
    this.#pending.push(chunk);
    this.#pendingBytes += chunk.length;
    if (!this.#busy) this.#drain();
  }

  /** Relays and answers the client's messages in order; stops while an answer of ptrackd's is pending. */
  #drain(): void {
    this.#upstream.cork();
    try {
      while (!this.#busy && this.#pendingBytes > 0) {
        if (this.#passThrough > 0) {
          this.#upstream.write(this.#take(Math.min(this.#passThrough, this.#pending[0].length)));
          continue;
        }
        if (this.#pendingBytes < 5) return;
        const head = this.#peek(5);
        const type = String.fromCharCode(head[0]);
        const length = head.readInt32BE(1);
        if (length < 4) throw new PgWireProtocolError(`a message of type ${type} with length ${length}`);
        const inspect = this.#batch !== undefined || type === 'Q' || type === 'P';
        if (!inspect || length > MAX_INSPECTED) {
          if (this.#batch) throw new PgWireProtocolError(`a ${length}-byte message inside ptrack's exchange`);
          this.#relayed(type);
          this.#passThrough = 1 + length;
          continue;
        }
        if (this.#pendingBytes < 1 + length) return;
        const whole = this.#take(1 + length);
        this.#message(type, whole);
      }
    } catch (e) {
      this.#end('warn', `closing a session: ${(e as Error).message}`);
    } finally {
      this.#upstream.uncork();
    }
  }

  #message(type: string, whole: Buffer): void {
    const body = whole.subarray(5);
    if (this.#batch) {
      this.#batchMessage(type, body);
      return;
    }
    const parse = type === 'P' ? parseParse(body) : undefined;
    const statement = recognise(parse?.sql ?? parseQuery(body), this.#o.schema);
    // Ours only as a whole exchange: not a named statement, nor a Parse inside one sent to the server.
    if (!statement || (parse && (parse.statement !== '' || this.#relayingExchange))) {
      if (BACKUP_STOP.test(parse?.sql ?? (type === 'Q' ? parseQuery(body) : ''))) this.#backupStopping = true;
      this.#relayed(type);
      this.#upstream.write(whole);
      return;
    }
    if (type === 'P') {
      this.#batch = { statement, params: [], out: [PARSE_COMPLETE], failed: false };
      return;
    }
    this.#answerLocally(async () => {
      if (this.#status === 'E') return [inFailedTransaction(), readyForQuery(this.#status)];
      try {
        const result = await this.#o.answers.answer(statement, []);
        return [rowDescription(result.fields), ...rows(result), readyForQuery(this.#status)];
      } catch (e) {
        return [errorResponse(errorOf(e)), readyForQuery(this.#status)];
      }
    });
  }

  /** Bind, Describe, Execute, Flush, Sync of an exchange that began with one of ptrack's statements. */
  #batchMessage(type: string, body: Buffer): void {
    const batch = this.#batch!;
    if (type === 'S') {
      this.#batch = undefined;
      this.#answerLocally(async () => [...batch.out, readyForQuery(this.#status)]);
      return;
    }
    if (batch.failed) return;
    const fail = (e: unknown) => {
      batch.out.push(errorResponse(errorOf(e)));
      batch.failed = true;
    };
    if (this.#status === 'E') {
      fail(new WireError(inFailedTransactionFields));
      return;
    }
    if (type === 'B') {
      const bind = parseBind(body);
      batch.params = bind.params.map((p, i) => textParameter(p, bind.paramFormats, i));
      batch.out.push(BIND_COMPLETE);
    } else if (type === 'D') {
      const { kind } = parseTarget(body);
      if (kind === 'S') {
        const usesParam = batch.statement.kind === 'table' && 'param' in batch.statement.argument;
        batch.out.push(parameterDescription(usesParam ? [3220] : []));
      }
      const fields = resultFields(batch.statement);
      batch.out.push(fields.length ? rowDescription(fields) : NO_DATA);
    } else if (type === 'E') {
      // Executed in order when the exchange is answered, at Sync or Flush.
      const { statement, params } = batch;
      batch.out.push(Buffer.alloc(0));
      const slot = batch.out.length - 1;
      this.#executions.push({ batch, slot, statement, params });
    } else if (type === 'H') {
      this.#answerLocally(async () => batch.out.splice(0));
    } else if (type === 'C') {
      batch.out.push(Buffer.from([0x33, 0, 0, 0, 4])); // CloseComplete
    } else {
      fail(new WireError({ code: '08P01', message: `ptrackd: message "${type}" in an exchange it answers` }));
    }
  }

  /** Notes what a relayed message asks of the server: a ReadyForQuery to come, an exchange opened or closed. */
  #relayed(type: string): void {
    if (type === 'Q' || type === 'S') this.#awaitingReady++;
    if (type === 'S') this.#relayingExchange = false;
    else if ('PBDECH'.includes(type)) this.#relayingExchange = true;
  }

  /**
   * Sends what `respond` builds once the server has answered everything relayed before (so replies stay
   * in order), holding the client's later messages until then.
   */
  #answerLocally(respond: () => Promise<Buffer[]>): void {
    this.#busy = true;
    const executions = this.#executions.splice(0);
    (async () => {
      if (this.#awaitingReady > 0) await new Promise<void>((r) => this.#whenIdle.push(r));
      for (const x of executions) {
        if (x.batch.failed) {
          x.batch.out[x.slot] = Buffer.alloc(0);
          continue;
        }
        try {
          x.batch.out[x.slot] = Buffer.concat(rows(await this.#o.answers.answer(x.statement, x.params)));
        } catch (e) {
          x.batch.out[x.slot] = errorResponse(errorOf(e));
          x.batch.failed = true;
          x.batch.out.splice(x.slot + 1); // nothing after the error but ReadyForQuery
        }
      }
      const reply = await respond();
      this.#client.write(Buffer.concat(reply));
    })()
      .catch((e: Error) => this.#end('warn', `closing a session: ${e.message}`))
      .finally(() => {
        this.#busy = false;
        this.#drain();
      });
  }

  #peek(n: number): Buffer {
    return this.#pending[0].length >= n
      ? this.#pending[0].subarray(0, n)
      : Buffer.concat(this.#pending).subarray(0, n);
  }

  /** The next n bytes: a view when they lie in one chunk, else one copy. */
  #take(n: number): Buffer {
    this.#pendingBytes -= n;
    if (this.#passThrough > 0) this.#passThrough -= n;
    const first = this.#pending[0];
    if (first.length > n) {
      this.#pending[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    if (first.length === n) return this.#pending.shift()!;
    const out = Buffer.allocUnsafe(n);
    let at = 0;
    while (at < n) {
      const piece = this.#pending[0];
      const k = Math.min(piece.length, n - at);
      piece.copy(out, at, 0, k);
      at += k;
      if (k === piece.length) this.#pending.shift();
      else this.#pending[0] = piece.subarray(k);
    }
    return out;
  }
}

function rows(result: WireResult): Buffer[] {
  return [...result.rows.map((r) => dataRow(r)), commandComplete(result.tag)];
}

const inFailedTransactionFields: ErrorFields = {
  code: '25P02',
  message: 'current transaction is aborted, commands ignored until end of transaction block',
};
const inFailedTransaction = () => errorResponse(inFailedTransactionFields);

function errorOf(e: unknown): ErrorFields {
  if (e instanceof WireError) return e.fields;
  return { code: 'XX000', message: `ptrackd: ${(e as Error).message}` };
}

/** A Bind value as text: text format as it is, binary pg_lsn (8 bytes) as %X/%X. */
function textParameter(value: Buffer | null, formats: readonly number[], i: number): string | null {
  if (value === null) return null;
  const format = formats.length === 1 ? formats[0] : (formats[i] ?? 0);
  if (format === 0) return value.toString('utf8');
  if (value.length !== 8)
    throw new WireError({ code: '22P03', message: 'incorrect binary data format in bind parameter 1' });
  const lsn = value.readBigUInt64BE(0);
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

/** The start of a WAL stream's CopyData kept to read walEnd: kind, then walStart and walEnd (XLogData). */
const WAL_HEADER = 17;
