import type { Catalog } from '../catalog/index.ts';
import { countDirtyLines, fileSizeForEntries, logRecordSize, type PtrackMap } from '../map/index.ts';
import type { Lsn } from '../wal/index.ts';
import { appendCheckpoint, commitCheckpoint, crashPoint, writeCheckpointFile } from './map-store.ts';

/** What one checkpoint wrote. */
export interface CheckpointWritten {
  readonly kind: 'log' | 'whole';
  /** Bytes written to the map file or the log (not counting the catalog's few pages). */
  readonly bytes: number;
  readonly seconds: number;
}

/**
 * Writes durable checkpoints of the map so that they cost what changed: each appends the lines whose
 * dirty bit is set to ptrack.map.log (appendCheckpoint), until the log would pass `logLimitBytes`; then
 * the whole map is written (writeCheckpointFile, commitCheckpoint), which empties the log. The map file
 * is also written whole when it does not stand for the map's history (no file yet, a repaired one, or
 * init_lsn moved since it was written) and after a failed checkpoint. Only once one has resolved may the
 * slot's flush position move to its LSN: that is the caller's step.
 *
 * Between two whole writes the log holds at most logLimitBytes, so checkpoints never write more than
 * whole maps each would: k checkpoints write at most the limit plus one map, against k maps.
 */
export class CheckpointWriter {
  readonly #dataDir: string;
  readonly #logLimitBytes: (map: PtrackMap) => number;
  readonly #crashPoint: (name: string) => void;
  /** The init_lsn in the map file's header as last written or read; undefined: unknown. */
  #fileInitLsn: Lsn | undefined;
  #wholeNext = true;

  /**
   * `logLimitMb`: the log's size at which the map is written whole again (default: a quarter of the
   * map; 0: every checkpoint writes the whole map, as ptrack's own checkpoints do). `crashPoint` is
   * called between the durable steps (by default it kills the process where CRASH_PTRACKD_AT says).
   */
  constructor(dataDir: string, o: { logLimitMb?: number; crashPoint?: (name: string) => void } = {}) {
    const { logLimitMb } = o;
    this.#dataDir = dataDir;
    this.#crashPoint = o.crashPoint ?? crashPoint;
    this.#logLimitBytes = (map) =>
      logLimitMb === undefined ? Math.floor(map.buffer.byteLength / 4) : logLimitMb * 2 ** 20;
  }

  /** The map file as loaded: whether it can take log records, or must be written whole first. */
  mapFileRead(fileInitLsn: Lsn | null, repaired: boolean): void {
    this.#fileInitLsn = fileInitLsn ?? undefined;
    this.#wholeNext = repaired || fileInitLsn === null;
  }

  /** The map as of `lsn` (every record ending at or before it is marked), durably. */
  async write(map: PtrackMap, catalog: Catalog, lsn: Lsn): Promise<CheckpointWritten> {
    const started = performance.now();
    const state = catalog.mapState();
    if (!state) throw new Error('the catalog holds no map to checkpoint');
    // Taken before any line is read: a raise after this sets its bit again, for the next checkpoint.
    const taken = map.takeDirtyLines();
    try {
      const whole =
        this.#wholeNext ||
        state.checkpointLsn === null ||
        state.blockCrcs === null ||
        this.#fileInitLsn !== map.initLsn ||
        state.logBytes + logRecordSize(countDirtyLines(taken)) > this.#logLimitBytes(map);
      let bytes: number;
      if (whole) {
        const initLsn = map.initLsn;
        const blockCrcs = await writeCheckpointFile(this.#dataDir, map);
        commitCheckpoint(this.#dataDir, catalog, lsn, blockCrcs, this.#crashPoint);
        this.#fileInitLsn = initLsn;
        this.#wholeNext = false;
        bytes = fileSizeForEntries(map.entries);
      } else {
        bytes = await appendCheckpoint(this.#dataDir, catalog, map, taken, lsn, state, this.#crashPoint);
      }
      return { kind: whole ? 'whole' : 'log', bytes, seconds: (performance.now() - started) / 1000 };
    } catch (e) {
      // Nothing of this checkpoint counted: its lines go to the next one, which writes the whole map
      // (whatever the log's state now, the map file alone is enough).
      map.restoreDirtyLines(taken);
      this.#wholeNext = true;
      throw e;
    }
  }
}
