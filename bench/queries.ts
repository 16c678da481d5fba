import { QueryEngine, relationFilesInPgdata, tablespaceVersionDir } from '../src/query/index.ts';
import { parseLsn } from '../src/wal/index.ts';
import { pagesChangedSince } from '../test/helpers/oracle.ts';
import { PgCluster } from '../test/helpers/pg-cluster.ts';
import { trackFromWal } from '../test/helpers/tracking.ts';

export interface QueryBench {
  readonly databaseMb: number;
  readonly blocks: number;
  readonly walkSeconds: number;
  /** Reading every page's LSN (what a backup without a map does), single-threaded, since after the load. */
  readonly scanSeconds: number;
  readonly rows: {
    mode: string;
    since: string;
    pagemapsetSeconds: number;
    changeStatSeconds: number;
    files: number;
    pages: number;
  }[];
}

/**
 * pagemapset and change_stat on a pgbench database of about `scale` × 15 MB (scale 130 ≈ 2 GB), in both
 * file-source modes, after tracking its WAL from before `pgbench -i`: asked from that LSN (everything
 * changed) and from after the load (a short pgbench run's changes). Yardstick: a plain walk of PGDATA
 * that lists the same relation files, measured in the same run.
 */
export async function benchQueries(scale: number, log: (s: string) => void): Promise<QueryBench> {
  const cluster = await PgCluster.start({
    settings: { wal_keep_size: "'16GB'", max_wal_size: "'8GB'", autovacuum: 'off' },
  });
  try {
    log(`loading pgbench scale ${scale}…`);
    const start = await cluster.sql('SELECT pg_current_wal_insert_lsn()');
    await cluster.client('pgbench', ['-i', '-q', '-s', String(scale)]);
    const afterLoad = await cluster.sql('SELECT pg_current_wal_insert_lsn()');
    await cluster.client('pgbench', ['-n', '-c', '2', '-T', '10']);
    await cluster.sql('CHECKPOINT');
    const end = await cluster.sql('SELECT pg_current_wal_flush_lsn()');
    const databaseMb = Number(await cluster.sql("SELECT pg_database_size('postgres') / 1048576"));
    log('tracking its WAL…');
    const tracked = await trackFromWal(cluster, start, end, 64);
    const id = tracked.catalog.identity()!;
    const versionDir = tablespaceVersionDir(id.serverVersionNum, id.catalogVersion);
    const time = <T>(f: () => T): [T, number] => {
      const t = performance.now();
      const r = f();
      return [r, (performance.now() - t) / 1000];
    };
    const [blocks, walkSeconds] = time(() => {
      let n = 0;
      for (const f of relationFilesInPgdata(cluster.dataDir, versionDir, 8192)) n += f.blocks;
      return n;
    });
    const [, scanSeconds] = time(() => pagesChangedSince(cluster.dataDir, versionDir, parseLsn(afterLoad)));
    const rows = [];
    for (const mode of ['pgdata', 'catalog'] as const) {
      const engine = new QueryEngine({
        ...tracked,
        ...(mode === 'pgdata' ? { pgdata: cluster.dataDir } : {}),
      });
      for (const [name, lsn] of [
        ['before the load', start],
        ['after the load', afterLoad],
      ]) {
        const since = parseLsn(lsn);
        const [count, pagemapsetSeconds] = time(() => [...engine.pagemapset(since)].length);
        const [stat, changeStatSeconds] = time(() => engine.changeStat(since));
        rows.push({
          mode,
          since: name,
          pagemapsetSeconds,
          changeStatSeconds,
          files: count,
          pages: stat.pages ?? 0,
        });
      }
    }
    return { databaseMb, blocks, walkSeconds, scanSeconds, rows };
  } finally {
    await cluster.destroy();
  }
}
