export { WalApplier } from './apply.ts';
export { checkpointMap, loadCheckpointedMap, MAP_FILE } from './map-store.ts';
