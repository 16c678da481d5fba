import { Piscina } from 'piscina';
import type { Catalog } from '../catalog/index.ts';
import type { MapFileWritten, PtrackMap } from '../map/index.ts';
import type { Lsn } from '../wal/index.ts';
import { type CheckpointTask, commitCheckpoint, crashPoint } from './map-store.ts';

const CHECKPOINT_WORKER = new URL('../../workers/checkpoint.ts', import.meta.url).href;

/**
 * Writes durable checkpoints of the map: the file written and fsynced in its own thread (so that a large
 * map's checkpoint never stalls decoding), then the catalog's record (commitCheckpoint). Only once one
 * has resolved may the slot's flush position move to its LSN: that is the caller's step.
 */
export class CheckpointWriter {
  readonly #dataDir: string;
  /**
   * The thread outlives a default checkpoint interval (loading it costs more CPU than a small map's
   * checkpoint) and goes away when checkpoints are rare.
   */
  readonly #pool = new Piscina<CheckpointTask, MapFileWritten>({
    filename: CHECKPOINT_WORKER,
    minThreads: 0,
    maxThreads: 1,
    idleTimeout: 60_000,
  });

  constructor(dataDir: string) {
    this.#dataDir = dataDir;
  }

  /** The map as of `lsn` (every record ending at or before it is marked), durably; its fill, and how long it took. */
  async write(map: PtrackMap, catalog: Catalog, lsn: Lsn): Promise<{ fill: number; seconds: number }> {
    const started = performance.now();
    const { blockCrcs, fill } = await this.#pool.run({ dataDir: this.#dataDir, map: map.buffer });
    commitCheckpoint(this.#dataDir, catalog, lsn, blockCrcs, crashPoint);
    return { fill, seconds: (performance.now() - started) / 1000 };
  }

  destroy(): Promise<void> {
    return this.#pool.destroy();
  }
}
