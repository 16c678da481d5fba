export {
  connectClient,
  parseSize,
  ReplicationConnection,
  ReplicationError,
  type ServerInfo,
  type StreamEnd,
  type StreamHandlers,
  SUPPORTED_MAJORS,
  WalStream,
} from './connection.ts';
export { connectionConfig, libpqDefaults, PasswordMissingError } from './conninfo.ts';
export { ReplicationProtocolError, standbyStatusUpdate } from './messages.ts';
export {
  catalogVersion,
  clusterSize,
  dropSlot,
  ServerWalPosition,
  type SlotState,
  slotState,
  sqlClient,
  withSql,
} from './server-sql.ts';
