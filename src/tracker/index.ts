export { WalApplier } from './apply.ts';
export { loadCheckpointedMap, MAP_FILE, writeCheckpointFile } from './map-store.ts';
export {
  type CatchUpProgress,
  describeProgress,
  MapSizeError,
  serverWalPosition,
  Tracker,
  type TrackerOptions,
  type TrackerStatus,
} from './tracker.ts';
