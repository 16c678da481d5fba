import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatLsn, parseLsn } from '../src/wal/index.ts';
import { REPO_ROOT } from '../test/helpers/fixtures.ts';
import { PgCluster } from '../test/helpers/pg-cluster.ts';
import { Daemon, median } from './catchup.ts';
import { pgWaldumpStats, type WalCorpus } from './wal-corpus.ts';

/** One command's runs: wall seconds (median and range) and its peak resident set (MB, largest run). */
export interface CommandRuns {
  readonly name: string;
  readonly median: number;
  readonly min: number;
  readonly max: number;
  readonly peakRssMb: number | undefined;
}

export interface StartupResult {
  /** `node -e 0` on the Node bin/ptrackd runs, then each command (issue 16 §1). */
  readonly yardstick: CommandRuns;
  readonly commands: readonly CommandRuns[];
  /** `pg_waldump --stats=record` and `ptrackd waldump --stats=record` over the same WAL (§2). */
  readonly waldumpBytes: number;
  readonly pgWaldump: CommandRuns;
  readonly ptrackdWaldump: CommandRuns;
}

const PTRACKD = join(REPO_ROOT, 'bin/ptrackd');
// GNU time reports a process's peak resident set; without it the benchmark still times the commands.
const GNU_TIME = existsSync('/usr/bin/time') ? '/usr/bin/time' : undefined;

/** Runs a command to completion as a user would; its wall time includes exec and exit. */
function runOnce(argv: readonly string[], scratch: string): { seconds: number; rssMb: number | undefined } {
  const rssFile = join(scratch, 'rss');
  const full = GNU_TIME ? [GNU_TIME, '-f', '%M', '-o', rssFile, ...argv] : argv;
  const t = performance.now();
  const r = spawnSync(full[0], full.slice(1), { encoding: 'utf8', maxBuffer: 1 << 26 });
  const seconds = (performance.now() - t) / 1000;
  if (r.status !== 0) throw new Error(`${argv.join(' ')} exited ${r.status}: ${r.stderr}`);
  return {
    seconds,
    rssMb: GNU_TIME ? Number(readFileSync(rssFile, 'utf8').trim().split('\n').at(-1)) / 1024 : undefined,
  };
}

/** Runs each command `rounds` times, interleaved round by round so that a busy moment hits them alike. */
function interleaved(
  commands: readonly (readonly [string, readonly string[]])[],
  rounds: number,
  scratch: string,
): CommandRuns[] {
  const runs = commands.map(() => [] as { seconds: number; rssMb: number | undefined }[]);
  for (const [, argv] of commands) runOnce(argv, scratch); // warm the page cache and Node's compile cache
  for (let round = 0; round < rounds; round++) {
    for (const [i, [, argv]] of commands.entries()) runs[i].push(runOnce(argv, scratch));
  }
  return commands.map(([name], i) => {
    const seconds = runs[i].map((r) => r.seconds);
    const rss = runs[i].map((r) => r.rssMb ?? Number.NaN);
    return {
      name,
      median: median(seconds),
      min: Math.min(...seconds),
      max: Math.max(...seconds),
      peakRssMb: GNU_TIME ? Math.max(...rss) : undefined,
    };
  });
}

/**
 * Issue 16 §1–2. §1: `ptrackd --version`, `--help`, `sql` (one small query answered by a running daemon
 * once it is fresh) and `status`, median of 10 each, against `node -e 0` on the same Node in the same
 * rounds. §2: `ptrackd waldump --stats=record` as a whole process against `pg_waldump --stats=record` over
 * the first `waldumpMb` of the pgbench corpus, median of 5, alternating.
 */
export async function benchStartup(
  log: (s: string) => void,
  corpus: WalCorpus,
  waldumpMb = 350,
): Promise<StartupResult> {
  const scratch = mkdtempSync(join(tmpdir(), 'ptrackd-bench-startup-'));
  const cluster = await PgCluster.start();
  let daemon: Daemon | undefined;
  try {
    await cluster.sql("SELECT pg_create_physical_replication_slot('ptrack', true)");
    daemon = await Daemon.spawn(cluster, 'ptrack', join(scratch, 'data'), 2);
    await daemon.waitApplied(parseLsn(await cluster.sql('SELECT pg_current_wal_flush_lsn()')));
    const listen = ['--listen', `127.0.0.1:${daemon.port}`];
    log('timing ptrackd commands against node -e 0 (10 rounds)…');
    const [yardstick, ...commands] = interleaved(
      [
        ['node -e 0', [process.execPath, '-e', '0']],
        ['ptrackd --version', [PTRACKD, '--version']],
        ['ptrackd --help', [PTRACKD, '--help']],
        ['ptrackd sql (one query)', [PTRACKD, 'sql', ...listen, 'SELECT ptrack_version()']],
        ['ptrackd status', [PTRACKD, 'status', ...listen]],
      ],
      10,
      scratch,
    );
    const endLsn = formatLsn(parseLsn(corpus.start) + waldumpMb * 2 ** 20);
    log(`timing ptrackd waldump and pg_waldump over ${waldumpMb} MB of WAL (5 rounds)…`);
    const [pgWaldump, ptrackdWaldump] = interleaved(
      [
        ['pg_waldump --stats=record', pgWaldumpStats(corpus, endLsn)],
        [
          'ptrackd waldump --stats=record',
          [PTRACKD, 'waldump', '--stats=record', '--start', corpus.start, '--end', endLsn, corpus.dir],
        ],
      ],
      5,
      scratch,
    );
    return { yardstick, commands, waldumpBytes: waldumpMb * 2 ** 20, pgWaldump, ptrackdWaldump };
  } finally {
    await daemon?.stop();
    await cluster.destroy();
    rmSync(scratch, { recursive: true, force: true });
  }
}

export function printStartup(r: StartupResult, log: (s: string) => void): void {
  const row = (c: CommandRuns, ratio: string) =>
    log(
      `  ${c.name.padEnd(32)} ${c.median.toFixed(3).padStart(7)} s  (${c.min.toFixed(3)}–${c.max.toFixed(3)})  ${ratio.padStart(6)}  ${c.peakRssMb === undefined ? '' : `${c.peakRssMb.toFixed(0)} MB peak`}`,
    );
  log('\nStart-up as a command (issue 16 §1): median of 10, interleaved; target <= 3x node -e 0, < 60 MB');
  row(r.yardstick, '1.00x');
  for (const c of r.commands) row(c, `${(c.median / r.yardstick.median).toFixed(2)}x`);
  log(
    `\nwaldump as a whole process over ${(r.waldumpBytes / 2 ** 20).toFixed(0)} MB (§2): median of 5; target >= 0.4x pg_waldump's speed`,
  );
  row(r.pgWaldump, '1.00x');
  row(r.ptrackdWaldump, `${(r.pgWaldump.median / r.ptrackdWaldump.median).toFixed(2)}x`);
}

if (import.meta.main) {
  const { walCorpus } = await import('./wal-corpus.ts');
  const log = (s: string) => process.stdout.write(`${s}\n`);
  printStartup(await benchStartup(log, await walCorpus(log, 'pgbench')), log);
}
