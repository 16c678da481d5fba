import { Catalog } from '../catalog/index.ts';
import { type MapBuffers, PtrackMap } from '../map/index.ts';
import type { Lsn } from '../wal/index.ts';
import { QueryEngine, type QueryResult } from './engine.ts';

/** One statement for the query worker: the live map is shared, the catalog is opened read-only. */
export interface QueryTask {
  readonly sql: string;
  readonly map: MapBuffers;
  readonly catalogPath: string;
  readonly pgdata?: string;
  /** How far the map and catalog had applied WAL when the answer was allowed to start. */
  readonly appliedLsn: Lsn;
  readonly suggestedMapSizeMb: number | null;
}

/** Answers one statement; runs in a worker thread so that a big scan never stalls the replication loop. */
export function answerQuery(task: QueryTask): QueryResult {
  const catalog = Catalog.open(task.catalogPath, { readonly: true });
  const engine = new QueryEngine({
    map: new PtrackMap(task.map),
    catalog,
    pgdata: task.pgdata,
    appliedLsn: () => task.appliedLsn,
    suggestedMapSizeMb: task.suggestedMapSizeMb,
  });
  try {
    return engine.query(task.sql);
  } finally {
    engine.close();
    catalog.close();
  }
}
