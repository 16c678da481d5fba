import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type ForkExtent,
  falsePositiveRate,
  mapSizeForFalsePositiveRate,
  PtrackMap,
  resizeMap,
} from '../../src/map/index.ts';

interface Marked {
  readonly rel: number;
  readonly fork: number;
  readonly block: number;
  readonly lsn: number;
}

/** The forks the marks name and the highest block of each, as the catalog records them. */
function extents(marks: readonly Marked[]): ForkExtent[] {
  const byFork = new Map<string, ForkExtent>();
  for (const m of marks) {
    const key = `${m.rel}/${m.fork}`;
    const seen = byFork.get(key);
    if (!seen || seen.maxBlock < m.block)
      byFork.set(key, { spc: 1663, db: 5, rel: m.rel, fork: m.fork, maxBlock: m.block });
  }
  return [...byFork.values()];
}

function marked(mapSizeMb: number, marks: readonly Marked[]): PtrackMap {
  const map = PtrackMap.create(mapSizeMb, 1000);
  for (const m of marks) map.markBlock(1663, 5, m.rel, m.fork, m.block, m.lsn);
  return map;
}

/** Share of blocks of relations never marked that a map reports as changed since its init LSN. */
function measuredFalsePositives(map: PtrackMap, probes = 200_000): number {
  let reported = 0;
  for (let i = 0; i < probes; i++)
    if (map.isChanged(1663, 5, 900_000 + (i >> 10), 0, i & 1023, 1000)) reported++;
  return reported / probes;
}

describe('resizing a map with its history', () => {
  const marks = fc.array(
    fc.record({
      rel: fc.integer({ min: 16384, max: 16400 }),
      fork: fc.constantFrom(0, 1, 2),
      block: fc.integer({ min: 0, max: 5000 }),
      lsn: fc.integer({ min: 1000, max: 2 ** 40 }),
    }),
    { minLength: 1, maxLength: 3000 },
  );

  it('no false negative: for every X and every block, changed in the old map is changed in the new one', () => {
    fc.assert(
      fc.property(marks, fc.constantFrom(3, 5), fc.constantFrom(1, 2, 4, 8), (ms, from, to) => {
        const old = marked(from, ms);
        const forks = extents(ms);
        const { map, blocksCarried } = resizeMap(old, to, forks);
        expect(map.entries).not.toBe(old.entries);
        expect(map.initLsn).toBe(old.initLsn);
        const xs = [1000, ...ms.map((m) => m.lsn), ...ms.map((m) => m.lsn + 1)];
        let blocks = 0;
        for (const f of forks) {
          for (let block = 0; block <= f.maxBlock; block++, blocks++) {
            const was = old.blockLsn(f.spc, f.db, f.rel, f.fork, block);
            // blockLsn is what isChanged compares: the new map holds at least as much for the block
            expect(map.blockLsn(f.spc, f.db, f.rel, f.fork, block)).toBeGreaterThanOrEqual(was);
            for (const x of xs) {
              if (old.isChanged(f.spc, f.db, f.rel, f.fork, block, x))
                expect(map.isChanged(f.spc, f.db, f.rel, f.fork, block, x)).toBe(true);
            }
          }
        }
        expect(blocksCarried).toBeLessThanOrEqual(blocks);
        // and every block marked is still answered for its own LSN
        for (const m of ms) expect(map.isChanged(1663, 5, m.rel, m.fork, m.block, m.lsn)).toBe(true);
      }),
      { numRuns: 25 },
    );
  });

  it('a larger map measures fewer false positives; a smaller one more, never a false negative', () => {
    // a fill of about 20%: one block in ten of 40 relations changed
    const ms: Marked[] = [];
    for (let i = 0; i < 30_000; i++)
      ms.push({ rel: 16384 + (i % 40), fork: 0, block: i >> 2, lsn: 2000 + i });
    const old = marked(2, ms);
    const forks = extents(ms);
    const bigger = resizeMap(old, 8, forks).map;
    const smaller = resizeMap(old, 1, forks).map;
    const [fpOld, fpBigger, fpSmaller] = [old, bigger, smaller].map((m) => measuredFalsePositives(m));
    expect(fpBigger).toBeLessThan(fpOld / 4);
    expect(fpSmaller).toBeGreaterThan(fpOld);
    for (const m of ms) expect(smaller.isChanged(1663, 5, m.rel, m.fork, m.block, m.lsn)).toBe(true);
  });

  it('the size named for a 1% false-positive rate measures under it, and the estimate from the fill agrees', () => {
    const ms: Marked[] = [];
    for (let i = 0; i < 40_000; i++)
      ms.push({ rel: 16384 + (i % 30), fork: 0, block: i >> 1, lsn: 2000 + i });
    const small = marked(2, ms);
    const fill = small.fillRatio();
    const named = extents(ms).reduce((n, f) => n + f.maxBlock + 1, 0);
    const measured = measuredFalsePositives(small);
    expect(Math.abs(falsePositiveRate(fill) - measured)).toBeLessThan(0.02 + measured * 0.1);
    expect(measured).toBeGreaterThan(0.01);
    const size = mapSizeForFalsePositiveRate(fill, small.entries, 0.01, named)!;
    expect(size).toBeGreaterThan(2);
    const resized = resizeMap(small, size, extents(ms)).map;
    expect(measuredFalsePositives(resized)).toBeLessThan(0.01);
    // one MB less would not be enough by the same estimate
    expect(falsePositiveRate(resizeMap(small, size - 1, extents(ms)).map.fillRatio())).toBeGreaterThan(
      0.0095,
    );
    expect(mapSizeForFalsePositiveRate(1, small.entries, 0.01)).toBeNull();
  });
});
