import { QueryEngine } from '../src/query/index.ts';
import { PgCluster } from '../test/helpers/pg-cluster.ts';
import { trackFromWal } from '../test/helpers/tracking.ts';

/**
 * The main job on an embedded default: a scratch PostgreSQL 15, a short pgbench, and ptrackd's answer to
 * "which blocks changed since the LSN taken before it" — the server's WAL decoded into the map and
 * catalog, then ptrack_get_change_stat and ptrack_get_pagemapset through the SQL engine. Everything is
 * removed at the end. (Until the daemon lands, the WAL is read from pg_wal after the workload instead of
 * being followed over a replication slot.)
 */
const cluster = await PgCluster.start({ settings: { wal_keep_size: "'1GB'" } });
try {
  const say = (s: string) => process.stdout.write(`${s}\n`);
  say(`scratch PostgreSQL on 127.0.0.1:${cluster.port}, data in ${cluster.dataDir}`);
  await cluster.client('pgbench', ['-i', '-q', '-s', '2']);
  const start = await cluster.sql('SELECT pg_current_wal_insert_lsn()');
  say(`LSN before the workload: ${start}; running pgbench for 5 seconds…`);
  await cluster.client('pgbench', ['-n', '-c', '2', '-T', '5']);
  await cluster.sql('CHECKPOINT');
  const end = await cluster.sql('SELECT pg_current_wal_flush_lsn()');
  const tracked = await trackFromWal(cluster, start, end);
  const engine = new QueryEngine({ ...tracked, pgdata: cluster.dataDir });
  const show = (sql: string) => {
    const { columns, rows } = engine.query(sql);
    say(`\nptrackd=# ${sql}`);
    say(columns.join(' | '));
    for (const row of rows) {
      say(
        row
          .map((v) =>
            v instanceof Uint8Array ? `\\x${Buffer.from(v).toString('hex').slice(0, 40)}…` : String(v),
          )
          .join(' | '),
      );
    }
  };
  say(
    `\nWAL ${start}..${end} decoded into the map; init_lsn ${engine.query('SELECT ptrack_init_lsn()').rows[0][0]}`,
  );
  show(`SELECT * FROM ptrack_get_change_stat('${start}')`);
  show(
    `SELECT path, pagecount, pagemap FROM ptrack_get_pagemapset('${start}') ORDER BY pagecount DESC LIMIT 5`,
  );
} finally {
  await cluster.destroy();
}
