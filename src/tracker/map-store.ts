import { join } from 'node:path';
import type { Catalog } from '../catalog/index.ts';
import { loadMapFile, type MapFileWritten, type PtrackMap, writeMapFile } from '../map/index.ts';
import { formatLsn, type Lsn } from '../wal/index.ts';

export const MAP_FILE = 'ptrack.map';

/**
 * The file half of a checkpoint as of LSN X (every record ending at or before X is in the map), which
 * may run in another thread while decoding goes on: the live map (each entry as some writer completed
 * it) written durably, and its block CRCs. The file holds every mark made before the writing started,
 * and maybe some later ones. The other half is Catalog.recordCheckpoint(X, blockCrcs); only after both
 * may the slot's flush position move to X.
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
