import { closeSync, existsSync, fsyncSync, openSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Catalog } from '../catalog/index.ts';
import {
  entriesForMapSize,
  fileSizeForEntries,
  loadMapFile,
  type MapFileWritten,
  type PtrackMap,
  type ResizeProgress,
  resizeMap,
  writeMapFile,
} from '../map/index.ts';
import { formatLsn, type Lsn } from '../wal/index.ts';

export const MAP_FILE = 'ptrack.map';
/** A resized map, written before the catalog records its size and renamed to MAP_FILE after. */
export const RESIZED_MAP_FILE = 'ptrack.map.resized';

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
  settleResize(dataDir, state.entries);
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

/**
 * A resize that a crash interrupted: its file is the map if the catalog already records its size (the
 * commit happened, the rename did not), else it never counted and goes.
 */
function settleResize(dataDir: string, entries: number): void {
  const resized = join(dataDir, RESIZED_MAP_FILE);
  rmSync(`${resized}.tmp`, { force: true }); // a resize that did not finish writing
  if (!existsSync(resized)) return;
  if (statSync(resized).size === fileSizeForEntries(entries))
    replaceDurably(resized, join(dataDir, MAP_FILE));
  else rmSync(resized);
}

function replaceDurably(from: string, to: string): void {
  renameSync(from, to);
  const dir = openSync(join(to, '..'), 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}

/**
 * Rebuilds the loaded map at `mapSizeMb` keeping its history (resizeMap over the catalog's forks), so
 * that a crash at any moment leaves the old map or the new one, whole: the new file is written
 * durably beside the old, then the catalog records the new size and its CRCs (one commit), then the
 * new file replaces the old. `crashPoint` names those moments (a test stops the process there).
 */
export function resizeCheckpointedMap(
  dataDir: string,
  catalog: Catalog,
  old: PtrackMap,
  mapSizeMb: number,
  onProgress: (p: ResizeProgress) => void,
  crashPoint: (name: string) => void = () => {},
): { map: PtrackMap; blocksCarried: number; reason: string } {
  const state = catalog.mapState()!;
  const { map, blocksCarried } = resizeMap(old, mapSizeMb, catalog.relationForks(), onProgress);
  crashPoint('resize-built');
  const written = writeMapFile(join(dataDir, RESIZED_MAP_FILE), map);
  crashPoint('resize-written');
  const reason = `map resized from ${state.mapSizeMb} MB to ${mapSizeMb} MB: ${blocksCarried} blocks carried over, history since ${formatLsn(state.initLsn)} kept`;
  catalog.recordResize(mapSizeMb, entriesForMapSize(mapSizeMb), written.blockCrcs, reason);
  crashPoint('resize-recorded');
  replaceDurably(join(dataDir, RESIZED_MAP_FILE), join(dataDir, MAP_FILE));
  return { map, blocksCarried, reason };
}
