import { describe, expect, it } from 'vitest';
import { formatCsv, formatJson, formatTable, formatTsv, splitStatements } from '../../src/cli/format.ts';

// ptrack 2.4's own psql output (ptrack-compat.md §1), reproduced from the same values.
const pagemapset = {
  columns: ['path', 'pagecount', 'pagemap'],
  rows: [
    ['base/5/16402_fsm', 5, '\\x1f00000000000000000000'],
    ['base/5/2662', 1, '\\x0400000000000000000000'],
  ],
};

describe('output formats', () => {
  it('table: reads like ptrack’s own pagemapset in psql', () => {
    expect(formatTable(pagemapset)).toBe(
      [
        '       path       | pagecount |         pagemap',
        '------------------+-----------+--------------------------',
        ' base/5/16402_fsm |         5 | \\x1f00000000000000000000',
        ' base/5/2662      |         1 | \\x0400000000000000000000',
        '(2 rows)',
        '',
        '',
      ].join('\n'),
    );
  });

  it('table: one row, an empty result, nulls, and tuples only', () => {
    const stat = { columns: ['files', 'pages', 'size, MB'], rows: [[0, null, null]] };
    expect(formatTable(stat)).toBe(
      [' files | pages | size, MB', '-------+-------+----------', '     0 |       |', '(1 row)', '', ''].join(
        '\n',
      ),
    );
    expect(formatTable({ columns: ['path'], rows: [] })).toBe(
      [' path', '------', '(0 rows)', '', ''].join('\n'),
    );
    expect(formatTable(pagemapset, true)).toBe(
      ' base/5/16402_fsm | 5 | \\x1f00000000000000000000\n base/5/2662      | 1 | \\x0400000000000000000000\n',
    );
  });

  it('a pagemapset with a segment file, forks and a non-default tablespace, in every format', () => {
    const rows = {
      columns: ['path', 'pagecount', 'pagemap'],
      rows: [
        ['base/5/16384.1', 1, '\\x0800'],
        ['base/5/16384_vm', 1, '\\x01'],
        ['pg_tblspc/16439/PG_15_202209061/5/16440', 2, '\\x0c'],
      ],
    };
    expect(formatTable(rows)).toBe(
      [
        '                  path                   | pagecount | pagemap',
        '-----------------------------------------+-----------+---------',
        ' base/5/16384.1                          |         1 | \\x0800',
        ' base/5/16384_vm                         |         1 | \\x01',
        ' pg_tblspc/16439/PG_15_202209061/5/16440 |         2 | \\x0c',
        '(3 rows)',
        '',
        '',
      ].join('\n'),
    );
    expect(formatCsv(rows)).toBe(
      'path,pagecount,pagemap\r\nbase/5/16384.1,1,\\x0800\r\nbase/5/16384_vm,1,\\x01\r\npg_tblspc/16439/PG_15_202209061/5/16440,2,\\x0c\r\n',
    );
    expect(formatTsv(rows, true)).toBe(
      'base/5/16384.1\t1\t\\\\x0800\nbase/5/16384_vm\t1\t\\\\x01\npg_tblspc/16439/PG_15_202209061/5/16440\t2\t\\\\x0c\n',
    );
    expect(JSON.parse(formatJson(rows))[2]).toEqual({
      path: 'pg_tblspc/16439/PG_15_202209061/5/16440',
      pagecount: 2,
      pagemap: '\\x0c',
    });
  });

  it('csv (RFC 4180), tsv and json', () => {
    const tricky = {
      columns: ['path', 'note'],
      rows: [
        ['pg_tblspc/16439/PG_15_202209061/5/16440', 'a "quoted", line\nbreak'],
        ['global/1262', null],
      ],
    };
    expect(formatCsv(tricky)).toBe(
      'path,note\r\npg_tblspc/16439/PG_15_202209061/5/16440,"a ""quoted"", line\nbreak"\r\nglobal/1262,\r\n',
    );
    expect(formatTsv(tricky)).toBe(
      'path\tnote\npg_tblspc/16439/PG_15_202209061/5/16440\ta "quoted", line\\nbreak\nglobal/1262\t\\N\n',
    );
    expect(JSON.parse(formatJson(pagemapset))).toEqual([
      { path: 'base/5/16402_fsm', pagecount: 5, pagemap: '\\x1f00000000000000000000' },
      { path: 'base/5/2662', pagecount: 1, pagemap: '\\x0400000000000000000000' },
    ]);
  });

  it('splits statements at semicolons outside quotes and comments', () => {
    expect(splitStatements('SELECT \'a;b\'; -- x; y\nSELECT "c;d" ;;  ')).toEqual([
      "SELECT 'a;b'",
      'SELECT "c;d"',
    ]);
  });
});
