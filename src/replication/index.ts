export {
  parseSize,
  ReplicationConnection,
  ReplicationError,
  type ServerInfo,
  type StreamEnd,
  type StreamHandlers,
  SUPPORTED_MAJORS,
  WalStream,
} from './connection.ts';
export { connectionConfig } from './conninfo.ts';
export {
  PrimaryKeepalive,
  parseCopyData,
  ReplicationProtocolError,
  standbyStatusUpdate,
  XLogData,
} from './messages.ts';
