/**
 * What the follow loop does about a failure: wait and try again (the network, a server starting or
 * shutting down, a busy slot, an archive command that failed), record a gap (the server has removed the
 * WAL the map needs next), or stop with what to do (a fault that no amount of waiting mends). A
 * permanent fault must never look like a reconnect in progress.
 */

export type Failure =
  | { readonly kind: 'transient'; readonly message: string }
  | { readonly kind: 'wal-removed'; readonly message: string; readonly segment: string }
  | { readonly kind: 'fatal'; readonly message: string; readonly remedy: string };

/** walsender's words when a segment it must send is no longer in pg_wal (13–18, wal-format.md §6.2). */
const WAL_REMOVED = /requested WAL segment ([0-9A-F]{24}) has already been removed/;

/** Each permanent SQLSTATE and what the operator does about it. */
const REMEDIES: Readonly<Record<string, string>> = {
  // invalid_authorization_specification: no pg_hba.conf line, or a role that may not log in
  '28000':
    'allow this role a replication connection (a pg_hba.conf line for database "replication", and LOGIN), then start ptrackd again',
  // invalid_password (and ptrackd's own PasswordMissingError)
  '28P01':
    'give the right password (PGPASSWORD, the password file, password= in --dbname, or -W), then start ptrackd again',
  // insufficient_privilege: the role lost REPLICATION, or may not read pg_replication_slots
  '42501': 'grant the role REPLICATION (ALTER ROLE … REPLICATION), then start ptrackd again',
  // invalid_catalog_name: the database ptrackd's plain SQL connects to
  '3D000': 'name a database that exists with --dbname (ptrackd reads slot state there), then start it again',
  // feature_not_supported: a server version ptrackd does not follow (after a major upgrade)
  '0A000': 'follow a PostgreSQL 13 to 18 server, or run a ptrackd that supports this version',
};

export function classifyFailure(
  e: unknown,
  o: { readonly slot: string; readonly createSlot: boolean },
): Failure {
  const message = (e as Error)?.message ?? String(e);
  const err = e as { sqlState?: string; code?: string; command?: string };
  const sqlState = err?.sqlState ?? err?.code;
  const removed = WAL_REMOVED.exec(message);
  // 58P01 (undefined_file) is how walsender raises it; the message names the segment.
  if (removed) return { kind: 'wal-removed', message, segment: removed[1]! };
  if (sqlState !== undefined && REMEDIES[sqlState])
    return { kind: 'fatal', message, remedy: REMEDIES[sqlState] };
  // undefined_object: the slot is gone, and ptrackd may not create it again
  if (sqlState === '42704' && !o.createSlot) {
    return {
      kind: 'fatal',
      message,
      remedy: `create the slot (SELECT pg_create_physical_replication_slot('${o.slot}', true)), or drop --no-create-slot so that ptrackd creates it; a gap is recorded from where it starts`,
    };
  }
  // object_not_in_prerequisite_state when making a slot: max_replication_slots = 0, or wal_level minimal.
  // (At START_REPLICATION it is an invalidated slot, which the loop drops and records as a gap.)
  if (sqlState === '55000' && err.command === 'CREATE_REPLICATION_SLOT') {
    return {
      kind: 'fatal',
      message,
      remedy:
        'the server cannot keep a replication slot: set max_replication_slots above 0 and wal_level to replica or logical, restart it, then start ptrackd again',
    };
  }
  return { kind: 'transient', message };
}

/** A permanent fault: the daemon stops following and exits, saying what to do. */
export class FollowError extends Error {
  override readonly name = 'FollowError';
  constructor(message: string, remedy: string) {
    super(`${message}; ptrackd cannot go on: ${remedy}`);
  }
}
