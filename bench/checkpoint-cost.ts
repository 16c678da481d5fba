// Checkpoints that cost what changed (issue 30). On a nearly idle server — pgbench scale 10 at a steady 20
// transactions a second (-n -R 20 -c 2), as a DBA found it — ptrackd's own writes (/proc/PID/io
// write_bytes: the map file, the log, the catalog) and CPU (process ticks), for 64 MB, 256 MB and 1 GB
// maps. The yardstick is the same daemon in the same run with --checkpoint-log 0, where every checkpoint
// writes the whole map, as every one did before. A longer run (BENCH_CHECKPOINT_LONG_SECONDS, default
// 600) includes the log's fold into a whole map (--checkpoint-log set so that one comes mid-run), and the
// per-hour figure at the default limit is worked out from the measured log rate and the cost of a whole
// write. Start-up: a 1 GB map loaded alone, and with an hour of log records over it.
// `node bench/checkpoint-cost.ts` (BENCH_CHECKPOINT_SECONDS per short run, default 120).
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Catalog } from '../src/catalog/index.ts';
import { PtrackMap } from '../src/map/index.ts';
import { CheckpointWriter, loadCheckpointedMap } from '../src/tracker/index.ts';
import { parseLsn } from '../src/wal/index.ts';
import { PgCluster, pgBinDirFor } from '../test/helpers/pg-cluster.ts';
import { scratchDir } from '../test/helpers/scratch.ts';
import { Daemon, median } from './catchup.ts';

const TPS = 20;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const mb = (n: number) => (n / 2 ** 20).toFixed(1);

export interface CostRun {
  readonly mapMb: number;
  readonly mode: 'whole map every checkpoint' | 'what changed';
  readonly logLimitMb?: number;
  readonly seconds: number;
  readonly transactions: number;
  readonly writtenBytes: number;
  readonly cpuSeconds: number;
  readonly checkpointBytes: number;
  readonly checkpoints: number;
  readonly wholeMapWrites: number;
  readonly maxRssMb: number;
}

interface Status {
  readonly checkpointLsn: string;
  readonly checkpointBytesWritten: number;
  readonly wholeMapWrites: number;
}

async function statusOf(daemon: Daemon): Promise<Status> {
  const s = (await (await fetch(`http://127.0.0.1:${daemon.port}/status`)).json()) as {
    checkpointLsn: string;
    checkpoint: { bytesWritten: number; wholeMapWrites: number };
  };
  return {
    checkpointLsn: s.checkpointLsn,
    checkpointBytesWritten: s.checkpoint.bytesWritten,
    wholeMapWrites: s.checkpoint.wholeMapWrites,
  };
}

function writeBytesOf(pid: number): number {
  return Number(/^write_bytes: (\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, 'utf8'))![1]);
}

/** Checkpoints a daemon made: its log's "checkpoint at" lines are not kept, so /status is polled. */
async function measure(
  cluster: PgCluster,
  scratch: string,
  mapMb: number,
  seconds: number,
  logLimitMb: number | undefined,
): Promise<CostRun> {
  const slot = `cost_${mapMb}_${logLimitMb ?? 'default'}`.replace(/\W/g, '_');
  await cluster.sql(`SELECT pg_create_physical_replication_slot('${slot}', true)`);
  const dataDir = join(scratch, slot);
  const extra = ['--map-size', String(mapMb), '--checkpoint-interval', '30'];
  if (logLimitMb !== undefined) extra.push('--checkpoint-log', String(logLimitMb));
  const daemon = await Daemon.spawn(cluster, slot, dataDir, 2, extra);
  try {
    await daemon.waitApplied(parseLsn(await cluster.sql('SELECT pg_current_wal_flush_lsn()')));
    // past the first checkpoint, which writes the new map whole in either mode
    for (
      let s = await statusOf(daemon);
      s.wholeMapWrites < 1 || parseLsn(s.checkpointLsn) === 0;
      s = await statusOf(daemon)
    )
      await sleep(200);
    const before = await statusOf(daemon);
    const written = writeBytesOf(daemon.pid);
    const cpu = daemon.cpuSeconds();
    const threads = daemon.threadCpuSeconds();
    const checkpointsAt = new Set<string>();
    const started = performance.now();
    const load = cluster.client('pgbench', ['-n', '-R', String(TPS), '-c', '2', '-T', String(seconds)]);
    let done = false;
    void load.finally(() => (done = true));
    // /status every 10 s, as a readiness probe would (asking writes the catalog operations held back)
    while (!done) {
      checkpointsAt.add((await statusOf(daemon)).checkpointLsn);
      daemon.sampleRss();
      await Promise.race([sleep(10_000), load]);
    }
    const out = await load;
    const elapsed = (performance.now() - started) / 1000;
    if (process.env.BENCH_CHECKPOINT_THREADS) {
      const spent = [...daemon.threadCpuSeconds()].map(
        ([n, c]) => `${n} ${(c - (threads.get(n) ?? 0)).toFixed(2)}`,
      );
      process.stdout.write(`    CPU by thread: ${spent.join(', ')}\n`);
    }
    const after = await statusOf(daemon);
    checkpointsAt.delete(before.checkpointLsn);
    return {
      mapMb,
      mode: logLimitMb === 0 ? 'whole map every checkpoint' : 'what changed',
      logLimitMb,
      seconds: elapsed,
      transactions: Number(/number of transactions actually processed: (\d+)/.exec(out)?.[1] ?? 0),
      writtenBytes: writeBytesOf(daemon.pid) - written,
      cpuSeconds: daemon.cpuSeconds() - cpu,
      checkpointBytes: after.checkpointBytesWritten - before.checkpointBytesWritten,
      checkpoints: checkpointsAt.size,
      wholeMapWrites: after.wholeMapWrites - before.wholeMapWrites,
      maxRssMb: daemon.maxRssMb,
    };
  } finally {
    await daemon.stop();
    await cluster.sql(`SELECT pg_drop_replication_slot('${slot}')`);
    rmSync(dataDir, { recursive: true, force: true });
  }
}

