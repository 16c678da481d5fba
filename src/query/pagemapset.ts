import { ALL_FORKS, type LimitEvent, WHOLE_DATABASE } from '../catalog/index.ts';
import type { PtrackMap } from '../map/index.ts';
import { ForkNumber, formatLsn, type Lsn } from '../wal/index.ts';
import type { RelationFile } from './files.ts';
import { RELSEG_SIZE } from './paths.ts';

/** One row of ptrack_get_pagemapset: a segment file and the bitmap of its changed blocks. */
export interface PagemapRow {
  readonly path: string;
  readonly pagecount: number;
  /** Bit b % 8 (least significant first) of byte b / 8 is segment-relative block b. */
  readonly pagemap: Uint8Array;
}

export interface ChangeStat {
  readonly files: number;
  /** null when nothing changed, as ptrack returns. */
  readonly pages: number | null;
  readonly sizeMb: number | null;
}

export class QueryError extends Error {
  override readonly name = 'QueryError';
}

/** The first block from which limit events make every block of a file count as changed (Infinity: none). */
export class LimitIndex {
  readonly #databases = new Set<string>();
  readonly #forks = new Map<string, number>();

  constructor(events: readonly LimitEvent[]) {
    for (const e of events) {
      if (e.rel === WHOLE_DATABASE) {
        this.#databases.add(`${e.spc}/${e.db}`);
        continue;
      }
      const forks = e.fork === ALL_FORKS ? [0, 1, 2, 3] : [e.fork];
      for (const fork of forks) {
        const key = `${e.spc}/${e.db}/${e.rel}/${fork}`;
        this.#forks.set(key, Math.min(this.#forks.get(key) ?? Number.POSITIVE_INFINITY, e.limitBlock));
      }
    }
  }

  limitFor(spc: number, db: number, rel: number, fork: number): number {
    if (this.#databases.has(`${spc}/${db}`)) return 0;
    return this.#forks.get(`${spc}/${db}/${rel}/${fork}`) ?? Number.POSITIVE_INFINITY;
  }
}

/**
 * ptrack_get_pagemapset(since): every segment file with a block changed by WAL at an LSN >= since. A
 * block counts as changed when the map says so, when it lies at or beyond a limit recorded at an LSN >=
 * since, or when it is in an FSM fork (the FSM is not WAL-logged, so FSM files are reported whole).
 */
export function* pagemapset(
  since: Lsn,
  initLsn: Lsn,
  map: PtrackMap,
  limits: LimitIndex,
  files: Iterable<RelationFile>,
): Generator<PagemapRow> {
  if (since < initLsn) {
    throw new QueryError(
      `LSN ${formatLsn(since)} is older than init_lsn ${formatLsn(initLsn)}: changes before ${formatLsn(initLsn)} are not tracked; take a full backup`,
    );
  }
  for (const f of files) {
    const first = f.segno * RELSEG_SIZE;
    const wholeFrom = f.fork === ForkNumber.fsm ? 0 : limits.limitFor(f.spc, f.db, f.rel, f.fork) - first;
    const bitmap = new Uint8Array((f.blocks + 7) >> 3);
    let count = 0;
    for (let b = 0; b < f.blocks; b++) {
      if (b >= wholeFrom || map.isChanged(f.spc, f.db, f.rel, f.fork, first + b, since)) {
        bitmap[b >> 3] |= 1 << (b & 7);
        count++;
      }
    }
    if (count > 0) yield { path: f.path, pagecount: count, pagemap: bitmap };
  }
}

/** ptrack_get_change_stat: files, pages and "size, MB" over pagemapset's rows. */
export function changeStat(rows: Iterable<PagemapRow>, blockSize: number): ChangeStat {
  let files = 0;
  let pages = 0;
  for (const r of rows) {
    files++;
    pages += r.pagecount;
  }
  return files === 0
    ? { files: 0, pages: null, sizeMb: null }
    : { files, pages, sizeMb: (pages * blockSize) / 1048576 };
}
