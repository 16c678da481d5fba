import type pg from 'pg';
import { type Lsn, parseLsn } from '../wal/index.ts';
import { connectClient } from './connection.ts';

/**
 * What ptrackd asks the server in plain SQL, beside the replication protocol: the slot's state (the
 * replication protocol cannot ask before 15), the catalog version, the cluster's size, and the
 * server's WAL position a query waits for.
 */

/** A regular (non-replication) connection, to database postgres unless the settings name another. */
export async function sqlClient(config: pg.ClientConfig): Promise<pg.Client> {
  const { default: pgModule } = await import('pg');
  const client = new pgModule.Client({ database: 'postgres', ...config });
  await connectClient(client, 'could not connect');
  return client;
}

/** A regular (non-replication) connection for what the replication protocol cannot ask before 15. */
export async function withSql<T>(config: pg.ClientConfig, f: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = await sqlClient(config);
  try {
    return await f(client);
  } finally {
    await client.end().catch(() => {});
  }
}

const SERVER_POSITION_SQL =
  'SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_flush_lsn() END)::text AS lsn';

/**
 * The server's current WAL position, what a query waits for by default, asked over one connection that
 * stays open while questions come (a new connection made each answer ~20 ms slower). A connection that
 * fails, or is slower than `timeoutMs`, is dropped and the next question makes a new one; after
 * `idleMs` without a question it is closed, so that an idle daemon holds no backend on the server.
 */
export class ServerWalPosition {
  readonly #config: pg.ClientConfig;
  readonly #timeoutMs: number;
  readonly #idleMs: number;
  #client: Promise<pg.Client> | undefined;
  #idle: NodeJS.Timeout | undefined;

  constructor(config: pg.ClientConfig, o: { timeoutMs?: number; idleMs?: number } = {}) {
    this.#config = config;
    this.#timeoutMs = o.timeoutMs ?? 10_000;
    this.#idleMs = o.idleMs ?? 60_000;
  }

  async read(): Promise<Lsn> {
    clearTimeout(this.#idle);
    const kept = this.#client !== undefined;
    try {
      return await this.#ask();
    } catch (e) {
      // A kept connection the server has closed since (a restart) is not the server being unreachable.
      if (!kept) throw e;
      return await this.#ask();
    } finally {
      this.#idle = setTimeout(() => this.close(), this.#idleMs).unref();
    }
  }

  async #ask(): Promise<Lsn> {
    const client = this.#client ?? this.#connect();
    let timer: NodeJS.Timeout | undefined;
    try {
      const result = await Promise.race([
        client.then((c) => c.query(SERVER_POSITION_SQL)),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`the server did not answer within ${this.#timeoutMs / 1000} s`)),
            this.#timeoutMs,
          );
        }),
      ]);
      return parseLsn(String(result.rows[0].lsn));
    } catch (e) {
      this.#drop(client);
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  close(): void {
    clearTimeout(this.#idle);
    if (this.#client) this.#drop(this.#client);
  }

  /** A new connection, kept until it fails or ends (the server restarting, idle_session_timeout). */
  #connect(): Promise<pg.Client> {
    const connecting = sqlClient({ connectionTimeoutMillis: this.#timeoutMs, ...this.#config });
    this.#client = connecting;
    connecting.then(
      (c) =>
        c.on('end', () => {
          if (this.#client === connecting) this.#client = undefined;
        }),
      () => {},
    );
    return connecting;
  }

  #drop(client: Promise<pg.Client>): void {
    if (this.#client === client) this.#client = undefined;
    client.then((c) => c.end()).catch(() => {});
  }
}

export async function catalogVersion(config: pg.ClientConfig): Promise<number> {
  return withSql(config, async (c) =>
    Number((await c.query('SELECT catalog_version_no FROM pg_control_system()')).rows[0].catalog_version_no),
  );
}

/** The slot as pg_replication_slots shows it, or null when it does not exist. */
export async function slotState(config: pg.ClientConfig, slot: string): Promise<SlotState | null> {
  return withSql(config, async (c) => {
    const sql =
      'SELECT restart_lsn::text AS lsn, wal_status, active_pid FROM pg_replication_slots WHERE slot_name = $1';
    const row = (await c.query(sql, [slot])).rows[0];
    if (!row) return null;
    return {
      restartLsn: row.lsn ? parseLsn(String(row.lsn)) : null,
      walStatus: String(row.wal_status),
      activePid: row.active_pid === null ? null : Number(row.active_pid),
    };
  });
}

/** A slot as pg_replication_slots shows it. */
export interface SlotState {
  /** null: the slot reserves no WAL (never did, or the server invalidated it). */
  readonly restartLsn: Lsn | null;
  readonly walStatus: string;
  /** The walsender streaming from it, if one is. */
  readonly activePid: number | null;
}

/** The size of every database on the server, in bytes (a walk of each database directory there). */
export async function clusterSize(config: pg.ClientConfig): Promise<number> {
  return withSql(config, async (c) =>
    Number(
      (await c.query('SELECT sum(pg_database_size(oid))::bigint AS size FROM pg_database')).rows[0].size,
    ),
  );
}

/** Drops a slot through plain SQL (a replication connection's DROP_REPLICATION_SLOT waits while it is busy). */
export async function dropSlot(config: pg.ClientConfig, slot: string): Promise<void> {
  await withSql(config, (c) => c.query('SELECT pg_drop_replication_slot($1)', [slot]));
}
