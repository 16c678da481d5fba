import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Catalog } from '../../src/catalog/index.ts';
import { countDirtyLines, PtrackMap } from '../../src/map/index.ts';
import { CheckpointWriter, loadCheckpointedMap, MAP_FILE, MAP_LOG_FILE } from '../../src/tracker/index.ts';
import { scratchDir } from '../helpers/scratch.ts';

const MAP_MB = 1;
const STEPS = ['checkpoint-written', 'checkpoint-pending', 'checkpoint-installed', 'log-appended'] as const;

/** Thrown where a test stops a checkpoint, as a kill would. */
class Killed extends Error {}

/** A mark: a block of one of a few relations, at the next LSN of the simulated WAL. */
const marksArb = fc.array(fc.tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 20_000 })), {
  minLength: 0,
  maxLength: 400,
});

/** One step of a run: WAL applied (marks), then a checkpoint, maybe killed at one of its steps. */
const stepArb = fc.record({
  marks: marksArb,
  killAt: fc.option(fc.constantFrom(...STEPS), { freq: 3 }),
});

/**
 * A daemon's map over many checkpoints, some killed at a step of the protocol, each followed by a start
 * from disk that replays the WAL after the recorded checkpoint (as the slot would give it again).
 */
type Step = { readonly marks: readonly [number, number][]; readonly killAt: string | null };

async function run(steps: readonly Step[], logLimitMb: number) {
  const dir = scratchDir('ptrackd-ckpt-');
  const catalog = Catalog.open(join(dir, 'catalog.db'));
  let map = PtrackMap.create(MAP_MB, 0x100);
  catalog.initMap(MAP_MB, map.entries, 0x100, 'first start');
  const wal: { rel: number; block: number; lsn: number }[] = [];
  let killAt: string | null = null;
  const writer = () =>
    new CheckpointWriter(dir, {
      logLimitMb,
      crashPoint: (name) => {
        if (name === killAt) throw new Killed();
      },
    });
  let checkpoints = writer();
  const kinds = new Set<string>();
  for (const step of steps) {
    for (const [rel, block] of step.marks) {
      const lsn = 0x1000 + (wal.length + 1) * 8; // the end of the record: after the last checkpoint
      wal.push({ rel, block, lsn });
      map.markBlock(1663, 5, 16384 + rel, 0, block, lsn);
    }
    const lsn = 0x1000 + wal.length * 8;
    killAt = step.killAt;
    const truth = Buffer.from(map.snapshot());
    try {
      // a kill named for a step this checkpoint does not take (a log step in a whole write) never comes
      kinds.add((await checkpoints.write(map, catalog, lsn)).kind);
    } catch (e) {
      if (!(e instanceof Killed)) throw e;
      killedAt.add(killAt!);
      // killed: memory is gone; the next start loads what the disk and the catalog hold
      const warnings: string[] = [];
      const loaded = loadCheckpointedMap(dir, catalog, (m) => warnings.push(m));
      expect(warnings).toEqual([]);
      expect(existsSync(join(dir, `${MAP_FILE}.tmp`))).toBe(false);
      map = loaded.map;
      // what was loaded is durable: the next checkpoint logs only what changes after it
      expect(countDirtyLines(map.takeDirtyLines())).toBe(0);
      checkpoints = writer();
      checkpoints.mapFileRead(loaded.fileInitLsn, false);
      // WAL from the recorded checkpoint is applied again
      for (const m of wal)
        if (m.lsn > loaded.checkpointLsn) map.markBlock(1663, 5, 16384 + m.rel, 0, m.block, m.lsn);
      expectAtLeast(map, truth);
    }
  }
  // a clean stop: the last checkpoint loads back exactly as the map was
  killAt = null;
  await checkpoints.write(map, catalog, 0x1000 + wal.length * 8 + 8);
  const loaded = loadCheckpointedMap(dir, catalog, (m) => {
    throw new Error(m);
  });
  expect(Buffer.from(loaded.map.snapshot()).equals(Buffer.from(map.snapshot()))).toBe(true);
  expect(loaded.map.usedEntries()).toBe(map.usedEntries());
  catalog.close();
  return { dir, kinds };
}

/** The steps at which some run was killed. */
const killedAt = new Set<string>();

/** Every entry of `map` holds at least what `truth` (a snapshot's bytes) held: no false negative. */
function expectAtLeast(map: PtrackMap, truth: Buffer): void {
  const lsns = new BigUint64Array(truth.buffer, truth.byteOffset + 16, map.entries);
  for (let e = 0; e < map.entries; e++) {
    if (map.entry(e) < Number(lsns[e])) expect.fail(`entry ${e}: ${map.entry(e)} < ${lsns[e]}`);
  }
}

