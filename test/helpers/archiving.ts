import { segmentFileName } from '../../src/archive/index.ts';
import type { HistoryEntry } from '../../src/catalog/index.ts';
import { parseLsn } from '../../src/wal/index.ts';
import { catalogIn } from './catalog.ts';
import { PgCluster } from './pg-cluster.ts';

/** initdb's default wal_segment_size. */
export const SEGMENT = 16 << 20;

/**
 * A server that archives into a directory (archive_command `cp`), and the matching
 * `--restore-command` for ptrackd; `cleanup` gets what destroys it.
 */
export async function archivingCluster(
  cleanup: (() => Promise<unknown>)[],
  settings: Record<string, string | number> = {},
) {
  const cluster = await PgCluster.start({
    settings: {
      wal_keep_size: 0,
      max_slot_wal_keep_size: "'16MB'",
      archive_mode: 'on',
      autovacuum: 'off',
      ...settings,
    },
  });
  cleanup.push(() => cluster.destroy());
  const archive = cluster.makeServerDir('archive');
  await cluster.sql(`ALTER SYSTEM SET archive_command = 'cp %p ${archive}/%f'; SELECT pg_reload_conf()`);
  const restore = ['--restore-command', `cp ${archive}/%f "%p"`];
  return { cluster, archive, restore };
}

/** Waits until the archiver has archived every segment of timeline `tli` before the current one. */
export async function archived(cluster: PgCluster, tli = 1): Promise<void> {
  const lsn = parseLsn(await cluster.sql('SELECT pg_current_wal_lsn()'));
  const previous = segmentFileName(tli, lsn - SEGMENT, SEGMENT);
  for (const deadline = Date.now() + 60_000; ; await new Promise((r) => setTimeout(r, 100))) {
    const last = await cluster.sql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver");
    if (last >= previous) return;
    if (Date.now() > deadline) throw new Error(`the archiver is at "${last}", not yet at ${previous}`);
  }
}

/** The map's history (init, gaps) as the catalog records it. */
export function catalogHistory(dataDir: string): HistoryEntry[] {
  return catalogIn(dataDir).history;
}
