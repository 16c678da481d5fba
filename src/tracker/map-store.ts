import { existsSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Catalog } from '../catalog/index.ts';
import {
  entriesForMapSize,
  FALSE_POSITIVE_HINT,
  falsePositiveRate,
  fileSizeForEntries,
  loadMapFile,
  MAX_MAP_SIZE_MB,
  type MapFileWritten,
  mapSizeForFalsePositiveRate,
  type PtrackMap,
  type ResizeProgress,
  replaceDurably,
  resizeMap,
  writeMapFile,
} from '../map/index.ts';
import { formatLsn, type Lsn } from '../wal/index.ts';

export const MAP_FILE = 'ptrack.map';
/** A checkpoint's map file while it is written, until it replaces MAP_FILE (ptrack's name for it). */
const NEW_MAP_FILE = `${MAP_FILE}.tmp`;
/** A resized map, written before the catalog records its size and renamed to MAP_FILE after. */
export const RESIZED_MAP_FILE = 'ptrack.map.resized';
/** A resized map while it is written, until it becomes RESIZED_MAP_FILE. */
const NEW_RESIZED_MAP_FILE = `${RESIZED_MAP_FILE}.tmp`;

/**
 * A checkpoint as of LSN X (every record ending at or before X is in the map) is written in two parts, so
 * that a kill at any moment leaves a map file the catalog vouches for, block by block. This is the first,
 * which may run in another thread while decoding goes on: the live map (each entry as some writer
 * completed it) written under a temporary name and fsynced, and its block CRCs. The file holds every mark
 * made before the writing started, and maybe some later ones. The second is commitCheckpoint.
 */
export function writeCheckpointFile(dataDir: string, map: PtrackMap): MapFileWritten {
  return writeMapFile(join(dataDir, NEW_MAP_FILE), map);
}

/**
 * The second part of a checkpoint as of `lsn` (see writeCheckpointFile), each step durable: the catalog
 * records the new file's CRCs as pending, the file replaces MAP_FILE, the catalog records the checkpoint.
 * Only then may the slot's flush position move to `lsn`. A kill after the rename leaves a file newer than
 * the catalog's checkpoint: it loads whole (its blocks match the pending CRCs), and decoding resumes from
 * the older checkpoint, marking again what the file already has. `crashPoint` names the moments between
 * the steps (a test stops the process there).
 */
export function commitCheckpoint(
  dataDir: string,
  catalog: Catalog,
  lsn: Lsn,
  blockCrcs: Uint32Array,
  crashPoint: (name: string) => void = () => {},
): void {
  crashPoint('checkpoint-written');
  catalog.recordPendingCheckpoint(blockCrcs);
  crashPoint('checkpoint-pending');
  replaceDurably(join(dataDir, NEW_MAP_FILE), join(dataDir, MAP_FILE));
  crashPoint('checkpoint-installed');
  catalog.recordCheckpoint(lsn, blockCrcs);
}

/**
 * The map as of the catalog's last checkpoint (or newer, see writeCheckpointFile), with damaged blocks
 * repaired to the checkpoint LSN; each repair is recorded in the catalog's history and reported through
 * `warn`. A pending checkpoint is settled: the catalog then holds the CRCs of the file as it is. Returns
 * the LSN to resume decoding from.
 */
