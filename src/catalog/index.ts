export {
  Catalog,
  CatalogError,
  type ClusterIdentity,
  forkKey,
  type HistoryEntry,
  type MapState,
  type RelationFork,
} from './catalog.ts';
export { ALL_FORKS, type CatalogOp, type LimitEvent, limitsOf, WHOLE_DATABASE } from './ops.ts';
