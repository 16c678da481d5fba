import { join } from 'node:path';
import type { Catalog } from '../catalog/index.ts';
import { loadMapFile, type MapFileWritten, type PtrackMap, writeMapFile } from '../map/index.ts';
import { formatLsn, type Lsn } from '../wal/index.ts';

export const MAP_FILE = 'ptrack.map';

/**
 * A durable checkpoint of the map as of `lsn` (every record ending at or before it is in the map): the
 * file first (temp, fsync, rename, fsync dir), then its per-block CRCs and the LSN in the catalog in
 * one transaction. Only after both may the slot's flush position move to `lsn`.
 */
export function checkpointMap(dataDir: string, catalog: Catalog, map: PtrackMap, lsn: Lsn): { fill: number } {
  const written = writeCheckpointFile(dataDir, map);
  catalog.recordCheckpoint(lsn, written.blockCrcs);
  return written;
}

/**
 * The file half of a checkpoint, which may run in another thread while decoding goes on: the live map
 * (each entry as some writer completed it) written durably, and its block CRCs for the catalog. The file
 * holds every mark made before the writing started, and maybe some later ones.
 */
export function writeCheckpointFile(dataDir: string, map: PtrackMap): MapFileWritten {
  return writeMapFile(join(dataDir, MAP_FILE), map);
}

/**
 * The map as of the catalog's last checkpoint, with damaged blocks repaired to the checkpoint LSN; each
 * repair is recorded in the catalog's history and reported through `warn`. Returns the LSN to resume
 * decoding from.
 */
export function loadCheckpointedMap(
  dataDir: string,
  catalog: Catalog,
  warn: (message: string) => void,
): { map: PtrackMap; resumeLsn: Lsn } {
  const state = catalog.mapState();
  if (!state) throw new Error('the catalog holds no map to load');
  const checkpointLsn = state.checkpointLsn ?? state.initLsn;
  const loaded = loadMapFile(join(dataDir, MAP_FILE), {
    entries: state.entries,
    initLsn: state.initLsn,
    checkpointLsn,
    blockCrcs: state.blockCrcs,
  });
  const at = formatLsn(checkpointLsn);
  const repair =
    loaded.wholeFileDamage !== undefined
      ? `${loaded.wholeFileDamage}: every entry set to the checkpoint LSN ${at}`
      : loaded.damagedBlocks.length > 0
        ? `map file blocks ${loaded.damagedBlocks.join(', ')} failed their CRC-32C: their entries set to the checkpoint LSN ${at}`
        : undefined;
  if (repair !== undefined) {
    catalog.logRepair(repair);
    warn(repair);
  }
  return { map: loaded.map, resumeLsn: checkpointLsn };
}

/** What the checkpoint thread needs: where to write, and the live map's shared buffer. */
export interface CheckpointTask {
  readonly dataDir: string;
  readonly map: SharedArrayBuffer;
}
