/** Relation file paths relative to PGDATA, as GetRelationPath names them (ptrack-compat.md §1). */

export const GLOBALTABLESPACE_OID = 1664;
export const DEFAULTTABLESPACE_OID = 1663;
export { RELSEG_SIZE } from '../catalog/index.ts';

const FORK_SUFFIX = ['', '_fsm', '_vm', '_init'];

export interface RelationFileId {
  readonly spc: number;
  readonly db: number;
  readonly rel: number;
  readonly fork: number;
  readonly segno: number;
}

/** `PG_<major>_<catversion>`, the per-version directory inside a tablespace. */
export function tablespaceVersionDir(serverVersionNum: number, catalogVersion: number): string {
  return `PG_${Math.floor(serverVersionNum / 10000)}_${catalogVersion}`;
}

export function relationFilePath(f: RelationFileId, versionDir: string): string {
  const name = `${f.rel}${FORK_SUFFIX[f.fork]}${f.segno > 0 ? `.${f.segno}` : ''}`;
  if (f.spc === GLOBALTABLESPACE_OID) return `global/${name}`;
  if (f.spc === DEFAULTTABLESPACE_OID) return `base/${f.db}/${name}`;
  return `pg_tblspc/${f.spc}/${versionDir}/${f.db}/${name}`;
}

const FILE_NAME = /^(\d+)(?:_(fsm|vm|init))?(?:\.(\d+))?$/;

/** Parses a relation file name (`16384`, `16384_vm`, `16384.2`); temp files and others give null. */
export function parseRelationFileName(name: string): { rel: number; fork: number; segno: number } | null {
  const m = FILE_NAME.exec(name);
  if (!m) return null;
  return {
    rel: Number(m[1]),
    fork: m[2] ? FORK_SUFFIX.indexOf(`_${m[2]}`) : 0,
    segno: m[3] ? Number(m[3]) : 0,
  };
}
