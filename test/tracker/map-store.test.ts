import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Catalog } from '../../src/catalog/index.ts';
import { PtrackMap } from '../../src/map/index.ts';
import {
  commitCheckpoint,
  loadCheckpointedMap,
  MAP_FILE,
  writeCheckpointFile,
} from '../../src/tracker/index.ts';
import { scratchDir } from '../helpers/scratch.ts';

async function checkpointed() {
  const dir = scratchDir('ptrackd-data-');
  const catalog = Catalog.open(join(dir, 'catalog.db'));
  const map = PtrackMap.create(1, 0x1000);
  catalog.initMap(1, map.entries, 0x1000, 'first start');
  for (let b = 0; b < 3000; b++) map.markBlock(1663, 5, 16384, 0, b, 0x2000 + b);
  commitCheckpoint(dir, catalog, 0x9000, await writeCheckpointFile(dir, map));
  return { dir, catalog, map };
}

/** Thrown where a test stops a checkpoint, as a kill would. */
class Killed extends Error {}

describe('map checkpoints tied to the catalog', () => {
  it('loads the checkpoint back as it was, resuming from its LSN, with nothing to repair', async () => {
    const { dir, catalog, map } = await checkpointed();
    const warnings: string[] = [];
    const { map: loaded, checkpointLsn } = loadCheckpointedMap(dir, catalog, (m) => warnings.push(m));
    expect(checkpointLsn).toBe(0x9000);
    expect(Buffer.from(loaded.snapshot()).equals(Buffer.from(map.snapshot()))).toBe(true);
    expect(warnings).toEqual([]);
    expect(catalog.history().map((h) => h.kind)).toEqual(['init']);
  });

  it('repairs a damaged block, logs it in the catalog and keeps init_lsn', async () => {
    const { dir, catalog } = await checkpointed();
    const path = join(dir, MAP_FILE);
    const bytes = readFileSync(path);
    bytes[200_000] ^= 0xff;
    writeFileSync(path, bytes);
    const warnings: string[] = [];
    const { map } = loadCheckpointedMap(dir, catalog, (m) => warnings.push(m));
    expect(warnings).toEqual([
      'map file blocks 3 failed their CRC-32C: their entries set to the checkpoint LSN 0/9000',
    ]);
    expect(catalog.history().at(-1)).toMatchObject({ kind: 'repair', reason: warnings[0] });
    expect(map.initLsn).toBe(0x1000);
    expect(catalog.mapState()?.initLsn).toBe(0x1000);
    for (let b = 0; b < 3000; b++) expect(map.isChanged(1663, 5, 16384, 0, b, 0x2000 + b)).toBe(true);
  });

  it('a missing map file is repaired whole and logged', async () => {
    const { dir, catalog } = await checkpointed();
    rmSync(join(dir, MAP_FILE));
    const warnings: string[] = [];
    const { map } = loadCheckpointedMap(dir, catalog, (m) => warnings.push(m));
    expect(warnings[0]).toMatch(/the map file is missing: every entry set to the checkpoint LSN 0\/9000/);
    expect(map.entry(0)).toBe(0x9000);
  });

  it.each([
    ['the new file is written', 'checkpoint-written', 'older'],
    ['its CRCs are recorded as pending', 'checkpoint-pending', 'older'],
    ['it has replaced the map file', 'checkpoint-installed', 'newer'],
  ] as const)(
    'a checkpoint killed once %s loads with nothing to repair, resuming from the last recorded checkpoint',
    async (_what, point, file) => {
      const { dir, catalog, map } = await checkpointed();
      const older = Buffer.from(map.snapshot());
      for (let b = 0; b < 3000; b += 7) map.markBlock(1663, 5, 16385, 0, b, 0x9000 + b);
      const written = await writeCheckpointFile(dir, map);
      const kill = (name: string) => {
        if (name === point) throw new Killed();
      };
      expect(() => commitCheckpoint(dir, catalog, 0xa000, written, kill)).toThrow(Killed);
      const warnings: string[] = [];
      const loaded = loadCheckpointedMap(dir, catalog, (m) => warnings.push(m));
      expect(warnings).toEqual([]);
      expect(catalog.history().map((h) => h.kind)).toEqual(['init']);
      expect(loaded.checkpointLsn).toBe(0x9000);
      const expected = file === 'newer' ? Buffer.from(map.snapshot()) : older;
      expect(Buffer.from(loaded.map.snapshot()).equals(expected)).toBe(true);
      expect(existsSync(join(dir, `${MAP_FILE}.tmp`))).toBe(false);
      // settled: the catalog holds the CRCs of the file on disk, nothing pending
      const state = catalog.mapState()!;
      expect(state.pendingBlockCrcs).toBeNull();
      expect([...state.blockCrcs!]).toEqual(file === 'newer' ? [...written] : [...state.blockCrcs!]);

      // the next checkpoint, killed after its rename, still loads whole: nothing stale is left pending
      for (let b = 0; b < 3000; b += 5) loaded.map.markBlock(1663, 5, 16386, 0, b, 0xa000 + b);
      const next = await writeCheckpointFile(dir, loaded.map);
      expect(() =>
        commitCheckpoint(dir, catalog, 0xb000, next, (name) => {
          if (name === 'checkpoint-installed') throw new Killed();
        }),
      ).toThrow(Killed);
      const again = loadCheckpointedMap(dir, catalog, (m) => warnings.push(m));
      expect(warnings).toEqual([]);
      expect(Buffer.from(again.map.snapshot()).equals(Buffer.from(loaded.map.snapshot()))).toBe(true);
    },
  );
});