const perHour = (r: CostRun, n: number) => (n * 3600) / r.seconds;

function printRun(r: CostRun, yardstick: CostRun | undefined, log: (s: string) => void): void {
  const limit =
    r.logLimitMb === undefined ? '' : r.logLimitMb === 0 ? '' : ` (--checkpoint-log ${r.logLimitMb})`;
  const ratio = yardstick
    ? `  ${(perHour(r, r.writtenBytes) / perHour(yardstick, yardstick.writtenBytes)).toFixed(4)}x`
    : '';
  log(
    `  ${String(r.mapMb).padStart(5)} MB  ${(r.mode + limit).padEnd(40)} ${r.seconds.toFixed(0).padStart(5)} s ${String(r.checkpoints).padStart(4)} ckpts ${String(r.wholeMapWrites).padStart(3)} whole ${mb(r.writtenBytes).padStart(9)} MB ${mb(perHour(r, r.writtenBytes)).padStart(9)} MB/h ${((60 * r.cpuSeconds) / r.seconds).toFixed(2).padStart(6)} s/min ${r.maxRssMb.toFixed(0).padStart(5)} MB${ratio}`,
  );
}

/**
 * What a run that only appended to the log writes per hour at the default limit (a quarter of the map),
 * once the whole write that empties the log is counted: the log's rate, plus one map per limit's worth.
 */
function amortizedPerHour(r: CostRun): number {
  const mapBytes = r.mapMb * 2 ** 20;
  const logPerHour = perHour(r, r.checkpointBytes);
  const otherPerHour = perHour(r, r.writtenBytes - r.checkpointBytes);
  return logPerHour + otherPerHour + mapBytes * (logPerHour / (mapBytes / 4));
}

