import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { ForkNumber, heapBlocksPerVmPage, type Lsn } from '../wal/index.ts';
import { type CatalogOp, type LimitEvent, limitsOf, RELSEG_SIZE, WHOLE_DATABASE } from './ops.ts';

const SCHEMAS_DIR = join(import.meta.dirname, '../../schemas');

export interface ClusterIdentity {
  readonly systemIdentifier: string;
  readonly timeline: number;
  readonly serverVersionNum: number;
  readonly catalogVersion: number;
  readonly blockSize: number;
  readonly segmentSize: number;
}

export interface MapState {
  readonly mapSizeMb: number;
  readonly entries: number;
  readonly initLsn: Lsn;
  readonly initReason: string;
  readonly checkpointLsn: Lsn | null;
  readonly checkpointTime: string | null;
  readonly blockCrcs: Uint32Array | null;
  /**
   * The block CRCs of a checkpoint file written but not yet recorded (recordPendingCheckpoint): the map
   * file may already be that one, if a crash came between its rename and recordCheckpoint.
   */
  readonly pendingBlockCrcs: Uint32Array | null;
  /** Bytes of ptrack.map.log that are durable and count (0: the map file is the whole checkpoint). */
  readonly logBytes: number;
  /** A bit per region of the map that the log's records hold (null: the log is empty). */
  readonly logRegions: Uint32Array | null;
  /** The physical slot followed; null in a directory made before the slot was recorded. */
  readonly slotName: string | null;
}

export interface RelationFork {
  readonly spc: number;
  readonly db: number;
  readonly rel: number;
  readonly fork: number;
  /** -1 when the fork was created and no block of it has been seen since. */
  readonly maxBlock: number;
  readonly firstSeenLsn: Lsn;
  readonly lastSeenLsn: Lsn;
  readonly droppedLsn: Lsn | null;
}

export interface HistoryEntry {
  readonly at: string;
  readonly kind: 'init' | 'gap' | 'repair' | 'resize';
  readonly initLsn: Lsn | null;
  readonly reason: string;
}

export class CatalogError extends Error {
  override readonly name = 'CatalogError';
}

/**
 * The metadata DB (SQLite, WAL journal mode): the cluster's identity, the map's state and checkpoints,
 * the relation forks and limit events WAL revealed, and the history of gaps and repairs. Schema
 * migrations are the numbered files in schemas/, applied in order on open.
 */
export class Catalog {
  readonly #db: Database.Database;
  readonly #blockSize: () => number;
  #applyOpsTransaction: ((ops: readonly CatalogOp[]) => void) | undefined;
  /** BLCKSZ of the cluster, read once (setIdentity forgets it). */
  #knownBlockSize: number | undefined;

  private constructor(db: Database.Database) {
    this.#db = db;
    this.#blockSize = () => (this.#knownBlockSize ??= this.identity()?.blockSize ?? 8192);
  }

  static open(path: string, options: { readonly?: boolean } = {}): Catalog {
    if (options.readonly && !existsSync(path)) throw new CatalogError(`no ptrackd catalog at ${path}`);
    const db = new Database(path, {
      readonly: options.readonly ?? false,
      fileMustExist: options.readonly ?? false,
    });
    if (!options.readonly) {
      db.pragma('journal_mode = WAL');
      // Ops applied between checkpoints are replayed from WAL after a crash: only the checkpoint must
      // reach disk at once (recordCheckpoint), not the hundreds of small commits a second before it.
      db.pragma('synchronous = NORMAL');
      migrate(db);
    } else if ((db.pragma('user_version', { simple: true }) as number) === 0) {
      throw new CatalogError(`${path} is not an initialised ptrackd catalog`);
    }
    return new Catalog(db);
  }

  close(): void {
    this.#db.close();
  }

  identity(): ClusterIdentity | null {
    const row = this.#db.prepare('SELECT * FROM cluster WHERE id = 1').get() as
      | Record<string, number | string>
      | undefined;
    if (!row) return null;
    return {
      systemIdentifier: String(row.system_identifier),
      timeline: Number(row.timeline),
      serverVersionNum: Number(row.server_version_num),
      catalogVersion: Number(row.catalog_version),
      blockSize: Number(row.block_size),
      segmentSize: Number(row.segment_size),
    };
  }

  /** The timeline whose history the map's position is on (see Tracker: recorded once the map is on it). */
  setTimeline(tli: number): void {
    this.#db.prepare('UPDATE cluster SET timeline = ? WHERE id = 1').run(tli);
  }

