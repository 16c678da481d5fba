// The piscina entry of the checkpoint thread: snapshot the shared map and write its file durably.
import { PtrackMap } from '../src/map/index.ts';
import { type CheckpointTask, writeCheckpointFile } from '../src/tracker/map-store.ts';

export default function checkpoint(task: CheckpointTask): { blockCrcs: Uint32Array; fill: number } {
  return writeCheckpointFile(task.dataDir, new PtrackMap(task.map));
}