export function loadCheckpointedMap(
  dataDir: string,
  catalog: Catalog,
  warn: (message: string) => void,
): { map: PtrackMap; resumeLsn: Lsn } {
  const state = catalog.mapState();
  if (!state) throw new Error('the catalog holds no map to load');
  settleResize(dataDir, state.entries);
  rmSync(join(dataDir, NEW_MAP_FILE), { force: true }); // a checkpoint that never replaced the map
  const checkpointLsn = state.checkpointLsn ?? state.initLsn;
  const loaded = loadMapFile(join(dataDir, MAP_FILE), { ...state, checkpointLsn });
  if (state.pendingBlockCrcs !== null && loaded.blockCrcs !== null) catalog.settleMapFile(loaded.blockCrcs);
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
  rmSync(join(dataDir, NEW_RESIZED_MAP_FILE), { force: true }); // a resize that did not finish writing
  const resized = join(dataDir, RESIZED_MAP_FILE);
  if (!existsSync(resized)) return;
  if (statSync(resized).size === fileSizeForEntries(entries))
    replaceDurably(resized, join(dataDir, MAP_FILE));
  else rmSync(resized);
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
  const writing = join(dataDir, NEW_RESIZED_MAP_FILE);
  const resized = join(dataDir, RESIZED_MAP_FILE);
  const written = writeMapFile(writing, map);
  replaceDurably(writing, resized);
  crashPoint('resize-written');
  const reason = `map resized from ${state.mapSizeMb} MB to ${mapSizeMb} MB: ${blocksCarried} blocks carried over, history since ${formatLsn(state.initLsn)} kept`;
  catalog.recordResize(mapSizeMb, entriesForMapSize(mapSizeMb), written.blockCrcs, reason);
  crashPoint('resize-recorded');
  replaceDurably(resized, join(dataDir, MAP_FILE));
  return { map, blocksCarried, reason };
}

/**
 * resizeCheckpointedMap with its progress logged every `progressIntervalMs` (blocks, rate, ETA) and a
 * line at the end; a kill at any step is safe (CRASH_PTRACKD_AT names the steps for the tests).
 */
export function resizeWithProgress(
  dataDir: string,
  catalog: Catalog,
  map: PtrackMap,
  mapSizeMb: number,
  o: {
    readonly progressIntervalMs?: number;
    readonly log: (level: 'info', message: string) => void;
  },
): PtrackMap {
  const started = performance.now();
  let last = started;
  const resized = resizeCheckpointedMap(
    dataDir,
    catalog,
    map,
    mapSizeMb,
    ({ blocksDone, blocksTotal }) => {
      const now = performance.now();
      if (now - last < (o.progressIntervalMs ?? 10_000)) return;
      last = now;
      const rate = (blocksDone * 1000) / (now - started);
      o.log(
        'info',
        `resizing the map: ${blocksDone} of ${blocksTotal} blocks, ${Math.round(rate)} blocks/s, ETA ${Math.round((blocksTotal - blocksDone) / rate)} s`,
      );
    },
    crashPoint,
  );
  const seconds = (performance.now() - started) / 1000;
  o.log(
    'info',
    `${resized.reason} (${seconds.toFixed(1)} s, ${Math.round(resized.blocksCarried / Math.max(seconds, 1e-3))} blocks/s)`,
  );
  return resized.map;
}

/**
 * What to do about a map this full, said once its estimated false-positive rate passes
 * FALSE_POSITIVE_HINT (null below): the --map-size that brings it under, counting the blocks WAL named
 * that a resize carries (`namedBlocks`, asked only then).
 */
export function mapFillHint(fill: number, entries: number, namedBlocks: () => number): string | null {
  const rate = falsePositiveRate(fill);
  if (rate <= FALSE_POSITIVE_HINT) return null;
  const size = mapSizeForFalsePositiveRate(fill, entries, FALSE_POSITIVE_HINT, namedBlocks());
  const now = `the map's estimated false-positive rate is ${(rate * 100).toFixed(1)}%, over ${FALSE_POSITIVE_HINT * 100}%`;
  return size === null
    ? `${now}, and no map up to ${MAX_MAP_SIZE_MB} MB would bring it under: backups copy more than changed`
    : `${now}: restart with --map-size ${size} to bring it under (the map is resized, its history kept)`;
}

/**
 * Stops the process at once, as a crash would, where CRASH_PTRACKD_AT names this moment: how the
 * tests show that a kill at any step of a resize or a checkpoint leaves a whole map.
 */
export function crashPoint(name: string): void {
  if (process.env.CRASH_PTRACKD_AT === name) process.kill(process.pid, 'SIGKILL');
}
