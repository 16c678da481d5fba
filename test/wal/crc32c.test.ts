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
});
