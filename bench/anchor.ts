// ptrackd beside ptrack 2.4 itself (issue 29), on one cluster of the ptrack build (../shared/pg), ptrack
// switched on and off with ptrack.map_size (64 / 0) and a restart, so that the binaries are identical:
// - ptrack's runtime-overhead benchmark (its benchmarks/README.md: pgbench with the TPC-B-like script
//   minus the tellers and branches updates, several clients): TPS with nothing, with ptrack, with ptrackd
//   attached (caught up before the run), with pg_receivewal --no-sync instead, and nothing again (the A/A
//   pair that shows the machine's noise); rounds with the order rotated; synchronous_commit on and off.
// - the backup benchmark: one FULL, a change, then PTRACK through ptrack (ptrack on, the server's port),
//   PTRACK through ptrackd (ptrack off and its map file gone: a stock server; ptrackd's port) and DELTA,
//   each on a copy of the same catalog (the same FULL parent), each restored and compared.
// `node bench/anchor.ts` (BENCH_ANCHOR_ROUNDS, default 5; BENCH_ANCHOR_SECONDS per run, default 15).
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseLsn } from '../src/wal/index.ts';
import { freePort, PgCluster, pgBinDirFor } from '../test/helpers/pg-cluster.ts';
import { findPgProbackup, pgProbackupFor } from '../test/helpers/probackup.ts';
import { scratchDir } from '../test/helpers/scratch.ts';
import { Daemon, median, receivewalAttached } from './catchup.ts';
import { dropCaches, runAsServerUser, type ServerUserRun } from './probackup.ts';

type Config = 'nothing' | 'ptrack' | 'ptrackd' | 'pg_receivewal' | 'nothing again';
const CONFIGS: readonly Config[] = ['nothing', 'ptrack', 'ptrackd', 'pg_receivewal', 'nothing again'];

/** ptrack's benchmark transaction: pgbench's TPC-B-like script without the tellers and branches updates. */
const PGB_SQL = `\\set aid random(1, 100000 * :scale)
\\set bid random(1, 1 * :scale)
\\set tid random(1, 10 * :scale)
\\set delta random(-5000, 5000)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);
END;
`;

export interface TpsSeries {
  readonly synchronousCommit: 'on' | 'off';
  readonly tps: Record<Config, number[]>;
  /** ptrackd's user + system CPU seconds in each of its runs. */
  readonly ptrackdCpu: number[];
  /** The same, by thread name (the main thread, the decoder workers, …), summed over the runs. */
  readonly ptrackdThreads: Map<string, number>;
}

export interface BackupResult {
  readonly via: string;
  readonly seconds: number;
  readonly pagemapSeconds: number | null;
  readonly dataBytes: number;
  readonly files: number;
  readonly restoredIdentical: boolean;
  /** When pg_probackup said each step (seconds from its start). */
  readonly steps: readonly { readonly at: number; readonly line: string }[];
}

export interface AnchorResult {
  readonly rounds: number;
  readonly seconds: number;
  readonly scale: number;
  readonly clients: number;
  readonly series: TpsSeries[];
  readonly backups: BackupResult[] | null;
}

const mb = (n: number) => (n / 2 ** 20).toFixed(1);
const pct = (x: number, base: number) => `${x >= base ? '+' : ''}${((100 * (x - base)) / base).toFixed(1)}%`;

