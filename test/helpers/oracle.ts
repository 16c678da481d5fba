import { closeSync, existsSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { type PagemapRow, relationFilesInPgdata, tablespaceVersionDir } from '../../src/query/index.ts';
import type { Lsn } from '../../src/wal/index.ts';
import type { PgCluster } from './pg-cluster.ts';

/**
 * The page-LSN oracle (design.md §6): after a CHECKPOINT, every page of every main and VM fork in PGDATA
 * whose header LSN (pd_lsn) is >= X must be in pagemapset(X). Unlogged relations (those with an init
 * fork) are the documented exception: their pages never reach WAL.
 */
export function pagesChangedSince(pgdata: string, versionDir: string, since: Lsn): Set<string> {
  const changed = new Set<string>();
  const page = Buffer.alloc(8192);
  for (const f of relationFilesInPgdata(pgdata, versionDir, 8192)) {
    if (f.fork !== 0 && f.fork !== 2) continue;
    const dir = join(pgdata, f.path, '..');
    if (existsSync(join(dir, `${f.rel}_init`))) continue;
    const fd = openSync(join(pgdata, f.path), 'r');
    try {
      for (let b = 0; b < f.blocks; b++) {
        if (readSync(fd, page, 0, 8192, b * 8192) < 8192) break;
        const pdLsn = page.readUInt32LE(0) * 0x1_0000_0000 + page.readUInt32LE(4);
        if (pdLsn >= since) changed.add(`${f.path} ${b}`);
      }
    } finally {
      closeSync(fd);
    }
  }
  return changed;
}

/** `path block` for every bit set in pagemapset rows. */
export function reportedBlocks(rows: Iterable<Pick<PagemapRow, 'path' | 'pagemap'>>): Set<string> {
  const out = new Set<string>();
  for (const row of rows) {
    for (let b = 0; b < row.pagemap.length * 8; b++)
      if (row.pagemap[b >> 3] & (1 << (b & 7))) out.add(`${row.path} ${b}`);
  }
  return out;
}

/** The oracle on a live cluster: asks it for its tablespace directory name, then walks its PGDATA. */
export async function clusterPagesChangedSince(cluster: PgCluster, since: Lsn): Promise<Set<string>> {
  const version = await cluster.sql(
    `SELECT current_setting('server_version_num'), catalog_version_no FROM pg_control_system()`,
  );
  const [num, cat] = version.split('|').map(Number);
  return pagesChangedSince(cluster.dataDir, tablespaceVersionDir(num, cat), since);
}
