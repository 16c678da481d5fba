import { closeSync, existsSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QueryEngine, relationFilesInPgdata, tablespaceVersionDir } from '../../src/query/index.ts';
import { formatLsn, type Lsn, parseLsn } from '../../src/wal/index.ts';
import { PgCluster } from '../helpers/pg-cluster.ts';
import { trackFromWal } from '../helpers/tracking.ts';
import { runWorkloadMix } from '../helpers/workload.ts';

/**
 * The page-LSN oracle (design.md §6): after a CHECKPOINT, every page of every main and VM fork in PGDATA
 * whose header LSN (pd_lsn) is >= X must be in pagemapset(X). Unlogged relations (those with an init
 * fork) are the documented exception: their pages never reach WAL.
 */
function pagesChangedSince(pgdata: string, versionDir: string, since: Lsn): Set<string> {
  const changed = new Set<string>();
  const page = Buffer.alloc(8192);
  for (const f of relationFilesInPgdata(pgdata, versionDir, 8192)) {
    if (f.fork !== 0 && f.fork !== 2) continue;
    const dir = join(pgdata, f.path, '..');
    if (existsSync(join(dir, `${f.rel}_init`))) continue;
    const fd = openSync(join(pgdata, f.path), 'r');
    try {
      for (let b = 0; b < f.blocks; b++) {
        if (readSync(fd, page, 0, 8192, b * 8192) < 8192) break;
        const pdLsn = page.readUInt32LE(0) * 0x1_0000_0000 + page.readUInt32LE(4);
        if (pdLsn >= since) changed.add(`${f.path} ${b}`);
      }
    } finally {
      closeSync(fd);
    }
  }
  return changed;
}

function reportedBlocks(engine: QueryEngine, since: Lsn): Set<string> {
  const out = new Set<string>();
  for (const row of engine.pagemapset(since)) {
    for (let b = 0; b < row.pagemap.length * 8; b++)
      if (row.pagemap[b >> 3] & (1 << (b & 7))) out.add(`${row.path} ${b}`);
  }
  return out;
}

describe('page-LSN oracle on a live PostgreSQL 15 workload mix', () => {
  let cluster: PgCluster;
  let since: Lsn;
  let expected: Set<string>;
  let pgdataMode: QueryEngine;
  let catalogMode: QueryEngine;

  beforeAll(async () => {
    cluster = await PgCluster.start({ settings: { wal_keep_size: "'2GB'", autovacuum: 'off' } });
    const start = await cluster.sql('SELECT pg_current_wal_insert_lsn()');
    since = parseLsn(start);
    await runWorkloadMix(cluster); // ends with CHECKPOINT: every page is on disk
    const end = await cluster.sql('SELECT pg_current_wal_flush_lsn()');
    const tracked = await trackFromWal(cluster, start, end);
    const id = tracked.catalog.identity()!;
    expected = pagesChangedSince(
      cluster.dataDir,
      tablespaceVersionDir(id.serverVersionNum, id.catalogVersion),
      since,
    );
    pgdataMode = new QueryEngine({ ...tracked, pgdata: cluster.dataDir });
    catalogMode = new QueryEngine(tracked);
  }, 300_000);

  afterAll(async () => {
    await cluster?.destroy();
  });

  it.each(['pgdata', 'catalog'] as const)(
    'in %s mode, reports every page whose LSN is >= X (zero misses)',
    (mode) => {
      const engine = mode === 'pgdata' ? pgdataMode : catalogMode;
      const reported = reportedBlocks(engine, since);
      const missed = [...expected].filter((p) => !reported.has(p));
      expect(expected.size).toBeGreaterThan(1000);
      expect(missed).toEqual([]);
      const overhead = reported.size / expected.size;
      console.log(
        `${mode} mode: ${expected.size} pages with pd_lsn >= X, ${reported.size} reported (${overhead.toFixed(2)}x)`,
      );
    },
  );

  it('both modes agree on main and VM forks: the catalog lists no block that PGDATA mode does not', () => {
    const fromPgdata = reportedBlocks(pgdataMode, since);
    const fromCatalog = [...reportedBlocks(catalogMode, since)].filter((b) => !/_fsm[. ]/.test(b));
    expect(fromCatalog.filter((b) => !fromPgdata.has(b))).toEqual([]);
  });

  it('answers through SQL as ptrack does', () => {
    const lsn = `'${formatLsn(since)}'`;
    const rows = pgdataMode.query(
      `SELECT path, pagecount FROM ptrack_get_pagemapset(${lsn}) ORDER BY 1`,
    ).rows;
    const stat = pgdataMode.query(`SELECT files, pages, "size, MB" FROM ptrack_get_change_stat(${lsn})`)
      .rows[0] as number[];
    expect(stat[0]).toBe(rows.length);
    expect(stat[1]).toBe(rows.reduce((n, r) => n + (r[1] as number), 0));
    expect(stat[2]).toBeCloseTo((stat[1] * 8192) / 1048576);
  });
});
