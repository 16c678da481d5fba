import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatLsn, parseLsn } from '../../src/wal/index.ts';
import { archived } from '../helpers/archiving.ts';
import { DaemonProcess } from '../helpers/daemon.ts';
import { pagemapTamperer } from '../helpers/pagemap-tamper.ts';
import { freePort, PgCluster } from '../helpers/pg-cluster.ts';
import { findPgProbackup, PG_PROBACKUP_WANTED, pgProbackupFor } from '../helpers/probackup.ts';
import { scratchDir } from '../helpers/scratch.ts';
import { runWorkloadMix } from '../helpers/workload.ts';

const PG_PROBACKUP = findPgProbackup();
const available = PG_PROBACKUP !== null;
if (!available) console.warn(`SKIPPED: the pg_probackup proof needs ${PG_PROBACKUP_WANTED}`);

/** A PTRACK backup through `port`: PTRACK mode (no fallback) on `parent`, restored identical to the source. */
async function ptrackBackupRestores(pb: ReturnType<typeof pgProbackupFor>, port: number, parent: string) {
  const id = await pb.backup('PTRACK', port);
  expect((await pb.show()).find((b) => b.id === id)).toMatchObject({
    'backup-mode': 'PTRACK',
    status: 'OK',
    'parent-backup-id': parent,
  });
  await pb.restoresIdentical(id);
}

/**
 * The product's reason to exist (issue 19): pg_probackup -b PTRACK against a stock PostgreSQL 15 with no
 * ptrack anywhere, through ptrackd's PostgreSQL-protocol port. A chain FULL → PTRACK → PTRACK over the
 * workload mix, ptrackd killed and restarted in the middle; each backup restored and compared with the
 * source as it was when that backup ended.
 */
