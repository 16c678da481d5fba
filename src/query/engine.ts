import Database from 'better-sqlite3';
import { type Catalog, type LimitEvent, segmentKey } from '../catalog/index.ts';
import {
  FALSE_POSITIVE_HINT,
  falsePositiveRate,
  mapSizeForFalsePositiveRate,
  type PtrackMap,
} from '../map/index.ts';
import { ForkNumber, formatLsn, type Lsn, parseLsn } from '../wal/index.ts';
import { type RelationFile, relationFilesInCatalog, relationFilesInPgdata } from './files.ts';
import {
  type ChangeStat,
  changeStat,
  LimitIndex,
  type PagemapRow,
  pagemapset,
  QueryError,
} from './pagemapset.ts';
import type { RelationFileId } from './paths.ts';
import { tablespaceVersionDir } from './paths.ts';
import { PTRACK_VERSION } from './version.ts';

export interface QuerySources {
  readonly map: PtrackMap;
  readonly catalog: Catalog;
  /** The server's data directory (read-only is enough); without it the catalog lists the files. */
  readonly pgdata?: string;
  /** How far WAL has been applied to the map and catalog. */
  readonly appliedLsn: () => Lsn;
  /** ptrack's guidance for the map size (a daemon asks its server; offline: not known). */
  readonly suggestedMapSizeMb?: number | null;
}

export interface QueryResult {
  readonly columns: string[];
  readonly rows: unknown[][];
}

/**
 * ptrack's functions as real SQL: an in-memory SQLite database with ptrack_version() and
 * ptrack_init_lsn() as scalar functions and ptrack_get_pagemapset(lsn), ptrack_get_change_stat(lsn),
 * ptrack_status() and ptrack_relations() as table-valued functions, so WHERE, ORDER BY, joins and
 * aggregates work on top. LSNs are text (%X/%X); pagemap is a blob.
 */
export class QueryEngine {
  readonly #src: QuerySources;
  readonly #db = new Database(':memory:');

