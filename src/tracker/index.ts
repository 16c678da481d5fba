export { WalApplier } from './apply.ts';
export { checkpointMap, loadCheckpointedMap, MAP_FILE } from './map-store.ts';
export {
  type CatchUpProgress,
  describeProgress,
  MapSizeError,
  serverWalPosition,
  Tracker,
  type TrackerOptions,
  type TrackerStatus,
} from './tracker.ts';
