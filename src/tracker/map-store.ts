import { existsSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Catalog, MapState } from '../catalog/index.ts';
import {
  appendLogRecord,
  type DirtyLines,
  entriesForMapSize,
  FALSE_POSITIVE_HINT,
  falsePositiveRate,
  fileSizeForEntries,
  loadMapFile,
  MAX_MAP_SIZE_MB,
  mapSizeForFalsePositiveRate,
  PtrackMap,
  type ResizeProgress,
  replaceDurably,
  replayMapLog,
  resizeMap,
  unionRegions,
  writeMapFile,
  writeMapFileAsync,
} from '../map/index.ts';
import { formatLsn, type Lsn } from '../wal/index.ts';

export const MAP_FILE = 'ptrack.map';
/** A checkpoint's map file while it is written, until it replaces MAP_FILE (ptrack's name for it). */
const NEW_MAP_FILE = `${MAP_FILE}.tmp`;
/** What checkpoints since the map file was last written whole changed (src/map/log.ts). */
export const MAP_LOG_FILE = `${MAP_FILE}.log`;
/** A resized map, written before the catalog records its size and renamed to MAP_FILE after. */
export const RESIZED_MAP_FILE = 'ptrack.map.resized';
/** A resized map while it is written, until it becomes RESIZED_MAP_FILE. */
const NEW_RESIZED_MAP_FILE = `${RESIZED_MAP_FILE}.tmp`;

/**
 * The first part of a checkpoint as of LSN X (every record ending at or before X is in the map) that
 * writes the whole map, run while decoding goes on: the live map (each entry as some writer completed it)
 * written under a temporary name and fsynced, off the event loop. The file holds every mark made before
 * the writing started, and maybe some later ones. Returns its block CRCs; the second part is
 * commitCheckpoint.
 */
export function writeCheckpointFile(dataDir: string, map: PtrackMap): Promise<Uint32Array> {
  return writeMapFileAsync(join(dataDir, NEW_MAP_FILE), map);
}

/**
 * The second part of a checkpoint as of `lsn` that wrote the whole map (see writeCheckpointFile), each
 * step durable: the catalog records the new file's CRCs as pending, the file replaces MAP_FILE, the
 * catalog records the checkpoint (and an empty log: the file holds all it did). Only then may the slot's
 * flush position move to `lsn`. A kill after the rename leaves a file newer than the catalog's
 * checkpoint: it loads whole (its blocks match the pending CRCs), the old log replayed over it changes
 * nothing, and decoding resumes from the older checkpoint, marking again what the file already has.
 * `crashPoint` names the moments between the steps (a test stops the process there).
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
 * A checkpoint as of `lsn` that writes only the lines whose dirty bits it took (`taken`): one record
 * appended to MAP_LOG_FILE where the catalog says the durable log ends, fsynced; then the catalog records
 * the checkpoint and the log's new length in one durable commit. Only then may the slot's flush position
 * move. A kill before that commit leaves the record past the log's counted end: it never counted, and the
 * next one overwrites it. Returns the bytes written.
 */
export async function appendCheckpoint(
  dataDir: string,
  catalog: Catalog,
  map: PtrackMap,
  taken: DirtyLines,
  lsn: Lsn,
  log: { readonly logBytes: number; readonly logRegions: Uint32Array | null },
  crashPoint: (name: string) => void = () => {},
): Promise<number> {
  const record = await appendLogRecord(join(dataDir, MAP_LOG_FILE), log.logBytes, map, taken, lsn);
  crashPoint('log-appended');
  catalog.recordLogCheckpoint(lsn, log.logBytes + record.bytes, unionRegions(log.logRegions, record.regions));
  return record.bytes;
}

export interface CheckpointedMap {
  readonly map: PtrackMap;
  /** Where the checkpoint stands: decoding resumes here, and it is what damage is repaired to. */
  readonly checkpointLsn: Lsn;
  /** What was damaged and repaired (false positives only), one line each. */
  readonly repairs: readonly string[];
  /** The init_lsn in the map file's header (null: the file could not be tied to the catalog). */
  readonly fileInitLsn: Lsn | null;
  /** The map file's block CRCs as it is (a damaged block's inverted); null when it was wholly damaged. */
  readonly blockCrcs: Uint32Array | null;
}

/**
 * The map file with the checkpoint log replayed over it, as the catalog vouches for them, damage repaired
 * to the checkpoint LSN; read-only (ptrackd sql --offline reads a running daemon's directory with it).
 */
export function readCheckpointedMap(dataDir: string, state: MapState): CheckpointedMap {
  const checkpointLsn = state.checkpointLsn ?? state.initLsn;
  if (state.checkpointLsn === null && !existsSync(join(dataDir, MAP_FILE))) {
    // Killed before its first checkpoint: the map is as it began, empty, and WAL from init_lsn fills it.
    const map = PtrackMap.withEntries(state.entries, state.initLsn);
    return { map, checkpointLsn, repairs: [], fileInitLsn: null, blockCrcs: null };
  }
  const loaded = loadMapFile(join(dataDir, MAP_FILE), { ...state, checkpointLsn });
  const replay = replayMapLog(join(dataDir, MAP_LOG_FILE), loaded.map, { ...state, checkpointLsn });
  const at = formatLsn(checkpointLsn);
  const repairs = [
    loaded.wholeFileDamage !== undefined
      ? `${loaded.wholeFileDamage}: every entry set to the checkpoint LSN ${at}`
      : loaded.damagedBlocks.length > 0
        ? `map file blocks ${loaded.damagedBlocks.join(', ')} failed their CRC-32C: their entries set to the checkpoint LSN ${at}`
        : undefined,
    replay.damage === undefined ? undefined : `${replay.damage} set to the checkpoint LSN ${at}`,
  ].filter((r) => r !== undefined);
  return {
    map: loaded.map,
    checkpointLsn,
    repairs,
    fileInitLsn: loaded.fileInitLsn,
    blockCrcs: loaded.blockCrcs,
  };
}

/**
 * The map as of the catalog's last checkpoint (or newer, see commitCheckpoint), with damaged blocks or
 * log records repaired to the checkpoint LSN; each repair is recorded in the catalog's history and
 * reported through `warn`. A pending checkpoint is settled: the catalog then holds the CRCs of the file
 * as it is. No dirty bit is set: what was loaded is durable already.
 */
export function loadCheckpointedMap(
  dataDir: string,
  catalog: Catalog,
  warn: (message: string) => void,
): CheckpointedMap {
  const state = catalog.mapState();
  if (!state) throw new Error('the catalog holds no map to load');
  settleResize(dataDir, state.entries);
  rmSync(join(dataDir, NEW_MAP_FILE), { force: true }); // a checkpoint that never replaced the map
  const loaded = readCheckpointedMap(dataDir, state);
  if (state.pendingBlockCrcs !== null && loaded.blockCrcs !== null) catalog.settleMapFile(loaded.blockCrcs);
  for (const repair of loaded.repairs) {
    catalog.logRepair(repair);
    warn(repair);
  }
  return loaded;
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
  const blockCrcs = writeMapFile(writing, map);
  replaceDurably(writing, resized);
  crashPoint('resize-written');
  const reason = `map resized from ${state.mapSizeMb} MB to ${mapSizeMb} MB: ${blocksCarried} blocks carried over, history since ${formatLsn(state.initLsn)} kept`;
  catalog.recordResize(mapSizeMb, entriesForMapSize(mapSizeMb), blockCrcs, reason);
  crashPoint('resize-recorded');
  replaceDurably(resized, join(dataDir, MAP_FILE));
  map.takeDirtyLines(); // every line is in the file now
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
