import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseLsn } from '../../src/wal/index.ts';
import { catalogIn } from '../helpers/catalog.ts';
import { runPtrackd } from '../helpers/cli.ts';
import { DaemonProcess, followArgs } from '../helpers/daemon.ts';
import { freePort, PgCluster } from '../helpers/pg-cluster.ts';
import { scratchDir } from '../helpers/scratch.ts';

/**
 * Issue 17 live: a map too small for its cluster says so and names a size; a restart with that size
 * resizes it keeping its history, also when killed at each step of the resize; the page-LSN oracle
 * holds throughout for an X taken before it all.
 */
describe('resizing the map of a running cluster', () => {
  const cleanup: (() => Promise<unknown>)[] = [];
  afterAll(async () => {
    for (const f of cleanup.reverse()) await f().catch(() => {});
  });

  it('the hint names a size; a resize to it, killed at any step, keeps every change since X', async () => {
    const cluster = await PgCluster.start({ settings: { wal_keep_size: "'1GB'", autovacuum: 'off' } });
    cleanup.push(() => cluster.destroy());
    const dataDir = join(scratchDir('ptrackd-resize-'), 'data');
    const mapState = () => {
      const { state, history } = catalogIn(dataDir);
      return { state: state!, history };
    };
    const start = async (mapSizeMb: number) => {
      const d = await DaemonProcess.start(cluster, dataDir, ['--map-size', String(mapSizeMb)]);
      cleanup.push(() => d.stop('SIGKILL'));
      return d;
    };
    const assertNoPageMissed = async (daemon: DaemonProcess, x: string) => {
      await cluster.sql('CHECKPOINT');
      const end = await cluster.sql('SELECT pg_current_wal_flush_lsn()');
      const { changed, missed } = await daemon.pagesMissed(cluster, parseLsn(x), end);
      expect(changed).toBeGreaterThan(5000);
      expect(missed).toEqual([]);
    };

    let daemon = await start(1);
    const init = mapState().state.initLsn;
    const x = await cluster.sql('SELECT pg_current_wal_insert_lsn()');
    await cluster.client('pgbench', ['-i', '-q', '-s', '10']);
    await cluster.client('pgbench', ['-n', '-c', '2', '-t', '300']);
    await daemon.query('SELECT 1', await cluster.sql('SELECT pg_current_wal_flush_lsn()'));
    expect(await daemon.stop('SIGTERM')).toBe(0);

    // Started again at 1 MB: the fill after the final checkpoint is past the hint's threshold
    daemon = await start(1);
    const status = JSON.parse((await daemon.http('GET', '/status')).text);
    expect(status.estFalsePositiveRate).toBeGreaterThan(0.01);
    expect(status.mapHint).toMatch(
      /^the map's estimated false-positive rate is [\d.]+%, over 1%: restart with --map-size \d+/,
    );
    expect(daemon.output).toContain(status.mapHint);
    const size = Number(/--map-size (\d+)/.exec(status.mapHint)![1]);
    expect(size).toBeGreaterThan(1);
    const [row] = (await daemon.query('SELECT map_size_for_1pct_false_positives_mb FROM ptrack_status()'))
      .rows;
    expect(row).toEqual([size]);
    expect(await daemon.stop('SIGTERM')).toBe(0);

    // killed at each step of the resize: the old map, whole, until the catalog records the new one
    const listen = await freePort();
    for (const [point, sizeAfter] of [
      ['resize-built', 1],
      ['resize-written', 1],
      ['resize-recorded', size],
    ] as const) {
      const r = await runPtrackd(
        [
          ...followArgs(cluster, 'ptrack', dataDir),
          '--listen',
          `127.0.0.1:${listen}`,
          '--map-size',
          String(size),
        ],
        { env: { CRASH_PTRACKD_AT: point } },
      );
      expect(r.code, `${point}: ${r.stderr}`).toBeNull(); // killed
      expect(mapState().state.mapSizeMb, point).toBe(sizeAfter);
    }
    expect(existsSync(join(dataDir, 'ptrack.map.resized'))).toBe(true); // recorded, not yet renamed

    await cluster.client('pgbench', ['-n', '-c', '2', '-t', '300']);
    daemon = await start(size);
    expect(existsSync(join(dataDir, 'ptrack.map.resized'))).toBe(false);
    const { state, history } = mapState();
    expect(state).toMatchObject({ mapSizeMb: size, initLsn: init });
    expect(history.map((h) => h.kind)).toEqual(['init', 'resize']);
    expect(history[1].reason).toMatch(
      new RegExp(`^map resized from 1 MB to ${size} MB: \\d+ blocks carried over`),
    );
    await cluster.sql('CREATE TABLE after_resize AS SELECT generate_series(1, 20000) AS i');
    await assertNoPageMissed(daemon, x);
    const after = JSON.parse((await daemon.http('GET', '/status')).text);
    expect(after.estFalsePositiveRate).toBeLessThan(0.01);
    expect(after.mapHint).toBeNull();
  }, 300_000);
});