  constructor(src: QuerySources) {
    this.#src = src;
    const db = this.#db;
    const engine = this; // the table functions' generators are called by SQLite, not as methods
    db.function('ptrack_version', { deterministic: true }, () => PTRACK_VERSION);
    db.function('ptrack_init_lsn', () => formatLsn(this.initLsn));
    db.table('ptrack_get_pagemapset', {
      columns: ['path', 'pagecount', 'pagemap'],
      parameters: ['start_lsn'],
      rows: function* (lsn: unknown) {
        for (const r of engine.pagemapset(lsnArgument(lsn))) {
          yield [r.path, int(r.pagecount), Buffer.from(r.pagemap)];
        }
      },
    });
    db.table('ptrack_get_change_stat', {
      columns: ['files', 'pages', 'size, MB'],
      parameters: ['start_lsn'],
      rows: function* (lsn: unknown) {
        const s = engine.changeStat(lsnArgument(lsn));
        yield [int(s.files), s.pages === null ? null : int(s.pages), s.sizeMb];
      },
    });
    db.table('ptrack_status', {
      columns: [
        'init_lsn',
        'applied_lsn',
        'checkpoint_lsn',
        'map_size_mb',
        'map_entries',
        'map_fill',
        'est_false_positive_rate',
        'suggested_map_size_mb',
        'map_size_for_1pct_false_positives_mb',
      ],
      rows: function* () {
        const state = engine.#state();
        const fill = engine.#src.map.fillRatio();
        const checkpoint = state.checkpointLsn === null ? null : formatLsn(state.checkpointLsn);
        yield [
          formatLsn(state.initLsn),
          formatLsn(engine.#src.appliedLsn()),
          checkpoint,
          int(state.mapSizeMb),
          int(state.entries),
          fill,
          falsePositiveRate(fill),
          intOrNull(engine.#src.suggestedMapSizeMb ?? null),
          intOrNull(
            mapSizeForFalsePositiveRate(
              fill,
              state.entries,
              FALSE_POSITIVE_HINT,
              engine.#src.catalog.namedBlocks(),
            ),
          ),
        ];
      },
    });
    db.table('ptrack_relations', {
      columns: ['spc', 'db', 'rel', 'fork', 'max_block', 'first_seen_lsn', 'last_seen_lsn', 'dropped_lsn'],
      rows: function* () {
        for (const f of engine.#src.catalog.relationForks()) {
          const dropped = f.droppedLsn === null ? null : formatLsn(f.droppedLsn);
          const ids = [f.spc, f.db, f.rel, f.fork, f.maxBlock].map(int);
          yield [...ids, formatLsn(f.firstSeenLsn), formatLsn(f.lastSeenLsn), dropped];
        }
      },
    });
  }

  get initLsn(): Lsn {
    return this.#state().initLsn;
  }

  /** Runs one SQL statement; errors from SQLite or from ptrack's functions are thrown as they are. */
  query(sql: string): QueryResult {
    let stmt: Database.Statement;
    try {
      stmt = this.#db.prepare(sql);
    } catch (e) {
      throw withPosition(e as Error, sql);
    }
    if (!stmt.reader) {
      stmt.run();
      return { columns: [], rows: [] };
    }
    const columns = stmt.columns().map((c) => c.name);
    return { columns, rows: stmt.raw(true).all() as unknown[][] };
  }

  /**
   * ptrack_get_pagemapset(since), reading the map only for files that can have changed since: segment
   * files WAL named a block of at an LSN >= since, FSM forks (reported whole), and files under a limit
   * event since. Any other file's entries in the map are collisions (its last change is older than since),
   * so it is left out unread: the answer costs what changed, not what the cluster holds.
   */
  pagemapset(since: Lsn): Generator<PagemapRow> {
    const events = this.#src.catalog.limitEventsSince(since);
    const limits = new LimitIndex(events);
    return pagemapset(
      since,
      this.initLsn,
      this.#src.map,
      limits,
      this.#filesChangedSince(since, limits, events),
    );
  }

  changeStat(since: Lsn): ChangeStat {
    return changeStat(this.pagemapset(since), this.#identity().blockSize);
  }

  close(): void {
    this.#db.close();
  }

  #filesChangedSince(since: Lsn, limits: LimitIndex, events: readonly LimitEvent[]): Iterable<RelationFile> {
    const id = this.#identity();
    const versionDir = tablespaceVersionDir(id.serverVersionNum, id.catalogVersion);
    const catalog = this.#src.catalog;
    const named = catalog.segmentsNamedSince(since);
    const mayHaveChanged = (f: RelationFileId) =>
      f.fork === ForkNumber.fsm ||
      named.has(segmentKey(f.spc, f.db, f.rel, f.fork, f.segno)) ||
      limits.limitFor(f.spc, f.db, f.rel, f.fork) !== Number.POSITIVE_INFINITY;
    return this.#src.pgdata === undefined
      ? relationFilesInCatalog(catalog.relationForksChangedSince(since, events), versionDir, mayHaveChanged)
      : relationFilesInPgdata(this.#src.pgdata, versionDir, id.blockSize, mayHaveChanged);
  }

  #identity() {
    const id = this.#src.catalog.identity();
    if (!id) throw new QueryError('the catalog does not know which cluster it tracks yet');
    return id;
  }

  #state() {
    const state = this.#src.catalog.mapState();
    if (!state) throw new QueryError('tracking has not started: the catalog holds no map');
    return state;
  }
}

/**
 * SQLite names the token a syntax error is near; where that token occurs once in the statement, add
 * its position, as psql shows one. (A token that occurs twice gets no position rather than a wrong one.)
 */
function withPosition(e: Error, sql: string): Error {
  const near = /near "([^"]+)": syntax error/.exec(e.message);
  const at = near ? sql.indexOf(near[1]) : -1;
  if (at >= 0 && sql.indexOf(near![1], at + 1) < 0) e.message = `${e.message} at character ${at + 1}`;
  return e;
}

/** SQLite stores a JS number from a table function as REAL ('x' || 5 would be 'x5.0'); a BigInt is an INTEGER. */
const intOrNull = (n: number | null): bigint | null => (n === null ? null : int(n));

function int(n: number): bigint {
  return BigInt(n);
}

function lsnArgument(value: unknown): Lsn {
  if (typeof value !== 'string')
    throw new QueryError(`start_lsn must be text such as '0/185C8C0', got ${String(value)}`);
  return parseLsn(value);
}
