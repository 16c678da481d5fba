import { readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  appendLogRecord,
  LINE_ENTRIES,
  type LogState,
  PtrackMap,
  replayMapLog,
  unionRegions,
} from '../../src/map/index.ts';
import { seededRandom } from '../helpers/fixtures.ts';
import { scratchDir } from '../helpers/scratch.ts';

const ENTRIES = 300_001; // not a multiple of LINE_ENTRIES: the last line is short
const CHECKPOINT = 0x7000_0000;

/**
 * Three checkpoints' records appended to a log, each of the lines marked since the one before, from an
 * empty map file (what a whole write left); `truth` is the map when the last one was taken.
 */
async function threeRecords() {
  const dir = scratchDir('ptrackd-maplog-');
  const path = join(dir, 'ptrack.map.log');
  const truth = PtrackMap.withEntries(ENTRIES, 1);
  const random = seededRandom(3);
  let lsn = 0x1000;
  let logBytes = 0;
  let logRegions: Uint32Array | null = null;
  const starts: number[] = [];
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 2000; i++) {
      lsn += 8;
      truth.markBlock(1663, 5, 16384 + (i % 3), 0, Math.floor(random() * 2 ** 20), lsn);
    }
    const record = await appendLogRecord(path, logBytes, truth, truth.takeDirtyLines(), lsn);
    starts.push(logBytes);
    logBytes += record.bytes;
    logRegions = unionRegions(logRegions, record.regions);
  }
  const state: LogState = { logBytes, logRegions, checkpointLsn: CHECKPOINT };
  return { dir, path, truth, state, starts };
}

/** Replays the log over an empty map, as over a map file holding nothing yet. */
function replayed(path: string, state: LogState) {
  const map = PtrackMap.withEntries(ENTRIES, 1);
  const replay = replayMapLog(path, map, state);
  return { map, replay };
}

/** Entries where the replayed map holds less than the truth: each one a false negative. */
function lowerThan(map: PtrackMap, truth: PtrackMap): number[] {
  const lower: number[] = [];
  for (let e = 0; e < ENTRIES; e++) if (map.entry(e) < truth.entry(e)) lower.push(e);
  return lower;
}

function entriesChanged(map: PtrackMap, truth: PtrackMap): number {
  let n = 0;
  for (let e = 0; e < ENTRIES; e++) if (map.entry(e) !== truth.entry(e)) n++;
  return n;
}

describe('the checkpoint log (ptrack.map.log)', () => {
  it('replayed as far as the catalog counts it, gives back the map exactly', async () => {
    const { path, truth, state } = await threeRecords();
    const { map, replay } = replayed(path, state);
    expect(replay).toEqual({ records: 3 });
    expect(Buffer.from(map.snapshot()).equals(Buffer.from(truth.snapshot()))).toBe(true);
    expect(map.usedEntries()).toBe(truth.usedEntries());
  });

  it('a record appended past the counted end never counts, and the next append overwrites it', async () => {
    const { path, truth, state, starts } = await threeRecords();
    const counted = { ...state, logBytes: starts[2] };
    const { map, replay } = replayed(path, counted);
    expect(replay).toEqual({ records: 2 });
    expect(lowerThan(map, truth).length).toBeGreaterThan(0); // the third record's marks are not in it
    // WAL from the second checkpoint marks them again; the next record goes where the third was
    // every line of the map, taken as dirty bits
    const lineCount = Math.ceil(ENTRIES / LINE_ENTRIES);
    const words = Uint32Array.from({ length: Math.ceil(lineCount / 32) }, (_, w) => w);
    const bits = words.map((w) => (lineCount - w * 32 >= 32 ? 0xffffffff : 2 ** (lineCount - w * 32) - 1));
    const every = { words, bits };
    const again = await appendLogRecord(path, counted.logBytes, truth, every, 0x9000);
    const after = replayed(path, { ...counted, logBytes: counted.logBytes + again.bytes });
    expect(after.replay).toEqual({ records: 3 });
    expect(Buffer.from(after.map.snapshot()).equals(Buffer.from(truth.snapshot()))).toBe(true);
  });

  it('a record whose entries fail their CRC costs false positives in its lines only', async () => {
    const { path, truth, state, starts } = await threeRecords();
    const bytes = readFileSync(path);
    const lines = bytes.readUInt32LE(starts[1] + 12);
    bytes[starts[1] + 32 + 4 * lines + 5000] ^= 0x40; // inside record 2's entries
    writeFileSync(path, bytes);
    const { map, replay } = replayed(path, state);
    expect(replay.records).toBe(3);
    expect(replay.damage).toMatch(/^checkpoint log record 2 \(byte \d+\) failed its CRC-32C: its \d+ lines$/);
    expect(lowerThan(map, truth)).toEqual([]);
    const changed = entriesChanged(map, truth);
    expect(changed).toBeGreaterThan(0);
    expect(changed).toBeLessThanOrEqual(lines * LINE_ENTRIES);
  });

  it.each([
    ['a zeroed header', (b: Buffer, at: number) => b.fill(0, at, at + 32)],
    ['a flipped line number', (b: Buffer, at: number) => (b[at + 40] ^= 1)],
    ['a torn record (zeros from its middle on)', (b: Buffer, at: number) => b.fill(0, at + 100)],
  ])(
    '%s: the regions the log holds read as changed at the checkpoint, nowhere else',
    async (_what, damage) => {
      const { path, truth, state, starts } = await threeRecords();
      const bytes = readFileSync(path);
      damage(bytes, starts[1]);
      writeFileSync(path, bytes);
      const { map, replay } = replayed(path, state);
      expect(replay.damage).toMatch(
        /^checkpoint log record 2 \(byte \d+\) has a damaged header or line list: the \d+ regions of 8192 entries it held$/,
      );
      expect(lowerThan(map, truth)).toEqual([]);
      // outside the regions the log holds, nothing is touched (an untouched region holds no mark at all)
      const regions = state.logRegions!;
      for (let e = 0; e < ENTRIES; e += 997) {
        const region = Math.floor(e / 8192);
        if (!(regions[region >>> 5] & (1 << (region & 31)))) expect(map.entry(e)).toBe(0);
      }
    },
  );

  it.each([
    ['missing', (path: string) => rmSync(path), /the checkpoint log .* is missing/],
    [
      'shorter than the catalog says',
      (path: string) => truncateSync(path, 1000),
      /the checkpoint log is 1000 bytes, the catalog counts \d+/,
    ],
  ])('a log %s is repaired in the regions the catalog says it held', async (_what, spoil, message) => {
    const { path, truth, state } = await threeRecords();
    spoil(path);
    const { map, replay } = replayed(path, state);
    expect(replay.damage).toMatch(message);
    expect(lowerThan(map, truth)).toEqual([]);
  });

  it('a shorter log is refused for appending where the catalog says it ends', async () => {
    const { path, state } = await threeRecords();
    truncateSync(path, 1000);
    const map = PtrackMap.withEntries(ENTRIES, 1);
    await expect(appendLogRecord(path, state.logBytes, map, map.takeDirtyLines(), 0x9000)).rejects.toThrow(
      /is 1000 bytes, but the catalog counts \d+ bytes of it as written/,
    );
  });
});
