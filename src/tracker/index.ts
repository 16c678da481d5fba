export { WalApplier } from './apply.ts';
export { CheckpointWriter, type CheckpointWritten } from './checkpoint-writer.ts';
export { DataDirInUseError, DataDirLock } from './data-dir-lock.ts';
export { classifyFailure, type Failure, FollowError } from './failures.ts';
export {
  commitCheckpoint,
  loadCheckpointedMap,
  MAP_FILE,
  MAP_LOG_FILE,
  readCheckpointedMap,
  resizeCheckpointedMap,
  writeCheckpointFile,
} from './map-store.ts';
export { SlotError, type TrackerOptions, type TrackerStatus } from './options.ts';
export { type CatchUpProgress, describeProgress } from './progress.ts';
export { Tracker } from './tracker.ts';
