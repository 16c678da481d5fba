import { PtrackMap } from '../src/map/index.ts';

/**
 * Blocks marked per second on one thread in a 64 MB map, with increasing LSNs as WAL replay gives them
 * (so nearly every mark is an update), and the same for re-marks with an older LSN (the no-update path).
 */
export function benchMarking(): { updatesPerSecond: number; noOpsPerSecond: number; blocks: number } {
  const map = PtrackMap.create(64, 1);
  const blocks = 4_000_000;
  const run = (lsnOf: (i: number) => number) => {
    const t = performance.now();
    for (let i = 0; i < blocks; i++) map.markBlock(1663, 5, 16384 + (i & 63), 0, i >>> 6, lsnOf(i));
    return blocks / ((performance.now() - t) / 1000);
  };
  const lsns = Array.from({ length: 1024 }, (_, k) => 0x1000000 + k);
  const updatesPerSecond = run((i) => lsns[i >>> 12]);
  const noOpsPerSecond = run(() => 2);
  return { updatesPerSecond, noOpsPerSecond, blocks };
}
