import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { HistoryEntry } from '../../src/catalog/index.ts';
import { formatLsn, parseLsn } from '../../src/wal/index.ts';
import { catalogIn } from '../helpers/catalog.ts';
import { DaemonProcess } from '../helpers/daemon.ts';
import { PgCluster } from '../helpers/pg-cluster.ts';

/** Promise 3 (design.md §1): whenever continuity breaks, init_lsn moves forward, the reason is stored, and older questions are refused. */
describe('gaps are never hidden', () => {
  const cleanup: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const f of cleanup.splice(0).reverse()) await f().catch(() => {});
  });

  async function setup(settings: Record<string, string | number> = {}) {
    const cluster = await PgCluster.start({ settings: { wal_keep_size: 0, ...settings } });
    const dataDir = mkdtempSync(join(tmpdir(), 'ptrackd-gap-'));
    cleanup.push(
      async () => cluster.destroy(),
      async () => rmSync(dataDir, { recursive: true, force: true }),
    );
    const daemon = await DaemonProcess.start(cluster, dataDir);
    cleanup.push(() => daemon.stop('SIGKILL'));
    const initLsn = async (d: DaemonProcess) =>
      parseLsn(String((await d.query('SELECT ptrack_init_lsn()')).rows[0][0]));
    const history = (): HistoryEntry[] => catalogIn(dataDir).history;
    return { cluster, dataDir, daemon, initLsn, history };
  }

  /** After the gap: init_lsn moved past `before`, the history says why, and asking about `before` is refused. */
  async function expectGap(
    d: DaemonProcess,
    initLsn: (d: DaemonProcess) => Promise<number>,
    history: () => HistoryEntry[],
    before: string,
    why: RegExp,
  ) {
    expect(await initLsn(d)).toBeGreaterThan(parseLsn(before));
    expect(history().at(-1)).toMatchObject({ kind: 'gap', reason: expect.stringMatching(why) });
    const res = await d.http('POST', '/query', { sql: `SELECT * FROM ptrack_get_change_stat('${before}')` });
    expect(res.status).toBe(400);
    expect(res.text).toMatch(/older than init_lsn/);
  }

  it('a slot dropped by hand while ptrackd was down', async () => {
    const { cluster, dataDir, daemon, initLsn, history } = await setup();
    const before = await cluster.sql('SELECT pg_current_wal_insert_lsn()');
    await cluster.sql('CREATE TABLE t (i int); INSERT INTO t VALUES (1)');
    expect(await daemon.stop('SIGTERM')).toBe(0);
    await cluster.sql("SELECT pg_drop_replication_slot('ptrack')");
    await cluster.sql('INSERT INTO t SELECT generate_series(1, 10000); CHECKPOINT');
    const again = await DaemonProcess.start(cluster, dataDir);
    cleanup.push(() => again.stop('SIGKILL'));
    await expectGap(again, initLsn, history, before, /slot ptrack was missing/);
  }, 60_000);

  it('a slot the server invalidated (max_slot_wal_keep_size)', async () => {
    const { cluster, dataDir, daemon, initLsn, history } = await setup({ max_slot_wal_keep_size: "'16MB'" });
    const before = await cluster.sql('SELECT pg_current_wal_insert_lsn()');
    await daemon.stop('SIGKILL');
    await cluster.client('pgbench', ['-i', '-q', '-s', '4']);
    await cluster.sql('CHECKPOINT');
    await cluster.sql('SELECT pg_switch_wal(); CREATE TABLE t (i int); CHECKPOINT');
    expect(await cluster.sql("SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'ptrack'")).toBe(
      'lost',
    );
    const again = await DaemonProcess.start(cluster, dataDir);
    cleanup.push(() => again.stop('SIGKILL'));
    await expectGap(again, initLsn, history, before, /invalidated/);
    expect(
      await cluster.sql("SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'ptrack'"),
    ).not.toBe('lost');
  }, 90_000);

  /**
   * pg_resetwal -f throws the server's WAL away while the slot survives, claiming WAL the server no
   * longer has (its wal_status does not say lost): the server's "requested WAL segment … has already been
   * removed" is a gap naming the segment, not a reconnect forever.
   */
  it.each(['stopped', 'running'] as const)(
    'WAL thrown away by pg_resetwal with ptrackd %s: a gap naming the segment, ready again, and right after it',
    async (during) => {
      const { cluster, dataDir, daemon, initLsn, history } = await setup();
      await cluster.sql('CREATE TABLE t (i int); INSERT INTO t SELECT generate_series(1, 10000)');
      const before = await cluster.sql('SELECT pg_current_wal_insert_lsn()');
      await daemon.query('SELECT 1', before);
      const needed = await cluster.sql('SELECT pg_walfile_name(pg_current_wal_insert_lsn())');
      if (during === 'stopped') expect(await daemon.stop('SIGTERM')).toBe(0);
      await cluster.stop(); // a clean stop keeps t's pages: pg_resetwal throws away only WAL
      cluster.run('pg_resetwal', ['-f', '-D', cluster.dataDir]);
      await cluster.startAgain();
      expect(
        await cluster.sql("SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'ptrack'"),
      ).not.toBe('lost');
      const d =
        during === 'stopped' ? await DaemonProcess.start(cluster, dataDir, [], { ready: false }) : daemon;
      if (d !== daemon) cleanup.push(() => d.stop('SIGKILL'));
      await d.until(
        async () => (await d.http('GET', '/readyz')).status === 200,
        'become ready after the WAL was thrown away',
        60_000, // reconnects back off while the server is down (up to 30 s on a slow machine)
      );
      await expectGap(d, initLsn, history, before, new RegExp(`WAL segment ${needed}.*already been removed`));
      // one warning (the gap), not one per reconnect
      expect(d.output.match(new RegExp(`gap: .*${needed}`, 'g'))).toHaveLength(1);
      expect(d.output).not.toMatch(/replication interrupted: .*already been removed/);
      const status = JSON.parse((await d.http('GET', '/status')).text);
      expect(status.lastGap.reason).toContain(needed);
      // Past the gap the map is whole again: the page-LSN oracle for an X after it.
      const x = await cluster.sql('SELECT pg_current_wal_insert_lsn()');
      await cluster.sql(
        'UPDATE t SET i = i + 1 WHERE i % 100 = 0; CREATE TABLE u AS SELECT 1 AS i; CHECKPOINT',
      );
      const { changed, missed } = await d.pagesMissed(
        cluster,
        parseLsn(x),
        await cluster.sql('SELECT pg_current_wal_insert_lsn()'),
      );
      expect(changed).toBeGreaterThan(0);
      expect(missed).toEqual([]);
    },
    90_000,
  );

  it('another cluster at the same address: a new map, and ptrackd keeps running', async () => {
    const { cluster, daemon, initLsn, history } = await setup();
    const port = cluster.port;
    await cluster.stop();
    const other = await PgCluster.start({ port, settings: { wal_keep_size: 0 } });
    cleanup.push(async () => other.destroy());
    await other.sql(
      'SELECT pg_switch_wal(); CREATE TABLE u (i int); INSERT INTO u SELECT generate_series(1, 50000); CHECKPOINT',
    );
    for (const deadline = Date.now() + 60_000; history().at(-1)?.kind !== 'gap'; ) {
      if (Date.now() > deadline) throw new Error(`no gap recorded; ptrackd said:\n${daemon.output}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    // Another cluster's LSNs are another space: its init_lsn is where its new slot started, whatever the
    // old X was; the slot has moved on since only to checkpoints of the new map, never before init_lsn.
    const init = await initLsn(daemon);
    expect(history().at(-1)).toMatchObject({
      kind: 'gap',
      initLsn: init,
      reason: expect.stringMatching(/another cluster/),
    });
    expect(init).toBeLessThanOrEqual(
      parseLsn(await other.sql("SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = 'ptrack'")),
    );
    const older = await daemon.http('POST', '/query', {
      sql: `SELECT * FROM ptrack_get_change_stat('${formatLsn(init - 8)}')`,
    });
    expect([older.status, /older than init_lsn/.test(older.text)]).toEqual([400, true]);
    const id = await other.sql('SELECT system_identifier FROM pg_control_system()');
    expect(JSON.parse((await daemon.http('GET', '/status')).text).server.systemId).toBe(id);
  }, 90_000);
});
