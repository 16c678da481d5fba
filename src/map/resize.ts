import { PtrackMap } from './map.ts';

/** A relation fork and the highest block WAL has named in it since the map's init_lsn (-1: none). */
export interface ForkExtent {
  readonly spc: number;
  readonly db: number;
  readonly rel: number;
  readonly fork: number;
  readonly maxBlock: number;
}

export interface ResizeProgress {
  readonly blocksDone: number;
  readonly blocksTotal: number;
}

/**
 * The map rebuilt at another size with no false negative: every block that can have changed since
 * init_lsn is in `forks` (WAL named it), and its value in the old map (what a query uses for it,
 * blockLsn) is marked into the new one, whose two slots for it then hold at least that much. A block
 * never named needs no entry. Larger maps share fewer slots between blocks: fewer false positives.
 */
export function resizeMap(
  old: PtrackMap,
  mapSizeMb: number,
  forks: readonly ForkExtent[],
  onProgress?: (p: ResizeProgress) => void,
  progressEvery = 1 << 20,
): { map: PtrackMap; blocksCarried: number } {
  const map = PtrackMap.create(mapSizeMb, old.initLsn);
  const blocksTotal = forks.reduce((n, f) => n + f.maxBlock + 1, 0);
  let blocksDone = 0;
  let blocksCarried = 0;
  for (const { spc, db, rel, fork, maxBlock } of forks) {
    for (let block = 0; block <= maxBlock; block++) {
      const lsn = old.blockLsn(spc, db, rel, fork, block);
      if (lsn > 0) {
        map.markBlock(spc, db, rel, fork, block, lsn);
        blocksCarried++;
      }
      if (++blocksDone % progressEvery === 0) onProgress?.({ blocksDone, blocksTotal });
    }
  }
  return { map, blocksCarried };
}
