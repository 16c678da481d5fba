import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseLsn } from '../src/wal/index.ts';
import { followArgs } from '../test/helpers/daemon.ts';
import { REPO_ROOT } from '../test/helpers/fixtures.ts';
import { freePort, PgCluster } from '../test/helpers/pg-cluster.ts';

export interface CatchUpResult {
  readonly backlogBytes: number;
  readonly receivewalSeconds: number;
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

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A ptrackd daemon for the benchmark, and its /status. */
export class Daemon {
  readonly #child: ChildProcess;
  /** Its HTTP endpoint's port on 127.0.0.1. */
  readonly port: number;
  /** The largest resident set seen while polling (MB). */
  maxRssMb = 0;
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
    args.push('--map-size', '64', '--workers', String(workers), ...extra);
    args.push('--listen', `127.0.0.1:${port}`, '--no-create-slot');
    return new Daemon(spawn(join(REPO_ROOT, 'bin/ptrackd'), args, { stdio: 'ignore' }), port);
  }
  async status(): Promise<{ appliedLsn: number; receivedLsn: number } | null> {
    try {
      const rss = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${this.#child.pid}/status`, 'utf8'));
      if (rss) this.maxRssMb = Math.max(this.maxRssMb, Number(rss[1]) / 1024);
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
      if (this.#child.exitCode !== null) throw new Error(`ptrackd exited ${this.#child.exitCode}`);
      await sleep(pollMs);
    }
  }
  /** User + system CPU seconds the daemon has used so far. */
  cpuSeconds(): number {
    const stat = readFileSync(`/proc/${this.#child.pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / USER_HZ;
  }
  async stop(): Promise<void> {
    if (this.#child.exitCode !== null) return;
    const exited = new Promise((r) => this.#child.once('exit', r));
    this.#child.kill('SIGTERM');
    await exited;
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
export async function benchCatchUp(log: (s: string) => void, backlogMb = 1024): Promise<CatchUpResult> {
  const cluster = await PgCluster.start({
    settings: { wal_keep_size: "'8GB'", max_wal_size: "'4GB'", autovacuum: 'off', fsync: 'on' },
  });
  const scratch = mkdtempSync(join(tmpdir(), 'ptrackd-bench-'));
  try {
    for (const slot of ['recv', 'w1', 'w2', 'load']) {
      await cluster.sql(`SELECT pg_create_physical_replication_slot('${slot}', true)`);
    }
    log(`building a ${backlogMb} MB WAL backlog with pgbench…`);
    const start = await pgbenchBacklog(cluster, backlogMb);
    await cluster.sql('CHECKPOINT');
    const end = await cluster.sql('SELECT pg_current_wal_flush_lsn()');
    const backlogBytes = parseLsn(end) - parseLsn(start);

    const receivewalSeconds = await timed(() =>
      cluster.client('pg_receivewal', [
        '-D',
        mkdtempSync(join(scratch, 'recv-')),
        '-S',
        'recv',
        '-E',
        end,
        '-n',
      ]),
    );
    const waldumpSeconds = await timed(() =>
      cluster.client('pg_waldump', ['--stats=record', '-p', cluster.walDir, '-s', start, '-e', end]),
    );
    const ptrackdSeconds = new Map<number, number>();
    const ptrackdMaxRssMb = new Map<number, number>();
    for (const workers of [1, 2]) {
      const t = performance.now();
      const daemon = await Daemon.spawn(cluster, `w${workers}`, join(scratch, `w${workers}`), workers);
      await daemon.waitApplied(parseLsn(end));
      ptrackdSeconds.set(workers, (performance.now() - t) / 1000);
      ptrackdMaxRssMb.set(workers, daemon.maxRssMb);
      await daemon.stop();
    }

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
    const withReceivewal = async () => {
      const dir = mkdtempSync(join(scratch, 'recv-load-'));
      const env = { ...process.env, PGHOST: '127.0.0.1', PGPORT: String(cluster.port), PGUSER: 'postgres' };
      const recv = spawn(join(cluster.bindir, 'pg_receivewal'), ['-D', dir, '-n'], {
        env,
        stdio: 'ignore',
      });
      try {
        await sleep(1000);
        return await pgbench();
      } finally {
        recv.kill('SIGINT');
        await new Promise((r) => recv.once('exit', r));
        rmSync(dir, { recursive: true, force: true });
      }
    };
    const ptrackdCpuSeconds: number[] = [];
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
      async () => tpsWith.push(await withPtrackd()),
      async () => tpsReceivewal.push(await withReceivewal()),
    ];
    for (let round = 0; round < 4; round++) {
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