describe('checkpoints that write what changed (CheckpointWriter, ptrack.map.log)', () => {
  it('a kill at any step of any checkpoint, log or whole, loses no mark and leaves nothing to repair', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(stepArb, { minLength: 1, maxLength: 12 }),
        fc.constantFrom(0, 0.05, 1),
        async (steps, limit) => {
          await run(steps, limit);
        },
      ),
      { numRuns: 40 },
    );
    expect([...killedAt].sort()).toEqual([...STEPS].sort());
  }, 120_000);

  it('appends changed lines until the log reaches its limit, then writes the whole map and empties the log', async () => {
    const steps = Array.from({ length: 30 }, (_, i) => ({
      marks: Array.from({ length: 300 }, (_, k) => [k % 4, (i * 300 + k) % 20_000] as [number, number]),
      killAt: null,
    }));
    const dir = scratchDir('ptrackd-ckpt-');
    const catalog = Catalog.open(join(dir, 'catalog.db'));
    const map = PtrackMap.create(MAP_MB, 0x100);
    catalog.initMap(MAP_MB, map.entries, 0x100, 'first start');
    const checkpoints = new CheckpointWriter(dir, { logLimitMb: 0.25 });
    const written: { kind: string; bytes: number; logBytes: number }[] = [];
    let lsn = 0x1000;
    for (const step of steps) {
      for (const [rel, block] of step.marks) {
        lsn += 8;
        map.markBlock(1663, 5, 16384 + rel, 0, block, lsn);
      }
      const { kind, bytes } = await checkpoints.write(map, catalog, lsn);
      written.push({ kind, bytes, logBytes: catalog.mapState()!.logBytes });
    }
    // the first has no map file to add to; then records of ~600 lines (68 bytes each) until 256 kB
    expect(written[0]).toMatchObject({
      kind: 'whole',
      bytes: statSync(join(dir, MAP_FILE)).size,
      logBytes: 0,
    });
    const logs = written.filter((w) => w.kind === 'log');
    expect(logs.length).toBeGreaterThan(written.length / 2);
    for (const w of logs) expect(w.bytes).toBeLessThan(600 * 68 + 32 + 1);
    const wholes = written.slice(1).filter((w) => w.kind === 'whole');
    expect(wholes.length).toBeGreaterThanOrEqual(1);
    for (const w of written) expect(w.logBytes).toBeLessThanOrEqual(0.25 * 2 ** 20);
    for (const w of wholes) expect(w.logBytes).toBe(0);
    // the log's counted end is the file's end after the last append
    const last = written.at(-1)!;
    if (last.kind === 'log') expect(statSync(join(dir, MAP_LOG_FILE)).size).toBe(last.logBytes);
    // nothing written beyond what whole-map checkpoints would have written
    const total = written.reduce((n, w) => n + w.bytes, 0);
    expect(total).toBeLessThan(written.length * statSync(join(dir, MAP_FILE)).size);
    catalog.close();
  });

  it('a checkpoint that fails gives its lines back, and the next one writes the whole map', async () => {
    const dir = scratchDir('ptrackd-ckpt-');
    const catalog = Catalog.open(join(dir, 'catalog.db'));
    const map = PtrackMap.create(MAP_MB, 0x100);
    catalog.initMap(MAP_MB, map.entries, 0x100, 'first start');
    let failAt: string | null = null;
    const checkpoints = new CheckpointWriter(dir, {
      crashPoint: (name) => {
        if (name === failAt) throw new Error('disk full');
      },
    });
    map.markBlock(1663, 5, 16384, 0, 1, 0x2000);
    expect((await checkpoints.write(map, catalog, 0x2000)).kind).toBe('whole');
    map.markBlock(1663, 5, 16384, 0, 2, 0x3000);
    failAt = 'log-appended';
    await expect(checkpoints.write(map, catalog, 0x3000)).rejects.toThrow('disk full');
    expect(catalog.mapState()!.checkpointLsn).toBe(0x2000);
    failAt = null;
    expect((await checkpoints.write(map, catalog, 0x3000)).kind).toBe('whole');
    map.markBlock(1663, 5, 16384, 0, 3, 0x4000);
    expect((await checkpoints.write(map, catalog, 0x4000)).kind).toBe('log');
    const loaded = loadCheckpointedMap(dir, catalog, (m) => {
      throw new Error(m);
    });
    for (const block of [1, 2, 3])
      expect(loaded.map.blockLsn(1663, 5, 16384, 0, block)).toBe(0x1000 * (block + 1));
    catalog.close();
  });
});
