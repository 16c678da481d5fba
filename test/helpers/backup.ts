import {
  closeSync,
  copyFileSync,
  cpSync,
  existsSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readdirSync,
  readSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { dirname, join, relative } from 'node:path';
import pg from 'pg';
import type { PgCluster } from './pg-cluster.ts';

/**
 * What a ptrack-based backup tool does, with PostgreSQL's own low-level backup API (the "Making a
 * Base Backup Using the Low Level API" steps of the PostgreSQL documentation).
 */

/** Directories whose contents a backup leaves out (the directories themselves are kept). */
const EMPTIED = new Set([
  'pg_wal',
  'pg_replslot',
  'pg_dynshmem',
  'pg_notify',
  'pg_serial',
  'pg_snapshots',
  'pg_stat_tmp',
  'pg_subtrans',
]);
const SKIPPED = new Set([
  'postmaster.pid',
  'postmaster.opts',
  'backup_label',
  'tablespace_map',
  'pg_internal.init',
]);
const RELATION_FILE = /^(global|base\/\d+|pg_tblspc\/\d+\/[^/]+\/\d+)\/\d+(_(fsm|vm|init))?(\.\d+)?$/;

/** One pg_backup_start … pg_backup_stop, on the one session the API requires. */
export class LowLevelBackup {
  readonly startLsn: string;
  readonly #session: pg.Client;

  private constructor(session: pg.Client, startLsn: string) {
    this.#session = session;
    this.startLsn = startLsn;
  }

  static async start(cluster: PgCluster, label: string): Promise<LowLevelBackup> {
    const session = new pg.Client({
      host: '127.0.0.1',
      port: cluster.port,
      user: 'postgres',
      database: 'postgres',
    });
    await session.connect();
    const lsn = (await session.query('SELECT pg_backup_start($1, true)::text AS lsn', [label])).rows[0].lsn;
    return new LowLevelBackup(session, lsn);
  }

  /** Ends the backup and writes its backup_label (and tablespace_map) into `into`. */
  async stop(into: string): Promise<string> {
    const row = (
      await this.#session.query('SELECT lsn::text, labelfile, spcmapfile FROM pg_backup_stop(false)')
    ).rows[0];
    await this.#session.end();
    writeFileSync(join(into, 'backup_label'), row.labelfile);
    if (row.spcmapfile) writeFileSync(join(into, 'tablespace_map'), row.spcmapfile);
    return row.lsn;
  }
}

/** Every file (and, with `dirs`, every directory, empty ones too) of a data directory a backup takes. */
export function backupFiles(dataDir: string, dirs = false): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      const rel = relative(dataDir, path);
      if (entry.isDirectory()) {
        if (entry.name.startsWith('pgsql_tmp')) continue;
        if (dirs) out.push(rel);
        if (!EMPTIED.has(rel)) walk(path);
      } else if (!dirs && !SKIPPED.has(entry.name) && !entry.name.startsWith('pgsql_tmp')) {
        out.push(rel);
      }
    }
  };
  walk(dataDir);
  return out;
}

/** The cluster's directory tree, empty directories included (the server needs pg_tblspc, pg_twophase, …). */
function copyTree(dataDir: string, backupDir: string): void {
  for (const rel of backupFiles(dataDir, true)) mkdirSync(join(backupDir, rel), { recursive: true });
  mkdirSync(join(backupDir, 'pg_wal', 'archive_status'), { recursive: true });
}

/** A full copy of the running cluster's files (torn pages are fixed by WAL replay's full-page images). */
export function copyFull(dataDir: string, backupDir: string): void {
  copyTree(dataDir, backupDir);
  for (const rel of backupFiles(dataDir)) copyIfPresent(join(dataDir, rel), join(backupDir, rel));
}

/**
 * An incremental backup on top of a full one: relation files that existed keep the full backup's
 * blocks except those the pagemap reports, which come from the live file, and take the live file's
 * length; other files (new relations, pg_xact, pg_control, …) are copied whole; files gone from the
 * cluster are removed. Returns how many blocks were copied.
 */
export function applyIncremental(
  dataDir: string,
  fullDir: string,
  backupDir: string,
  pagemaps: ReadonlyMap<string, Uint8Array>,
): number {
  cpSync(fullDir, backupDir, { recursive: true });
  copyTree(dataDir, backupDir);
  const live = new Set(backupFiles(dataDir));
  for (const rel of backupFiles(backupDir)) if (!live.has(rel)) rmSync(join(backupDir, rel));
  let blocks = 0;
  const page = Buffer.alloc(8192);
  for (const rel of live) {
    const source = join(dataDir, rel);
    const target = join(backupDir, rel);
    if (!RELATION_FILE.test(rel) || !existsSync(join(fullDir, rel))) {
      copyIfPresent(source, target);
      continue;
    }
    let size: number;
    try {
      size = statSync(source).size;
    } catch {
      rmSync(target, { force: true });
      continue;
    }
    const map = pagemaps.get(rel);
    const out = openSync(target, 'r+');
    const src = openSync(source, 'r');
    try {
      if (map) {
        for (let b = 0; b < map.length * 8 && b * 8192 < size; b++) {
          if (!(map[b >> 3] & (1 << (b & 7)))) continue;
          const n = readSync(src, page, 0, 8192, b * 8192);
          writeSync(out, page, 0, n, b * 8192);
          blocks++;
        }
      }
      ftruncateSync(out, size);
    } finally {
      closeSync(out);
      closeSync(src);
    }
  }
  return blocks;
}

/** The WAL the restore replays: every segment in pg_wal now (wal_keep_size keeps the range). */
export function copyWal(dataDir: string, backupDir: string): void {
  for (const name of readdirSync(join(dataDir, 'pg_wal'))) {
    if (/^[0-9A-F]{24}$/.test(name))
      copyFileSync(join(dataDir, 'pg_wal', name), join(backupDir, 'pg_wal', name));
  }
}

function copyIfPresent(from: string, to: string): void {
  mkdirSync(dirname(to), { recursive: true });
  try {
    copyFileSync(from, to);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e; // dropped while we copied
  }
}