  setIdentity(id: ClusterIdentity): void {
    this.#knownBlockSize = undefined;
    this.#db
      .prepare(
        `INSERT INTO cluster (id, system_identifier, timeline, server_version_num, catalog_version, block_size, segment_size)
         VALUES (1, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET system_identifier = excluded.system_identifier, timeline = excluded.timeline,
           server_version_num = excluded.server_version_num, catalog_version = excluded.catalog_version,
           block_size = excluded.block_size, segment_size = excluded.segment_size`,
      )
      .run(
        id.systemIdentifier,
        id.timeline,
        id.serverVersionNum,
        id.catalogVersion,
        id.blockSize,
        id.segmentSize,
      );
  }

  mapState(): MapState | null {
    const row = this.#db.prepare('SELECT * FROM map_state WHERE id = 1').get() as
      | Record<string, unknown>
      | undefined;
    if (!row) return null;
    return {
      mapSizeMb: Number(row.map_size_mb),
      entries: Number(row.entries),
      initLsn: Number(row.init_lsn),
      initReason: String(row.init_reason),
      checkpointLsn: row.checkpoint_lsn === null ? null : Number(row.checkpoint_lsn),
      checkpointTime: (row.checkpoint_time as string | null) ?? null,
      blockCrcs: uint32sFromBlob(row.block_crcs as Buffer | null),
      pendingBlockCrcs: uint32sFromBlob(row.pending_block_crcs as Buffer | null),
      logBytes: Number(row.log_bytes),
      logRegions: uint32sFromBlob(row.log_regions as Buffer | null),
      slotName: (row.slot_name as string | null) ?? null,
    };
  }

