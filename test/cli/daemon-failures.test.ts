import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runPtrackd } from '../helpers/cli.ts';
import { DaemonProcess } from '../helpers/daemon.ts';
import { PgCluster } from '../helpers/pg-cluster.ts';

/**
 * The reconnect loop (issue 27): a failure that may pass is retried and shown with how long it has
 * lasted; one that waiting cannot mend stops the daemon with what to do, never an endless retry.
 */
describe('failures while following', () => {
  const cleanup: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const f of cleanup.splice(0).reverse()) await f().catch(() => {});
  });

  async function setup(extra: string[] = [], user?: string, prepare = '') {
    const cluster = await PgCluster.start({ settings: { wal_keep_size: 0 } });
    const dataDir = mkdtempSync(join(tmpdir(), 'ptrackd-failures-'));
    cleanup.push(
      async () => cluster.destroy(),
      async () => rmSync(dataDir, { recursive: true, force: true }),
    );
    if (user) await cluster.sql(`CREATE ROLE ${user} LOGIN REPLICATION`);
    if (prepare) await cluster.sql(prepare);
    const daemon = await DaemonProcess.start(cluster, dataDir, extra, { user });
    cleanup.push(() => daemon.stop('SIGKILL'));
    return { cluster, dataDir, daemon };
  }

  it('a server that is down: retried, and status says for how long, until it is back', async () => {
    const { cluster, daemon } = await setup();
    await cluster.stop();
    const status = () => runPtrackd(['status', '--listen', `127.0.0.1:${daemon.listen}`]);
    await daemon.until(
      async () => /retrying for ([2-9]|\d\d+) s/.test((await status()).stdout),
      'report a failure lasting 2 s or more',
    );
    const down = await status();
    expect(down.code).toBe(1);
    expect(down.stdout).toMatch(
      /streaming\s+no, retrying for \d+ s \(since \d{4}-\d\d-\d\dT[^)]+\): .*connect/,
    );
    const json = JSON.parse((await daemon.http('GET', '/status')).text);
    expect(json.problemSeconds).toBeGreaterThanOrEqual(2);
    expect(await daemon.http('GET', '/metrics').then((r) => r.text)).toMatch(
      /^ptrackd_not_streaming_seconds [1-9]/m,
    );
    await cluster.startAgain();
    await daemon.until(
      async () => (await daemon.http('GET', '/readyz')).status === 200,
      'become ready again',
    );
    const up = JSON.parse((await daemon.http('GET', '/status')).text);
    expect([up.problem, up.problemSince, up.problemSeconds]).toEqual([null, null, 0]);
  }, 90_000);

  it('a role that lost REPLICATION: the daemon exits saying what to do, after a final checkpoint', async () => {
    const { cluster, daemon } = await setup([], 'tracker');
    await cluster.sql(
      "ALTER ROLE tracker NOREPLICATION; SELECT pg_terminate_backend(pid) FROM pg_stat_replication WHERE usename = 'tracker'",
    );
    expect(await daemon.exited()).toBe(1);
    expect(daemon.output).toMatch(/ptrackd: error: .*ptrackd cannot go on: grant the role REPLICATION/);
    expect(daemon.output).toMatch(/final checkpoint/);
    // the cut connection may pass (one retry); the refusal that follows may not
    expect(daemon.output.match(/reconnecting in/g)?.length ?? 0).toBeLessThanOrEqual(1);
  }, 90_000);

  it('WAL thrown away with --no-create-slot: the daemon exits saying how to make the slot again', async () => {
    const { cluster, daemon } = await setup(
      ['--no-create-slot'],
      undefined,
      "SELECT pg_create_physical_replication_slot('ptrack', true)",
    );
    await cluster.stop();
    cluster.run('pg_resetwal', ['-f', '-D', cluster.dataDir]);
    await cluster.startAgain();
    expect(await daemon.exited()).toBe(1);
    expect(daemon.output).toMatch(
      /has already been removed; ptrackd cannot go on: drop slot ptrack and create it again/,
    );
    // the slot is the operator's: ptrackd left it as it was
    expect(await cluster.sql("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'ptrack'")).toBe(
      '1',
    );
  }, 90_000);
});
