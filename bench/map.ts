import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Catalog } from '../src/catalog/index.ts';
import { PtrackMap } from '../src/map/index.ts';
import {
  commitCheckpoint,
  loadCheckpointedMap,
  resizeCheckpointedMap,
  writeCheckpointFile,
} from '../src/tracker/index.ts';

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

/**
 * A 1 GB map (ptrack's map_size for a 1 TB cluster), a third of its entries set: the durable checkpoint
 * (file written a piece at a time with CRCs, fsync, catalog) and the load that verifies every block's
 * CRC-32C, with the time it takes just to touch that much fresh memory.
 */
export async function benchLargeMap(): Promise<{
  mapMb: number;
  checkpointSeconds: number;
  loadSeconds: number;
  freshMemorySeconds: number;
}> {
  const mapMb = 1024;
  const dir = mkdtempSync(join(tmpdir(), 'ptrackd-bench-map-'));
  try {
    const map = PtrackMap.create(mapMb, 1);
    for (let i = 0; i < map.entries / 3; i++)
      map.markBlock(1663, 5, 16384 + (i & 1023), 0, i >>> 10, 0x1000000 + i);
    const catalog = Catalog.open(join(dir, 'catalog.db'));
    catalog.initMap(mapMb, map.entries, 1, 'benchmark');
    let t = performance.now();
    commitCheckpoint(dir, catalog, 0x2000000, await writeCheckpointFile(dir, map));
    const checkpointSeconds = (performance.now() - t) / 1000;
    t = performance.now();
    const loaded = loadCheckpointedMap(dir, catalog, (m) => {
      throw new Error(m);
    });
    const loadSeconds = (performance.now() - t) / 1000;
    if (loaded.map.entries !== map.entries) throw new Error('the map did not load whole');
    catalog.close();
    // The floor under any load that copies the file into memory: touching as much fresh shared memory.
    t = performance.now();
    const fresh = new Uint8Array(new SharedArrayBuffer(map.buffer.byteLength));
    for (let i = 0; i < fresh.length; i += 4096) fresh[i] = 1;
    const freshMemorySeconds = (performance.now() - t) / 1000;
    return { mapMb, checkpointSeconds, loadSeconds, freshMemorySeconds };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Issue 17: resizing the map of a pgbench scale-130 cluster (~2 GB of relations as the catalog lists
 * them) from 64 MB (ptrack's guidance for it) to 128 MB, every block changed since init_lsn (the most a
 * resize carries), through the whole resize (rebuild, durable file, catalog, rename); the yardstick is
 * a durable checkpoint of the new map in the same run.
 */
export async function benchResize(): Promise<{
  blocks: number;
  resizeSeconds: number;
  checkpointSeconds: number;
}> {
  const dir = mkdtempSync(join(tmpdir(), 'ptrackd-bench-resize-'));
  try {
    // pgbench at scale 130: 13 M accounts at 61 a page, their primary key, and the small tables
    const forks = [
      [16397, 0, 213_115],
      [16397, 1, 55],
      [16397, 2, 7],
      [16405, 0, 35_619],
      [16394, 0, 3],
      [16400, 0, 7],
      [16403, 0, 2],
      [16401, 0, 1],
    ];
    const catalog = Catalog.open(join(dir, 'catalog.db'));
    const old = PtrackMap.create(64, 1);
    catalog.initMap(64, old.entries, 1, 'benchmark');
    catalog.applyOps(
      forks.map(([rel, fork, blocks]) => ({
        op: 'observe' as const,
        spc: 1663,
        db: 5,
        rel,
        fork,
        maxBlock: blocks - 1,
        firstLsn: 2,
        lastLsn: 3,
      })),
    );
    let blocks = 0;
    for (const [rel, fork, n] of forks) {
      for (let b = 0; b < n; b++, blocks++) old.markBlock(1663, 5, rel, fork, b, 0x1000000 + blocks);
    }
    commitCheckpoint(dir, catalog, 0x2000000, await writeCheckpointFile(dir, old));
    let t = performance.now();
    const { map } = resizeCheckpointedMap(dir, catalog, old, 128, () => {});
    const resizeSeconds = (performance.now() - t) / 1000;
    t = performance.now();
    commitCheckpoint(dir, catalog, 0x2000000, await writeCheckpointFile(dir, map));
    const checkpointSeconds = (performance.now() - t) / 1000;
    catalog.close();
    return { blocks, resizeSeconds, checkpointSeconds };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
