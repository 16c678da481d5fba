// How far pgbench TPS spreads between runs on this machine, against what a follower costs (issue 16 §4):
// the same pgbench alternating without a follower, with pg_receivewal, with ptrackd, and with ptrackd
// under other flags; configurations that do the same work in a run are an A/A test of the yardstick.
// `node bench/load-noise.ts` (BENCH_LOAD_ROUNDS: rounds, default 6).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseLsn } from '../src/wal/index.ts';
import { PgCluster } from '../test/helpers/pg-cluster.ts';
import { Daemon, median, receivewalAttached } from './catchup.ts';

/** What follows the server during a run: nothing, pg_receivewal, or ptrackd with these extra flags. */
type Follower = 'none' | 'pg_receivewal' | readonly string[];

const FOLLOWERS: Record<string, Follower> = {
  without: 'none',
  pg_receivewal: 'pg_receivewal',
  ptrackd: [],
  // Neither checkpoints inside a 10 s run (30 s interval, 256 MB of WAL): the same work as `ptrackd`.
  'ptrackd, rare checkpoints': ['--checkpoint-interval', '3600'],
  'ptrackd --workers 1': ['--workers', '1'],
};

const rounds = Number(process.env.BENCH_LOAD_ROUNDS ?? 6);
const cluster = await PgCluster.start({
  settings: { autovacuum: 'off', fsync: 'on', max_replication_slots: 12, max_wal_senders: 12 },
});
const scratch = mkdtempSync(join(tmpdir(), 'ptrackd-bench-'));
try {
  await cluster.client('pgbench', ['-i', '-q', '-s', '10']);
  const pgbench = async () =>
    Number(
      /tps = ([\d.]+)/.exec(await cluster.client('pgbench', ['-n', '-c', '4', '-j', '2', '-T', '10']))![1],
    );
  let slots = 0;
  const run = async (follower: Follower): Promise<number> => {
    if (follower === 'none') return pgbench();
    if (follower === 'pg_receivewal') return receivewalAttached(cluster, scratch, pgbench);
    const slot = `noise${slots++}`;
    await cluster.sql(`SELECT pg_create_physical_replication_slot('${slot}', true)`);
    const daemon = await Daemon.spawn(cluster, slot, join(scratch, slot), 2, follower);
    try {
      await daemon.waitApplied(parseLsn(await cluster.sql('SELECT pg_current_wal_flush_lsn()')));
      return await pgbench();
    } finally {
      await daemon.stop();
      await cluster.sql(`SELECT pg_drop_replication_slot('${slot}')`);
    }
  };
  const tps = new Map<string, number[]>(Object.keys(FOLLOWERS).map((name) => [name, []]));
  for (let round = 0; round < rounds; round++) {
    const names = Object.keys(FOLLOWERS);
    // TPS drifts over a series of runs, so each round reverses the order of the last.
    for (const name of round % 2 === 0 ? names : names.reverse())
      tps.get(name)!.push(await run(FOLLOWERS[name]));
  }
  const without = tps.get('without')!;
  console.log(
    `pgbench -c 4 -j 2 -T 10, ${rounds} rounds; TPS lost against the same round's run without a follower`,
  );
  for (const [name, runs] of tps) {
    if (name === 'without') continue;
    const lost = runs.map((t, i) => (100 * (without[i] - t)) / without[i]);
    console.log(
      `  ${name.padEnd(26)} median ${median(lost).toFixed(1).padStart(5)}%  per round ${lost.map((l) => l.toFixed(1)).join(', ')}`,
    );
  }
  console.log(`  TPS without: ${without.map((t) => t.toFixed(0)).join(', ')}`);
} finally {
  await cluster.destroy();
  rmSync(scratch, { recursive: true, force: true });
}
