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
export {
  PrimaryKeepalive,
  parseCopyData,
  ReplicationProtocolError,
  standbyStatusUpdate,
  XLogData,
} from './messages.ts';
