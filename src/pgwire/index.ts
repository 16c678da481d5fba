export { resultFields, WireAnswers, WireError, type WireResult } from './answers.ts';
export { PgWireProtocolError } from './messages.ts';
export { listenPgWire, type PgEndpointOptions } from './relay.ts';
export { loadStatementParser, type PtrackStatement, recognise } from './statements.ts';
export type { Upstream } from './upstream.ts';
