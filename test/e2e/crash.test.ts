import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatLsn, parseLsn } from '../../src/wal/index.ts';
import { catalogIn, checkpointLsnIn } from '../helpers/catalog.ts';
import { runPtrackd } from '../helpers/cli.ts';
import { DaemonProcess, followArgs } from '../helpers/daemon.ts';
import { seededRandom } from '../helpers/fixtures.ts';
import { freePort, PgCluster } from '../helpers/pg-cluster.ts';

/** kill -9s in one run: 10 in CI, more with `npm run test:soak` (SOAK_KILLS). */
const KILLS = Number(process.env.SOAK_KILLS ?? 10);

/**
 * Promise 2 (design.md §1), a crash loses nothing: under pgbench, ptrackd is killed with SIGKILL at random
 * moments and restarted each time, while a twin on its own slot follows the same server undisturbed.
 * After every kill the slot is no further than the durable checkpoint; afterwards both answer the
 * same, every page whose LSN moved is in the answer, and no restart had a map block to repair (a kill
 * never leaves a file the catalog cannot vouch for, which would cost false positives).
 */
describe(`a crash loses nothing: kill -9 ${KILLS} times under pgbench`, () => {
  let cluster: PgCluster;
  let twin: DaemonProcess;
  const scratch = mkdtempSync(join(tmpdir(), 'ptrackd-crash-'));
  const killedDir = join(scratch, 'killed');

  beforeAll(async () => {
    cluster = await PgCluster.start({ settings: { wal_keep_size: "'2GB'" } });
    await cluster.client('pgbench', ['-i', '-q', '-s', '2']);
    twin = await DaemonProcess.start(cluster, join(scratch, 'twin'), [], { slot: 'twin' });
  }, 60_000);

  afterAll(async () => {
    await twin?.stop('SIGKILL');
    await cluster?.destroy();
    rmSync(scratch, { recursive: true, force: true });
  });

  it(
    'answers exactly as a daemon that was never killed, and misses no changed page',
    async () => {
      let daemon = await DaemonProcess.start(cluster, killedDir);
      const since = parseLsn(await cluster.sql('SELECT pg_current_wal_insert_lsn()'));
      const checkpointLsn = () => checkpointLsnIn(killedDir);
      const random = seededRandom(Date.now() % 1e9);
      let killing = true;
      const load = (async () => {
        while (killing) await cluster.client('pgbench', ['-n', '-c', '2', '-T', '2']);
      })();
      for (let kill = 0; kill < KILLS; kill++) {
        await new Promise((r) => setTimeout(r, 100 + random() * 900));
        await daemon.stop('SIGKILL');
        const slot = parseLsn(
          await cluster.sql("SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = 'ptrack'"),
        );
        expect(slot).toBeLessThanOrEqual(checkpointLsn());
        daemon = await DaemonProcess.start(cluster, killedDir);
      }
      killing = false;
      await load;
      await cluster.sql('CHECKPOINT');
      const end = await cluster.sql('SELECT pg_current_wal_flush_lsn()');
      try {
        const sql = `SELECT path, pagecount, pagemap FROM ptrack_get_pagemapset('${formatLsn(since)}') ORDER BY path`;
        const [killed, undisturbed] = [await daemon.query(sql, end), await twin.query(sql, end)];
        expect(killed.rows.length).toBeGreaterThan(10);
        expect(killed.rows).toEqual(undisturbed.rows);
        const { changed, missed } = await daemon.pagesMissed(cluster, since, end);
        expect(changed).toBeGreaterThan(100);
        expect(missed).toEqual([]);
        expect(catalogIn(killedDir).history.map((h) => h.kind)).toEqual(['init']);
      } finally {
        await daemon.stop('SIGKILL');
      }
    },
    // each restart waits for catch-up; on a loaded 2-core machine that can take many seconds
    180_000 + KILLS * 15_000,
  );

  it('a kill at each step of a checkpoint leaves a map file that loads whole, answering as the twin', async () => {
    const dataDir = join(scratch, 'stepped');
    await (await DaemonProcess.start(cluster, dataDir, [], { slot: 'stepped' })).stop('SIGKILL');
    const since = parseLsn(await cluster.sql('SELECT pg_current_wal_insert_lsn()'));
    const args = [
      ...followArgs(cluster, 'stepped', dataDir),
      ...['--pgdata', cluster.dataDir, '--listen', `127.0.0.1:${await freePort()}`],
      ...['--checkpoint-interval', '1', '--map-size', '8'],
    ];
    // A log record's step first (the map file exists: the checkpoint appends its changed lines), then
    // those of a checkpoint that writes the whole map (--checkpoint-log 0 makes every one do so).
    const steps = [
      ['log-appended', []],
      ['checkpoint-written', ['--checkpoint-log', '0']],
      ['checkpoint-pending', ['--checkpoint-log', '0']],
      ['checkpoint-installed', ['--checkpoint-log', '0']],
    ] as const;
    for (const [point, extra] of steps) {
      // the first checkpoint with new marks kills the daemon at `point`
      const run = runPtrackd([...args, ...extra], { env: { CRASH_PTRACKD_AT: point } });
      let exited = false;
      void run.then(() => (exited = true));
      while (!exited) await cluster.client('pgbench', ['-n', '-c', '2', '-t', '50']);
      const r = await run;
      expect(r.code, `${point}: ${r.stderr}`).toBeNull(); // killed
      const { state } = catalogIn(dataDir);
      expect(state!.pendingBlockCrcs === null, point).toBe(
        point === 'checkpoint-written' || point === 'log-appended',
      );
      expect(existsSync(join(dataDir, 'ptrack.map.tmp')), point).toBe(
        point !== 'checkpoint-installed' && point !== 'log-appended',
      );
      // a record appended and fsynced that the catalog does not count yet
      if (point === 'log-appended')
        expect(statSync(join(dataDir, 'ptrack.map.log')).size).toBeGreaterThan(state!.logBytes);
    }
    const daemon = await DaemonProcess.start(cluster, dataDir, [], { slot: 'stepped' });
    try {
      await cluster.sql('CHECKPOINT');
      const end = await cluster.sql('SELECT pg_current_wal_flush_lsn()');
      const sql = `SELECT path, pagecount, pagemap FROM ptrack_get_pagemapset('${formatLsn(since)}') ORDER BY path`;
      const [stepped, undisturbed] = [await daemon.query(sql, end), await twin.query(sql, end)];
      expect(stepped.rows.length).toBeGreaterThan(10);
      expect(stepped.rows).toEqual(undisturbed.rows);
      const { state, history } = catalogIn(dataDir);
      expect(history.map((h) => h.kind)).toEqual(['init']);
      expect(state!.pendingBlockCrcs).toBeNull();
    } finally {
      await daemon.stop('SIGKILL');
    }
  }, 180_000);
});
