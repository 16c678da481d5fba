import { PassThrough } from 'node:stream';
import { parse, serialize } from 'pg-protocol';
import { describe, expect, it } from 'vitest';
import {
  BIND_COMPLETE,
  commandComplete,
  dataRow,
  errorResponse,
  PARSE_COMPLETE,
  PgWireProtocolError,
  parameterDescription,
  parseBind,
  parseParse,
  parseQuery,
  parseTarget,
  readyForQuery,
  rowDescription,
} from '../../src/pgwire/messages.ts';

/** What node-postgres's own parser (the client side of the protocol) reads from bytes we send. */
async function asClientReadsIt(bytes: Buffer): Promise<Record<string, unknown>[]> {
  const stream = new PassThrough();
  const messages: Record<string, unknown>[] = [];
  // an ErrorResponse arrives as an Error, whose message is not an own enumerable property
  const done = parse(stream, (m) =>
    messages.push({ ...(m as object), ...(m instanceof Error && { message: m.message }) }),
  );
  stream.end(bytes);
  await done;
  return messages;
}

describe('backend messages, read back by node-postgres’s protocol parser', () => {
  it('a result: RowDescription, DataRows with a NULL and non-ASCII text, CommandComplete, ReadyForQuery', async () => {
    const bytes = Buffer.concat([
      PARSE_COMPLETE,
      BIND_COMPLETE,
      rowDescription([
        { name: 'path', typeOid: 25, typeLen: -1 },
        { name: 'extversion', typeOid: 25, typeLen: -1, tableOid: 3079, column: 6 },
      ]),
      dataRow(['base/5/1247', '\\x0040']),
      dataRow(['süß', null]),
      commandComplete('SELECT 2'),
      readyForQuery('T'),
    ]);
    const read = await asClientReadsIt(bytes);
    expect(read.map((m) => m.name)).toEqual([
      'parseComplete',
      'bindComplete',
      'rowDescription',
      'dataRow',
      'dataRow',
      'commandComplete',
      'readyForQuery',
    ]);
    expect(
      (read[2].fields as Record<string, unknown>[]).map((f) => [
        f.name,
        f.tableID,
        f.columnID,
        f.dataTypeID,
        f.dataTypeSize,
        f.dataTypeModifier,
        f.format,
      ]),
    ).toEqual([
      ['path', 0, 0, 25, -1, -1, 'text'],
      ['extversion', 3079, 6, 25, -1, -1, 'text'],
    ]);
    expect([read[3].fields, read[4].fields]).toEqual([
      ['base/5/1247', '\\x0040'],
      ['süß', null],
    ]);
    expect([read[5].text, read[6].status]).toEqual(['SELECT 2', 'T']);
  });

  it('an ErrorResponse with SQLSTATE, message and hint; a ParameterDescription', async () => {
    const [error, params] = await asClientReadsIt(
      Buffer.concat([
        errorResponse({
          code: '22023',
          message: 'LSN 0/1 is older than init_lsn',
          hint: 'Take a full backup.',
        }),
        parameterDescription([3220]),
      ]),
    );
    expect(error).toMatchObject({
      name: 'error',
      severity: 'ERROR',
      code: '22023',
      message: 'LSN 0/1 is older than init_lsn',
      hint: 'Take a full backup.',
    });
    expect(params).toMatchObject({ name: 'parameterDescription', dataTypeIDs: [3220] });
  });
});

describe('frontend messages, as node-postgres writes them', () => {
  const body = (message: Buffer) => message.subarray(5);

  it('Query, Parse, Bind (text, binary and NULL values), Describe', () => {
    expect(parseQuery(body(serialize.query('SELECT ptrack.ptrack_version()')))).toBe(
      'SELECT ptrack.ptrack_version()',
    );
    expect(parseParse(body(serialize.parse({ name: 'p', text: 'SELECT $1', types: [3220] })))).toEqual({
      statement: 'p',
      sql: 'SELECT $1',
      paramTypes: [3220],
    });
    const bind = parseBind(
      body(serialize.bind({ portal: '', statement: 'p', values: ['0/3000028', null, Buffer.from([1, 2])] })),
    );
    expect(bind).toMatchObject({ portal: '', statement: 'p', resultFormats: [0] });
    expect(bind.params.map((p) => p && [...p])).toEqual([[...Buffer.from('0/3000028')], null, [1, 2]]);
    expect(bind.paramFormats).toEqual([0, 0, 1]);
    expect(parseTarget(body(serialize.describe({ type: 'P', name: '' })))).toEqual({ kind: 'P', name: '' });
  });

  it('a message shorter than its fields is a protocol error, not a crash', () => {
    const bind = body(serialize.bind({ values: ['0/3000028'] }));
    for (let cut = 0; cut < bind.length; cut++) {
      expect(() => parseBind(bind.subarray(0, cut))).toThrow(PgWireProtocolError);
    }
  });
});