describe.skipIf(!available)(
  'unmodified pg_probackup takes PTRACK backups of a stock PostgreSQL through ptrackd',
  () => {
    let source: PgCluster;
    let daemon: DaemonProcess;
    let pgPort: number;
    let backups: string;
    let ptrackdDir: string;
    let pb: ReturnType<typeof pgProbackupFor>;

    const kept = async () => (await source.sql(`SELECT pg_relation_filepath('kept')`)).trim();
    let full: string;
    let ptrack1: string;
    let ptrack2: string;
    let planted: { id: string; tampered: number };

    beforeAll(async () => {
      // Made here, not while the tests are collected: a skipped describe runs its body but no hooks.
      ptrackdDir = join(scratchDir('ptrackd-probackup-'), 'data');
      source = await PgCluster.start({ settings: { wal_keep_size: "'4GB'", autovacuum: 'off' } });
      pb = pgProbackupFor(PG_PROBACKUP!, source, () => backups);
      pgPort = await freePort();
      const ptrackd = () => DaemonProcess.start(source, ptrackdDir, ['--pg-listen', `127.0.0.1:${pgPort}`]);
      daemon = await ptrackd();
      await source.client('pgbench', ['-i', '-q', '-s', '2']);
      await source.sql(
        // a large table that lives through every backup, changed a little between them: most of what a
        // FULL backup copies and a PTRACK one does not (besides the FSM forks, which are copied whole)
        'CREATE TABLE kept (id int PRIMARY KEY, v int); INSERT INTO kept SELECT g, 0 FROM generate_series(1, 1000000) g; VACUUM (FREEZE) kept',
      );
      backups = join(source.makeServerDir('backups'), 'catalog');
      await pb.init();
      full = await pb.backup('FULL', pgPort);
      await runWorkloadMix(source);
      await source.client('pgbench', ['-n', '-c', '2', '-t', '300']);
      // VACUUM now: the pruning that reads would otherwise do later is WAL-logged, i.e. a change for the next backup
      await source.sql(
        'UPDATE kept SET v = v + 1 WHERE id % 7 = 0 AND id <= 100000; VACUUM kept; CHECKPOINT',
      );
      ptrack1 = await pb.backup('PTRACK', pgPort);
      // more workload, with ptrackd killed in the middle (half the transactions done) and started again
      await source.sql('TRUNCATE pgbench_history');
      const load = source.client('pgbench', ['-n', '-c', '2', '-t', '100']);
      while (Number(await source.sql('SELECT count(*) FROM pgbench_history')) < 100) {
        await new Promise((r) => setTimeout(r, 20));
      }
      await daemon.stop('SIGKILL');
      daemon = await ptrackd();
      await load;
      await source.sql(`CREATE TABLE later AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 5000) g;
        UPDATE kept SET v = v + 1 WHERE id <= 2000; CHECKPOINT`);
      ptrack2 = await pb.backup('PTRACK', pgPort);
      // The planted bug: one more PTRACK backup, whose pagemap for `kept` lost one changed block on the way.
      await source.sql('UPDATE kept SET v = v + 1 WHERE id % 13 = 0 AND id <= 20000; CHECKPOINT');
      const tamper = await pagemapTamperer(pgPort, await kept());
      try {
        planted = { id: await pb.backup('PTRACK', tamper.port), tampered: tamper.tampered() };
      } finally {
        tamper.server.close();
      }
    }, 600_000);

    afterAll(async () => {
      await pb?.destroy();
      await daemon?.stop('SIGKILL');
      await source?.destroy();
    });

    it('the backups are PTRACK mode (no fallback to DELTA or FULL), each on its parent, much smaller than FULL, and valid', async () => {
      const byId = new Map((await pb.show()).map((b) => [b.id, b]));
      expect(byId.get(full)).toMatchObject({ 'backup-mode': 'FULL', status: 'OK' });
      expect(byId.get(ptrack1)).toMatchObject({
        'backup-mode': 'PTRACK',
        status: 'OK',
        'parent-backup-id': full,
      });
      expect(byId.get(ptrack2)).toMatchObject({
        'backup-mode': 'PTRACK',
        status: 'OK',
        'parent-backup-id': ptrack1,
      });
      const [fullBytes, bytes1, bytes2] = [full, ptrack1, ptrack2].map((id) => byId.get(id)!['data-bytes']);
      console.log(
        `pg_probackup: FULL ${fullBytes} bytes; PTRACK after the workload mix (which rebuilds pgbench's tables) ${bytes1}; PTRACK after 200 pgbench transactions and a few DDLs ${bytes2}`,
      );
      expect(bytes1).toBeLessThan(fullBytes);
      expect(bytes2).toBeLessThan(fullBytes / 5);
      expect(await pb.run('validate', '-B', backups, '--instance', 'pg15')).toMatch(/All backups are valid/);
    });

    it('each backup of the chain restores to the source as it was at that backup’s end, and pg_amcheck finds nothing', async () => {
      for (const id of [full, ptrack1, ptrack2]) await pb.restoresIdentical(id);
    }, 600_000);

    it('catches a planted bug: a PTRACK backup missing one changed block does not restore to the source’s data', async () => {
      expect(planted.tampered).toBeGreaterThan(0);
      const cluster = await pb.restore(planted.id);
      expect(await cluster.dumpDigest()).not.toBe(pb.dumps.get(planted.id));
    }, 300_000);
  },
);

/**
 * The WAL archive (issue 15): a FULL backup taken before ptrackd existed, pg_probackup archiving WAL
 * (archive-push); ptrackd is installed afterwards with --init-from that backup's start LSN and
 * `pg_probackup archive-get` as its restore command, and a PTRACK backup on that FULL restores exactly.
 */
