import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DaemonProcess } from '../test/helpers/daemon.ts';
import { PgCluster } from '../test/helpers/pg-cluster.ts';

/**
 * The main job on an embedded default: a scratch PostgreSQL 15 on a free local port, `ptrackd --slot
 * ptrack` following it, a short pgbench, then ptrack_get_change_stat and the first rows of
 * ptrack_get_pagemapset for the LSN taken before the workload. Everything is removed at the end.
 */
const say = (s: string) => process.stdout.write(`${s}\n`);
const cluster = await PgCluster.start({ settings: { max_slot_wal_keep_size: "'1GB'" } });
const dataDir = mkdtempSync(join(tmpdir(), 'ptrackd-demo-'));
let daemon: DaemonProcess | undefined;
try {
  say(`scratch PostgreSQL 15 on 127.0.0.1:${cluster.port}`);
  await cluster.client('pgbench', ['-i', '-q', '-s', '2']);
  daemon = await DaemonProcess.start(cluster, dataDir);
  say(`ptrackd --slot ptrack is following it; its endpoint is http://127.0.0.1:${daemon.listen}`);
  const start = await cluster.sql('SELECT pg_current_wal_insert_lsn()');
  say(`LSN before the workload: ${start}; running pgbench for 5 seconds…`);
  await cluster.client('pgbench', ['-n', '-c', '2', '-T', '5']);
  const show = async (sql: string) => {
    const { columns, rows, appliedLsn } = await daemon!.query(sql);
    say(`\nptrackd=# ${sql}    -- answered at applied LSN ${appliedLsn}`);
    say(columns.join(' | '));
    for (const row of rows)
      say(
        row
          .map((v) => (typeof v === 'string' && v.length > 44 ? `${v.slice(0, 42)}…` : String(v)))
          .join(' | '),
      );
  };
  await show('SELECT ptrack_version(), ptrack_init_lsn()');
  await show(`SELECT * FROM ptrack_get_change_stat('${start}')`);
  await show(
    `SELECT path, pagecount, pagemap FROM ptrack_get_pagemapset('${start}') ORDER BY pagecount DESC LIMIT 5`,
  );
  say(`\nstopping ptrackd (SIGTERM: final checkpoint): exit code ${await daemon.stop('SIGTERM')}`);
  daemon = undefined;
} finally {
  await daemon?.stop('SIGKILL');
  await cluster.destroy();
  rmSync(dataDir, { recursive: true, force: true });
}
