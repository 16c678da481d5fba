import { execFileSync } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  blockHash,
  type DirtyLines,
  entriesForMapSize,
  LINE_ENTRIES,
  mod64,
  PtrackMap,
} from '../../src/map/index.ts';
import { seededRandom } from '../helpers/fixtures.ts';

/** Marks (rel, block, lsn triples) in the map from a worker thread, as a decoder worker does. */
function markInWorker(map: PtrackMap, marks: Float64Array): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const w = new Worker(new URL('./mark-worker.ts', import.meta.url), {
      workerData: { buffers: map.buffers, marks },
    });
    w.once('message', resolve);
    w.once('error', reject);
  });
}

describe('block hash and slots (ptrack-compat.md §3)', () => {
  const N = 8388605;
  it.each([
    [1663, 5, 16384, 0, 0, 0x8c8bd16e04b27039n, 3065854, 3003344],
    [1663, 5, 16384, 0, 1, 0xd48660266e006662n, 6238170, 8137005],
    [1663, 5, 1259, 2, 0, 0x6c321b06655831d4n, 626496, 7034356],
    [1664, 0, 1262, 0, 0, 0x8ec79185288d3f4en, 684626, 4791481],
    [1663, 16384, 2619, 1, 3, 0xc50f88018d7211f6n, 4051317, 996522],
    [16439, 5, 16440, 0, 131072, 0x6d28b911dc12d4b0n, 7903632, 4443717],
    [1663, 5, 16402, 0, 4294967294, 0x1260890fc95a1cdan, 1249573, 2749993],
    [1663, 4294967295, 4294967295, 3, 4294967295, 0x668f93018b5538fan, 5615213, 7932258],
  ])('%i/%i/%i fork %i block %i', (spc, db, rel, fork, block, hash, slot1, slot2) => {
    expect(blockHash(spc, db, rel, fork, block)).toBe(hash);
    expect(entriesForMapSize(64)).toBe(N);
    expect(PtrackMap.withEntries(N, 0).slotsOf(spc, db, rel, fork, block)).toEqual([slot1, slot2]);
  });

  it('takes the 64-bit modulo exactly for every map size up to 32 GB', () => {
    const sizes = fc.oneof(
      fc.integer({ min: 1, max: 2 ** 32 - 1 }),
      fc.constantFrom(entriesForMapSize(32 * 1024), 2 ** 32 - 1, 1),
    );
    fc.assert(
      fc.property(fc.nat({ max: 2 ** 32 - 1 }), fc.nat({ max: 2 ** 32 - 1 }), sizes, (hi, lo, n) => {
        return mod64(hi, lo, n) === Number(((BigInt(hi) << 32n) | BigInt(lo)) % BigInt(n));
      }),
      { numRuns: 20_000 },
    );
  });
});

