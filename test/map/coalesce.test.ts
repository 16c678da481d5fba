import { describe, expect, it } from 'vitest';
import { MarkCache, PtrackMap } from '../../src/map/index.ts';
import { seededRandom } from '../helpers/fixtures.ts';

describe('MarkCache', () => {
  it.each([1, 2, 3])('leaves the map exactly as marking each block directly would (seed %i)', (seed) => {
    const random = seededRandom(seed);
    const pick = <T>(xs: T[]) => xs[Math.floor(random() * xs.length)];
    const direct = PtrackMap.withEntries(100_003, 1);
    const coalesced = PtrackMap.withEntries(100_003, 1);
    const cache = new MarkCache(coalesced);
    // Few distinct values per field, so that blocks differ in one field only and evict one another;
    // LSNs mostly rise (as in WAL) but not always (a chunk's blocks in any order).
    let lsn = 1000;
    for (let i = 0; i < 200_000; i++) {
      lsn += random() < 0.9 ? Math.floor(random() * 100) : -Math.floor(random() * 500);
      const mark = [
        pick([1663, 1664, 16400]),
        pick([0, 5, 16384]),
        pick([16384, 16385, 1259, 2 ** 32 - 1]),
        pick([0, 1, 2, 3]),
        random() < 0.5 ? Math.floor(random() * 8) : Math.floor(random() * 2 ** 32),
        Math.max(1, lsn),
      ] as const;
      direct.markBlock(...mark);
      cache.mark(...mark);
    }
    cache.flush();
    expect(Buffer.from(coalesced.snapshot()).equals(Buffer.from(direct.snapshot()))).toBe(true);
  });

  it('holds marks until they are pushed out or flushed', () => {
    const map = PtrackMap.withEntries(1009, 1);
    const cache = new MarkCache(map);
    cache.mark(1663, 5, 16384, 0, 7, 500);
    cache.mark(1663, 5, 16384, 0, 7, 900);
    expect(map.isChanged(1663, 5, 16384, 0, 7, 500)).toBe(false);
    cache.flush();
    expect(map.isChanged(1663, 5, 16384, 0, 7, 900)).toBe(true);
    expect(map.isChanged(1663, 5, 16384, 0, 7, 901)).toBe(false);
  });
});
