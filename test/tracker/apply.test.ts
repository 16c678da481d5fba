import { describe, expect, it } from 'vitest';
import { RELSEG_SIZE, segmentKey } from '../../src/catalog/index.ts';
import { PtrackMap } from '../../src/map/index.ts';
import { WalApplier } from '../../src/tracker/index.ts';
import type { BlockRef } from '../../src/wal/index.ts';
import { DecodedRecord } from '../../src/wal/record.ts';
import { scratchCatalog } from '../helpers/catalog.ts';

/** An XLOG_FPI record (no file events, no visibility-map clears) naming blocks of base/5/16384. */
function fpi(lsn: number, endLsn: number, blocks: number[]): DecodedRecord {
  const refs: BlockRef[] = blocks.map((block, id) => ({
    id,
    spc: 1663,
    db: 5,
    rel: 16384,
    fork: 0,
    block,
    hasImage: true,
    applyImage: true,
    willInit: false,
    imageLength: 0,
  }));
  return new DecodedRecord(lsn, endLsn, 0, 64, 0, 0, 0xb0, refs, 0, 15, new Uint8Array(0), 0, 0, null);
}

/** Issue 31: the applier says which 1 GB segment of a fork WAL named, so a question reads only those. */
describe('the WAL applier: what the catalog learns of the blocks it marks', () => {
  it('names the segments of a large relation each record touched, with their last LSNs', () => {
    const map = PtrackMap.withEntries(4099, 0x1000);
    const applier = new WalApplier(map, 8192, 0x1000);
    applier.apply(fpi(0x1000, 0x1100, [5, 2 * RELSEG_SIZE + 7]));
    applier.apply(fpi(0x1100, 0x1200, [3 * RELSEG_SIZE]));
    const ops = applier.takeOps();
    expect(ops).toEqual([
      {
        op: 'observe',
        spc: 1663,
        db: 5,
        rel: 16384,
        fork: 0,
        maxBlock: 3 * RELSEG_SIZE,
        firstLsn: 0x1100,
        lastLsn: 0x1200,
        segments: {
          seg0Lsn: 0x1100,
          later: new Map([
            [2, 0x1100],
            [3, 0x1200],
          ]),
        },
      },
    ]);
    const catalog = scratchCatalog(0x1000);
    catalog.applyOps(ops);
    const key = (segno: number) => segmentKey(1663, 5, 16384, 0, segno);
    // segment 1 was never named: a question never reads its map entries
    expect(catalog.segmentsNamedSince(0x1100)).toEqual(new Set([key(0), key(2), key(3)]));
    expect(catalog.segmentsNamedSince(0x1101)).toEqual(new Set([key(3)]));
    expect(catalog.segmentsNamedSince(0x1201)).toEqual(new Set());
    catalog.close();
  });
});
