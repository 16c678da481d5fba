import { readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { segmentFileName } from '../../src/archive/index.ts';
import { formatLsn, parseLsn } from '../../src/wal/index.ts';
import { archived, archivingCluster, catalogHistory, SEGMENT } from '../helpers/archiving.ts';
import { runPtrackd } from '../helpers/cli.ts';
import { DaemonProcess, followArgs } from '../helpers/daemon.ts';
import { FIXTURES_DIR } from '../helpers/fixtures.ts';
import { freePort, type PgCluster } from '../helpers/pg-cluster.ts';
import { scratchDir } from '../helpers/scratch.ts';

/**
 * The WAL archive instead of a gap (issue 15): a server that archives into a directory
 * (archive_command `cp`), ptrackd given the matching restore_command.
 */
describe('reading the archive: backfill instead of a gap, and tracking from the past', () => {
  const cleanup: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const f of cleanup.splice(0).reverse()) await f().catch(() => {});
  });

  /** ptrackd down, a load that makes the server invalidate the slot; the archive keeps it all. */
  async function outage(cluster: PgCluster, daemon: DaemonProcess): Promise<string> {
    const before = await cluster.sql('SELECT pg_current_wal_insert_lsn()');
    await daemon.stop('SIGKILL');
    await cluster.client('pgbench', ['-i', '-q', '-s', '4']);
    await cluster.sql('CHECKPOINT');
    await cluster.sql('SELECT pg_switch_wal(); CREATE TABLE t (i int); INSERT INTO t VALUES (1); CHECKPOINT');
    expect(await cluster.sql("SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'ptrack'")).toBe(
      'lost',
    );
    await cluster.sql('SELECT pg_switch_wal()');
    await archived(cluster);
    return before;
  }

  it('a slot the server invalidated is backfilled from the archive: no gap, init_lsn kept, no page missed', async () => {
    const { cluster, restore } = await archivingCluster(cleanup);
    const dataDir = join(scratchDir('ptrackd-backfill-'), 'data');
    const first = await DaemonProcess.start(cluster, dataDir, restore);
    cleanup.push(() => first.stop('SIGKILL'));
    const init = (await first.query('SELECT ptrack_init_lsn()')).rows[0][0];
    const before = await outage(cluster, first);
    const again = await DaemonProcess.start(cluster, dataDir, restore);
    cleanup.push(() => again.stop('SIGKILL'));
    await again.untilLogged(/read from the archive up to [0-9A-F]+\/[0-9A-F]+: no gap/);
    expect(catalogHistory(dataDir).filter((h) => h.kind === 'gap')).toEqual([]);
    expect((await again.query('SELECT ptrack_init_lsn()')).rows[0][0]).toBe(init);
    await cluster.sql('CHECKPOINT');
    const end = await cluster.sql('SELECT pg_current_wal_flush_lsn()');
    const { changed, missed } = await again.pagesMissed(cluster, parseLsn(before), end);
    expect(changed).toBeGreaterThan(1000);
    expect(missed).toEqual([]);
  }, 180_000);

  it('a slot dropped while ptrackd was down is created again and the WAL between read from the archive', async () => {
    const { cluster, restore } = await archivingCluster(cleanup);
    const dataDir = join(scratchDir('ptrackd-backfill-'), 'data');
    const first = await DaemonProcess.start(cluster, dataDir, restore);
    cleanup.push(() => first.stop('SIGKILL'));
    const init = (await first.query('SELECT ptrack_init_lsn()')).rows[0][0];
    const before = await cluster.sql('SELECT pg_current_wal_insert_lsn()');
    await first.stop('SIGKILL');
    await cluster.sql("SELECT pg_drop_replication_slot('ptrack')");
    await cluster.client('pgbench', ['-i', '-q', '-s', '2']);
    await cluster.sql('CHECKPOINT; SELECT pg_switch_wal()');
    await archived(cluster);
    const again = await DaemonProcess.start(cluster, dataDir, restore);
    cleanup.push(() => again.stop('SIGKILL'));
    await again.untilLogged(
      /slot ptrack was missing and was created again: WAL from .* read from the archive .*: no gap/,
    );
    expect(catalogHistory(dataDir).map((h) => h.kind)).toEqual(['init']);
    expect((await again.query('SELECT ptrack_init_lsn()')).rows[0][0]).toBe(init);
    const end = await cluster.sql('SELECT pg_current_wal_flush_lsn()');
    const { changed, missed } = await again.pagesMissed(cluster, parseLsn(before), end);
    expect(changed).toBeGreaterThan(500);
    expect(missed).toEqual([]);
  }, 180_000);

  it('a segment missing from the archive too is a gap whose reason names that file', async () => {
    const { cluster, archive, restore } = await archivingCluster(cleanup);
    const dataDir = join(scratchDir('ptrackd-backfill-'), 'data');
    const first = await DaemonProcess.start(cluster, dataDir, restore);
    cleanup.push(() => first.stop('SIGKILL'));
    const before = await outage(cluster, first);
    const needed = readdirSync(archive).filter(
      (f) => /^[0-9A-F]{24}$/.test(f) && f > segmentFileName(1, parseLsn(before), SEGMENT),
    );
    const lost = needed.sort()[1];
    rmSync(join(archive, lost));
    const again = await DaemonProcess.start(cluster, dataDir, restore);
    cleanup.push(() => again.stop('SIGKILL'));
    expect(catalogHistory(dataDir).at(-1)).toMatchObject({
      kind: 'gap',
      reason: expect.stringContaining(`${lost} (WAL from`),
    });
    expect(parseLsn(String((await again.query('SELECT ptrack_init_lsn()')).rows[0][0]))).toBeGreaterThan(
      parseLsn(before),
    );
  }, 180_000);

  /**
   * The slot still claims WAL that is no longer in pg_wal (removed by hand here; pg_resetwal below): the
   * server's "already been removed" sends ptrackd to the archive before any gap is recorded.
   */
  it('segments removed from pg_wal behind the slot are read from the archive: no gap, no page missed', async () => {
    const { cluster, restore } = await archivingCluster(cleanup, { max_slot_wal_keep_size: -1 });
    const dataDir = join(scratchDir('ptrackd-backfill-'), 'data');
    const first = await DaemonProcess.start(cluster, dataDir, restore);
    cleanup.push(() => first.stop('SIGKILL'));
    const before = await cluster.sql('SELECT pg_current_wal_insert_lsn()');
    await first.stop('SIGKILL');
    await cluster.client('pgbench', ['-i', '-q', '-s', '2']);
    await cluster.sql('CHECKPOINT; SELECT pg_switch_wal()');
    await archived(cluster);
    await cluster.stop();
    const redo = /REDO WAL file:\s+(\w{24})/.exec(
      cluster.run('pg_controldata', ['-D', cluster.dataDir]),
    )![1]!;
    const removed = readdirSync(cluster.walDir).filter((f) => /^[0-9A-F]{24}$/.test(f) && f < redo);
    expect(removed).toContain(segmentFileName(1, parseLsn(before), SEGMENT));
    for (const f of removed) rmSync(join(cluster.walDir, f));
    await cluster.startAgain();
    const again = await DaemonProcess.start(cluster, dataDir, restore, { ready: false });
    cleanup.push(() => again.stop('SIGKILL'));
    await again.untilLogged(
      /no longer has WAL segment .* read from the archive up to [0-9A-F]+\/[0-9A-F]+: no gap/s,
    );
    expect(catalogHistory(dataDir).map((h) => h.kind)).toEqual(['init']);
    const end = await cluster.sql('SELECT pg_current_wal_flush_lsn()');
    const { changed, missed } = await again.pagesMissed(cluster, parseLsn(before), end);
    expect(changed).toBeGreaterThan(500);
    expect(missed).toEqual([]);
  }, 180_000);

  it('WAL thrown away by pg_resetwal, which no archive can have: a gap naming the segment, the archive asked first', async () => {
    const { cluster, restore } = await archivingCluster(cleanup);
    const dataDir = join(scratchDir('ptrackd-backfill-'), 'data');
    const daemon = await DaemonProcess.start(cluster, dataDir, restore);
    cleanup.push(() => daemon.stop('SIGKILL'));
    const before = await cluster.sql('SELECT pg_current_wal_insert_lsn()');
    await daemon.query('SELECT 1', before);
    const needed = await cluster.sql('SELECT pg_walfile_name(pg_current_wal_insert_lsn())');
    await cluster.stop();
    cluster.run('pg_resetwal', ['-f', '-D', cluster.dataDir]);
    await cluster.startAgain();
    await daemon.until(async () => catalogHistory(dataDir).at(-1)?.kind === 'gap', 'record a gap');
    const reason = catalogHistory(dataDir).at(-1)!.reason;
    expect(reason).toMatch(/no longer has WAL segment \w{24} .*the archive does not have it either/);
    // the segment named is where the map stood (at or after the last one ptrackd saw written)
    expect(/WAL segment (\w{24})/.exec(reason)![1]! >= needed).toBe(true);
    await daemon.until(async () => (await daemon.http('GET', '/readyz')).status === 200, 'become ready');
  }, 180_000);

  it.each([
    [
      'hangs past its timeout',
      /the restore command for 0{7}1\w{16} did not finish within 1 s/,
      (_file: string, flag: string) => writeFileSync(flag, ''),
    ],
    [
      'returns a truncated file',
      /(\w{24}) is 5000 bytes, not a whole 16777216-byte segment \(truncated\?\)/,
      (file: string) => truncateSync(file, 5000),
    ],
    [
      'returns another cluster’s segment',
      /(\w{24}) is from another cluster \(system \d+, not \d+\)/,
      (file: string) => {
        const other = join(FIXTURES_DIR, 'pg15', 'segments', '000000010000000000000006.gz');
        writeFileSync(file, gunzipSync(readFileSync(other)));
      },
    ],
  ])(
    'an archive whose restore command %s: the reason in status, no gap, and all is read once it is right',
    async (_what, reason, damage) => {
      const { cluster, archive } = await archivingCluster(cleanup);
      const dataDir = join(scratchDir('ptrackd-bad-archive-'), 'data');
      const first = await DaemonProcess.start(cluster, dataDir);
      cleanup.push(() => first.stop('SIGKILL'));
      const init = (await first.query('SELECT ptrack_init_lsn()')).rows[0][0];
      const before = await outage(cluster, first);
      const needed = readdirSync(archive)
        .filter((f) => /^[0-9A-F]{24}$/.test(f) && f >= segmentFileName(1, parseLsn(before), SEGMENT))
        .sort()[0];
      const good = readFileSync(join(archive, needed));
      const flag = join(scratchDir('ptrackd-hang-'), 'hang');
      damage(join(archive, needed), flag);
      const restore = ['--restore-command', `test -e ${flag} && sleep 60; cp ${archive}/%f "%p"`];
      const again = await DaemonProcess.start(cluster, dataDir, [...restore, '--restore-timeout', '1'], {
        ready: false,
      });
      cleanup.push(() => again.stop('SIGKILL'));
      const status = async () => JSON.parse((await again.http('GET', '/status')).text);
      await again.until(async () => reason.test((await status()).problem ?? ''), 'report the bad archive');
      const file = (await status()).problem.match(reason)?.[1];
      if (file !== undefined) expect(file).toBe(needed);
      expect(catalogHistory(dataDir).map((h) => h.kind)).toEqual(['init']);
      // put right: the next attempt reads it all, with no gap
      writeFileSync(join(archive, needed), good);
      rmSync(flag, { force: true });
      await again.until(async () => (await again.http('GET', '/readyz')).status === 200, 'become ready');
      expect(catalogHistory(dataDir).map((h) => h.kind)).toEqual(['init']);
      expect((await again.query('SELECT ptrack_init_lsn()')).rows[0][0]).toBe(init);
      const end = await cluster.sql('SELECT pg_current_wal_flush_lsn()');
      expect((await again.pagesMissed(cluster, parseLsn(before), end)).missed).toEqual([]);
    },
    180_000,
  );

  it('--init-from: a ptrackd started later answers for X as one running since before X does', async () => {
    const { cluster, restore } = await archivingCluster(cleanup);
    await cluster.sql('ALTER SYSTEM SET max_slot_wal_keep_size = -1; SELECT pg_reload_conf()');
    const running = await DaemonProcess.start(cluster, join(scratchDir('ptrackd-running-'), 'data'));
    cleanup.push(() => running.stop('SIGKILL'));
    await cluster.client('pgbench', ['-i', '-q', '-s', '1']);
    const x = await cluster.sql('SELECT pg_current_wal_insert_lsn()');
    await cluster.client('pgbench', ['-n', '-c', '2', '-t', '300']);
    await cluster.sql(
      'CREATE TABLE later AS SELECT generate_series(1, 10000) AS i; CHECKPOINT; SELECT pg_switch_wal()',
    );
    await archived(cluster);
    // a new slot starts now: what happened since X is only in the archive
    const late = await DaemonProcess.start(
      cluster,
      join(scratchDir('ptrackd-late-'), 'data'),
      [...restore, '--init-from', x],
      { slot: 'late' },
    );
    cleanup.push(() => late.stop('SIGKILL'));
    expect((await late.query('SELECT ptrack_init_lsn()')).rows[0][0]).toBe(formatLsn(parseLsn(x)));
    await cluster.sql('CHECKPOINT');
    const end = await cluster.sql('SELECT pg_current_wal_flush_lsn()');
    const sql = `SELECT path, pagecount, pagemap FROM ptrack_get_pagemapset('${x}') ORDER BY 1`;
    const [fromArchive, followed] = [await late.query(sql, end), await running.query(sql, end)];
    expect(fromArchive.rows.length).toBeGreaterThan(10);
    expect(fromArchive.rows).toEqual(followed.rows);
    expect((await late.pagesMissed(cluster, parseLsn(x), end)).missed).toEqual([]);
  }, 180_000);

  it('--init-from older than the archive fails at once, naming the file, having started no map', async () => {
    const { cluster, restore } = await archivingCluster(cleanup);
    const dataDir = join(scratchDir('ptrackd-too-old-'), 'data');
    const r = await runPtrackd([
      ...followArgs(cluster, 'ptrack', dataDir),
      '--listen',
      `127.0.0.1:${await freePort()}`,
      ...restore,
      '--init-from',
      '0/100',
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /^ptrackd: error: the archive has no segment holding 0\/100 on timeline 1 \(asked for 000000010000000000000000\)/,
    );
    expect(catalogHistory(dataDir)).toEqual([]);
  }, 120_000);
});