export async function benchAnchor(
  log: (s: string) => void,
  o: { rounds?: number; seconds?: number; scale?: number; clients?: number } = {},
): Promise<AnchorResult | null> {
  const binaries = pgBinDirFor('15-ptrack');
  if ('missing' in binaries) {
    log(`\nptrack 2.4 side by side skipped: ${binaries.missing}`);
    return null;
  }
  const rounds = o.rounds ?? 5;
  const seconds = o.seconds ?? 15;
  const scale = o.scale ?? 30;
  const clients = o.clients ?? 8;
  const scratch = scratchDir('ptrackd-anchor-');
  const cluster = await PgCluster.start({
    major: '15-ptrack',
    settings: {
      shared_preload_libraries: "'ptrack'",
      'ptrack.map_size': 0,
      fsync: 'on',
      autovacuum: 'off',
      shared_buffers: "'256MB'",
      max_wal_size: "'4GB'",
      wal_keep_size: 0,
    },
  });
  let mapSize = 0;
  /** ptrack on (64) or off (0): the setting needs a restart. */
  const ptrackMap = async (size: 0 | 64) => {
    if (size === mapSize) return;
    await cluster.sql(`ALTER SYSTEM SET ptrack.map_size = ${size}`);
    await cluster.stop();
    if (size === 0) rmSync(join(cluster.dataDir, 'global/ptrack.map'), { force: true });
    await cluster.startAgain();
    mapSize = size;
  };
  const script = join(cluster.makeServerDir('anchor'), 'pgb.sql');
  writeFileSync(script, PGB_SQL);
  try {
    log(`\nptrack 2.4 side by side: the ptrack build (PostgreSQL 15.18), pgbench scale ${scale} loading…`);
    await cluster.sql('CREATE EXTENSION ptrack');
    await cluster.client('pgbench', ['-i', '-q', '-s', String(scale)]);
    await cluster.sql(
      "SELECT pg_create_physical_replication_slot('anchor', true); VACUUM ANALYZE; CHECKPOINT",
    );
    const pgbench = async () =>
      Number(
        /tps = ([\d.]+)/.exec(
          await cluster.client('pgbench', [
            ...['-n', '-c', String(clients), '-j', '2', '-T', String(seconds), '-f', script],
          ]),
        )![1],
      );
    const series: TpsSeries[] = [];
    // BENCH_ANCHOR_ROUNDS=0: the backup benchmark alone
    for (const commit of rounds > 0 ? (['on', 'off'] as const) : []) {
      await cluster.sql(`ALTER SYSTEM SET synchronous_commit = ${commit}; SELECT pg_reload_conf()`);
      const tps = Object.fromEntries(CONFIGS.map((c) => [c, [] as number[]])) as Record<Config, number[]>;
      const ptrackdCpu: number[] = [];
      const ptrackdThreads = new Map<string, number>();
      for (let round = 0; round < rounds; round++) {
        // the order rotates each round: TPS drifts over a series of runs
        for (let i = 0; i < CONFIGS.length; i++) {
          const config = CONFIGS[(i + round) % CONFIGS.length]!;
          await ptrackMap(config === 'ptrack' ? 64 : 0);
          await cluster.sql('CHECKPOINT');
          if (config === 'pg_receivewal')
            tps[config].push(await receivewalAttached(cluster, scratch, pgbench, ['--no-sync']));
          else if (config === 'ptrackd') {
            const daemon = await Daemon.spawn(cluster, 'anchor', join(scratch, 'ptrackd'), 2);
            try {
              await daemon.waitApplied(parseLsn(await cluster.sql('SELECT pg_current_wal_flush_lsn()')));
              const cpu = daemon.cpuSeconds();
              const threads = daemon.threadCpuSeconds();
              tps[config].push(await pgbench());
              ptrackdCpu.push(daemon.cpuSeconds() - cpu);
              for (const [name, after] of daemon.threadCpuSeconds()) {
                const spent = after - (threads.get(name) ?? 0);
                ptrackdThreads.set(name, (ptrackdThreads.get(name) ?? 0) + spent);
              }
            } finally {
              await daemon.stop();
            }
          } else tps[config].push(await pgbench());
        }
      }
      series.push({ synchronousCommit: commit, tps, ptrackdCpu, ptrackdThreads });
      printSeries(series.at(-1)!, { rounds, seconds, clients }, log);
    }
    const backups = await benchBackups(cluster, script, scratch, ptrackMap, log);
    return { rounds, seconds, scale, clients, series, backups };
  } finally {
    await cluster.destroy();
    rmSync(scratch, { recursive: true, force: true });
  }
}

