import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DaemonProcess } from '../helpers/daemon.ts';
import { REPO_ROOT } from '../helpers/fixtures.ts';
import { pagemapTamperer } from '../helpers/pagemap-tamper.ts';
import { freePort, PgCluster } from '../helpers/pg-cluster.ts';
import { scratchDir } from '../helpers/scratch.ts';
import { runWorkloadMix } from '../helpers/workload.ts';

/** Unmodified pg_probackup 2.5.15 for Debian's PostgreSQL 15 (shared/tools; a public clone has none). */
const PG_PROBACKUP = join(REPO_ROOT, '../shared/tools/pg_probackup-15/pg_probackup');
const available = existsSync(PG_PROBACKUP);
if (!available) {
  console.warn(
    `SKIPPED: the pg_probackup proof needs ${PG_PROBACKUP}, which is missing (it comes with ../shared)`,
  );
}

interface ShownBackup {
  id: string;
  'backup-mode': string;
  status: string;
  'data-bytes': number;
  'parent-backup-id'?: string;
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
    const ptrackdDir = join(scratchDir('ptrackd-probackup-'), 'data');
    const dumps = new Map<string, string>();
    const restored: PgCluster[] = [];

    let pgProbackup: string; // where the server's user can run it (see PgCluster.serverUserProgram)
    const asServerUser = (args: string[]) =>
      process.getuid?.() === 0
        ? (['/usr/sbin/runuser', ['-u', 'postgres', '--', pgProbackup, ...args]] as const)
        : ([pgProbackup, args] as const);
    /** pg_probackup's stdout and stderr, run from the backup catalog's directory (the server's user's). */
    const probackupOutput = (args: string[]) =>
      new Promise<{ stdout: string; stderr: string }>((resolve, reject) => {
        const [cmd, argv] = asServerUser(args);
        execFile(
          cmd,
          [...argv],
          { encoding: 'utf8', maxBuffer: 64 << 20, cwd: source.dir },
          (e, stdout, stderr) =>
            e ? reject(new Error(`pg_probackup ${args[0]} failed: ${stderr}`)) : resolve({ stdout, stderr }),
        );
      });
    const probackup = async (...args: string[]) => {
      const { stdout, stderr } = await probackupOutput(args);
      return stdout + stderr;
    };
    const backup = async (mode: 'FULL' | 'PTRACK', port = pgPort) => {
      const out = await probackup(
        'backup',
        '-B',
        backups,
        '--instance',
        'pg15',
        '-b',
        mode,
        '--stream',
        '-h',
        '127.0.0.1',
        '-p',
        String(port),
        '-U',
        'postgres',
        '-d',
        'postgres',
      );
      const id = /INFO: Backup (\w+) completed/.exec(out)?.[1];
      if (!id) throw new Error(`no backup ID in:\n${out}`);
      dumps.set(id, await source.dumpAll());
      return id;
    };
    const show = async (): Promise<ShownBackup[]> =>
      JSON.parse(
        (await probackupOutput(['show', '-B', backups, '--instance', 'pg15', '--format=json'])).stdout,
      )[0].backups;
    const restore = async (id: string) => {
      const root = source.makeServerDir(`restore-${id}`);
      await probackup('restore', '-B', backups, '--instance', 'pg15', '-i', id, '-D', join(root, 'data'));
      const cluster = await PgCluster.startExisting(root);
      restored.push(cluster);
      return cluster;
    };
    const kept = async () => (await source.sql(`SELECT pg_relation_filepath('kept')`)).trim();
    let full: string;
    let ptrack1: string;
    let ptrack2: string;
    let planted: { id: string; tampered: number };

    beforeAll(async () => {
      source = await PgCluster.start({ settings: { wal_keep_size: "'4GB'", autovacuum: 'off' } });
      pgProbackup = source.serverUserProgram(PG_PROBACKUP);
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
      await probackup('init', '-B', backups);
      await probackup('add-instance', '-B', backups, '-D', source.dataDir, '--instance', 'pg15');
      full = await backup('FULL');
      await runWorkloadMix(source);
      await source.client('pgbench', ['-n', '-c', '2', '-t', '300']);
      // VACUUM now: the pruning that reads would otherwise do later is WAL-logged, i.e. a change for the next backup
      await source.sql(
        'UPDATE kept SET v = v + 1 WHERE id % 7 = 0 AND id <= 100000; VACUUM kept; CHECKPOINT',
      );
      ptrack1 = await backup('PTRACK');
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
      ptrack2 = await backup('PTRACK');
      // The planted bug: one more PTRACK backup, whose pagemap for `kept` lost one changed block on the way.
      await source.sql('UPDATE kept SET v = v + 1 WHERE id % 13 = 0 AND id <= 20000; CHECKPOINT');
      const tamper = await pagemapTamperer(pgPort, await kept());
      try {
        planted = { id: await backup('PTRACK', tamper.port), tampered: tamper.tampered() };
      } finally {
        tamper.server.close();
      }
    }, 600_000);

    afterAll(async () => {
      for (const c of restored) await c.destroy();
      await daemon?.stop('SIGKILL');
      await source?.destroy();
    });

    it('the backups are PTRACK mode (no fallback to DELTA or FULL), each on its parent, much smaller than FULL, and valid', async () => {
      const byId = new Map((await show()).map((b) => [b.id, b]));
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
      expect(await probackup('validate', '-B', backups, '--instance', 'pg15')).toMatch(
        /All backups are valid/,
      );
    });

    it('each backup of the chain restores to the source as it was at that backup’s end, and pg_amcheck finds nothing', async () => {
      for (const id of [full, ptrack1, ptrack2]) {
        const cluster = await restore(id);
        expect(await cluster.dumpAll(), `backup ${id}`).toBe(dumps.get(id));
        await cluster.amcheck();
        await cluster.destroy();
      }
    }, 600_000);

    it('catches a planted bug: a PTRACK backup missing one changed block does not restore to the source’s data', async () => {
      expect(planted.tampered).toBeGreaterThan(0);
      const cluster = await restore(planted.id);
      expect(await cluster.dumpAll()).not.toBe(dumps.get(planted.id));
    }, 300_000);
  },
);