  /**
   * Starts tracking: a new map whose history begins at initLsn. The relation forks and limit events of
   * any earlier map are history of another map and go; `kind` says whether this is a first start or a
   * gap that a new map answers (another cluster on the same address).
   */
  initMap(
    mapSizeMb: number,
    entries: number,
    initLsn: Lsn,
    reason: string,
    kind: 'init' | 'gap' = 'init',
  ): void {
    this.#db.transaction(() => {
      this.#db.exec('DELETE FROM relation_forks; DELETE FROM relation_segments; DELETE FROM limit_events');
      this.#db
        .prepare(
          `INSERT INTO map_state (id, map_size_mb, entries, init_lsn, init_reason) VALUES (1, ?, ?, ?, ?)
           ON CONFLICT (id) DO UPDATE SET map_size_mb = excluded.map_size_mb, entries = excluded.entries,
             init_lsn = excluded.init_lsn, init_reason = excluded.init_reason, checkpoint_lsn = NULL,
             checkpoint_time = NULL, block_crcs = NULL, pending_block_crcs = NULL, log_bytes = 0,
             log_regions = NULL`,
        )
        .run(mapSizeMb, entries, initLsn, reason);
      this.#log(kind, initLsn, reason);
    })();
  }

  /** The slot this map follows (recorded at the first start, or adopted by an older directory). */
  setSlotName(slot: string): void {
    this.#db.prepare('UPDATE map_state SET slot_name = ? WHERE id = 1').run(slot);
  }

  /** A gap: history before `lsn` is no longer complete. */
  moveInitLsn(lsn: Lsn, reason: string): void {
    this.#db.transaction(() => {
      this.#db.prepare('UPDATE map_state SET init_lsn = ?, init_reason = ? WHERE id = 1').run(lsn, reason);
      this.#log('gap', lsn, reason);
    })();
  }

  /**
   * The map was rebuilt at another size with its history (init_lsn, checkpoint) kept: its size and the
   * new file's block CRCs, in one durable commit with the history entry.
   */
  recordResize(mapSizeMb: number, entries: number, blockCrcs: Uint32Array, reason: string): void {
    this.#durably(() =>
      this.#db.transaction(() => {
        this.#db
          .prepare(
            `UPDATE map_state SET map_size_mb = ?, entries = ?, block_crcs = ?, pending_block_crcs = NULL,
               log_bytes = 0, log_regions = NULL WHERE id = 1`,
          )
          .run(mapSizeMb, entries, blobOf(blockCrcs));
        this.#log('resize', null, reason);
      })(),
    );
  }

  logRepair(reason: string): void {
    this.#log('repair', null, reason);
  }

  /**
   * The first half of a checkpoint's record, made durably before its file (written under a temporary
   * name) replaces the map file: the new file's block CRCs.
   */
  recordPendingCheckpoint(blockCrcs: Uint32Array): void {
    this.#durably(() => this.#updateMapState('pending_block_crcs = ?', blobOf(blockCrcs)));
  }

  /**
   * Records a durable checkpoint written as a whole map file, with its per-block CRCs, in one
   * transaction (no longer pending): the file holds all the log did, which starts again empty.
   */
  recordCheckpoint(lsn: Lsn, blockCrcs: Uint32Array, at = new Date()): void {
    this.#durably(() =>
      this.#updateMapState(
        `checkpoint_lsn = ?, checkpoint_time = ?, block_crcs = ?, pending_block_crcs = NULL, log_bytes = 0,
         log_regions = NULL`,
        lsn,
        at.toISOString(),
        blobOf(blockCrcs),
      ),
    );
  }

  /**
   * Records a durable checkpoint written as a record of ptrack.map.log (already fsynced): the log's new
   * durable length and the regions its records hold, in one transaction.
   */
  recordLogCheckpoint(lsn: Lsn, logBytes: number, logRegions: Uint32Array, at = new Date()): void {
    this.#durably(() =>
      this.#updateMapState(
        'checkpoint_lsn = ?, checkpoint_time = ?, log_bytes = ?, log_regions = ?',
        lsn,
        at.toISOString(),
        logBytes,
        blobOf(logRegions),
      ),
    );
  }

  /**
   * After a load that found a pending checkpoint: the CRCs the map file on disk has now (its blocks may
   * be the pending checkpoint's), the checkpoint LSN unchanged, nothing pending.
   */
  settleMapFile(blockCrcs: Uint32Array): void {
    this.#durably(() => this.#updateMapState('block_crcs = ?, pending_block_crcs = NULL', blobOf(blockCrcs)));
  }

  #updateMapState(assignments: string, ...values: unknown[]): void {
    const changed = this.#db
      .prepare(`UPDATE map_state SET ${assignments} WHERE id = 1`)
      .run(...values).changes;
    if (changed !== 1) throw new CatalogError('no map to record a checkpoint for (initMap first)');
  }

  /** Runs `write` as a FULL commit: it syncs the WAL file, and with it every NORMAL commit before it. */
  #durably(write: () => void): void {
    this.#db.pragma('synchronous = FULL');
    try {
      write();
    } finally {
      this.#db.pragma('synchronous = NORMAL');
    }
  }

  history(): HistoryEntry[] {
    return (
      this.#db.prepare('SELECT at, kind, init_lsn, reason FROM history ORDER BY id').all() as Record<
        string,
        unknown
      >[]
    ).map((r) => ({
      at: String(r.at),
      kind: r.kind as HistoryEntry['kind'],
      initLsn: r.init_lsn === null ? null : Number(r.init_lsn),
      reason: String(r.reason),
    }));
  }

  /** Applies one decoded chunk's operations, in order, in one transaction. */
  applyOps(ops: readonly CatalogOp[]): void {
    // Made once: db.transaction() prepares its BEGIN/COMMIT statements each time it is called.
    this.#applyOpsTransaction ??= this.#db.transaction((batch: readonly CatalogOp[]) =>
      this.#applyOpsNow(batch),
    );
    this.#applyOpsTransaction(ops);
  }

  #applyOpsNow(ops: readonly CatalogOp[]): void {
    const blockSize = this.#blockSize();
    const perVmPage = heapBlocksPerVmPage(blockSize);
    const s = this.#statements();
    for (const o of ops) {
      if (o.op === 'observe') {
        const seg0 = o.segments ? o.segments.seg0Lsn : o.lastLsn;
        s.observe.run(o.spc, o.db, o.rel, o.fork, o.maxBlock, o.firstLsn, o.lastLsn, seg0);
        if (o.segments) {
          for (const [segno, lsn] of o.segments.later) s.segment.run(o.spc, o.db, o.rel, o.fork, segno, lsn);
        } else {
          for (let segno = 1; segno <= Math.floor(o.maxBlock / RELSEG_SIZE); segno++)
            s.segment.run(o.spc, o.db, o.rel, o.fork, segno, o.lastLsn);
        }
        continue;
      }
      const e = o.event;
      for (const l of limitsOf(e, blockSize))
        s.limit.run(l.lsn, l.spc, l.db, l.rel, l.fork, l.limitBlock, l.kind);
      switch (e.kind) {
        case 'create':
          s.create.run(e.spc, e.db, e.rel, e.fork, e.endLsn, e.endLsn);
          break;
        case 'truncate':
          if (e.flags & 1) s.truncate.run(e.nblocks - 1, e.spc, e.db, e.rel, ForkNumber.main);
          if (e.flags & 2)
            s.truncate.run(Math.ceil(e.nblocks / perVmPage) - 1, e.spc, e.db, e.rel, ForkNumber.vm);
          break;
        case 'drop':
          s.drop.run(e.endLsn, e.spc, e.db, e.rel);
          break;
        case 'dbdrop':
          s.dropDatabase.run(e.endLsn, e.spc, e.db);
          break;
      }
    }
  }

  /** How many blocks WAL has named since init_lsn: every block of every fork up to its max_block. */
  namedBlocks(): number {
    const row = this.#db
      .prepare('SELECT coalesce(sum(max_block + 1), 0) AS n FROM relation_forks WHERE max_block >= 0')
      .get() as { n: number };
    return Number(row.n);
  }

  relationForks(): RelationFork[] {
    const rows = this.#db.prepare('SELECT * FROM relation_forks ORDER BY spc, db, rel, fork').all();
    return (rows as Record<string, number | null>[]).map(relationFork);
  }

  /**
   * The relation segment files WAL named a block of at an LSN >= `lsn`, as segmentKey()s: the only ones
   * the map can hold a change since `lsn` for (any other entry it has for them is a collision). Read
   * through indexes: as many as changed, not as many as the catalog holds.
   */
  segmentsNamedSince(lsn: Lsn): Set<string> {
    const named = new Set<string>();
    const keys = (sql: string, ...params: Lsn[]) => {
      const rows = this.#db
        .prepare(sql)
        .raw(true)
        .iterate(...params) as IterableIterator<number[]>;
      for (const [spc, db, rel, fork, segno] of rows) named.add(segmentKey(spc!, db!, rel!, fork!, segno!));
    };
    // seg0_last_seen_lsn <= last_seen_lsn: the index on the latter finds the candidates
    keys(
      'SELECT spc, db, rel, fork, 0 FROM relation_forks WHERE last_seen_lsn >= ? AND seg0_last_seen_lsn >= ?',
      lsn,
      lsn,
    );
    keys('SELECT spc, db, rel, fork, segno FROM relation_segments WHERE last_seen_lsn >= ?', lsn);
    return named;
  }

  /**
   * The forks that can hold a block changed since `lsn`, for listing files without PGDATA: those WAL
   * named since (then only their segments named since count: segmentsNamedSince), every FSM fork
   * (reported whole), and those under a limit event since (`limits`, from limitEventsSince). Each once,
   * in no particular order.
   */
  relationForksChangedSince(lsn: Lsn, limits: readonly LimitEvent[]): RelationFork[] {
    const db = this.#db;
    const out = new Map<string, RelationFork>();
    const add = (rows: unknown[]) => {
      for (const r of rows as Record<string, number | null>[]) {
        const f = relationFork(r);
        out.set(segmentKey(f.spc, f.db, f.rel, f.fork, 0), f);
      }
    };
    add(db.prepare('SELECT * FROM relation_forks WHERE last_seen_lsn >= ?').all(lsn));
    add(db.prepare(`SELECT * FROM relation_forks WHERE fork = ${ForkNumber.fsm}`).all());
    const inDatabase = db.prepare('SELECT * FROM relation_forks WHERE spc = ? AND db = ?');
    const ofRelation = db.prepare('SELECT * FROM relation_forks WHERE spc = ? AND db = ? AND rel = ?');
    for (const e of limits) {
      add(e.rel === WHOLE_DATABASE ? inDatabase.all(e.spc, e.db) : ofRelation.all(e.spc, e.db, e.rel));
    }
    return [...out.values()];
  }

  /** Limit events at or after `lsn`, in LSN order. */
  limitEventsSince(lsn: Lsn): LimitEvent[] {
    return (
      this.#db
        .prepare(
          'SELECT lsn, spc, db, rel, fork, limit_block, kind FROM limit_events WHERE lsn >= ? ORDER BY lsn, rowid',
        )
        .all(lsn) as Record<string, number | string>[]
    ).map((r) => ({
      lsn: Number(r.lsn),
      spc: Number(r.spc),
      db: Number(r.db),
      rel: Number(r.rel),
      fork: Number(r.fork),
      limitBlock: Number(r.limit_block),
      kind: String(r.kind),
    }));
  }

  #log(kind: HistoryEntry['kind'], initLsn: Lsn | null, reason: string): void {
    this.#db
      .prepare('INSERT INTO history (at, kind, init_lsn, reason) VALUES (?, ?, ?, ?)')
      .run(new Date().toISOString(), kind, initLsn, reason);
  }

  #prepared: ReturnType<Catalog['prepareStatements']> | undefined;
  #statements() {
    this.#prepared ??= this.prepareStatements();
    return this.#prepared;
  }

  private prepareStatements() {
    const db = this.#db;
    return {
      // A fork seen again after it was dropped (a reused relfilenode) is alive again.
      observe: db.prepare(
        `INSERT INTO relation_forks (spc, db, rel, fork, max_block, first_seen_lsn, last_seen_lsn, seg0_last_seen_lsn)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT DO UPDATE SET max_block = CASE WHEN dropped_lsn IS NOT NULL THEN excluded.max_block
             ELSE max(max_block, excluded.max_block) END,
           last_seen_lsn = max(last_seen_lsn, excluded.last_seen_lsn),
           seg0_last_seen_lsn = max(seg0_last_seen_lsn, excluded.seg0_last_seen_lsn), dropped_lsn = NULL`,
      ),
      segment: db.prepare(
        `INSERT INTO relation_segments (spc, db, rel, fork, segno, last_seen_lsn) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT DO UPDATE SET last_seen_lsn = max(last_seen_lsn, excluded.last_seen_lsn)`,
      ),
      create: db.prepare(
        `INSERT INTO relation_forks (spc, db, rel, fork, max_block, first_seen_lsn, last_seen_lsn) VALUES (?, ?, ?, ?, -1, ?, ?)
         ON CONFLICT DO UPDATE SET max_block = -1, last_seen_lsn = excluded.last_seen_lsn, dropped_lsn = NULL`,
      ),
      truncate: db.prepare(
        'UPDATE relation_forks SET max_block = min(max_block, ?) WHERE spc = ? AND db = ? AND rel = ? AND fork = ?',
      ),
      drop: db.prepare(
        'UPDATE relation_forks SET dropped_lsn = ? WHERE spc = ? AND db = ? AND rel = ? AND dropped_lsn IS NULL',
      ),
      dropDatabase: db.prepare(
        'UPDATE relation_forks SET dropped_lsn = ? WHERE spc = ? AND db = ? AND dropped_lsn IS NULL',
      ),
      limit: db.prepare(
        'INSERT INTO limit_events (lsn, spc, db, rel, fork, limit_block, kind) VALUES (?, ?, ?, ?, ?, ?, ?)',
      ),
    };
  }
}

