import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32c } from '@node-rs/crc32';
import { afterAll, describe, expect, it } from 'vitest';
import {
  type CheckpointRecord,
  CRC_BLOCK_SIZE,
  fileSizeForEntries,
  loadMapFile,
  PtrackMap,
  replaceDurably,
  writeFileDurably,
  writeMapFile,
} from '../../src/map/index.ts';
import { seededRandom } from '../helpers/fixtures.ts';

const ENTRIES = 100_000; // ~800 KB: 13 CRC blocks
const CHECKPOINT = 5_000_000;
const INIT = 1000;

const scratch = mkdtempSync(join(tmpdir(), 'ptrackd-mapfile-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** A map with marks below the checkpoint LSN, its file image and the catalog's record of it. */
function checkpointed() {
  const map = PtrackMap.withEntries(ENTRIES, INIT);
  const random = seededRandom(5);
  const marks: [number, number, number][] = [];
  for (let i = 0; i < 20_000; i++) {
    const m: [number, number, number] = [
      16384 + (i % 7),
      Math.floor(random() * 1e6),
      2000 + Math.floor(random() * 4_000_000),
    ];
    map.markBlock(1663, 5, m[0], 0, m[1], m[2]);
    marks.push(m);
  }
  const path = join(scratch, 'checkpointed.map');
  const blockCrcs = writeMapFile(path, map);
  const image = { bytes: new Uint8Array(readFileSync(path)), blockCrcs };
  const record: CheckpointRecord = {
    entries: ENTRIES,
    initLsn: INIT,
    checkpointLsn: CHECKPOINT,
    blockCrcs: image.blockCrcs,
    pendingBlockCrcs: null,
  };
  return { map, image, record, marks };
}

/** Loads these bytes as a checkpoint file. */
function loadBytes(bytes: Uint8Array, record: CheckpointRecord) {
  const path = join(scratch, 'ptrack.map');
  writeFileSync(path, bytes);
  return loadMapFile(path, record);
}

const noFalseNegatives = (loaded: PtrackMap, marks: [number, number, number][]) =>
  marks.every(([rel, block, lsn]) => loaded.isChanged(1663, 5, rel, 0, block, lsn));

describe('checkpoint file', () => {
  it.each([
    ['smaller than the write buffer', 100_000],
    ['whose CRC is alone in the last piece written', (2 ** 20 - 16) / 8],
    ['of several pieces', 300_001],
  ])(
    'is written a piece at a time: a map %s gives the file and block CRCs of its whole image',
    (_what, entries) => {
      const map = PtrackMap.withEntries(entries, INIT);
      for (let i = 0; i < entries / 4; i++) map.markBlock(1663, 5, 16384, 0, i, 5000 + i);
      const path = join(scratch, `pieces-${entries}.map`);
      const blockCrcs = writeMapFile(path, map);
      const image = map.snapshot();
      const file = readFileSync(path);
      expect(file.length).toBe(fileSizeForEntries(entries));
      expect(file.subarray(0, image.length).equals(image)).toBe(true);
      expect(file.readUInt32LE(image.length)).toBe(crc32c(image));
      expect([...blockCrcs]).toEqual(
        Array.from({ length: Math.ceil(file.length / CRC_BLOCK_SIZE) }, (_, i) =>
          crc32c(file.subarray(i * CRC_BLOCK_SIZE, (i + 1) * CRC_BLOCK_SIZE)),
        ),
      );
      // the count the markers keep is the entries the file holds in use
      const lsns = new BigUint64Array(image.buffer, 16, entries);
      expect(map.usedEntries()).toBe(lsns.filter((v) => v !== 0n).length);
    },
  );

  it('is the ptrack 2.4 layout with a trailing CRC-32C, and loads back identical', () => {
    const { map, image, record } = checkpointed();
    expect(image.bytes.length).toBe(fileSizeForEntries(ENTRIES));
    expect(Buffer.from(image.bytes.subarray(0, 4)).toString('latin1')).toBe('ptk\0');
    const dv = new DataView(image.bytes.buffer);
    expect(dv.getUint32(4, true)).toBe(220);
    expect(dv.getBigUint64(8, true)).toBe(BigInt(INIT));
    expect(dv.getUint32(image.bytes.length - 4, true)).toBe(
      crc32c(image.bytes.subarray(0, image.bytes.length - 4)),
    );
    const loaded = loadBytes(image.bytes, record);
    expect(loaded.damagedBlocks).toEqual([]);
    expect(loaded.wholeFileDamage).toBeUndefined();
    expect(Buffer.from(loaded.map.snapshot()).equals(Buffer.from(map.snapshot()))).toBe(true);
    expect(loadMapFile(join(scratch, 'no-such-map'), record).wholeFileDamage).toBe('the map file is missing');
  });

  it.each([
    ['the header', 5],
    ['the middle', 400_003],
    ['the trailing CRC', fileSizeForEntries(ENTRIES) - 2],
  ])(
    'a flipped bit in %s costs false positives in that block only, never a false negative',
    (_where, offset) => {
      const { map, image, record, marks } = checkpointed();
      const bytes = Uint8Array.from(image.bytes);
      bytes[offset] ^= 0x20;
      const loaded = loadBytes(bytes, record);
      const block = Math.floor(offset / CRC_BLOCK_SIZE);
      expect(loaded.damagedBlocks).toEqual([block]);
      expect(loaded.map.initLsn).toBe(INIT);
      expect(noFalseNegatives(loaded.map, marks)).toBe(true);
      for (let slot = 0; slot < ENTRIES; slot++) {
        const byte = 16 + slot * 8;
        const inDamaged =
          Math.floor(byte / CRC_BLOCK_SIZE) === block || Math.floor((byte + 7) / CRC_BLOCK_SIZE) === block;
        expect(loaded.map.entry(slot)).toBe(inDamaged ? CHECKPOINT : map.entry(slot));
      }
    },
  );

  it('a flip in any one block of the file is found in exactly that block and never loses a mark', () => {
    const { image, record, marks } = checkpointed();
    const random = seededRandom(9);
    for (let block = 0; block < image.blockCrcs.length; block++) {
      const bytes = Uint8Array.from(image.bytes);
      const size = Math.min(CRC_BLOCK_SIZE, bytes.length - block * CRC_BLOCK_SIZE);
      bytes[block * CRC_BLOCK_SIZE + Math.floor(random() * size)] ^= 1 << Math.floor(random() * 8);
      const loaded = loadBytes(bytes, record);
      expect(loaded.damagedBlocks).toEqual([block]);
      expect(noFalseNegatives(loaded.map, marks)).toBe(true);
      // what the catalog is given for this file: the damaged block stays damaged, the others are as recorded
      const crcs = [...loaded.blockCrcs!];
      expect(crcs[block]).not.toBe(
        crc32c(bytes.subarray(block * CRC_BLOCK_SIZE, (block + 1) * CRC_BLOCK_SIZE)),
      );
      crcs[block] = image.blockCrcs[block];
      expect(crcs).toEqual([...image.blockCrcs]);
    }
  });

  /** The checkpoint's file and a newer one with marks in some of its blocks, as a crash may leave them. */
  function withNewerFile() {
    const older = checkpointed();
    for (let i = 0; i < 5; i++) older.map.markBlock(1663, 5, 20000, 0, i * 977, CHECKPOINT + 100 + i);
    const path = join(scratch, 'newer.map');
    const blockCrcs = writeMapFile(path, older.map);
    const newer = { bytes: new Uint8Array(readFileSync(path)), blockCrcs };
    const changedBlocks = [...newer.blockCrcs.keys()].filter(
      (i) => newer.blockCrcs[i] !== older.image.blockCrcs[i],
    );
    expect(changedBlocks.length).toBeGreaterThan(1);
    expect(changedBlocks.length).toBeLessThan(newer.blockCrcs.length);
    return { ...older, newer, changedBlocks };
  }

  it('a newer file whose CRCs the catalog holds as pending loads whole, as does the older one', () => {
    const { map, image, record, newer } = withNewerFile();
    const pending = { ...record, pendingBlockCrcs: newer.blockCrcs };
    const loaded = loadBytes(newer.bytes, pending);
    expect(loaded.damagedBlocks).toEqual([]);
    expect(Buffer.from(loaded.map.snapshot()).equals(Buffer.from(map.snapshot()))).toBe(true);
    expect([...loaded.blockCrcs!]).toEqual([...newer.blockCrcs]);
    const older = loadBytes(image.bytes, pending);
    expect(older.damagedBlocks).toEqual([]);
    expect([...older.blockCrcs!]).toEqual([...image.blockCrcs]);
    // the first checkpoint of a map: nothing recorded yet but the pending file's CRCs
    expect(loadBytes(newer.bytes, { ...pending, blockCrcs: null }).damagedBlocks).toEqual([]);
  });

  it('without the pending CRCs, the blocks the newer file changed are repaired to the checkpoint LSN', () => {
    const { record, marks, newer, changedBlocks } = withNewerFile();
    const loaded = loadBytes(newer.bytes, record);
    expect(loaded.damagedBlocks).toEqual(changedBlocks);
    expect(noFalseNegatives(loaded.map, marks)).toBe(true);
  });

  it.each([
    ['missing', () => null],
    ['truncated', (b: Uint8Array) => b.subarray(0, b.length - 100)],
    ['of another size', (b: Uint8Array) => Buffer.concat([b, new Uint8Array(8)])],
    ['not a ptrack map', (b: Uint8Array) => Uint8Array.from(b).fill(0x41, 0, 8)],
  ])('a file that is %s is wholly repaired: every entry holds the checkpoint LSN', (_what, damage) => {
    const { image, record, marks } = checkpointed();
    const damaged = damage(image.bytes);
    const loaded =
      damaged === null ? loadMapFile(join(scratch, 'no-such-map'), record) : loadBytes(damaged, record);
    expect(loaded.map.initLsn).toBe(INIT);
    expect(noFalseNegatives(loaded.map, marks)).toBe(true);
    if (loaded.wholeFileDamage !== undefined) {
      for (const slot of [0, 1, ENTRIES - 1]) expect(loaded.map.entry(slot)).toBe(CHECKPOINT);
    } else {
      expect(loaded.damagedBlocks).toContain(0);
    }
  });

  it('a file the catalog holds no checksums for cannot be tied to the checkpoint and is wholly repaired', () => {
    const { image, record, marks } = checkpointed();
    const loaded = loadBytes(image.bytes, { ...record, blockCrcs: null });
    expect(loaded.wholeFileDamage).toMatch(/no block checksums/);
    expect(noFalseNegatives(loaded.map, marks)).toBe(true);
  });
});

describe('durable write', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ptrackd-map-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('writes the pieces in order over what the file held, and a rename puts it in place', () => {
    const path = join(dir, 'ptrack.map');
    writeFileDurably(`${path}.tmp`, [Uint8Array.of(1, 2, 3)]);
    replaceDurably(`${path}.tmp`, path);
    writeFileDurably(`${path}.tmp`, [Uint8Array.of(9, 9, 9, 9)]);
    writeFileDurably(`${path}.tmp`, [Uint8Array.of(4), Uint8Array.of(5)]);
    expect([...readFileSync(path)]).toEqual([1, 2, 3]);
    replaceDurably(`${path}.tmp`, path);
    expect([...readFileSync(path)]).toEqual([4, 5]);
    expect(readdirSync(dir)).toEqual(['ptrack.map']);
  });
});
