import { crc32c as nativeCrc32c } from '@node-rs/crc32';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { crc32c, crc32cTable, NATIVE_CRC_THRESHOLD } from '../../src/wal/crc32c.ts';

describe('CRC-32C', () => {
  it('gives the Castagnoli check value for "123456789"', () => {
    const check = Buffer.from('123456789');
    expect(crc32cTable(check)).toBe(0xe3069283);
    expect(crc32c(check)).toBe(0xe3069283);
  });

  it("matches PostgreSQL's record CRC (wal-format.md §3.2 test vector)", () => {
    const rec = Buffer.from(
      '2a0000007c04000050e31e0200000000110200 00f354295bff107f0600002a4000003b0a000000000000'.replace(
        / /g,
        '',
      ),
      'hex',
    );
    expect(crc32c(rec, 0, 20, crc32c(rec, 24))).toBe(0x5b2954f3);
  });

  it('agrees with the native implementation on both sides of the threshold, and continues a CRC', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: NATIVE_CRC_THRESHOLD * 4 }), fc.nat(), (bytes, cut) => {
        const whole = nativeCrc32c(bytes);
        const at = bytes.length === 0 ? 0 : cut % bytes.length;
        return (
          crc32cTable(bytes) === whole &&
          crc32c(bytes) === whole &&
          crc32c(bytes, at, bytes.length, crc32c(bytes, 0, at)) === whole
        );
      }),
    );
  });

  it('reads 32-bit words from large aligned buffers and bytes elsewhere, with the same result', () => {
    // 64 kB views at byte offsets 0–3 of one buffer: only offset 0 takes the word path, and only for
    // ranges that start on a 4-byte boundary.
    const backing = new Uint8Array((64 << 10) + 4).map((_, i) => (i * 167 + (i >> 9)) & 0xff);
    fc.assert(
      fc.property(fc.nat(3), fc.nat(), fc.nat(600), fc.nat(), (shift, from, length, prev) => {
        const bytes = backing.subarray(shift, shift + (64 << 10));
        const start = from % (bytes.length - length);
        const end = start + length;
        return crc32cTable(bytes, start, end, prev) === nativeCrc32c(bytes.subarray(start, end), prev);
      }),
      { numRuns: 2000 },
    );
  });
});
