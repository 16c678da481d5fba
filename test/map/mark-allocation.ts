import { PtrackMap } from '../../src/map/index.ts';

/** Run under --trace-gc by map.test.ts: after warming up, a million marks must not trigger a single GC. */
const map = PtrackMap.create(64, 1);
const lsns = Array.from({ length: 256 }, (_, k) => 0x1000000 + k * 8192);
const mark = (n: number) => {
  for (let i = 0; i < n; i++) map.markBlock(1663, 5, 16384 + (i & 63), 0, i >>> 6, lsns[(i >>> 12) & 255]);
};
mark(300_000);
console.log('--- measuring');
mark(1_000_000);
console.log('--- done');
