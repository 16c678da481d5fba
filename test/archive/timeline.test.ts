import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseTimelineHistory } from '../../src/archive/index.ts';
import { Catalog } from '../../src/catalog/index.ts';
import { parseLsn } from '../../src/wal/index.ts';
import { archived, archivingCluster, catalogHistory } from '../helpers/archiving.ts';
import { DaemonProcess } from '../helpers/daemon.ts';
import { clusterPagesChangedSince } from '../helpers/oracle.ts';
import { PgCluster } from '../helpers/pg-cluster.ts';
import { scratchDir } from '../helpers/scratch.ts';

/**
 * A failover while ptrackd is down: the primary archives, a standby of it is promoted (timeline 2) and
 * archives into the same place, and ptrackd is started again against the new primary, where its slot
 * does not exist. Everything since its position is read from the archive, across the timeline switch.
 */
describe('a failover while ptrackd was down: the archive across the timeline switch', () => {
  const cleanup: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const f of cleanup.splice(0).reverse()) await f().catch(() => {});
  });

  /** An archiving primary with pgbench tables, ptrackd following it, and a streaming standby of it. */
  async function primaryAndStandby() {
    const { cluster: primary, restore } = await archivingCluster(cleanup, { hot_standby: 'on' });
    await primary.client('pgbench', ['-i', '-q', '-s', '1']);
    const dataDir = join(scratchDir('ptrackd-failover-'), 'data');
    const first = await DaemonProcess.start(primary, dataDir, restore);
    cleanup.push(() => first.stop('SIGKILL'));
    const root = primary.makeServerDir('standby');
    primary.run('pg_basebackup', [
      ...['-D', join(root, 'data'), '-h', '127.0.0.1', '-p', String(primary.port), '-U', 'postgres'],
      ...['-R', '-X', 'stream', '-c', 'fast'],
    ]);
    const standby = await PgCluster.startExisting(root);
    cleanup.push(() => standby.destroy());
    return { primary, standby, first, dataDir, restore };
  }

  async function replayed(standby: PgCluster, primary: PgCluster): Promise<void> {
    const target = parseLsn(await primary.sql('SELECT pg_current_wal_flush_lsn()'));
    for (const deadline = Date.now() + 60_000; ; await new Promise((r) => setTimeout(r, 100))) {
      if (parseLsn(await standby.sql('SELECT pg_last_wal_replay_lsn()')) >= target) return;
      if (Date.now() > deadline) throw new Error('the standby did not replay the primary’s WAL');
    }
  }

  /** Work on the promoted standby, archived up to its current segment; returns where it ends. */
  async function workOnTimeline2(standby: PgCluster): Promise<string> {
    await standby.client('pgbench', ['-n', '-c', '2', '-t', '300']);
    await standby.sql('CREATE TABLE after_promotion AS SELECT generate_series(1, 20000) AS i; CHECKPOINT');
    await standby.sql('SELECT pg_switch_wal()');
    await archived(standby, 2);
    await standby.sql('CHECKPOINT');
    return standby.sql('SELECT pg_current_wal_flush_lsn()');
  }

  async function switchPoint(standby: PgCluster): Promise<number> {
    const text = await standby.sql("SELECT pg_read_file('pg_wal/00000002.history')");
    return parseTimelineHistory(text, 2, '00000002.history')[0].end;
  }

  async function assertNoPageMissed(daemon: DaemonProcess, standby: PgCluster, x: string, end: string) {
    const { changed, missed } = await daemon.pagesMissed(standby, parseLsn(x), end);
    expect(changed).toBeGreaterThan(500);
    expect(missed).toEqual([]);
  }

  it('WAL of timeline 1, then the switch segment and timeline 2, from the archive: no gap, no page missed', async () => {
    const { primary, standby, first, dataDir, restore } = await primaryAndStandby();
    const init = (await first.query('SELECT ptrack_init_lsn()')).rows[0][0];
    const x = await primary.sql('SELECT pg_current_wal_insert_lsn()');
    await first.stop('SIGKILL');
    await primary.client('pgbench', ['-n', '-c', '2', '-t', '300']);
    await primary.sql('CREATE TABLE before_promotion AS SELECT generate_series(1, 20000) AS i');
    await primary.sql('CHECKPOINT; SELECT pg_switch_wal()');
    await archived(primary, 1);
    await replayed(standby, primary);
    standby.run('pg_ctl', ['-D', standby.dataDir, '-w', 'promote']);
    await primary.stop();
    const end = await workOnTimeline2(standby);

    const again = await DaemonProcess.start(standby, dataDir, restore);
    cleanup.push(() => again.stop('SIGKILL'));
    await again.untilLogged(
      /was missing and was created again: WAL from .* read from the archive .*: no gap/,
    );
    expect(catalogHistory(dataDir).filter((h) => h.kind === 'gap')).toEqual([]);
    expect((await again.query('SELECT ptrack_init_lsn()')).rows[0][0]).toBe(init);
    await assertNoPageMissed(again, standby, x, end);
    expect(await again.stop('SIGTERM')).toBe(0);
    const catalog = Catalog.open(join(dataDir, 'catalog.db'), { readonly: true });
    expect(catalog.identity()?.timeline).toBe(2);
    catalog.close();
  }, 240_000);

  it('WAL the old primary wrote after the switch and ptrackd applied is read again from timeline 2', async () => {
    const { primary, standby, first, dataDir, restore } = await primaryAndStandby();
    const x = await primary.sql('SELECT pg_current_wal_insert_lsn()');
    await primary.client('pgbench', ['-n', '-c', '2', '-t', '200']);
    await replayed(standby, primary);
    standby.run('pg_ctl', ['-D', standby.dataDir, '-w', 'promote']);
    // the old primary goes on for a while (split brain), and ptrackd applies what it writes
    await primary.sql('CREATE TABLE diverged AS SELECT generate_series(1, 30000) AS i');
    const applied = await primary.sql('SELECT pg_current_wal_flush_lsn()');
    await first.query('SELECT 1', applied);
    await first.stop('SIGTERM'); // its last checkpoint is past the switch
    await primary.stop();
    // the new primary's first pages after the switch: below ptrackd's position, on another branch
    await standby.sql('CREATE TABLE early_on_timeline2 AS SELECT generate_series(1, 60000) AS i');
    const end = await workOnTimeline2(standby);
    const switchLsn = await switchPoint(standby);
    expect(parseLsn(applied)).toBeGreaterThan(switchLsn);
    const onlyBetween = new Set(await clusterPagesChangedSince(standby, switchLsn));
    for (const p of await clusterPagesChangedSince(standby, parseLsn(applied))) onlyBetween.delete(p);
    expect(onlyBetween.size).toBeGreaterThan(0); // resuming at ptrackd's position would miss these

    const again = await DaemonProcess.start(standby, dataDir, restore);
    cleanup.push(() => again.stop('SIGKILL'));
    await assertNoPageMissed(again, standby, x, end);
    await again.untilLogged(
      /timeline 1 ended at [0-9A-F/]+ on this server, before the map's position [0-9A-F/]+: WAL from [0-9A-F/]+ is read again from timeline 2/,
    );
    expect(catalogHistory(dataDir).filter((h) => h.kind === 'gap')).toEqual([]);
  }, 240_000);
});
