import { join } from 'node:path';
import {
  Catalog,
  type CatalogOp,
  type HistoryEntry,
  type MapState,
  RELSEG_SIZE,
} from '../../src/catalog/index.ts';
import type { FileEvent } from '../../src/wal/index.ts';
import { scratchDir } from './scratch.ts';

/** A fresh catalog for a PostgreSQL 15 cluster with 8 kB blocks, in a temp dir. */
export function scratchCatalog(initLsn: number, entries = 4099): Catalog {
  const catalog = Catalog.open(join(scratchDir('ptrackd-catalog-'), 'catalog.db'));
  catalog.setIdentity({
    systemIdentifier: '7000000000000000001',
    timeline: 1,
    serverVersionNum: 150018,
    catalogVersion: 202209061,
    blockSize: 8192,
    segmentSize: 16 << 20,
  });
  catalog.initMap(1, entries, initLsn, 'test');
  return catalog;
}

/** A catalog operation saying WAL named block `block` of a fork at `lsn` (as the WAL applier says it). */
export function observed(
  spc: number,
  db: number,
  rel: number,
  fork: number,
  block: number,
  lsn: number,
): CatalogOp {
  const segno = Math.floor(block / RELSEG_SIZE);
  const segments = { seg0Lsn: segno === 0 ? lsn : 0, later: new Map(segno === 0 ? [] : [[segno, lsn]]) };
  return { op: 'observe', spc, db, rel, fork, maxBlock: block, firstLsn: lsn, lastLsn: lsn, segments };
}

type EventFields = FileEvent extends infer E
  ? E extends FileEvent
    ? Omit<E, 'lsn' | 'endLsn'>
    : never
  : never;

/** A catalog operation for a file event whose record ends at `endLsn`. */
export function happened(e: EventFields, endLsn: number): CatalogOp {
  return { op: 'event', event: { ...e, lsn: endLsn - 40, endLsn } } as CatalogOp;
}

/** What a data directory's catalog holds now: the map's state (null before the first start) and history. */
export function catalogIn(dataDir: string): { state: MapState | null; history: HistoryEntry[] } {
  const c = Catalog.open(join(dataDir, 'catalog.db'), { readonly: true });
  try {
    return { state: c.mapState(), history: c.history() };
  } finally {
    c.close();
  }
}

/** The LSN of the last durable checkpoint recorded in a data directory's catalog (0 before the first). */
export function checkpointLsnIn(dataDir: string): number {
  return catalogIn(dataDir).state?.checkpointLsn ?? 0;
}