function blobOf(crcs: Uint32Array): Buffer {
  return Buffer.from(crcs.buffer, crcs.byteOffset, crcs.byteLength);
}

function uint32sFromBlob(blob: Buffer | null): Uint32Array | null {
  return blob === null
    ? null
    : new Uint32Array(blob.buffer.slice(blob.byteOffset, blob.byteOffset + blob.length));
}

/** Applies the numbered schema files newer than the database's user_version, each in a transaction. */
function migrate(db: Database.Database): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  const files = readdirSync(SCHEMAS_DIR)
    .filter((f) => /^\d{3}_.*\.sql$/.test(f))
    .sort();
  for (const file of files) {
    const version = Number(file.slice(0, 3));
    if (version <= current) continue;
    db.transaction(() => {
      db.exec(readFileSync(join(SCHEMAS_DIR, file), 'utf8'));
      db.pragma(`user_version = ${version}`);
    })();
  }
}

/** A relation segment file's key in segmentsNamedSince's set. */
export function segmentKey(spc: number, db: number, rel: number, fork: number, segno: number): string {
  return `${spc}/${db}/${rel}/${fork}/${segno}`;
}

function relationFork(r: Record<string, number | null>): RelationFork {
  return {
    spc: Number(r.spc),
    db: Number(r.db),
    rel: Number(r.rel),
    fork: Number(r.fork),
    maxBlock: Number(r.max_block),
    firstSeenLsn: Number(r.first_seen_lsn),
    lastSeenLsn: Number(r.last_seen_lsn),
    droppedLsn: r.dropped_lsn === null ? null : Number(r.dropped_lsn),
  };
}