function rssMbOf(pid: number): number {
  return Number(/^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
}

/**
 * What each thread's V8 isolate costs a caught-up daemon with a 64 MB map (nothing else has a thread of
 * its own since checkpoints need none): resident memory with one decoder and with two, before the first
 * query and after it (the query thread starts then), each after a minute of the light load.
 */
export async function benchIsolates(cluster: PgCluster, scratch: string) {
  const out: { workers: number; steadyMb: number; afterQueryMb: number }[] = [];
  for (const workers of [1, 2]) {
    const slot = `isolates_${workers}`;
    await cluster.sql(`SELECT pg_create_physical_replication_slot('${slot}', true)`);
    const dataDir = join(scratch, slot);
    const daemon = await Daemon.spawn(cluster, slot, dataDir, workers);
    try {
      await daemon.waitApplied(parseLsn(await cluster.sql('SELECT pg_current_wal_flush_lsn()')));
      await cluster.client('pgbench', ['-n', '-R', String(TPS), '-c', '2', '-T', '60']);
      const steadyMb = rssMbOf(daemon.pid);
      const since = await cluster.sql('SELECT pg_current_wal_flush_lsn()');
      const r = await fetch(`http://127.0.0.1:${daemon.port}/query`, {
        method: 'POST',
        body: JSON.stringify({ sql: `SELECT count(*) FROM ptrack_get_pagemapset('${since}')` }),
      });
      if (r.status !== 200) throw new Error(`the query failed: ${await r.text()}`);
      out.push({ workers, steadyMb, afterQueryMb: rssMbOf(daemon.pid) });
    } finally {
      await daemon.stop();
      await cluster.sql(`SELECT pg_drop_replication_slot('${slot}')`);
      rmSync(dataDir, { recursive: true, force: true });
    }
  }
  return out;
}

/**
 * ptrack 2.4 doing the same work on the same binaries (../shared/pg's ptrack build): what the server's
 * checkpointer writes (`/proc/PID/io`) at the same load with ptrack.map_size 64 against 0 (ptrack off),
 * over the server checkpoints of the run (checkpoint_timeout 60 s to have several). ptrack writes its
 * whole map at every server checkpoint; per hour at the default checkpoint_timeout (5 min) that is 12
 * of them. Null without the ptrack build.
 */
export async function benchPtrackMapWrites(seconds: number) {
  if ('missing' in pgBinDirFor('15-ptrack')) return null;
  const cluster = await PgCluster.start({
    major: '15-ptrack',
    settings: {
      shared_preload_libraries: "'ptrack'",
      'ptrack.map_size': 64,
      checkpoint_timeout: "'60s'",
      fsync: 'on',
      autovacuum: 'off',
    },
  });
  try {
    await cluster.sql('CREATE EXTENSION ptrack');
    await cluster.client('pgbench', ['-i', '-q', '-s', '10']);
    const runs: { mapMb: number; writtenBytes: number; checkpoints: number }[] = [];
    for (const mapMb of [64, 0]) {
      await cluster.sql(`ALTER SYSTEM SET ptrack.map_size = ${mapMb}`);
      await cluster.stop();
      await cluster.startAgain();
      await cluster.sql('CHECKPOINT');
      const pid = Number(
        await cluster.sql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'"),
      );
      const checkpoints = async () =>
        Number(await cluster.sql('SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter'));
      const [written, done] = [writeBytesOf(pid), await checkpoints()];
      await cluster.client('pgbench', ['-n', '-R', String(TPS), '-c', '2', '-T', String(seconds)]);
      runs.push({
        mapMb,
        writtenBytes: writeBytesOf(pid) - written,
        checkpoints: (await checkpoints()) - done,
      });
    }
    const [on, off] = runs;
    const perCheckpoint = on.writtenBytes / on.checkpoints - off.writtenBytes / off.checkpoints;
    return { on, off, perCheckpoint, perHour: 12 * perCheckpoint };
  } finally {
    await cluster.destroy();
  }
}

/**
 * Start-up: a 1 GB map, a sixth full, written whole into two data directories; one of them then takes
 * `records` log records of about `lines` lines each. Loads alternate between the two, each in a fresh
 * process; the median of five.
 */
export async function benchStartupWithLog(records: number, lines: number) {
  const dir = scratchDir('ptrackd-bench-log-');
  try {
    const map = PtrackMap.create(1024, 1);
    for (let i = 0; i < map.entries / 6; i++)
      map.markBlock(1663, 5, 16384 + (i & 1023), 0, i >>> 10, 0x1000000 + i);
    let lsn = 0x2000000;
    const [alone, withLog] = await Promise.all(
      ['alone', 'with-log'].map(async (name) => {
        const dataDir = join(dir, name);
        mkdirSync(dataDir);
        const catalog = Catalog.open(join(dataDir, 'catalog.db'));
        catalog.initMap(1024, map.entries, 1, 'benchmark');
        const writer = new CheckpointWriter(dataDir);
        await writer.write(map, catalog, lsn);
        return { dataDir, catalog, writer };
      }),
    );
    map.takeDirtyLines();
    let block = 0;
    for (let r = 0; r < records; r++) {
      // each mark raises two random slots: about `lines` dirty lines a checkpoint
      for (let i = 0; i < lines / 2; i++) map.markBlock(1663, 5, 20000, 0, block++, ++lsn);
      await withLog.writer.write(map, withLog.catalog, lsn);
    }
    alone.catalog.close();
    withLog.catalog.close();
    // each load in a fresh process, as a start is: in one process the 1 GB buffers of earlier loads,
    // not yet collected, made a load take 1.1 to 3.7 s
    const load = (d: typeof alone) =>
      Number(
        execFileSync(process.execPath, [import.meta.filename, '--load', d.dataDir], { encoding: 'utf8' }),
      );
    const times = { alone: [] as number[], withLog: [] as number[] };
    for (let round = 0; round < 5; round++) {
      times.alone.push(load(alone));
      times.withLog.push(load(withLog));
    }
    const catalog = Catalog.open(join(withLog.dataDir, 'catalog.db'), { readonly: true });
    const logBytes = catalog.mapState()!.logBytes;
    catalog.close();
    return { alone: median(times.alone), withLog: median(times.withLog), logBytes, records };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function benchCheckpointCost(
  log: (s: string) => void,
  o: { seconds?: number; longSeconds?: number; sizes?: readonly number[] } = {},
): Promise<void> {
  const seconds = o.seconds ?? Number(process.env.BENCH_CHECKPOINT_SECONDS ?? 120);
  const longSeconds = o.longSeconds ?? Number(process.env.BENCH_CHECKPOINT_LONG_SECONDS ?? 600);
  const sizes = o.sizes ?? (process.env.BENCH_CHECKPOINT_SIZES ?? '64,256,1024').split(',').map(Number);
  const scratch = scratchDir('ptrackd-bench-cost-');
  const cluster = await PgCluster.start({
    settings: { fsync: 'on', autovacuum: 'off', max_wal_size: "'4GB'", wal_keep_size: 0 },
  });
  try {
    await cluster.client('pgbench', ['-i', '-q', '-s', '10']);
    await cluster.sql('VACUUM ANALYZE; CHECKPOINT');
    log(
      `\nCheckpoint cost at ${TPS} TPS (pgbench scale 10, -n -R ${TPS} -c 2), checkpoints every 30 s: ptrackd's write_bytes and CPU ticks`,
    );
    log(
      '  yardstick: the same daemon with --checkpoint-log 0 (the whole map at every checkpoint, as before)',
    );
    log(
      '    map  mode                                       wall  ckpts   whole       wrote        per hour    CPU    RSS   vs yardstick',
    );
    const shortRuns: CostRun[] = [];
    for (const mapMb of sizes) {
      const before = process.env.BENCH_CHECKPOINT_AFTER_ONLY
        ? undefined
        : await measure(cluster, scratch, mapMb, seconds, 0);
      if (before) printRun(before, undefined, log);
      const after = await measure(cluster, scratch, mapMb, seconds, undefined);
      printRun(after, before, log);
      shortRuns.push(after);
      log(
        `         at the default limit (${mapMb / 4} MB), with the whole write that empties the log: ${mb(amortizedPerHour(after))} MB/h`,
      );
    }
    // the long run: a limit that the log reaches mid-run, so that one whole write is in it
    const largest = shortRuns.at(-1)!;
    const logPerRun = (largest.checkpointBytes * longSeconds) / largest.seconds;
    const limitMb = Math.max(0.1, Number((logPerRun / 2 / 2 ** 20).toFixed(1)));
    log(`\n  a ${longSeconds} s run on the ${largest.mapMb} MB map whose log reaches its limit mid-run:`);
    const long = await measure(cluster, scratch, largest.mapMb, longSeconds, limitMb);
    printRun(long, undefined, log);
    const isolates = await benchIsolates(cluster, scratch);
    log(
      '\nResident memory of a caught-up daemon (64 MB map) after a minute at 20 TPS, and after its first query:',
    );
    for (const i of isolates) {
      log(
        `  --workers ${i.workers}: ${i.steadyMb.toFixed(0)} MB; after a query ${i.afterQueryMb.toFixed(0)} MB`,
      );
    }
    log(
      `  a decoder thread's isolate: ${(isolates[1].steadyMb - isolates[0].steadyMb).toFixed(0)} MB; the query thread's: ${(isolates[0].afterQueryMb - isolates[0].steadyMb).toFixed(0)} MB`,
    );
    const ptrack = await benchPtrackMapWrites(seconds);
    if (ptrack) {
      log(
        `\nptrack 2.4, same binaries and load, 64 MB map: the checkpointer wrote ${mb(ptrack.on.writtenBytes)} MB over ${ptrack.on.checkpoints} server checkpoints with ptrack on, ${mb(ptrack.off.writtenBytes)} MB over ${ptrack.off.checkpoints} off: ${mb(ptrack.perCheckpoint)} MB of map a checkpoint, ${mb(ptrack.perHour)} MB/h at checkpoint_timeout 5 min`,
      );
    }
    const hourLines = Math.round(largest.checkpointBytes / Math.max(1, largest.checkpoints) / 68);
    const s = await benchStartupWithLog(120, hourLines);
    log(
      `\nStart-up, 1 GB map: alone ${s.alone.toFixed(2)} s; with an hour of log (${s.records} records of ~${hourLines} lines, ${mb(s.logBytes)} MB) ${s.withLog.toFixed(2)} s = ${(s.withLog / s.alone).toFixed(2)}x (target <= 1.2x)`,
    );
  } finally {
    await cluster.destroy();
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** `--load DIR`: loads the data directory's checkpoint and prints the seconds it took (benchStartupWithLog). */
function loadOnce(dataDir: string): void {
  const catalog = Catalog.open(join(dataDir, 'catalog.db'));
  const t = performance.now();
  loadCheckpointedMap(dataDir, catalog, (m) => {
    throw new Error(m);
  });
  process.stdout.write(String((performance.now() - t) / 1000));
  catalog.close();
}

if (import.meta.main) {
  if (process.argv[2] === '--load') loadOnce(process.argv[3]!);
  else await benchCheckpointCost((s) => process.stdout.write(`${s}\n`));
}