describe.skipIf(!available)('a PTRACK backup on a FULL taken before ptrackd existed', () => {
  const cleanup: (() => Promise<unknown>)[] = [];
  afterAll(async () => {
    for (const f of cleanup.reverse()) await f().catch(() => {});
  });

  it('ptrackd --init-from the FULL backup’s start LSN, reading pg_probackup’s archive, gives a PTRACK backup that restores identical', async () => {
    const source = await PgCluster.start({
      settings: { wal_keep_size: 0, archive_mode: 'on', autovacuum: 'off' },
    });
    cleanup.push(() => source.destroy());
    const backups = join(source.makeServerDir('backups'), 'catalog');
    const pb = pgProbackupFor(PG_PROBACKUP!, source, () => backups);
    cleanup.push(() => pb.destroy());
    await pb.init();
    const walFile = `-B ${backups} --instance pg15 --wal-file-path=%p --wal-file-name=%f`;
    await source.sql(
      `ALTER SYSTEM SET archive_command = '${pb.program} archive-push ${walFile}'; SELECT pg_reload_conf()`,
    );
    await source.client('pgbench', ['-i', '-q', '-s', '2']);
    const full = await pb.backup('FULL', source.port);
    const startLsn = (await pb.show()).find((b) => b.id === full)!['start-lsn'];
    // a day's work before ptrackd is installed: only the archive has its WAL by then
    await runWorkloadMix(source);
    await source.client('pgbench', ['-n', '-c', '2', '-t', '300']);
    await source.sql('CHECKPOINT; SELECT pg_switch_wal()');
    await archived(source);

    const pgPort = await freePort();
    const daemon = await DaemonProcess.start(source, join(scratchDir('ptrackd-init-from-'), 'data'), [
      ...['--pg-listen', `127.0.0.1:${pgPort}`, '--init-from', startLsn],
      ...['--restore-command', `${pb.program} archive-get ${walFile}`],
    ]);
    cleanup.push(() => daemon.stop('SIGKILL'));
    expect((await daemon.query('SELECT ptrack_init_lsn()')).rows[0][0]).toBe(formatLsn(parseLsn(startLsn)));
    await source.sql('CREATE TABLE after_install AS SELECT generate_series(1, 5000) AS i; CHECKPOINT');
    await ptrackBackupRestores(pb, pgPort, full);
  }, 600_000);
});

/**
 * WAL thrown away (issue 27): pg_resetwal -f on the source while ptrackd follows it. ptrackd records a
 * gap, so pg_probackup refuses a PTRACK backup on the FULL taken before it, with its own message about
 * ptrack's init LSN (as it does for ptrack after pg_resetwal); a new FULL and a PTRACK on it work.
 */
describe.skipIf(!available)('a PTRACK backup across WAL thrown away by pg_resetwal', () => {
  const cleanup: (() => Promise<unknown>)[] = [];
  afterAll(async () => {
    for (const f of cleanup.reverse()) await f().catch(() => {});
  });

  it('is refused by pg_probackup on the older FULL; a new FULL and a PTRACK on it restore identical', async () => {
    const source = await PgCluster.start({ settings: { wal_keep_size: 0, autovacuum: 'off' } });
    cleanup.push(() => source.destroy());
    const backups = join(source.makeServerDir('backups'), 'catalog');
    const pb = pgProbackupFor(PG_PROBACKUP!, source, () => backups);
    cleanup.push(() => pb.destroy());
    await pb.init();
    const pgPort = await freePort();
    const daemon = await DaemonProcess.start(source, join(scratchDir('ptrackd-resetwal-'), 'data'), [
      ...['--pg-listen', `127.0.0.1:${pgPort}`],
    ]);
    cleanup.push(() => daemon.stop('SIGKILL'));
    await source.client('pgbench', ['-i', '-q', '-s', '2']);
    const before = await pb.backup('FULL', pgPort);
    await source.stop();
    source.run('pg_resetwal', ['-f', '-D', source.dataDir]);
    await source.startAgain();
    await daemon.until(async () => (await daemon.http('GET', '/readyz')).status === 200, 'become ready');
    await source.client('pgbench', ['-n', '-c', '2', '-t', '200']);
    const refused = await pb.backup('PTRACK', pgPort).then(
      () => 'taken',
      (e: Error) => e.message,
    );
    expect(refused).toMatch(
      /LSN from ptrack_control [0-9A-F/]+ is greater than Start LSN of previous backup/,
    );
    // pg_probackup keeps the refused attempt in its catalog as an ERROR, with no data
    expect((await pb.show()).filter((b) => b.id !== before).map((b) => [b['backup-mode'], b.status])).toEqual(
      [['PTRACK', 'ERROR']],
    );
    const full = await pb.backup('FULL', pgPort);
    await source.client('pgbench', ['-n', '-c', '2', '-t', '200']);
    await source.sql('CREATE TABLE after_reset AS SELECT generate_series(1, 5000) AS i; CHECKPOINT');
    await ptrackBackupRestores(pb, pgPort, full);
  }, 600_000);
});