function printSeries(
  s: TpsSeries,
  o: { rounds: number; seconds: number; clients: number },
  log: (s: string) => void,
): void {
  const base = median(s.tps.nothing);
  log(
    `\npgbench -f pgb.sql (ptrack's benchmark) -c ${o.clients} -T ${o.seconds}, synchronous_commit ${s.synchronousCommit}, ${o.rounds} rounds, order rotated`,
  );
  log('  config          TPS per round                               median   spread     vs nothing');
  for (const [config, runs] of Object.entries(s.tps)) {
    const m = median(runs);
    const spread = `${Math.min(...runs).toFixed(0)}–${Math.max(...runs).toFixed(0)}`;
    log(
      `  ${config.padEnd(15)} ${runs
        .map((t) => t.toFixed(0).padStart(6))
        .join(' ')
        .padEnd(
          43,
        )} ${m.toFixed(0).padStart(6)}   ${spread.padEnd(10)} ${config === 'nothing' ? '—' : pct(m, base)}`,
    );
  }
  const cpu = median(s.ptrackdCpu);
  log(
    `  ptrackd's CPU per ${o.seconds} s run: ${s.ptrackdCpu.map((c) => c.toFixed(2)).join(', ')} s (median ${cpu.toFixed(2)} s = ${((100 * cpu) / o.seconds).toFixed(0)}% of one core)`,
  );
  // per transaction, by thread: where a sidecar's CPU goes
  const transactions = s.tps.ptrackd.reduce((a, t) => a + t * o.seconds, 0);
  const byThread = [...s.ptrackdThreads].sort((a, b) => b[1] - a[1]).filter(([, c]) => c > 0);
  const total = byThread.reduce((a, [, c]) => a + c, 0);
  log(
    `  ptrackd's CPU per transaction: ${((1e6 * total) / transactions).toFixed(1)} µs — ${byThread.map(([name, c]) => `${name} ${((1e6 * c) / transactions).toFixed(1)}`).join(', ')}`,
  );
}

/**
 * One FULL, a change, then PTRACK through ptrack, DELTA, and PTRACK through ptrackd with ptrack off: each
 * on a copy of the FULL's catalog, the page cache dropped before each (root only), each restored and
 * compared with the source. ptrack's backup comes first: turning ptrack off throws its map away, and
 * turning it on again starts a new one, after the FULL.
 */
