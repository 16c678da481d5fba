import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DaemonProcess } from '../test/helpers/daemon.ts';
import { freePort, PgCluster } from '../test/helpers/pg-cluster.ts';
import { findPgProbackup, PG_PROBACKUP_WANTED, pgProbackupFor } from '../test/helpers/probackup.ts';

/**
 * The main job on an embedded default: a scratch PostgreSQL 15 on a free local port, `ptrackd --slot
 * ptrack` following it, 400 pgbench transactions on a 75 MB database, then ptrack_get_change_stat and the first rows of
 * ptrack_get_pagemapset for the LSN taken before the workload. With pg_probackup, the product's point:
 * a FULL backup before the workload and a PTRACK one after it, both through ptrackd's PostgreSQL-protocol
 * port, their sizes beside what changed, and the PTRACK backup restored and compared with the source.
 * Everything is removed at the end.
 */
const say = (s: string) => process.stdout.write(`${s}\n`);
const mb = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MB`;
const pgProbackup = findPgProbackup();
const cluster = await PgCluster.start({ settings: { max_slot_wal_keep_size: "'1GB'" } });
const dataDir = mkdtempSync(join(tmpdir(), 'ptrackd-demo-'));
let daemon: DaemonProcess | undefined;
let pb: ReturnType<typeof pgProbackupFor> | undefined;
try {
  say(`scratch PostgreSQL 15 on 127.0.0.1:${cluster.port}`);
  await cluster.client('pgbench', ['-i', '-q', '-s', '5']);
  const pgPort = await freePort();
  daemon = await DaemonProcess.start(cluster, dataDir, ['--pg-listen', `127.0.0.1:${pgPort}`]);
  say(
    `ptrackd --slot ptrack is following it; HTTP endpoint http://127.0.0.1:${daemon.listen}, PostgreSQL-protocol port 127.0.0.1:${pgPort}`,
  );
  let full: string | undefined;
  if (pgProbackup) {
    const backups = join(cluster.makeServerDir('backups'), 'catalog');
    pb = pgProbackupFor(pgProbackup, cluster, () => backups);
    await pb.init();
    say(`pg_probackup backup -b FULL --stream -p ${pgPort} (through ptrackd's port)…`);
    full = await pb.backup('FULL', pgPort);
  }
  const start = await cluster.sql('SELECT pg_current_wal_insert_lsn()');
  say(`LSN before the workload: ${start}; running 400 pgbench transactions…`);
  await cluster.client('pgbench', ['-n', '-c', '2', '-t', '200']);
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
    return rows;
  };
  await show('SELECT ptrack_version(), ptrack_init_lsn()');
  const [[files, pages]] = (await show(`SELECT * FROM ptrack_get_change_stat('${start}')`)) as number[][];
  await show(
    `SELECT path, pagecount, pagemap FROM ptrack_get_pagemapset('${start}') ORDER BY pagecount DESC LIMIT 5`,
  );
  if (pb && full) {
    say(`\npg_probackup backup -b PTRACK --stream -p ${pgPort}: ptrackd tells it which pages changed…`);
    const ptrack = await pb.backup('PTRACK', pgPort);
    const shown = new Map((await pb.show()).map((b) => [b.id, b]));
    const [fullBytes, ptrackBytes] = [full, ptrack].map((id) => shown.get(id)!['data-bytes']);
    say(`  FULL   ${full}  ${mb(fullBytes).padStart(9)}  (every page of the cluster)`);
    say(
      `  PTRACK ${ptrack}  ${mb(ptrackBytes).padStart(9)}  (${(ptrackBytes / fullBytes).toFixed(2)}x the FULL; ptrack_get_change_stat: ${pages} pages changed in ${files} files)`,
    );
    say(
      'restoring the PTRACK backup (its FULL parent plus the changed pages) and comparing it with the source…',
    );
    await pb.restoresIdentical(ptrack);
    say(
      '  restored: pg_dumpall equals the source as it was at the backup’s end, and pg_amcheck finds nothing',
    );
  } else {
    say(
      `\n(with ${PG_PROBACKUP_WANTED}, this demo would now take a PTRACK backup through ptrackd, show it beside the FULL one and what changed, restore it and compare it with the source)`,
    );
  }
  say(`\nstopping ptrackd (SIGTERM: final checkpoint): exit code ${await daemon.stop('SIGTERM')}`);
  daemon = undefined;
} finally {
  await daemon?.stop('SIGKILL');
  await pb?.destroy();
  await cluster.destroy();
  rmSync(dataDir, { recursive: true, force: true });
}
