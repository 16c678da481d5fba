import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { RelationFork } from '../catalog/index.ts';
import {
  DEFAULTTABLESPACE_OID,
  GLOBALTABLESPACE_OID,
  parseRelationFileName,
  RELSEG_SIZE,
  type RelationFileId,
  relationFilePath,
} from './paths.ts';

/** A relation segment file and how many blocks it holds. */
export interface RelationFile extends RelationFileId {
  readonly path: string;
  readonly blocks: number;
}

/** Which files a question needs the length of (default: all); the others are passed over unopened. */
export type FileFilter = (id: RelationFileId) => boolean;

/**
 * Walks PGDATA as ptrack does: global/, base/<db>/, pg_tblspc/<spc>/<versionDir>/<db>/; only files
 * named like relation segments, not temporary relations (t<backend>_<rel>) and not empty files. Files
 * that vanish during the walk (a concurrent DROP) are skipped. Only files `wanted` passes are stat'ed
 * and yielded: the walk costs a readdir per directory, and a stat per file that can have changed.
 */
export function* relationFilesInPgdata(
  pgdata: string,
  versionDir: string,
  blockSize: number,
  wanted: FileFilter = () => true,
): Generator<RelationFile> {
  const o = { pgdata, versionDir, blockSize, wanted };
  yield* filesIn(o, 'global', GLOBALTABLESPACE_OID, 0);
  for (const db of numericEntries(join(pgdata, 'base'))) {
    yield* filesIn(o, join('base', String(db)), DEFAULTTABLESPACE_OID, db);
  }
  for (const spc of numericEntries(join(pgdata, 'pg_tblspc'))) {
    const dir = join('pg_tblspc', String(spc), versionDir);
    for (const db of numericEntries(join(pgdata, dir))) yield* filesIn(o, join(dir, String(db)), spc, db);
  }
}

function* filesIn(
  o: { pgdata: string; versionDir: string; blockSize: number; wanted: FileFilter },
  dir: string,
  spc: number,
  db: number,
) {
  const { pgdata, versionDir, blockSize } = o;
  for (const name of entries(join(pgdata, dir))) {
    const parsed = parseRelationFileName(name);
    if (!parsed || !o.wanted({ spc, db, ...parsed })) continue;
    let size: number;
    try {
      size = statSync(join(pgdata, dir, name)).size;
    } catch {
      continue;
    }
    const blocks = Math.floor(size / blockSize);
    if (blocks === 0) continue;
    const id = { spc, db, ...parsed };
    yield { ...id, path: relationFilePath(id, versionDir), blocks };
  }
}

function entries(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

function numericEntries(dir: string): number[] {
  return entries(dir)
    .filter((e) => /^\d+$/.test(e))
    .map(Number)
    .sort((a, b) => a - b);
}

/**
 * The relation files the catalog knows of: every fork WAL named since init_lsn and not dropped, as long
 * as the highest block WAL referenced. What it cannot know is documented in docs/sql.md (files copied
 * by CREATE DATABASE ... FILE_COPY, zero pages a relation was extended with but no WAL names, FSM
 * forks WAL never referenced).
 */
export function* relationFilesInCatalog(
  forks: readonly RelationFork[],
  versionDir: string,
  wanted: FileFilter = () => true,
): Generator<RelationFile> {
  for (const f of forks) {
    if (f.droppedLsn !== null || f.maxBlock < 0) continue;
    const total = f.maxBlock + 1;
    for (let segno = 0; segno * RELSEG_SIZE < total; segno++) {
      const id = { spc: f.spc, db: f.db, rel: f.rel, fork: f.fork, segno };
      if (!wanted(id)) continue;
      yield {
        ...id,
        path: relationFilePath(id, versionDir),
        blocks: Math.min(RELSEG_SIZE, total - segno * RELSEG_SIZE),
      };
    }
  }
}
