import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseLsn } from '../src/wal/index.ts';
import { archived } from '../test/helpers/archiving.ts';
import { PgCluster } from '../test/helpers/pg-cluster.ts';
import { Daemon, median, pgbenchBacklog, timed } from './catchup.ts';

export interface BackfillResult {
  readonly backlogBytes: number;
  /** Per round: ptrackd reading the archive (--init-from), ptrackd streaming the same WAL from a slot, pg_waldump over the archived files. */
  readonly archiveSeconds: number[];
  readonly streamSeconds: number[];
  readonly waldumpSeconds: number[];
}

/**
 * Issue 15's benchmark: ~`backlogMb` of pgbench WAL in a directory archive (archive_command `cp`) and
 * held by a slot. Each round, in an order that reverses every round: ptrackd started with --init-from
 * the backlog's start and `cp` as its restore command, on a slot created at the end (everything comes
 * from the archive); ptrackd catching up the same WAL from the slot; pg_waldump --stats=record over
 * the archived files. Each ptrackd from process start until the whole backlog is applied.
 */
export async function benchBackfill(
  log: (s: string) => void,
  backlogMb = 1024,
  rounds = 3,
): Promise<BackfillResult> {
  const cluster = await PgCluster.start({
    settings: {
      wal_keep_size: "'8GB'",
      max_wal_size: "'4GB'",
      autovacuum: 'off',
      archive_mode: 'on',
      max_replication_slots: 2 * rounds + 2,
    },
  });
  const scratch = mkdtempSync(join(tmpdir(), 'ptrackd-bench-backfill-'));
  try {
    const archive = cluster.makeServerDir('archive');
    await cluster.sql(`ALTER SYSTEM SET archive_command = 'cp %p ${archive}/%f'; SELECT pg_reload_conf()`);
    for (let r = 0; r < rounds; r++) {
      await cluster.sql(`SELECT pg_create_physical_replication_slot('stream${r}', true)`);
    }
    log(`building a ${backlogMb} MB WAL backlog with pgbench, archived…`);
    const start = await pgbenchBacklog(cluster, backlogMb);
    await cluster.sql('CHECKPOINT; SELECT pg_switch_wal()');
    const end = await cluster.sql('SELECT pg_current_wal_flush_lsn()');
    await archived(cluster);
    const backlogBytes = parseLsn(end) - parseLsn(start);

    const result: BackfillResult = {
      backlogBytes,
      archiveSeconds: [],
      streamSeconds: [],
      waldumpSeconds: [],
    };
    const caughtUp = async (slot: string, extra: string[] = []) => {
      const daemon = await Daemon.spawn(cluster, slot, mkdtempSync(join(scratch, `${slot}-`)), 2, extra);
      try {
        await daemon.waitApplied(parseLsn(end));
      } finally {
        await daemon.stop();
      }
    };
    for (let r = 0; r < rounds; r++) {
      const kinds = [
        async () => {
          await cluster.sql(`SELECT pg_create_physical_replication_slot('late${r}', true)`);
          const restore = ['--restore-command', `cp ${archive}/%f "%p"`, '--init-from', start];
          result.archiveSeconds.push(await timed(() => caughtUp(`late${r}`, restore)));
          await cluster.sql(`SELECT pg_drop_replication_slot('late${r}')`);
        },
        async () => result.streamSeconds.push(await timed(() => caughtUp(`stream${r}`))),
        async () =>
          result.waldumpSeconds.push(
            await timed(() =>
              cluster.client('pg_waldump', ['--stats=record', '-p', archive, '-s', start, '-e', end]),
            ),
          ),
      ];
      for (const run of r % 2 === 0 ? kinds : [...kinds].reverse()) await run();
      log(
        `  round ${r + 1}: archive ${result.archiveSeconds[r].toFixed(2)} s, slot ${result.streamSeconds[r].toFixed(2)} s, pg_waldump ${result.waldumpSeconds[r].toFixed(2)} s`,
      );
    }
    return result;
  } finally {
    await cluster.destroy();
    rmSync(scratch, { recursive: true, force: true });
  }
}

export function printBackfill(log: (s: string) => void, r: BackfillResult): void {
  const mb = r.backlogBytes / 2 ** 20;
  const row = (name: string, xs: number[]) =>
    log(
      `${name.padEnd(44)} ${median(xs).toFixed(2).padStart(7)} s ${(mb / median(xs)).toFixed(0).padStart(6)} MB/s   (runs ${xs.map((x) => x.toFixed(2)).join(', ')})`,
    );
  log(
    `\nBackfill from a directory archive: ${mb.toFixed(0)} MB of pgbench WAL, medians of ${r.archiveSeconds.length} rounds`,
  );
  row('ptrackd --init-from, restore_command cp', r.archiveSeconds);
  row('ptrackd catching up from a slot', r.streamSeconds);
  row('pg_waldump --stats=record over the archive', r.waldumpSeconds);
  log(
    `ratio archive / slot throughput: ${(median(r.streamSeconds) / median(r.archiveSeconds)).toFixed(2)}x; archive / pg_waldump: ${(median(r.waldumpSeconds) / median(r.archiveSeconds)).toFixed(2)}x`,
  );
}