describe('marking and asking', () => {
  const blockId = fc.tuple(
    fc.constantFrom(1663, 1664, 16439),
    fc.nat({ max: 70_000 }),
    fc.nat({ max: 2 ** 32 - 1 }),
    fc.integer({ min: 0, max: 3 }),
    fc.nat({ max: 2 ** 32 - 1 }),
  );

  it('never forgets a change: a marked block is changed since any X up to its LSN, whatever else is marked', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(blockId, fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER })), {
          minLength: 1,
          maxLength: 300,
        }),
        (marks) => {
          const map = PtrackMap.withEntries(997, 0); // small, so collisions are common
          for (const [[s, d, r, f, b], lsn] of marks) map.markBlock(s, d, r, f, b, lsn);
          return marks.every(
            ([[s, d, r, f, b], lsn]) =>
              map.isChanged(s, d, r, f, b, lsn) && map.isChanged(s, d, r, f, b, Math.floor(lsn / 2)),
          );
        },
      ),
    );
  });

  it('keeps the largest LSN in each slot (monotonic)', () => {
    const map = PtrackMap.withEntries(101, 0);
    map.markBlock(1663, 5, 1, 0, 7, 500);
    map.markBlock(1663, 5, 1, 0, 7, 300);
    const [s1, s2] = map.slotsOf(1663, 5, 1, 0, 7);
    expect([map.entry(s1), map.entry(s2)]).toEqual([500, 500]);
    expect(map.isChanged(1663, 5, 1, 0, 7, 501)).toBe(false);
  });

  it('has the false-positive rate the fill predicts', () => {
    const random = seededRandom(3);
    const entries = 200_003;
    const map = PtrackMap.withEntries(entries, 0);
    const marked = 40_000;
    for (let i = 0; i < marked; i++) map.markBlock(1663, 5, 16384, 0, i, 1000);
    const fill = map.fillRatio();
    expect(fill).toBeCloseTo(1 - Math.exp((-2 * marked) / entries), 2);
    let positives = 0;
    const probes = 100_000;
    for (let i = 0; i < probes; i++) {
      if (map.isChanged(1663, 5, 20000 + Math.floor(random() * 1e6), 0, i, 1)) positives++;
    }
    // An unmarked block is reported when both its slots were hit: about fill².
    expect(positives / probes).toBeGreaterThan(fill * fill * 0.85);
    expect(positives / probes).toBeLessThan(fill * fill * 1.15);
  });

  it('allocates nothing per mark: a million marks run without a garbage collection', () => {
    const script = new URL('./mark-allocation.ts', import.meta.url).pathname;
    const out = execFileSync(process.execPath, ['--trace-gc', script], { encoding: 'utf8' });
    const measured = out.slice(out.indexOf('--- measuring'), out.indexOf('--- done'));
    expect(out).toContain('--- done');
    expect(measured.match(/Scavenge|Mark-Compact|Mark-sweep/g) ?? []).toEqual([]);
  });

  it('copies, while threads mark it, only values some writer completed and never less than before', async () => {
    const entries = 1031;
    const map = PtrackMap.withEntries(entries, 0);
    // High word k, low word scrambled: a copy that mixed two writes' halves would not be in this set.
    const lsnOf = (k: number) => k * 2 ** 32 + ((k * 2654435761) >>> 0);
    const written = new Set<number>([0]);
    for (let block = 0; block < 2000; block++) map.markBlock(1663, 5, 16384, 0, block, lsnOf(1));
    written.add(lsnOf(1));
    const before = new Uint32Array(map.snapshot().buffer, 16);
    const perWorker = 400_000;
    const plans = Array.from({ length: 3 }, (_, w) => {
      const marks = new Float64Array(perWorker * 3);
      for (let i = 0; i < perWorker; i++) {
        const k = 2 + Math.floor(i / 7) * 3 + w;
        marks[i * 3] = 16384;
        marks[i * 3 + 1] = (i * 31 + w) % 2000;
        marks[i * 3 + 2] = lsnOf(k);
        written.add(lsnOf(k));
      }
      return marks;
    });
    let marking = true;
    const done = Promise.all(plans.map((marks) => markInWorker(map, marks))).finally(() => {
      marking = false;
    });
    const copies = new Set<string>();
    const out = new Uint8Array(map.buffer.byteLength);
    // Copies for as long as the writers run (however slowly a busy machine starts them), yielding so
    // that their completion can be seen.
    while (marking) {
      await new Promise((r) => setImmediate(r));
      // In two ranges, as a checkpoint copies a piece at a time.
      map.copyRange(out.subarray(0, 4016), 0);
      map.copyRange(out.subarray(4016), 4016);
      const words = new Uint32Array(out.buffer, 16);
      for (let slot = 0; slot < entries; slot++) {
        const value = words[slot * 2 + 1] * 2 ** 32 + words[slot * 2];
        if (!written.has(value)) expect.fail(`slot ${slot} holds ${value}, which no writer wrote`);
        if (value < before[slot * 2 + 1] * 2 ** 32 + before[slot * 2]) expect.fail(`slot ${slot} went back`);
      }
      copies.add(Buffer.from(out).toString('base64'));
    }
    await done;
    // The copies overlapped the writers: they saw the map in several states.
    expect(copies.size).toBeGreaterThan(2);
  });

  it('loses no update when several worker threads mark the same map at once', async () => {
    const map = PtrackMap.withEntries(4099, 0); // small: threads collide on slots all the time
    const random = seededRandom(11);
    const perWorker = 60_000;
    const plans = Array.from({ length: 4 }, () => {
      const marks = new Float64Array(perWorker * 3);
      for (let i = 0; i < perWorker; i++) {
        marks[i * 3] = 16384 + Math.floor(random() * 20);
        marks[i * 3 + 1] = Math.floor(random() * 500);
        marks[i * 3 + 2] = 1 + Math.floor(random() * 2 ** 40);
      }
      return marks;
    });
    await Promise.all(plans.map((marks) => markInWorker(map, marks)));
    // Every slot must hold exactly the largest LSN any thread put there.
    const expected = new Map<number, number>();
    const single = PtrackMap.withEntries(4099, 0);
    for (const marks of plans) {
      for (let i = 0; i < marks.length; i += 3) {
        for (const slot of single.slotsOf(1663, 5, marks[i], 0, marks[i + 1])) {
          const lsn = marks[i + 2];
          if ((expected.get(slot) ?? 0) < lsn) expected.set(slot, lsn);
        }
      }
    }
    for (let slot = 0; slot < 4099; slot++)
      expect(map.entry(slot), `slot ${slot}`).toBe(expected.get(slot) ?? 0);
    // The bookkeeping the markers keep: every entry that left 0 counted once, every line raised dirty.
    expect(map.usedEntries()).toBe(expected.size);
    expect(linesIn(map.takeDirtyLines())).toEqual(
      [...new Set([...expected.keys()].map((slot) => Math.floor(slot / LINE_ENTRIES)))].sort((a, b) => a - b),
    );
    expect(linesIn(map.takeDirtyLines())).toEqual([]);
  });

  it('a checkpoint taking the dirty lines while threads mark never misses a raise', async () => {
    // Few raises per line: a raise the checkpoint misses is rarely covered by a later one in its line.
    const map = PtrackMap.withEntries(4_000_000, 0);
    const random = seededRandom(12);
    const plans = Array.from({ length: 3 }, () => {
      const marks = new Float64Array(200_000 * 3);
      for (let i = 0; i < marks.length; i += 3) {
        marks[i] = 16384 + Math.floor(random() * 50);
        marks[i + 1] = Math.floor(random() * 2_000_000);
        marks[i + 2] = 1 + Math.floor(random() * 2 ** 40);
      }
      return marks;
    });
    // What a log of checkpoints would hold: every taken line, as it was copied, kept at its maximum.
    const logged = PtrackMap.withEntries(4_000_000, 0);
    let takes = 0;
    const checkpoint = () => {
      const taken = map.takeDirtyLines();
      const lines = Uint32Array.from(linesIn(taken));
      const data = new Uint32Array(lines.length * LINE_ENTRIES * 2);
      map.copyLines(lines, data);
      logged.raiseLines(lines, data);
      takes++;
    };
    let marking = true;
    const done = Promise.all(plans.map((marks) => markInWorker(map, marks))).finally(() => (marking = false));
    while (marking) {
      checkpoint();
      await new Promise((r) => setImmediate(r));
    }
    await done;
    checkpoint();
    expect(takes).toBeGreaterThan(2);
    expect(Buffer.from(logged.snapshot()).equals(Buffer.from(map.snapshot()))).toBe(true);
  });

  it('a mark that raises no entry dirties no line; dirty lines given back are taken again', () => {
    const map = PtrackMap.withEntries(1000, 0);
    map.markBlock(1663, 5, 16384, 0, 7, 500);
    const lines = linesIn(map.takeDirtyLines());
    expect(lines).toEqual(
      [...new Set(map.slotsOf(1663, 5, 16384, 0, 7).map((s) => Math.floor(s / LINE_ENTRIES)))].sort(
        (a, b) => a - b,
      ),
    );
    map.markBlock(1663, 5, 16384, 0, 7, 400); // lower: nothing rises
    const none = map.takeDirtyLines();
    expect(linesIn(none)).toEqual([]);
    map.markBlock(1663, 5, 16384, 0, 7, 600);
    const taken = map.takeDirtyLines();
    map.restoreDirtyLines(taken);
    expect(linesIn(map.takeDirtyLines())).toEqual(lines);
    expect(map.usedEntries()).toBe(2);
  });
});

/** The line numbers whose bits are set in taken dirty bits. */
function linesIn(taken: DirtyLines): number[] {
  const lines: number[] = [];
  taken.words.forEach((w, k) => {
    for (let b = 0; b < 32; b++) if (taken.bits[k] & (1 << b)) lines.push(w * 32 + b);
  });
  return lines;
}