async function benchBackups(
  cluster: PgCluster,
  script: string,
  scratch: string,
  ptrackMap: (size: 0 | 64) => Promise<void>,
  log: (s: string) => void,
): Promise<BackupResult[] | null> {
  const program = findPgProbackup();
  if (!program) {
    log('\nthe backup benchmark skipped: no pg_probackup for PostgreSQL 15');
    return null;
  }
  await ptrackMap(64);
  const pgPort = await freePort();
  const daemon = await Daemon.spawn(cluster, 'anchor', join(scratch, 'ptrackd'), 2, [
    ...['--pg-listen', `127.0.0.1:${pgPort}`],
  ]);
  const root = cluster.makeServerDir('backups');
  let catalog = join(root, 'full');
  const pb = pgProbackupFor(program, cluster, () => catalog);
  try {
    await pb.init();
    await pb.backup('FULL', cluster.port);
    await cluster.client('pgbench', ['-n', '-c', '4', '-j', '2', '-T', '10', '-f', script]);
    await cluster.sql(
      'CREATE TABLE anchor_new (id int PRIMARY KEY, v text); INSERT INTO anchor_new SELECT g, md5(g::text) FROM generate_series(1, 200000) g; CREATE INDEX ON anchor_new (v); CHECKPOINT',
    );
    const source = await cluster.dumpDigest();
    const copyOf = (name: string) => {
      const dir = join(root, name);
      execFileSync('cp', ['-a', join(root, 'full'), dir]);
      return dir;
    };
    const copies = { ptrack: copyOf('ptrack'), delta: copyOf('delta'), ptrackd: copyOf('ptrackd') };
    const results: BackupResult[] = [];
    const take = async (via: string, dir: string, mode: 'PTRACK' | 'DELTA', port: number) => {
      catalog = dir;
      const cacheDropped = dropCaches();
      const args = ['backup', '-B', dir, '--instance', 'pg15', '-b', mode, '--stream'];
      // LOG level: the WAL stream's start and end are said at it
      args.push('--log-level-console=log', '-h', '127.0.0.1', '-p', String(port), '-U', 'postgres');
      const run: ServerUserRun = await runAsServerUser([pb.program, ...args, '-d', 'postgres'], cluster.dir);
      const id = /INFO: Backup (\w+) completed/.exec(run.output)![1]!;
      const shown = (await pb.show()).find((b) => b.id === id)!;
      const control = readFileSync(join(dir, 'backups/pg15', id, 'backup_content.control'), 'utf8');
      pb.dumps.set(id, source);
      const restoredIdentical = await pb.restoresIdentical(id).then(
        () => true,
        () => false,
      );
      // DELTA extracts no pagemap: null, printed as a dash
      const pagemap = /Pagemap successfully extracted, time elapsed: (\d+)/.exec(run.output);
      results.push({
        via,
        seconds: run.seconds,
        pagemapSeconds: pagemap ? Number(pagemap[1]) : null,
        dataBytes: shown['data-bytes'],
        files: control.split('\n').filter(Boolean).length,
        restoredIdentical,
        steps: run.lines.filter((l) => /^INFO: |^LOG: (started|finished) streaming/.test(l.line)),
      });
      if (!cacheDropped) log('  (page cache not dropped: not root)');
    };
    await take('ptrack 2.4 (server port)', copies.ptrack, 'PTRACK', cluster.port);
    await take('DELTA (server port)', copies.delta, 'DELTA', cluster.port);
    await ptrackMap(0);
    if (existsSync(join(cluster.dataDir, 'global/ptrack.map'))) throw new Error('ptrack.map is still there');
    await daemon.waitApplied(parseLsn(await cluster.sql('SELECT pg_current_wal_flush_lsn()')));
    await take('ptrackd (its port, ptrack off)', copies.ptrackd, 'PTRACK', pgPort);
    printBackups(results, log);
    return results;
  } finally {
    await daemon.stop();
    await pb.destroy();
  }
}

function printBackups(results: readonly BackupResult[], log: (s: string) => void): void {
  log('\nThe same change backed up on the same FULL parent (page cache dropped before each)');
  log('  via                              wall s   pagemap s   data MB   files   restored');
  for (const r of results) {
    log(
      `  ${r.via.padEnd(32)} ${r.seconds.toFixed(1).padStart(6)}   ${String(r.pagemapSeconds ?? '—').padStart(9)}   ${mb(r.dataBytes).padStart(7)}   ${String(r.files).padStart(5)}   ${r.restoredIdentical ? 'identical, pg_amcheck clean' : 'DIFFERS'}`,
    );
  }
  const [ptrack, , ptrackd] = results;
  if (ptrack && ptrackd) {
    log(
      `  ptrackd / ptrack: wall ${(ptrackd.seconds / ptrack.seconds).toFixed(2)}x (target <= 1.1x), data ${(ptrackd.dataBytes / ptrack.dataBytes).toFixed(2)}x (target <= 1x)`,
    );
  }
  for (const r of results) {
    log(`  ${r.via}, when pg_probackup said what (s from its start):`);
    for (const s of r.steps) log(`    ${s.at.toFixed(2).padStart(6)}  ${s.line.slice(0, 110)}`);
  }
}

if (import.meta.main) {
  const log = (s: string) => process.stdout.write(`${s}\n`);
  await benchAnchor(log, {
    rounds: Number(process.env.BENCH_ANCHOR_ROUNDS ?? 5),
    seconds: Number(process.env.BENCH_ANCHOR_SECONDS ?? 15),
  });
}
