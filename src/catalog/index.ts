export {
  Catalog,
  CatalogError,
  type ClusterIdentity,
  type HistoryEntry,
  type MapState,
  type RelationFork,
  segmentKey,
} from './catalog.ts';
export {
  ALL_FORKS,
  type CatalogOp,
  type LimitEvent,
  limitsOf,
  RELSEG_SIZE,
  WHOLE_DATABASE,
} from './ops.ts';
