import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Catalog } from '../../src/catalog/index.ts';
import { parseLsn } from '../../src/wal/index.ts';
import { DaemonProcess } from '../helpers/daemon.ts';
import { PgCluster } from '../helpers/pg-cluster.ts';

/** A standby with its own slot and its own ptrackd; after promotion tracking goes on, on timeline 2, with no gap. */
describe('ptrackd on a standby, through its promotion', () => {
  const scratch = mkdtempSync(join(tmpdir(), 'ptrackd-standby-'));
  chmodSync(scratch, 0o755);
  const cleanup: (() => Promise<unknown>)[] = [];
  afterAll(async () => {
    for (const f of cleanup.reverse()) await f().catch(() => {});
    rmSync(scratch, { recursive: true, force: true });
  });

  it('follows the standby, then timeline 2 after promotion, and misses no page', async () => {
    const primary = await PgCluster.start({
      settings: { wal_keep_size: "'1GB'", autovacuum: 'off', hot_standby: 'on' },
    });
    cleanup.push(() => primary.destroy());
    await primary.client('pgbench', ['-i', '-q', '-s', '1']);
    const standbyRoot = join(scratch, 'standby');
    mkdirSync(standbyRoot);
    if (process.getuid?.() === 0) execFileSync('chown', ['postgres:postgres', standbyRoot]);
    primary.run('pg_basebackup', [
      '-D',
      join(standbyRoot, 'data'),
      '-h',
      '127.0.0.1',
      '-p',
      String(primary.port),
      '-U',
      'postgres',
      '-R',
      '-X',
      'stream',
      '-c',
      'fast',
    ]);
    const standby = await PgCluster.startExisting(standbyRoot);
    cleanup.push(() => standby.destroy());
    const daemon = await DaemonProcess.start(standby, join(scratch, 'ptrackd'));
    cleanup.push(() => daemon.stop('SIGKILL'));

    const since = parseLsn(await primary.sql('SELECT pg_current_wal_insert_lsn()'));
    await primary.client('pgbench', ['-n', '-c', '2', '-t', '200']);
    await primary.sql('CREATE TABLE before_promotion AS SELECT generate_series(1, 5000) AS i; CHECKPOINT');
    const primaryEnd = await primary.sql('SELECT pg_current_wal_flush_lsn()');
    // the standby has replayed everything, and so has ptrackd
    for (let i = 0; i < 100 && (await standby.sql('SELECT pg_last_wal_replay_lsn()')) !== primaryEnd; i++)
      await new Promise((r) => setTimeout(r, 100));
    await daemon.query('SELECT 1', primaryEnd);

    standby.run('pg_ctl', ['-D', standby.dataDir, '-w', 'promote']);
    await primary.stop();
    await standby.client('pgbench', ['-n', '-c', '2', '-t', '200']);
    await standby.sql('CREATE TABLE after_promotion AS SELECT generate_series(1, 5000) AS i; CHECKPOINT');
    const end = await standby.sql('SELECT pg_current_wal_flush_lsn()');
    const { changed, missed } = await daemon.pagesMissed(standby, since, end);
    expect(changed).toBeGreaterThan(500);
    expect(missed).toEqual([]);

    const status = JSON.parse((await daemon.http('GET', '/status')).text);
    expect(status.server.timeline).toBe(2);
    expect(status.lastGap).toBeNull();
    expect(await daemon.stop('SIGTERM')).toBe(0);
    const catalog = Catalog.open(join(scratch, 'ptrackd', 'catalog.db'), { readonly: true });
    expect(catalog.history().map((h) => h.kind)).toEqual(['init']);
    expect(catalog.identity()?.timeline).toBe(2);
    catalog.close();
  }, 120_000);
});
