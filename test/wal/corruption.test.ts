import { describe, expect, it } from 'vitest';
import { fileEvents, impliedBlockRefs, WalDecodeError, WalStreamDecoder } from '../../src/wal/index.ts';
import { fixtureWal, loadFixture, seededRandom } from '../helpers/fixtures.ts';

const fixture = loadFixture('pg15');
const wal = fixtureWal(fixture);

/** Decodes from the first segment's start until the WAL ends or an error; returns the records and the error. */
function decode(bytes: Uint8Array, opts: { verifyCrc?: boolean; limit?: number } = {}) {
  const d = new WalStreamDecoder({
    startLsn: wal.lsn,
    segmentSize: fixture.segmentSize,
    verifyCrc: opts.verifyCrc,
  });
  d.feed(bytes, wal.lsn);
  const lsns: number[] = [];
  const lengths: number[] = [];
  try {
    for (let r = d.next(); r && lsns.length < (opts.limit ?? Infinity); r = d.next()) {
      lsns.push(r.lsn);
      lengths.push(r.totLen);
      fileEvents(r);
      impliedBlockRefs(r, 8192);
    }
    return { lsns, lengths, error: undefined, decoder: d };
  } catch (e) {
    return { lsns, lengths, error: e, decoder: d };
  }
}

const clean = decode(wal.bytes, { limit: 3000 });
const lsns = clean.lsns;

describe('damaged WAL', () => {
  it('a flipped bit in a record gives a CRC error at exactly that record', () => {
    for (const i of [100, 1000, 2500]) {
      const target = lsns[i];
      const bytes = Uint8Array.from(wal.bytes);
      bytes[target - wal.lsn + 30] ^= 0x10; // inside the record, past its 24-byte header
      const { error, lsns: got } = decode(bytes);
      expect(error).toBeInstanceOf(WalDecodeError);
      expect((error as WalDecodeError).code).toBe('bad-crc');
      expect((error as WalDecodeError).lsn).toBe(target);
      expect(got).toEqual(lsns.slice(0, i));
    }
  });

  it('a record that spans pages is checked whole: damage on its second page is caught at its start', () => {
    const all = decode(wal.bytes);
    const i = all.lengths.findIndex((n) => n > 3 * 8192);
    expect(i).toBeGreaterThan(0);
    const target = all.lsns[i];
    const nextPage = target - (target % 8192) + 8192;
    const bytes = Uint8Array.from(wal.bytes);
    bytes[nextPage - wal.lsn + 100] ^= 0x01;
    const { error } = decode(bytes);
    expect((error as WalDecodeError).code).toBe('bad-crc');
    expect((error as WalDecodeError).lsn).toBe(target);
  });

  it('a truncated stream just waits for more bytes; the zeros after the last record are the end of WAL', () => {
    const cut = lsns[1500] - wal.lsn + 10;
    const { error, lsns: got, decoder } = decode(wal.bytes.subarray(0, cut));
    expect(error).toBeUndefined();
    expect(got).toEqual(lsns.slice(0, 1500));
    expect(decoder.position).toBe(lsns[1500]);

    const tail = decode(wal.bytes);
    expect((tail.error as WalDecodeError).code).toBe('end-of-wal');
    expect((tail.error as WalDecodeError).message).toMatch(
      /invalid record length: expected at least 24, got 0 at 0\/1F0/,
    );
  });

  it('random damage to real WAL only ever yields typed decode errors (bounded fuzzing)', () => {
    const random = seededRandom(20261122);
    const window = wal.bytes.subarray(0, 256 * 1024);
    const started = Date.now();
    let runs = 0;
    const codes = new Set<string>();
    while (runs < 400 && Date.now() - started < 20_000) {
      const bytes = Uint8Array.from(window);
      const flips = 1 + Math.floor(random() * 8);
      for (let k = 0; k < flips; k++) bytes[Math.floor(random() * bytes.length)] = Math.floor(random() * 256);
      for (const verifyCrc of [true, false]) {
        const { error } = decode(bytes, { verifyCrc });
        if (error !== undefined) {
          expect(error).toBeInstanceOf(WalDecodeError);
          codes.add((error as WalDecodeError).code);
        }
      }
      runs++;
    }
    expect(runs).toBeGreaterThan(50);
    expect(codes.has('bad-crc')).toBe(true);
  }, 60_000);

  it('garbage that is not WAL is refused at the first page header', () => {
    const random = seededRandom(99);
    for (let k = 0; k < 200; k++) {
      const bytes = Uint8Array.from({ length: 4096 + Math.floor(random() * 20000) }, () =>
        Math.floor(random() * 256),
      );
      const { error } = decode(bytes);
      expect(error).toBeInstanceOf(WalDecodeError);
      expect((error as WalDecodeError).code).toBe('bad-page-header');
    }
  });
});
