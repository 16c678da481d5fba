import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QueryEngine, tablespaceVersionDir } from '../../src/query/index.ts';
import { formatLsn, type Lsn, parseLsn } from '../../src/wal/index.ts';
import { pagesChangedSince, reportedBlocks } from '../helpers/oracle.ts';
import { PgCluster } from '../helpers/pg-cluster.ts';
import { trackFromWal } from '../helpers/tracking.ts';
import { runWorkloadMix } from '../helpers/workload.ts';

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
      const reported = reportedBlocks(engine.pagemapset(since));
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
    const fromPgdata = reportedBlocks(pgdataMode.pagemapset(since));
    const fromCatalog = [...reportedBlocks(catalogMode.pagemapset(since))].filter((b) => !/_fsm[. ]/.test(b));
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
