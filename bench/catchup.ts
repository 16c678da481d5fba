import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseLsn } from '../src/wal/index.ts';
import { followArgs } from '../test/helpers/daemon.ts';
import { REPO_ROOT } from '../test/helpers/fixtures.ts';
import { freePort, PgCluster } from '../test/helpers/pg-cluster.ts';

export interface CatchUpResult {
  readonly backlogBytes: number;
  /** pg_receivewal --no-sync from a slot to a directory: the median of three runs, and the runs. */
  readonly receivewalSeconds: number;
  readonly receivewalRuns: readonly number[];
  /** ptrackd --workers 2 from its start to the whole backlog applied, in the same three rounds. */
  readonly ptrackdRuns: readonly number[];
  /** CPU seconds pg_receivewal used in each pgbench run it followed, and the WAL each run wrote. */
  readonly receivewalCpuSeconds: readonly number[];
  readonly receivewalWalBytes: readonly number[];
  /** The WAL each pgbench run with ptrackd attached wrote (ptrackdCpuSeconds is its CPU). */
  readonly ptrackdWalBytes: readonly number[];
  readonly waldumpSeconds: number;
  /** ptrackd from its start to applying the whole backlog, by --workers. */
  readonly ptrackdSeconds: ReadonlyMap<number, number>;
  /** ptrackd's largest resident set during each catch-up (MB), with its 64 MB map. */
  readonly ptrackdMaxRssMb: ReadonlyMap<number, number>;
  /** pgbench TPS per run, alternating without and with ptrackd attached. */
  readonly tpsWithout: number[];
  readonly tpsWith: number[];
  /** The same with pg_receivewal streaming instead: what a walsender alone costs the server. */
  readonly tpsReceivewal: number[];
  /** CPU seconds ptrackd used during each run with it attached (a steadier figure than TPS here). */
  readonly ptrackdCpuSeconds: number[];
  /** Time from WAL reaching ptrackd to its being applied, sampled under pgbench (ms). */
  readonly lagP50Ms: number;
  readonly lagP99Ms: number;
}

/** Linux reports CPU time in clock ticks of 1/100 s (USER_HZ) on every architecture Node runs on. */
const USER_HZ = 100;

