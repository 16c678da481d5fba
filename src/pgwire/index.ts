export { resultFields, WireAnswers, WireError, type WireResult } from './answers.ts';
export { PgWireProtocolError } from './messages.ts';
export { listenPgWire, type PgEndpointOptions, type Upstream } from './relay.ts';
export { loadStatementParser, type PtrackStatement, recognise } from './statements.ts';
