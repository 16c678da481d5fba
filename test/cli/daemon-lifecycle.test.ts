import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatLsn, parseLsn } from '../../src/wal/index.ts';
import { catalogIn } from '../helpers/catalog.ts';
import { runPtrackd } from '../helpers/cli.ts';
import { DaemonProcess } from '../helpers/daemon.ts';
import { REPO_ROOT } from '../helpers/fixtures.ts';
import { freePort, PgCluster } from '../helpers/pg-cluster.ts';

describe('the daemon across restarts: map size, server crashes, walsender loss, drop', () => {
  let cluster: PgCluster;
  let dataDir: string;
  let daemon: DaemonProcess | undefined;
  const conn = () => ['--host', '127.0.0.1', '--port', String(cluster.port), '--username', 'postgres'];
  const history = () => {
    const { state, history } = catalogIn(dataDir);
    return { state: state!, last: history.at(-1)! };
  };

  beforeAll(async () => {
    cluster = await PgCluster.start({ settings: { wal_keep_size: "'1GB'", autovacuum: 'off' } });
    dataDir = mkdtempSync(join(tmpdir(), 'ptrackd-life-'));
  });
  afterAll(async () => {
    await daemon?.stop('SIGKILL');
    await cluster?.destroy();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('sizes a new map from the cluster (ptrack: size / 1024, at least 64 MB)', async () => {
    daemon = await DaemonProcess.start(cluster, dataDir, ['--default-map-size']);
    const { rows } = await daemon.query('SELECT map_size_mb, map_entries FROM ptrack_status()');
    expect(rows).toEqual([[64, 8388605]]);
    expect(await daemon.stop('SIGTERM')).toBe(0);
  });

  it('another --map-size resizes the map keeping its init_lsn; --reinit starts a new one', async () => {
    const before = history().state;
    daemon = await DaemonProcess.start(cluster, dataDir, ['--map-size', '16']);
    expect(history()).toMatchObject({
      state: { mapSizeMb: 16, initLsn: before.initLsn },
      last: {
        kind: 'resize',
        reason: expect.stringMatching(/^map resized from 64 MB to 16 MB: \d+ blocks carried over/),
      },
    });
    expect(await daemon.stop('SIGTERM')).toBe(0);
    daemon = await DaemonProcess.start(cluster, dataDir, ['--map-size', '8', '--reinit']);
    expect(history()).toMatchObject({
      state: { mapSizeMb: 8 },
      last: { kind: 'init', reason: expect.stringMatching(/--reinit/) },
    });
  });

  it('resumes without loss after pg_ctl restart -m immediate and a terminated walsender under pgbench', async () => {
    const since = parseLsn(await cluster.sql('SELECT pg_current_wal_insert_lsn()'));
    const load = cluster
      .client('pgbench', ['-i', '-q', '-s', '2'])
      .then(() => cluster.client('pgbench', ['-n', '-c', '2', '-T', '4']));
    await new Promise((r) => setTimeout(r, 1500));
    await cluster.sql('SELECT pg_terminate_backend(pid) FROM pg_stat_replication');
    await load;
    const more = cluster
      .client('pgbench', ['-n', '-c', '2', '-T', '4'])
      .catch(() => 'interrupted by the restart');
    await new Promise((r) => setTimeout(r, 1500));
    cluster.run('pg_ctl', [
      '-D',
      cluster.dataDir,
      '-m',
      'immediate',
      '-w',
      'restart',
      '-l',
      join(cluster.dir, 'server.log'),
    ]);
    await more;
    await cluster.client('pgbench', ['-n', '-c', '2', '-t', '100']);
    await cluster.sql('CHECKPOINT');
    const end = await cluster.sql('SELECT pg_current_wal_flush_lsn()');
    const { changed, missed } = await daemon!.pagesMissed(cluster, since, end);
    expect(changed).toBeGreaterThan(1000);
    expect(missed).toEqual([]);
    const status = JSON.parse((await daemon!.http('GET', '/status')).text);
    expect(status.reconnects).toBeGreaterThanOrEqual(2);
    expect(status.initLsn).toBe(formatLsn(history().state.initLsn));
  }, 120_000);

  it('says how far behind it is, how fast it goes and when it will be done, while catching up', async () => {
    expect(await daemon!.stop('SIGTERM')).toBe(0);
    await cluster.client('pgbench', ['-i', '-q', '-s', '10']);
    daemon = await DaemonProcess.start(cluster, dataDir, ['--map-size', '8', '--progress-interval', '0.05']);
    const lines = daemon.output.split('\n').filter((l) => l.includes('catching up'));
    expect(lines.length).toBeGreaterThan(0);
    const first = JSON.parse(lines[0]);
    expect(first.msg).toMatch(/^catching up: [\d.]+ MB behind, [\d.]+ MB\/s, ETA (\d+ s|unknown)$/);
    expect(first.behindBytes).toBeGreaterThanOrEqual(1 << 20);
  }, 120_000);

  it('on a terminal: readable log lines, and a progress bar that ends at 100% once caught up', async () => {
    expect(await daemon!.stop('SIGTERM')).toBe(0);
    daemon = undefined;
    await cluster.client('pgbench', ['-i', '-q', '-s', '10']);
    const tmux = (...args: string[]) =>
      execFileSync('tmux', ['-L', 'ptrackd-tty-test', ...args], { encoding: 'utf8' });
    const argv = ['--slot', 'ptrack', '--data-dir', dataDir, ...conn(), '--map-size', '8'];
    argv.push('--listen', `127.0.0.1:${await freePort()}`, '--progress-interval', '0.05');
    tmux('new-session', '-d', '-s', 'd', '-x', '160', '-y', '40', join(REPO_ROOT, 'bin/ptrackd'), ...argv);
    try {
      let screen = '';
      for (const deadline = Date.now() + 60_000; !/caught up/.test(screen) && Date.now() < deadline; ) {
        await new Promise((r) => setTimeout(r, 100));
        screen = tmux('capture-pane', '-p', '-t', 'd');
      }
      expect(screen).toMatch(/^\[#{20}\] 100% caught up: [\d.]+ MB of WAL applied$/m);
      expect(screen).toMatch(/INFO.*: resuming from the checkpoint at [0-9A-F]+\/[0-9A-F]+$/m);
      expect(screen).not.toMatch(/"level"/);
      tmux('send-keys', '-t', 'd', 'C-c'); // SIGINT: a final checkpoint, then exit
      for (const deadline = Date.now() + 30_000; Date.now() < deadline; ) {
        await new Promise((r) => setTimeout(r, 100));
        const alive = (() => {
          try {
            return tmux('list-sessions', '-F', '#S').includes('d');
          } catch {
            return false; // no session left, so no tmux server
          }
        })();
        if (!alive) break;
      }
    } finally {
      try {
        tmux('kill-server');
      } catch {
        // the session ended with ptrackd, and the server with it
      }
    }
  }, 120_000);

  it('ptrackd drop --yes removes the slot and the data directory, and nothing else', async () => {
    if (daemon) expect(await daemon.stop('SIGTERM')).toBe(0);
    daemon = undefined;
    const notOurs = mkdtempSync(join(tmpdir(), 'not-ptrackd-'));
    mkdirSync(join(notOurs, 'keep'));
    const refused = await runPtrackd(['drop', '--slot', 'ptrack', '--data-dir', notOurs, ...conn(), '--yes']);
    expect([refused.code, existsSync(join(notOurs, 'keep'))]).toEqual([1, true]);
    rmSync(notOurs, { recursive: true });
    const dropped = await runPtrackd(['drop', '--slot', 'ptrack', '--data-dir', dataDir, ...conn(), '--yes']);
    expect(dropped.code, dropped.stderr).toBe(0);
    expect(await cluster.sql("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'ptrack'")).toBe(
      '0',
    );
    expect(existsSync(dataDir)).toBe(false);
  });
});