/** User + system CPU seconds a running process has used so far. */
function cpuSecondsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / USER_HZ;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A ptrackd daemon for the benchmark, and its /status. */
export class Daemon {
  readonly #child: ChildProcess;
  /** Its HTTP endpoint's port on 127.0.0.1. */
  readonly port: number;
  /** The largest resident set seen while polling (MB). */
  maxRssMb = 0;
  #logTail = '';
  private constructor(child: ChildProcess, port: number) {
    this.#child = child;
    this.port = port;
  }
  static async spawn(
    cluster: PgCluster,
    slot: string,
    dataDir: string,
    workers: number,
    extra: readonly string[] = [],
  ): Promise<Daemon> {
    const port = await freePort();
    const args = followArgs(cluster, slot, dataDir);
    if (!extra.includes('--map-size')) args.push('--map-size', '64');
    args.push('--workers', String(workers), ...extra);
    args.push('--listen', `127.0.0.1:${port}`, '--no-create-slot');
    const daemon = new Daemon(
      spawn(join(REPO_ROOT, 'bin/ptrackd'), args, { stdio: ['ignore', 'ignore', 'pipe'] }),
      port,
    );
    // its log, the last few kB of it, for the error when it exits
    daemon.#child.stderr!.on('data', (b: Buffer) => {
      daemon.#logTail = (daemon.#logTail + b.toString('utf8')).slice(-4096);
    });
    return daemon;
  }
  /** Notes the resident set now in maxRssMb. */
  sampleRss(): void {
    const rss = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${this.#child.pid}/status`, 'utf8'));
    if (rss) this.maxRssMb = Math.max(this.maxRssMb, Number(rss[1]) / 1024);
  }
  async status(): Promise<{ appliedLsn: number; receivedLsn: number } | null> {
    try {
      this.sampleRss();
      const s = (await (await fetch(`http://127.0.0.1:${this.port}/status`)).json()) as Record<
        string,
        string
      >;
      return { appliedLsn: parseLsn(s.appliedLsn), receivedLsn: parseLsn(s.receivedLsn) };
    } catch {
      return null; // not listening yet
    }
  }
  async waitApplied(lsn: number, pollMs = 20): Promise<void> {
    for (;;) {
      const s = await this.status();
      if (s && s.appliedLsn >= lsn) return;
      if (this.#child.exitCode !== null)
        throw new Error(`ptrackd exited ${this.#child.exitCode}; its log ended:\n${this.#logTail}`);
      await sleep(pollMs);
    }
  }
  get pid(): number {
    return this.#child.pid!;
  }
  /** User + system CPU seconds the daemon has used so far. */
  cpuSeconds(): number {
    return cpuSecondsOf(this.#child.pid!);
  }

  /** User + system CPU seconds so far by thread name (the main thread, decoder workers, …). */
  threadCpuSeconds(): Map<string, number> {
    const out = new Map<string, number>();
    const pid = this.#child.pid!;
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        const name = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
        const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        const cpu = (Number(fields[11]) + Number(fields[12])) / USER_HZ;
        out.set(name, (out.get(name) ?? 0) + cpu);
      } catch {
        // the thread ended
      }
    }
    return out;
  }
  async stop(): Promise<void> {
    if (this.#child.exitCode !== null) return;
    const exited = new Promise((r) => this.#child.once('exit', r));
    this.#child.kill('SIGTERM');
    await exited;
  }
}

/** Runs `f` while pg_receivewal streams from the server into a scratch directory (given its pid). */
export async function receivewalAttached<T>(
  cluster: PgCluster,
  scratch: string,
  f: (pid: number) => Promise<T>,
  extra: readonly string[] = [],
): Promise<T> {
  const dir = mkdtempSync(join(scratch, 'recv-load-'));
  const env = { ...process.env, PGHOST: '127.0.0.1', PGPORT: String(cluster.port), PGUSER: 'postgres' };
  const args = ['-D', dir, '-n', ...extra];
  const recv = spawn(join(cluster.bindir, 'pg_receivewal'), args, { env, stdio: 'ignore' });
  try {
    await sleep(1000);
    return await f(recv.pid!);
  } finally {
    recv.kill('SIGINT');
    await new Promise((r) => recv.once('exit', r));
    rmSync(dir, { recursive: true, force: true });
  }
}

/** WAL from pgbench (scale 30, then 5-second runs) until `backlogMb` follow the returned start LSN. */
export async function pgbenchBacklog(cluster: PgCluster, backlogMb: number): Promise<string> {
  const start = await cluster.sql('SELECT pg_current_wal_insert_lsn()');
  await cluster.client('pgbench', ['-i', '-q', '-s', '30']);
  for (;;) {
    const size = Number(await cluster.sql(`SELECT pg_current_wal_insert_lsn() - '${start}'::pg_lsn`));
    if (size >= backlogMb * 2 ** 20) break;
    await cluster.client('pgbench', ['-n', '-c', '4', '-j', '2', '-T', '5']);
  }
  return start;
}

/** The middle value (the upper middle of an even count). */
export function median(xs: readonly number[]): number {
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
}

export async function timed(f: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await f();
  return (performance.now() - t) / 1000;
}

/**
 * Issue 4 §6 and issue 8 targets 2–3 in one run: a backlog of `backlogMb` of WAL retained by slots,
 * streamed by pg_receivewal, read by pg_waldump --stats=record, and caught up by ptrackd with 1 and 2
 * workers (from process start until the whole backlog is applied); then pgbench TPS alternating without
 * and with ptrackd attached (and with pg_receivewal instead), in an order that reverses every round,
 * with the CPU time ptrackd used in each run; and ptrackd's lag sampled under that load.
 */
export async function benchCatchUp(
  log: (s: string) => void,
  backlogMb = 1024,
  loadRounds = 4,
): Promise<CatchUpResult> {
  const cluster = await PgCluster.start({
    settings: {
      wal_keep_size: "'8GB'",
      max_wal_size: "'4GB'",
      autovacuum: 'off',
      fsync: 'on',
      max_replication_slots: 12,
      max_wal_senders: 12,
    },
  });
  const scratch = mkdtempSync(join(tmpdir(), 'ptrackd-bench-'));
  try {
    for (const slot of ['recv1', 'recv2', 'recv3', 'w1', 'w2_1', 'w2_2', 'w2_3', 'load']) {
      await cluster.sql(`SELECT pg_create_physical_replication_slot('${slot}', true)`);
    }
    log(`building a ${backlogMb} MB WAL backlog with pgbench…`);
    const start = await pgbenchBacklog(cluster, backlogMb);
    await cluster.sql('CHECKPOINT');
    const end = await cluster.sql('SELECT pg_current_wal_flush_lsn()');
    const backlogBytes = parseLsn(end) - parseLsn(start);

    // pg_receivewal --no-sync: the cost of receiving the bytes, not of the disk's fsyncs (issue 16 §3).
    const receiveOnce = (round: number) =>
      timed(() =>
        cluster.client('pg_receivewal', [
          '-D',
          mkdtempSync(join(scratch, 'recv-')),
          '-S',
          `recv${round}`,
          '-E',
          end,
          '-n',
          '--no-sync',
        ]),
      );
    const catchUpOnce = async (slot: string, workers: number) => {
      const t = performance.now();
      const daemon = await Daemon.spawn(cluster, slot, join(scratch, slot), workers);
      await daemon.waitApplied(parseLsn(end));
      const seconds = (performance.now() - t) / 1000;
      await daemon.stop();
      return { seconds, maxRssMb: daemon.maxRssMb };
    };
    const waldumpSeconds = await timed(() =>
      cluster.client('pg_waldump', ['--stats=record', '-p', cluster.walDir, '-s', start, '-e', end]),
    );
    // Three rounds, alternating which goes first, each from its own slot holding the whole backlog.
    const receivewalRuns: number[] = [];
    const ptrackdRuns: number[] = [];
    const ptrackdMaxRssMb = new Map<number, number>();
    for (let round = 1; round <= 3; round++) {
      const steps = [
        async () => receivewalRuns.push(await receiveOnce(round)),
        async () => {
          const r = await catchUpOnce(`w2_${round}`, 2);
          ptrackdRuns.push(r.seconds);
          ptrackdMaxRssMb.set(2, Math.max(ptrackdMaxRssMb.get(2) ?? 0, r.maxRssMb));
        },
      ];
      for (const step of round % 2 === 1 ? steps : steps.reverse()) await step();
    }
    const one = await catchUpOnce('w1', 1);
    ptrackdMaxRssMb.set(1, one.maxRssMb);
    const receivewalSeconds = median(receivewalRuns);
    const ptrackdSeconds = new Map([
      [1, one.seconds],
      [2, median(ptrackdRuns)],
    ]);

    // Under load: the same pgbench, alternating, ptrackd (default workers) attached or not.
    await cluster.client('pgbench', ['-i', '-q', '-s', '10']);
    const tpsWithout: number[] = [];
    const tpsWith: number[] = [];
    const tpsReceivewal: number[] = [];
    const lags: number[] = [];
    const pgbench = async () =>
      Number(
        /tps = ([\d.]+)/.exec(await cluster.client('pgbench', ['-n', '-c', '4', '-j', '2', '-T', '10']))![1],
      );
    const loadDir = join(scratch, 'load');
    const attached = async <T>(f: (d: Daemon) => Promise<T>): Promise<T> => {
      const daemon = await Daemon.spawn(cluster, 'load', loadDir, 2);
      try {
        await daemon.waitApplied(parseLsn(await cluster.sql('SELECT pg_current_wal_flush_lsn()')));
        return await f(daemon);
      } finally {
        await daemon.stop();
      }
    };
    const withReceivewal = () =>
      receivewalAttached(cluster, scratch, async (pid) => {
        const cpu = cpuSecondsOf(pid);
        const tps = await pgbench();
        receivewalCpuSeconds.push(cpuSecondsOf(pid) - cpu);
        return tps;
      });
    const ptrackdCpuSeconds: number[] = [];
    const receivewalCpuSeconds: number[] = [];
    const ptrackdWalBytes: number[] = [];
    const receivewalWalBytes: number[] = [];
    const walOf = async (run: () => Promise<number>, into: number[]) => {
      const before = parseLsn(await cluster.sql('SELECT pg_current_wal_flush_lsn()'));
      const tps = await run();
      into.push(parseLsn(await cluster.sql('SELECT pg_current_wal_flush_lsn()')) - before);
      return tps;
    };
    const withPtrackd = () =>
      attached(async (daemon) => {
        const cpu = daemon.cpuSeconds();
        const tps = await pgbench();
        ptrackdCpuSeconds.push(daemon.cpuSeconds() - cpu);
        return tps;
      });
    // TPS drifts over a run of runs (caches warm up), so each round reverses the order of the last.
    const kinds = [
      async () => tpsWithout.push(await pgbench()),
      async () => tpsWith.push(await walOf(withPtrackd, ptrackdWalBytes)),
      async () => tpsReceivewal.push(await walOf(withReceivewal, receivewalWalBytes)),
    ];
    for (let round = 0; round < loadRounds; round++) {
      for (const run of round % 2 === 0 ? kinds : [...kinds].reverse()) await run();
    }
    // Lag apart from the TPS runs: sampling it costs the daemon CPU that pgbench would miss.
    await attached(async (daemon) => {
      let sampling = true;
      const sampler = (async () => {
        while (sampling) {
          const s = await daemon.status();
          if (s) {
            const at = performance.now();
            await daemon.waitApplied(s.receivedLsn, 2);
            lags.push(performance.now() - at);
          }
          await sleep(50);
        }
      })();
      await pgbench();
      sampling = false;
      await sampler;
    });
    lags.sort((a, b) => a - b);
    const pct = (p: number) => lags[Math.min(lags.length - 1, Math.floor((lags.length * p) / 100))] ?? 0;
    return {
      backlogBytes,
      receivewalSeconds,
      receivewalRuns,
      ptrackdRuns,
      receivewalCpuSeconds,
      ptrackdWalBytes,
      receivewalWalBytes,
      waldumpSeconds,
      ptrackdSeconds,
      ptrackdMaxRssMb,
      tpsWithout,
      tpsWith,
      tpsReceivewal,
      ptrackdCpuSeconds,
      lagP50Ms: pct(50),
      lagP99Ms: pct(99),
    };
  } finally {
    await cluster.destroy();
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** The catch-up and steady-load results, as `npm run bench` prints them. */
export function printCatchUp(c: CatchUpResult, log: (s: string) => void): void {
  const mbOf = (bytes: number, s: number) => (bytes / 1e6 / s).toFixed(0);
  log(
    `\nEnd to end from a slot holding ${(c.backlogBytes / 2 ** 20).toFixed(0)} MB of WAL (one server; three rounds, alternating)`,
  );
  log(
    `  pg_receivewal --no-sync        ${c.receivewalSeconds.toFixed(2)} s  ${mbOf(c.backlogBytes, c.receivewalSeconds)} MB/s  (median; runs ${c.receivewalRuns.map((s) => s.toFixed(2)).join(', ')})`,
  );
  log(
    `  pg_waldump --stats=record      ${c.waldumpSeconds.toFixed(2)} s  ${mbOf(c.backlogBytes, c.waldumpSeconds)} MB/s`,
  );
  for (const [workers, s] of c.ptrackdSeconds) {
    log(
      `  ptrackd --workers ${workers}           ${s.toFixed(2)} s  ${mbOf(c.backlogBytes, s)} MB/s  (${(s / c.receivewalSeconds).toFixed(2)}x pg_receivewal's time, max RSS ${c.ptrackdMaxRssMb.get(workers)!.toFixed(0)} MB${workers === 2 ? `; runs ${c.ptrackdRuns.map((r, i) => `${r.toFixed(2)} (${(r / c.receivewalRuns[i]).toFixed(2)}x)`).join(', ')}` : ''})`,
    );
  }
  const avg = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const overhead = (1 - avg(c.tpsWith) / avg(c.tpsWithout)) * 100;
  log(
    '\npgbench -c 4 -j 2 -T 10, alternating without / with ptrackd attached / with pg_receivewal, the order reversed each round',
  );
  log(`  TPS without: ${c.tpsWithout.map((t) => t.toFixed(0)).join(', ')}`);
  log(`  TPS with:    ${c.tpsWith.map((t) => t.toFixed(0)).join(', ')}`);
  log(
    `  TPS with pg_receivewal instead: ${c.tpsReceivewal.map((t) => t.toFixed(0)).join(', ')} (${((1 - avg(c.tpsReceivewal) / avg(c.tpsWithout)) * 100).toFixed(1)}%: a walsender's own cost)`,
  );
  const lostReceivewal = (1 - avg(c.tpsReceivewal) / avg(c.tpsWithout)) * 100;
  log(
    `  TPS lost: ${overhead.toFixed(1)}% with ptrackd, ${lostReceivewal.toFixed(1)}% with pg_receivewal: ${(overhead - lostReceivewal).toFixed(1)} points more (target <= 3)`,
  );
  // Each round's runs are minutes apart at most: the difference within a round drifts less than the TPS.
  const pointsPerRound = c.tpsWith.map((t, i) => ((c.tpsReceivewal[i] - t) / c.tpsWithout[i]) * 100);
  log(
    `  points more per round (with pg_receivewal − with ptrackd, in % of that round's TPS without): ${pointsPerRound.map((p) => p.toFixed(1)).join(', ')}; median ${median(pointsPerRound).toFixed(1)}`,
  );
  log(
    `  overhead ${overhead.toFixed(1)}%; lag from receipt to applied: p50 ${c.lagP50Ms.toFixed(0)} ms, p99 ${c.lagP99Ms.toFixed(0)} ms`,
  );
  const cores = availableParallelism();
  log(
    `  ptrackd's CPU per run: ${c.ptrackdCpuSeconds.map((s) => s.toFixed(2)).join(', ')} s = ${((avg(c.ptrackdCpuSeconds) / (10 * cores)) * 100).toFixed(1)}% of the ${cores} cores' 10 s, which a saturated server loses`,
  );

  const perGb = (cpu: readonly number[], wal: readonly number[]) =>
    cpu.reduce((a, b) => a + b, 0) / (wal.reduce((a, b) => a + b, 0) / 2 ** 30);
  const ptrackdPerGb = perGb(c.ptrackdCpuSeconds, c.ptrackdWalBytes);
  const receivewalPerGb = perGb(c.receivewalCpuSeconds, c.receivewalWalBytes);
  log(
    `  CPU per GB of WAL followed: ptrackd ${ptrackdPerGb.toFixed(2)} s, pg_receivewal ${receivewalPerGb.toFixed(2)} s = ${(ptrackdPerGb / receivewalPerGb).toFixed(2)}x (target <= 3x)`,
  );
}

if (import.meta.main) {
  const log = (s: string) => process.stdout.write(`${s}\n`);
  // BENCH_LOAD_ROUNDS: more rounds of the steady-load TPS runs, whose spread on a VM is several points.
  const backlogMb = Number(process.env.BENCH_BACKLOG_MB ?? 1024);
  printCatchUp(await benchCatchUp(log, backlogMb, Number(process.env.BENCH_LOAD_ROUNDS ?? 4)), log);
}
