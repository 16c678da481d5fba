import { mkdirSync, mkdtempSync, renameSync, rmdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseLsn } from '../../src/wal/index.ts';
import { checkpointLsnIn } from '../helpers/catalog.ts';
import { runPtrackd } from '../helpers/cli.ts';
import { DaemonProcess } from '../helpers/daemon.ts';
import { clusterPagesChangedSince } from '../helpers/oracle.ts';
import { PgCluster } from '../helpers/pg-cluster.ts';
import { BlockableProxy } from '../helpers/proxy.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The network and the disk failing under the daemon: it notices, waits, resumes, and loses nothing. */
describe('ptrackd when the network or its disk fails', () => {
  const cleanup: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const f of cleanup.splice(0).reverse()) await f().catch(() => {});
  });

  async function setup() {
    const cluster = await PgCluster.start({ settings: { wal_keep_size: "'1GB'" } });
    const dataDir = mkdtempSync(join(tmpdir(), 'ptrackd-net-'));
    cleanup.push(
      async () => cluster.destroy(),
      async () => rmSync(dataDir, { recursive: true, force: true }),
    );
    await cluster.client('pgbench', ['-i', '-q', '-s', '2']);
    return { cluster, dataDir };
  }

  it('a blocked port: the silent connection is given up after --replication-timeout, and tracking resumes without loss', async () => {
    const { cluster, dataDir } = await setup();
    const proxy = await BlockableProxy.start(cluster.port);
    cleanup.push(() => proxy.close());
    const daemon = await DaemonProcess.start(cluster, dataDir, ['--replication-timeout', '2'], {
      serverPort: proxy.port,
    });
    cleanup.push(() => daemon.stop('SIGKILL'));
    const since = parseLsn(await cluster.sql('SELECT pg_current_wal_insert_lsn()'));
    const load = cluster.client('pgbench', ['-n', '-c', '2', '-T', '8']);
    await sleep(1000);
    proxy.block();
    await sleep(1000);
    // Nothing can be applied meanwhile: a query for the server's position times out, saying how far behind.
    const waited = await runPtrackd([
      'sql',
      '--listen',
      `127.0.0.1:${daemon.listen}`,
      '--wait-lsn',
      await cluster.sql('SELECT pg_current_wal_flush_lsn()'),
      '--timeout',
      '1',
      'SELECT 1',
    ]);
    expect([waited.code, waited.stderr]).toEqual([
      1,
      expect.stringMatching(
        /^ptrackd: error: timed out after 1 s waiting for [0-9A-F]+\/[0-9A-F]+: applied up to [0-9A-F]+\/[0-9A-F]+, \d+ bytes behind\n$/,
      ),
    ]);
    await sleep(3000);
    proxy.unblock();
    await load;
    await cluster.sql('CHECKPOINT');
    const end = await cluster.sql('SELECT pg_current_wal_flush_lsn()');
    const [expected, reported] = [
      await clusterPagesChangedSince(cluster, since),
      await daemon.changedBlocks(since, end),
    ];
    expect(expected.size).toBeGreaterThan(100);
    expect([...expected].filter((p) => !reported.has(p))).toEqual([]);
    expect(daemon.output).toMatch(/no message from the server for \d+ s: the connection is presumed lost/);
    expect(JSON.parse((await daemon.http('GET', '/status')).text).reconnects).toBeGreaterThanOrEqual(1);
  }, 120_000);

  it.each([
    ['of the whole map', ['--checkpoint-log', '0'], ['ptrack.map.tmp']],
    // a failed log append makes the next checkpoint write the whole map: both are blocked
    ['of changed lines to the log', [], ['ptrack.map.tmp', 'ptrack.map.log']],
  ])(
    'a checkpoint %s that cannot be written is logged and retried, and the slot stays at the last good one',
    async (_what, extra, blocked) => {
      const { cluster, dataDir } = await setup();
      const daemon = await DaemonProcess.start(cluster, dataDir, extra);
      cleanup.push(() => daemon.stop('SIGKILL'));
      const failures = () =>
        daemon.output.match(/checkpoint at [0-9A-F]+\/[0-9A-F]+ failed, will retry: .*EISDIR/g)?.length ?? 0;
      const until = async (what: string, done: () => boolean | Promise<boolean>) => {
        for (const deadline = Date.now() + 60_000; !(await done()); await sleep(100)) {
          if (Date.now() > deadline)
            throw new Error(`timed out waiting until ${what}; ptrackd said:\n${daemon.output}`);
        }
      };
      // A directory where a checkpoint writes: every write of it fails, even for root. The log, when there
      // is one, is moved aside first. While a checkpoint is writing the file, it is there already: try
      // again once that checkpoint is done.
      for (const name of blocked) {
        const blocker = join(dataDir, name);
        await until(`${name} is blocked`, () => {
          try {
            if (name.endsWith('.log')) renameSync(blocker, `${blocker}.aside`);
          } catch (e) {
            if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
          }
          try {
            mkdirSync(blocker);
            return true;
          } catch (e) {
            if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
            return false;
          }
        });
      }
      const load = cluster.client('pgbench', ['-n', '-c', '2', '-T', '3']);
      // Checkpoints go one at a time: once one has failed, none that started before is still landing.
      await until('a checkpoint has failed', () => failures() >= 1);
      const good = checkpointLsnIn(dataDir);
      await load;
      const failed = failures();
      await until('another checkpoint, of later WAL, has failed', () => failures() > failed);
      expect(checkpointLsnIn(dataDir)).toBe(good);
      const slot = () =>
        cluster.sql("SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = 'ptrack'").then(parseLsn);
      expect(await slot()).toBeLessThanOrEqual(good);
      for (const name of blocked) rmdirSync(join(dataDir, name));
      const end = parseLsn(await cluster.sql('SELECT pg_current_wal_flush_lsn()'));
      await until('a checkpoint reaches the end of the load', () => checkpointLsnIn(dataDir) >= end);
      await until('the slot follows it', async () => (await slot()) > good);
    },
    120_000,
  );
});
