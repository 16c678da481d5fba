import { PTRACK_VERSION, type QueryService, StaleAnswerError } from '../query/index.ts';
import { formatLsn, LsnFormatError, parseLsn } from '../wal/index.ts';
import type { ErrorFields, Field } from './messages.ts';
import type { PtrackStatement, TableFunction } from './statements.ts';

/** A statement's answer as PostgreSQL would give it: columns, rows in text format, and the command tag. */
export interface WireResult {
  readonly fields: readonly Field[];
  readonly rows: readonly (readonly (string | null)[])[];
  readonly tag: string;
}

/** An answer that is an ErrorResponse; the session goes on. */
export class WireError extends Error {
  override readonly name = 'WireError';
  readonly fields: ErrorFields;
  constructor(fields: ErrorFields) {
    super(fields.message);
    this.fields = fields;
  }
}

const TEXT = { typeOid: 25, typeLen: -1 };
const INT8 = { typeOid: 20, typeLen: 8 };
const NUMERIC = { typeOid: 1700, typeLen: -1 };
const BYTEA = { typeOid: 17, typeLen: -1 };
const PG_LSN = { typeOid: 3220, typeLen: 8 };

/** ptrack 2.4's column types, and how ptrackd's engine values are written as PostgreSQL's text output. */
const COLUMN_TYPES: Record<string, { typeOid: number; typeLen: number; text: (v: unknown) => string }> = {
  path: { ...TEXT, text: String },
  pagecount: { ...INT8, text: String },
  pagemap: { ...BYTEA, text: (v) => `\\x${Buffer.from(v as Uint8Array).toString('hex')}` },
  files: { ...INT8, text: String },
  pages: { ...NUMERIC, text: String },
  // ptrack computes pages * BLCKSZ / (1024.0 * 1024.0) in numeric: 16 decimals. Every value is a whole
  // number of blocks over 2^20, exact in a double, so toFixed prints it exactly.
  'size, MB': { ...NUMERIC, text: (v) => (v as number).toFixed(16) },
};

/** The statement's result columns, known before it runs (Describe). */
export function resultFields(statement: PtrackStatement): Field[] {
  switch (statement.kind) {
    case 'extension':
      return [
        { name: 'extnamespace', typeOid: 4089, typeLen: 4 },
        { name: 'extversion', ...TEXT, tableOid: 3079, column: 6 },
      ];
    case 'map-size':
      return [{ name: 'ptrack.map_size', ...TEXT }];
    case 'scalar':
      return [{ name: statement.column, ...(statement.fn === 'ptrack_init_lsn' ? PG_LSN : TEXT) }];
    case 'table':
      return statement.columns.map((c) => ({
        name: c.name,
        typeOid: COLUMN_TYPES[c.source].typeOid,
        typeLen: COLUMN_TYPES[c.source].typeLen,
      }));
  }
}

/**
 * Answers ptrack's statements from ptrackd's engine (the same one `ptrackd sql` uses, so with the same
 * wait for freshness), in PostgreSQL's types and text formats.
 */
export class WireAnswers {
  readonly #queries: QueryService;
  readonly #schema: string;
  readonly #timeoutMs: number;

  constructor(o: { queries: QueryService; schema: string; timeoutMs: number }) {
    this.#queries = o.queries;
    this.#schema = o.schema;
    this.#timeoutMs = o.timeoutMs;
  }

  /** `params` are the Bind values in text (null: SQL NULL). Failures are WireErrors. */
  async answer(statement: PtrackStatement, params: readonly (string | null)[]): Promise<WireResult> {
    const fields = resultFields(statement);
    switch (statement.kind) {
      case 'extension':
        return { fields, rows: [[this.#schema, PTRACK_VERSION]], tag: 'SELECT 1' };
      case 'map-size': {
        const [[mb]] = (await this.#run('SELECT map_size_mb FROM ptrack_status()', true)).rows;
        return { fields, rows: [[`${mb}MB`]], tag: 'SHOW' };
      }
      case 'scalar': {
        const [[value]] = (await this.#run(`SELECT ${statement.fn}()`, statement.fn === 'ptrack_version'))
          .rows;
        return { fields, rows: [[String(value)]], tag: 'SELECT 1' };
      }
      case 'table': {
        const lsn = lsnValue(
          statement.fn,
          'param' in statement.argument ? params[statement.argument.param - 1] : statement.argument.literal,
        );
        const columns = statement.columns.map((c) => `"${c.source}"`).join(', ');
        const order = statement.orderBy
          .map((o) => `${o.column + 1}${o.descending ? ' DESC' : ''}`)
          .join(', ');
        const sql =
          `SELECT ${columns} FROM ${statement.fn}('${lsn}')` +
          (order ? ` ORDER BY ${order}` : '') +
          (statement.limit !== null || statement.offset !== null ? ` LIMIT ${statement.limit ?? -1}` : '') +
          (statement.offset !== null ? ` OFFSET ${statement.offset}` : '');
        const { rows } = await this.#run(sql, false);
        const text = statement.columns.map((c) => COLUMN_TYPES[c.source].text);
        return {
          fields,
          rows: rows.map((row) => row.map((v, i) => (v === null ? null : text[i](v)))),
          tag: `SELECT ${rows.length}`,
        };
      }
    }
  }

  async #run(sql: string, noWait: boolean) {
    try {
      return await this.#queries.answer({ sql, noWait, timeoutMs: this.#timeoutMs });
    } catch (e) {
      throw new WireError(errorFields(e as Error));
    }
  }
}

function lsnValue(fn: TableFunction, text: string | null | undefined): string {
  if (text === null || text === undefined) {
    throw new WireError({ code: '22004', message: `${fn}'s start_lsn must not be NULL` });
  }
  try {
    return formatLsn(parseLsn(text));
  } catch (e) {
    if (!(e instanceof LsnFormatError)) throw e;
    throw new WireError({ code: '22P02', message: `invalid input syntax for type pg_lsn: "${text}"` });
  }
}

/** SQLSTATEs for what can go wrong: stale answers (promise 4), an LSN before init_lsn, anything else. */
function errorFields(e: Error): ErrorFields {
  if (e instanceof StaleAnswerError) {
    const code = { timeout: '57014', beyond: '22023', server: '08006' }[e.reason];
    return { code, message: `ptrackd: ${e.message}` };
  }
  if (/older than init_lsn/.test(e.message)) {
    return {
      code: '22023',
      message: e.message,
      hint: 'Take a full backup: the history before init_lsn is not known.',
    };
  }
  return { code: 'XX000', message: `ptrackd: ${e.message}` };
}
