import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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
  const written = writeMapFile(path, map);
  const image = { bytes: new Uint8Array(readFileSync(path)), blockCrcs: written.blockCrcs };
  const record: CheckpointRecord = {
    entries: ENTRIES,
    initLsn: INIT,
    checkpointLsn: CHECKPOINT,
    blockCrcs: image.blockCrcs,
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
      const written = writeMapFile(path, map);
      const image = map.snapshot();
      const file = readFileSync(path);
      expect(file.length).toBe(fileSizeForEntries(entries));
      expect(file.subarray(0, image.length).equals(image)).toBe(true);
      expect(file.readUInt32LE(image.length)).toBe(crc32c(image));
      expect([...written.blockCrcs]).toEqual(
        Array.from({ length: Math.ceil(file.length / CRC_BLOCK_SIZE) }, (_, i) =>
          crc32c(file.subarray(i * CRC_BLOCK_SIZE, (i + 1) * CRC_BLOCK_SIZE)),
        ),
      );
      expect(written.fill).toBe(map.fillRatio());
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
    }
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

  it('replaces the file through a temp file and leaves no temp behind', () => {
    const path = join(dir, 'ptrack.map');
    expect(existsSync(path)).toBe(false);
    writeFileDurably(path, [Uint8Array.of(1, 2, 3)]);
    writeFileDurably(path, [Uint8Array.of(4), Uint8Array.of(5)]);
    expect([...readFileSync(path)]).toEqual([4, 5]);
    expect(readdirSync(dir)).toEqual(['ptrack.map']);
  });
});
