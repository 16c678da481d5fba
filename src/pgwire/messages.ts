/**
 * The PostgreSQL frontend/backend protocol 3.0 as ptrackd's endpoint needs it: the backend messages it
 * sends itself (its answers to ptrack's statements) and the frontend messages it reads to recognise
 * them. Everything else on a session is relayed as bytes, never decoded.
 */

/** A message from the client that breaks the protocol: that connection is closed. */
export class PgWireProtocolError extends Error {
  override readonly name = 'PgWireProtocolError';
}

/** Codes of the untyped first messages (protocol 3.0 and the special requests). */
export const PROTOCOL_3 = 196608;
export const SSL_REQUEST = 80877103;
export const GSSENC_REQUEST = 80877104;
export const CANCEL_REQUEST = 80877102;

/** A startup packet or message is never this long: a longer length is garbage, not a big message. */
export const MAX_STARTUP_LENGTH = 10_000;

export interface Field {
  readonly name: string;
  readonly typeOid: number;
  /** pg_type.typlen: -1 for varlena types. */
  readonly typeLen: number;
  readonly tableOid?: number;
  readonly column?: number;
}

/** One message: its type byte and its body after the length. */
function message(type: string, body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = type.charCodeAt(0);
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

const cstring = (s: string) => Buffer.from(`${s}\0`, 'utf8');

export function rowDescription(fields: readonly Field[]): Buffer {
  const parts: Buffer[] = [Buffer.from([fields.length >> 8, fields.length & 0xff])];
  for (const f of fields) {
    const meta = Buffer.alloc(18);
    meta.writeUInt32BE(f.tableOid ?? 0, 0);
    meta.writeInt16BE(f.column ?? 0, 4);
    meta.writeUInt32BE(f.typeOid, 6);
    meta.writeInt16BE(f.typeLen, 10);
    meta.writeInt32BE(-1, 12); // typmod
    meta.writeInt16BE(0, 16); // text format
    parts.push(cstring(f.name), meta);
  }
  return message('T', Buffer.concat(parts));
}

/** Values in text format; null is SQL NULL. */
export function dataRow(values: readonly (string | null)[]): Buffer {
  const parts: Buffer[] = [Buffer.from([values.length >> 8, values.length & 0xff])];
  for (const v of values) {
    const len = Buffer.alloc(4);
    if (v === null) {
      len.writeInt32BE(-1);
      parts.push(len);
    } else {
      const bytes = Buffer.from(v, 'utf8');
      len.writeInt32BE(bytes.length);
      parts.push(len, bytes);
    }
  }
  return message('D', Buffer.concat(parts));
}

export function parameterDescription(typeOids: readonly number[]): Buffer {
  const body = Buffer.alloc(2 + 4 * typeOids.length);
  body.writeInt16BE(typeOids.length, 0);
  for (const [i, oid] of typeOids.entries()) body.writeUInt32BE(oid, 2 + 4 * i);
  return message('t', body);
}

export const commandComplete = (tag: string) => message('C', cstring(tag));
export const readyForQuery = (status: TransactionStatus) => message('Z', Buffer.from(status, 'latin1'));
export const PARSE_COMPLETE = message('1', Buffer.alloc(0));
export const BIND_COMPLETE = message('2', Buffer.alloc(0));
export const NO_DATA = message('n', Buffer.alloc(0));
export const EMPTY_QUERY_RESPONSE = message('I', Buffer.alloc(0));

/** ReadyForQuery's status: idle, in a transaction block, in a failed transaction block. */
export type TransactionStatus = 'I' | 'T' | 'E';

export interface ErrorFields {
  readonly code: string;
  readonly message: string;
  readonly severity?: 'ERROR' | 'FATAL';
  readonly detail?: string;
  readonly hint?: string;
}

/** ErrorResponse with severity (S and V), SQLSTATE (C), message (M) and optional detail (D) and hint (H). */
export function errorResponse(e: ErrorFields): Buffer {
  const severity = e.severity ?? 'ERROR';
  const fields: [string, string | undefined][] = [
    ['S', severity],
    ['V', severity],
    ['C', e.code],
    ['M', e.message],
    ['D', e.detail],
    ['H', e.hint],
  ];
  const parts = fields.filter(([, v]) => v !== undefined).map(([k, v]) => cstring(`${k}${v}`));
  return message('E', Buffer.concat([...parts, Buffer.from([0])]));
}

/** Reads a message body field by field; running past its end is a protocol error. */
class BodyReader {
  readonly body: Buffer;
  #at = 0;
  constructor(body: Buffer) {
    this.body = body;
  }

  int16(): number {
    this.#need(2);
    const v = this.body.readInt16BE(this.#at);
    this.#at += 2;
    return v;
  }

  int32(): number {
    this.#need(4);
    const v = this.body.readInt32BE(this.#at);
    this.#at += 4;
    return v;
  }

  cstring(): string {
    const end = this.body.indexOf(0, this.#at);
    if (end < 0) throw new PgWireProtocolError('a string in a message has no terminating zero byte');
    const s = this.body.toString('utf8', this.#at, end);
    this.#at = end + 1;
    return s;
  }

  bytes(n: number): Buffer {
    this.#need(n);
    const b = this.body.subarray(this.#at, this.#at + n);
    this.#at += n;
    return b;
  }

  #need(n: number): void {
    if (n < 0 || this.#at + n > this.body.length)
      throw new PgWireProtocolError('a message is shorter than its fields');
  }
}

/** StartupMessage's parameters (user, database, replication, options, …). */
export function parseStartupParameters(body: Buffer): Map<string, string> {
  const r = new BodyReader(body.subarray(4));
  const params = new Map<string, string>();
  for (;;) {
    const key = r.cstring();
    if (key === '') return params;
    params.set(key, r.cstring());
  }
}

export const parseQuery = (body: Buffer) => new BodyReader(body).cstring();

export interface ParseMessage {
  readonly statement: string;
  readonly sql: string;
  readonly paramTypes: readonly number[];
}

export function parseParse(body: Buffer): ParseMessage {
  const r = new BodyReader(body);
  const statement = r.cstring();
  const sql = r.cstring();
  const n = r.int16();
  const paramTypes = Array.from({ length: Math.max(0, n) }, () => r.int32() >>> 0);
  return { statement, sql, paramTypes };
}

export interface BindMessage {
  readonly portal: string;
  readonly statement: string;
  readonly paramFormats: readonly number[];
  readonly params: readonly (Buffer | null)[];
  readonly resultFormats: readonly number[];
}

export function parseBind(body: Buffer): BindMessage {
  const r = new BodyReader(body);
  const portal = r.cstring();
  const statement = r.cstring();
  const paramFormats = Array.from({ length: Math.max(0, r.int16()) }, () => r.int16());
  const params = Array.from({ length: Math.max(0, r.int16()) }, () => {
    const len = r.int32();
    return len < 0 ? null : r.bytes(len);
  });
  const resultFormats = Array.from({ length: Math.max(0, r.int16()) }, () => r.int16());
  return { portal, statement, paramFormats, params, resultFormats };
}

/** Describe and Close: 'S' (a prepared statement) or 'P' (a portal), and its name. */
export function parseTarget(body: Buffer): { kind: 'S' | 'P'; name: string } {
  const r = new BodyReader(body);
  const kind = String.fromCharCode(r.bytes(1)[0]);
  if (kind !== 'S' && kind !== 'P') throw new PgWireProtocolError(`Describe or Close of "${kind}"`);
  return { kind, name: r.cstring() };
}
