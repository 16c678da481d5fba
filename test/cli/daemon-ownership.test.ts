import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseLsn } from '../../src/wal/index.ts';
import { catalogIn } from '../helpers/catalog.ts';
import { runPtrackd } from '../helpers/cli.ts';
import { DaemonProcess, followArgs } from '../helpers/daemon.ts';
import { REPO_ROOT } from '../helpers/fixtures.ts';
import { freePort, PgCluster } from '../helpers/pg-cluster.ts';

/** Operator mistakes around one data directory: a second daemon, another slot, drop — never the history. */
describe('one data directory, one daemon, one slot', () => {
  let cluster: PgCluster;
  let dataDir: string;
  let daemon: DaemonProcess | undefined;
  let since: number;
  let initLsn: string;
  const scratch = mkdtempSync(join(tmpdir(), 'ptrackd-owner-'));
  const conn = () => ['--host', '127.0.0.1', '--port', String(cluster.port), '--username', 'postgres'];
  const catalogState = () => {
    const { state, history } = catalogIn(dataDir);
    return { initLsn: state!.initLsn, history: history.length };
  };
  const slots = async () =>
    (await cluster.sql("SELECT string_agg(slot_name, ',' ORDER BY slot_name) FROM pg_replication_slots"))
      .split(',')
      .filter(Boolean);
  const serverLsn = () => cluster.sql('SELECT pg_current_wal_flush_lsn()');

  beforeAll(async () => {
    cluster = await PgCluster.start({ settings: { wal_keep_size: "'1GB'" } });
    dataDir = join(scratch, 'data');
    daemon = await DaemonProcess.start(cluster, dataDir);
    await cluster.client('pgbench', ['-i', '-q', '-s', '2']);
    initLsn = (await daemon.query('SELECT ptrack_init_lsn()')).rows[0][0] as string;
    since = parseLsn(await serverLsn());
  }, 60_000);
  afterAll(async () => {
    await daemon?.stop('SIGKILL');
    await cluster?.destroy();
    rmSync(scratch, { recursive: true, force: true });
  });

  it('a second daemon on a running data directory is refused under load, writes nothing, and the first keeps its history', async () => {
    const before = catalogState();
    const mapWritten = statSync(join(dataDir, 'ptrack.map')).mtimeMs;
    const [second] = await Promise.all([
      runPtrackd([...followArgs(cluster, 'ptrack', dataDir), '--listen', `127.0.0.1:${await freePort()}`]),
      cluster.client('pgbench', ['-c', '2', '-t', '300']),
    ]);
    expect([second.code, second.stderr]).toEqual([
      1,
      `ptrackd: error: data directory ${dataDir} is in use by ptrackd (pid ${daemon!.pid})\n`,
    ]);
    // The refused process wrote no checkpoint and no history; the running one goes on as before.
    expect(catalogState()).toEqual(before);
    expect(readFileSync(join(dataDir, 'ptrackd.pid'), 'utf8')).toBe(`${daemon!.pid}\n`);
    await cluster.sql('CHECKPOINT');
    const end = await serverLsn();
    const { changed, missed } = await daemon!.pagesMissed(cluster, since, end);
    expect(changed).toBeGreaterThan(10);
    expect(missed).toEqual([]);
    expect((await daemon!.query('SELECT ptrack_init_lsn()')).rows[0][0]).toBe(initLsn);
    expect(statSync(join(dataDir, 'ptrack.map')).mtimeMs).toBeGreaterThanOrEqual(mapWritten);
  });

  it('a second follower of the slot (another data directory) is refused, and is no gap for the first', async () => {
    const before = catalogState();
    const other = join(scratch, 'other');
    const r = await runPtrackd([
      ...followArgs(cluster, 'ptrack', other),
      '--listen',
      `127.0.0.1:${await freePort()}`,
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /^ptrackd: error: slot ptrack is in use by another process \(walsender pid \d+ on the server\)/,
    );
    await cluster.client('pgbench', ['-c', '1', '-t', '100']);
    await daemon!.query('SELECT 1', await serverLsn());
    expect(catalogState()).toEqual(before);
  });

  it('drop while the daemon runs: "stop ptrackd first", nothing dropped', async () => {
    const r = await runPtrackd(['drop', '--slot', 'ptrack', '--data-dir', dataDir, ...conn(), '--yes']);
    expect([r.code, r.stderr]).toEqual([1, `ptrackd: error: stop ptrackd first (pid ${daemon!.pid})\n`]);
    expect(await slots()).toEqual(['ptrack']);
    expect(existsSync(join(dataDir, 'catalog.db'))).toBe(true);
  });

  it('another --slot on this data directory is refused with what to do, and makes no slot', async () => {
    expect(await daemon!.stop('SIGTERM')).toBe(0);
    daemon = undefined;
    const r = await runPtrackd([
      ...followArgs(cluster, 'other', dataDir),
      '--listen',
      `127.0.0.1:${await freePort()}`,
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /data directory .* follows slot ptrack, not other.*ptrackd drop --slot ptrack.*--reinit/,
    );
    expect(await slots()).toEqual(['ptrack']);
    expect(catalogState().initLsn).toBe(parseLsn(initLsn));
  });

  it('kill -9 leaves no stale lock: the next start takes the directory, with its map fill shown at once', async () => {
    daemon = await DaemonProcess.start(cluster, dataDir);
    const killed = daemon.pid;
    expect(await daemon.stop('SIGKILL')).toBe(null);
    daemon = await DaemonProcess.start(cluster, dataDir);
    expect(daemon.pid).not.toBe(killed);
    expect(readFileSync(join(dataDir, 'ptrackd.pid'), 'utf8')).toBe(`${daemon.pid}\n`);
    const status = JSON.parse((await daemon.http('GET', '/status')).text);
    expect(status.mapFill).toBeGreaterThan(0);
    expect(status.initLsn).toBe(initLsn);
    expect(status.problem).toBe(null);
    expect(status.lastGap).toBe(null);
  });

  it('drop of a directory that never existed says so; n at the prompt drops nothing and is no error', async () => {
    const missing = join(scratch, 'never');
    const r = await runPtrackd(['drop', '--slot', 'nosuchslot', '--data-dir', missing, ...conn(), '--yes']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe(`slot nosuchslot did not exist\n${missing} did not exist\n`);
    expect(await daemon!.stop('SIGTERM')).toBe(0);
    daemon = undefined;
    // `script` gives the command a terminal, as a person at the prompt has
    const cmd = [
      join(REPO_ROOT, 'bin/ptrackd'),
      'drop',
      '--slot',
      'ptrack',
      '--data-dir',
      dataDir,
      ...conn(),
    ];
    const out = execFileSync('script', ['-qec', cmd.join(' '), '/dev/null'], {
      input: 'n\n',
      encoding: 'utf8',
    });
    expect(out).toMatch(/History is lost\. \[y\/N\] .*nothing dropped/s);
    expect(await slots()).toEqual(['ptrack']);
    expect(existsSync(join(dataDir, 'catalog.db'))).toBe(true);
  });
});
