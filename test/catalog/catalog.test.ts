import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Catalog, CatalogError } from '../../src/catalog/index.ts';
import { loadMapFile, PtrackMap, writeMapFile } from '../../src/map/index.ts';
import { happened, observed, scratchCatalog } from '../helpers/catalog.ts';
import { scratchDir } from '../helpers/scratch.ts';

const observe = (rel: number, fork: number, maxBlock: number, lsn: number) =>
  observed(1663, 5, rel, fork, maxBlock, lsn);
const event = happened;
const forkOf = (c: Catalog, rel: number, fork = 0) =>
  c.relationForks().find((f) => f.rel === rel && f.fork === fork);

describe('catalog', () => {
  it('applies its numbered migrations once, and refuses to read a file that is not a catalog', () => {
    const dir = scratchDir('ptrackd-catalog-');
    const path = join(dir, 'catalog.db');
    Catalog.open(path).close();
    const again = Catalog.open(path);
    expect(again.identity()).toBeNull();
    again.close();
    writeFileSync(join(dir, 'other.db'), '');
    expect(() => Catalog.open(join(dir, 'other.db'), { readonly: true })).toThrow(CatalogError);
  });

  it('keeps the identity, the map state and a history of init, gaps and repairs', () => {
    const c = scratchCatalog(0x1000);
    expect(c.identity()?.catalogVersion).toBe(202209061);
    c.moveInitLsn(0x5000, 'slot was invalidated');
    c.logRepair('map block 3 failed its CRC');
    expect(c.mapState()?.initLsn).toBe(0x5000);
    expect(c.history().map((h) => [h.kind, h.initLsn, h.reason])).toEqual([
      ['init', 0x1000, 'test'],
      ['gap', 0x5000, 'slot was invalidated'],
      ['repair', null, 'map block 3 failed its CRC'],
    ]);
  });

  it('follows forks through observations, truncation, drop and reuse, in order', () => {
    const c = scratchCatalog(0x1000);
    c.applyOps([observe(16384, 0, 10, 0x2000), observe(16384, 0, 7, 0x2100), observe(16384, 2, 0, 0x2100)]);
    expect(forkOf(c, 16384)).toMatchObject({
      maxBlock: 10,
      firstSeenLsn: 0x2000,
      lastSeenLsn: 0x2100,
      droppedLsn: null,
    });
    c.applyOps([event({ kind: 'truncate', spc: 1663, db: 5, rel: 16384, nblocks: 4, flags: 3 }, 0x3000)]);
    expect(forkOf(c, 16384)?.maxBlock).toBe(3);
    expect(forkOf(c, 16384, 2)?.maxBlock).toBe(0);
    c.applyOps([observe(16384, 0, 6, 0x3100), event({ kind: 'drop', spc: 1663, db: 5, rel: 16384 }, 0x4000)]);
    expect(forkOf(c, 16384)).toMatchObject({ maxBlock: 6, droppedLsn: 0x4000 });
    expect(forkOf(c, 16384, 2)?.droppedLsn).toBe(0x4000);
    // a reused relfilenode starts afresh
    c.applyOps([
      event({ kind: 'create', spc: 1663, db: 5, rel: 16384, fork: 0 }, 0x5000),
      observe(16384, 0, 1, 0x5100),
    ]);
    expect(forkOf(c, 16384)).toMatchObject({ maxBlock: 1, droppedLsn: null });
  });

  it('records limit events with the record end LSN, in order', () => {
    const c = scratchCatalog(0x1000);
    c.applyOps([
      event({ kind: 'create', spc: 1663, db: 5, rel: 1, fork: 3 }, 0x2000),
      event({ kind: 'truncate', spc: 1663, db: 5, rel: 2, nblocks: 65345, flags: 7 }, 0x3000),
      event({ kind: 'drop', spc: 1663, db: 5, rel: 3 }, 0x4000),
      event({ kind: 'dbcopy', spc: 1663, db: 16400, srcSpc: 1663, srcDb: 1 }, 0x5000),
      event({ kind: 'dbdrop', spc: 1663, db: 16400 }, 0x6000),
    ]);
    const limits = c
      .limitEventsSince(0x3000)
      .map((l) => `${l.lsn.toString(16)} ${l.spc}/${l.db}/${l.rel} ${l.fork} ${l.limitBlock} ${l.kind}`);
    expect(limits).toEqual([
      '3000 1663/5/2 0 65345 truncate',
      '3000 1663/5/2 2 2 truncate', // 65345 / 32672 heap blocks per VM page
      '4000 1663/5/3 -1 0 drop',
      '5000 1663/16400/0 -1 0 dbcopy',
      '6000 1663/16400/0 -1 0 dbdrop',
    ]);
  });

  it('ties a map checkpoint file to the catalog: written, recorded, reopened and loaded back identical', () => {
    const dir = scratchDir('ptrackd-checkpoint-');
    const c = Catalog.open(join(dir, 'catalog.db'));
    expect(() => c.recordCheckpoint(0x9000, new Uint32Array(1))).toThrow(/no map/);
    const map = PtrackMap.create(1, 0x1000);
    c.initMap(1, map.entries, 0x1000, 'first start');
    for (let b = 0; b < 5000; b++) map.markBlock(1663, 5, 16384, 0, b, 0x2000 + b);
    c.recordCheckpoint(0x9000, writeMapFile(join(dir, 'ptrack.map'), map));
    c.close();
    const reopened = Catalog.open(join(dir, 'catalog.db'), { readonly: true });
    const state = reopened.mapState()!;
    expect(state.checkpointLsn).toBe(0x9000);
    const loaded = loadMapFile(join(dir, 'ptrack.map'), { ...state, checkpointLsn: state.checkpointLsn! });
    expect(loaded.damagedBlocks).toEqual([]);
    expect(Buffer.from(loaded.map.snapshot()).equals(Buffer.from(map.snapshot()))).toBe(true);
  });
});
