import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PtrackMap } from '../../src/map/index.ts';
import { QueryEngine, QueryError } from '../../src/query/index.ts';
import { LsnFormatError } from '../../src/wal/index.ts';
import { happened, observed, scratchCatalog } from '../helpers/catalog.ts';
import { scratchDir } from '../helpers/scratch.ts';

const INIT = 0x1000000;
const X = 0x2000000;
const AFTER = 0x2000100;
const BEFORE = 0x1800000;
const pgdata = mkdtempSync(join(tmpdir(), 'ptrackd-pgdata-'));
afterAll(() => rmSync(pgdata, { recursive: true, force: true }));

/** Writes an empty relation file of `blocks` blocks at `path` under the fake PGDATA. */
function file(path: string, blocks: number) {
  mkdirSync(join(pgdata, path, '..'), { recursive: true });
  writeFileSync(join(pgdata, path), Buffer.alloc(blocks * 8192));
}

const observe = observed;
const event = happened;

function setup() {
  // Large enough that a collision among these few marks across 131072 blocks is negligible (~1e-5).
  const catalog = scratchCatalog(INIT, 1_000_003);
  const map = PtrackMap.withEntries(1_000_003, INIT);
  const mark = (spc: number, db: number, rel: number, fork: number, block: number, lsn: number) => {
    map.markBlock(spc, db, rel, fork, block, lsn);
    catalog.applyOps([observe(spc, db, rel, fork, block, lsn)]);
  };
  // base/5/16384: 131072 + 10 blocks (a second segment); blocks 5 and 131075 change after X.
  file('base/5/16384', 131072);
  file('base/5/16384.1', 10);
  mark(1663, 5, 16384, 0, 5, AFTER);
  mark(1663, 5, 16384, 0, 131075, AFTER);
  mark(1663, 5, 16384, 0, 131081, BEFORE); // the last block, changed only before X
  // its VM page 0 and FSM (2 pages) change; FSM counts whole
  file('base/5/16384_vm', 1);
  mark(1663, 5, 16384, 2, 0, AFTER);
  file('base/5/16384_fsm', 3);
  mark(1663, 5, 16384, 1, 2, BEFORE);
  // a non-default tablespace and a shared catalog
  file('pg_tblspc/16439/PG_15_202209061/5/16440', 4);
  mark(16439, 5, 16440, 0, 3, AFTER);
  file('global/1262', 2);
  mark(1664, 0, 1262, 0, 1, AFTER);
  // created after X: wholly changed though only block 0 is named; truncated after X: blocks >= 2
  file('base/5/16500', 6);
  catalog.applyOps([event({ kind: 'create', spc: 1663, db: 5, rel: 16500, fork: 0 }, AFTER)]);
  mark(1663, 5, 16500, 0, 5, AFTER);
  file('base/5/16600', 4);
  mark(1663, 5, 16600, 0, 3, BEFORE);
  catalog.applyOps([event({ kind: 'truncate', spc: 1663, db: 5, rel: 16600, nblocks: 2, flags: 7 }, AFTER)]);
  // untouched since X, and a temporary relation's file: no rows
  file('base/5/16700', 3);
  mark(1663, 5, 16700, 0, 0, BEFORE);
  file('base/5/t3_16800', 2);
  file('base/5/pg_filenode.map', 1);
  const applied = AFTER;
  return {
    pgdata: new QueryEngine({ map, catalog, pgdata, appliedLsn: () => applied }),
    catalog: new QueryEngine({ map, catalog, appliedLsn: () => applied }),
  };
}

const engines = setup();
/** `pagecount: set bits` (bit b % 8 of byte b / 8), with the bitmap's byte length. */
const describeRow = (r: { pagecount: number; pagemap: Uint8Array }) => {
  const bits = [];
  for (let b = 0; b < r.pagemap.length * 8; b++) if (r.pagemap[b >> 3] & (1 << (b & 7))) bits.push(b);
  return `${r.pagecount}: ${bits.join(',')} of ${r.pagemap.length}`;
};
const rowsOf = (engine: QueryEngine, since: number) =>
  Object.fromEntries([...engine.pagemapset(since)].map((r) => [r.path, describeRow(r)]));

