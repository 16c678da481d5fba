import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseLsn } from '../../src/wal/index.ts';
import { checkpointLsnIn } from '../helpers/catalog.ts';
import { runPtrackd } from '../helpers/cli.ts';
import { DaemonProcess } from '../helpers/daemon.ts';
import { REPO_ROOT } from '../helpers/fixtures.ts';
import { clusterPagesChangedSince, reportedBlocks } from '../helpers/oracle.ts';
import { PgCluster, pgBinDirFor } from '../helpers/pg-cluster.ts';
import { scratchDir } from '../helpers/scratch.ts';
import { waldumpOf } from '../helpers/waldump-oracle.ts';
import { runWorkloadMix } from '../helpers/workload.ts';

const run = promisify(execFile);

/**
 * The oldest and the newest supported server, live (issue 20): the same proofs as on Debian's 15 — the
 * decoder against that version's own pg_waldump, the daemon following it through a restart, kill -9s
 * and SIGTERM, and the page-LSN oracle through `ptrackd sql` — on stock PostgreSQL 13 and 18.
 */
describe.each([13, 18] as const)('live on PostgreSQL %i', (major) => {
  const binaries = pgBinDirFor(major);
  const missing = 'missing' in binaries ? binaries.missing : undefined;
  if (missing) console.warn(`SKIPPED: the live tests on PostgreSQL ${major} need its binaries: ${missing}`);

  describe.skipIf(missing !== undefined)(`PostgreSQL ${major}`, () => {
    let cluster: PgCluster;
    let daemon: DaemonProcess;
    let start: string;
    let end: string;
    let dataDir: string;
    const sqlVia = (d: DaemonProcess, ...args: string[]) =>
      runPtrackd(['sql', '--listen', `127.0.0.1:${d.listen}`, ...args]);

    beforeAll(async () => {
      // Made here, not while the tests are collected: a skipped describe runs its body but no hooks.
      dataDir = join(scratchDir(`ptrackd-pg${major}-`), 'data');
      cluster = await PgCluster.start({ major, settings: { wal_keep_size: "'2GB'", autovacuum: 'off' } });
      daemon = await DaemonProcess.start(cluster, dataDir);
      start = await cluster.sql('SELECT pg_current_wal_insert_lsn()');
      await runWorkloadMix(cluster); // ends with a CHECKPOINT: every page is on disk
      end = await cluster.sql('SELECT pg_current_wal_flush_lsn()');
    }, 300_000);

    afterAll(async () => {
      await daemon?.stop('SIGKILL');
      await cluster?.destroy();
    });

    it(`is PostgreSQL ${major}, with data checksums ${major >= 18 ? 'on (18’s initdb default)' : 'off'}`, async () => {
      expect(Math.floor(Number(await cluster.sql('SHOW server_version_num')) / 10000)).toBe(major);
      expect(await cluster.sql('SHOW data_checksums')).toBe(major >= 18 ? 'on' : 'off');
    });

    it('ptrackd waldump lists exactly the block references this version’s pg_waldump lists', async () => {
      const oracle = await waldumpOf(cluster, start, end);
      const ptrackd = (args: string[]) =>
        run(
          join(REPO_ROOT, 'bin/ptrackd'),
          ['waldump', ...args, '--start', start, '--end', end, cluster.walDir],
          {
            maxBuffer: 1 << 30,
          },
        ).then((r) => r.stdout.split('\n').filter(Boolean));
      const blocks = await ptrackd(['--blocks']);
      expect(oracle.blocks.length).toBeGreaterThan(10_000);
      expect(blocks).toEqual(oracle.blocks);
      // Before 15 every CREATE DATABASE copies files; from 15 on, WAL_LOG (the default) logs them.
      const kinds = (await ptrackd(['--events'])).map((e) => e.split(' ')[1]);
      expect(kinds.filter((k) => k === 'dbcopy').length).toBe(major < 15 ? 2 : 1);
      expect(kinds.filter((k) => k === 'dbcreate').length).toBe(major < 15 ? 0 : 1);
    });

    it('the daemon follows it: every page whose LSN moved is in ptrackd sql’s answer (PGDATA mode)', async () => {
      const r = await sqlVia(
        daemon,
        '--format',
        'csv',
        '-t',
        '--wait-lsn',
        end,
        `SELECT path, pagemap FROM ptrack_get_pagemapset('${start}')`,
      );
      expect(r.code, r.stderr).toBe(0);
      const rows = r.stdout
        .trim()
        .split(/\r?\n/)
        .map((line) => {
          const [path, hex] = line.split(',');
          return { path, pagemap: Buffer.from(hex.slice(2), 'hex') };
        });
      const expected = await clusterPagesChangedSince(cluster, parseLsn(start));
      expect(expected.size).toBeGreaterThan(1000);
      const reported = reportedBlocks(rows);
      expect([...expected].filter((p) => !reported.has(p))).toEqual([]);
      const version = await sqlVia(daemon, '-t', '--format', 'csv', 'SELECT ptrack_version()');
      expect(version.stdout).toBe('2.4\r\n');
    });

    it('through a server restart, three kill -9 under pgbench and a SIGTERM it loses nothing', async () => {
      const since = parseLsn(await cluster.sql('SELECT pg_current_wal_insert_lsn()'));
      await cluster.stop('fast');
      await cluster.startAgain();
      for (const deadline = Date.now() + 60_000; !/reconnected: streaming resumes/.test(daemon.output); ) {
        if (Date.now() > deadline) throw new Error(`ptrackd did not reconnect:\n${daemon.output}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      let loading = true;
      const load = (async () => {
        while (loading) await cluster.client('pgbench', ['-n', '-c', '2', '-T', '1']);
      })();
      for (let kill = 0; kill < 3; kill++) {
        await cluster.client('pgbench', ['-n', '-t', '50']); // some WAL the killed daemon may not have checkpointed
        await daemon.stop('SIGKILL');
        daemon = await DaemonProcess.start(cluster, dataDir);
      }
      loading = false;
      await load;
      await cluster.sql('CHECKPOINT');
      const at = await cluster.sql('SELECT pg_current_wal_flush_lsn()');
      const { changed, missed } = await daemon.pagesMissed(cluster, since, at);
      expect(changed).toBeGreaterThan(100);
      expect(missed).toEqual([]);
      expect(await daemon.stop('SIGTERM')).toBe(0);
      expect(checkpointLsnIn(dataDir)).toBeGreaterThanOrEqual(parseLsn(at));
    }, 300_000);
  });
});
