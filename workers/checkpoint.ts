// The piscina entry of the checkpoint thread: write the shared map's file durably, a piece at a time.
import { type MapFileWritten, PtrackMap } from '../src/map/index.ts';
import { type CheckpointTask, writeCheckpointFile } from '../src/tracker/map-store.ts';

export default function checkpoint(task: CheckpointTask): MapFileWritten {
  return writeCheckpointFile(task.dataDir, new PtrackMap(task.map));
}