describe('ptrack_get_pagemapset on hand-built cases', () => {
  // Rows both modes give: the catalog knows these files' lengths from WAL.
  const common = {
    'global/1262': '1: 1 of 1',
    'base/5/16384': '1: 5 of 16384',
    'base/5/16384.1': '1: 3 of 2',
    'base/5/16384_fsm': '3: 0,1,2 of 1',
    'base/5/16384_vm': '1: 0 of 1',
    'base/5/16500': '6: 0,1,2,3,4,5 of 1',
    'pg_tblspc/16439/PG_15_202209061/5/16440': '1: 3 of 1',
  };

  it('PGDATA mode: segment files, forks, tablespace and shared paths; LSB-first segment-relative bits', () => {
    // base/5/16600 was truncated to 2 blocks after X: its file still holds 4, and blocks 2 and 3 count.
    expect(rowsOf(engines.pgdata, X)).toEqual({ ...common, 'base/5/16600': '2: 2,3 of 1' });
  });

  it('catalog mode: the same rows, as long as WAL has shown each file to be', () => {
    // Truncated to 2 blocks and not re-extended in WAL: the catalog knows nothing at or past the limit.
    expect(rowsOf(engines.catalog, X)).toEqual(common);
  });

  it('asking from init_lsn reports every block WAL named since', () => {
    const rows = rowsOf(engines.pgdata, INIT);
    expect(rows['base/5/16700']).toBe('1: 0 of 1');
    expect(rows['base/5/16384.1']).toBe('2: 3,9 of 2');
  });

  it('refuses an LSN older than init_lsn, and a malformed LSN, naming it', () => {
    expect(() => [...engines.pgdata.pagemapset(INIT - 1)]).toThrow(QueryError);
    expect(() => [...engines.pgdata.pagemapset(INIT - 1)]).toThrow(
      /older than init_lsn 0\/1000000.*take a full backup/,
    );
    expect(() => engines.pgdata.query("SELECT * FROM ptrack_get_pagemapset('0/1/2')")).toThrow(
      LsnFormatError,
    );
    expect(() => engines.pgdata.query("SELECT * FROM ptrack_get_pagemapset('0/1/2')")).toThrow(
      /invalid LSN "0\/1\/2"/,
    );
  });
});

describe('the SQL engine', () => {
  it('answers ptrack_version, ptrack_init_lsn and change_stat with ptrack’s names and types', () => {
    const e = engines.pgdata;
    expect(e.query('SELECT ptrack_version(), ptrack_init_lsn()').rows).toEqual([['2.4', '0/1000000']]);
    const stat = e.query(`SELECT * FROM ptrack_get_change_stat('0/2000000')`);
    expect(stat.columns).toEqual(['files', 'pages', 'size, MB']);
    expect(stat.rows).toEqual([[8, 16, (16 * 8192) / 1048576]]);
    expect(
      e.query(`SELECT typeof(files), typeof(pages) FROM ptrack_get_change_stat('0/2000000')`).rows,
    ).toEqual([['integer', 'integer']]);
    // FSM forks are reported whole whatever the LSN (the FSM is not WAL-logged).
    expect(e.query(`SELECT * FROM ptrack_get_change_stat('0/3000000')`).rows).toEqual([
      [1, 3, (3 * 8192) / 1048576],
    ]);
    const nothing = new QueryEngine({
      map: PtrackMap.withEntries(101, INIT),
      catalog: scratchCatalog(INIT),
      pgdata: scratchDir('ptrackd-empty-'),
      appliedLsn: () => AFTER,
    });
    expect(nothing.query(`SELECT * FROM ptrack_get_change_stat('0/2000000')`).rows).toEqual([
      [0, null, null],
    ]);
    expect(nothing.query(`SELECT count(*) FROM ptrack_get_pagemapset('0/2000000')`).rows).toEqual([[0]]);
  });

  it('takes any SQL on top: WHERE, ORDER BY, LIMIT, aggregates, joins', () => {
    const e = engines.pgdata;
    const q = (sql: string) => e.query(sql).rows;
    expect(
      q(
        `SELECT path FROM ptrack_get_pagemapset('0/2000000') WHERE path LIKE '%\\_vm' ESCAPE '\\' ORDER BY 1`,
      ),
    ).toEqual([['base/5/16384_vm']]);
    expect(
      q(
        `SELECT path, pagecount FROM ptrack_get_pagemapset('0/2000000') ORDER BY pagecount DESC, path LIMIT 2`,
      ),
    ).toEqual([
      ['base/5/16500', 6],
      ['base/5/16384_fsm', 3],
    ]);
    expect(q(`SELECT sum(pagecount), count(*) FROM ptrack_get_pagemapset('0/2000000')`)).toEqual([[16, 8]]);
    expect(
      q(`SELECT r.rel, r.max_block FROM ptrack_relations() r JOIN ptrack_get_pagemapset('0/2000000') p
         ON p.path = 'base/5/' || r.rel WHERE r.fork = 0 ORDER BY 1`),
    ).toEqual([
      [16384, 131081],
      [16500, 5],
      [16600, 1],
    ]);
    expect(e.query('SELECT init_lsn, applied_lsn FROM ptrack_status()').rows).toEqual([
      ['0/1000000', '0/2000100'],
    ]);
  });

  it('reports SQL errors with SQLite’s message', () => {
    expect(() => engines.pgdata.query('SELEC 1')).toThrow('near "SELEC": syntax error at character 1');
    expect(() => engines.pgdata.query("SELECT path FROM ptrack_get_pagemapset('0/1') WHER x")).toThrow(
      /near "x": syntax error at character 52$/,
    );
    expect(() => engines.pgdata.query('SELECT 1 FROM x WHER 1')).toThrow(/near "1": syntax error$/);
    expect(() => engines.pgdata.query('SELECT nope()')).toThrow(/no such function: nope/);
  });
});
