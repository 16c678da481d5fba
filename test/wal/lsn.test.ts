import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatLsn, formatLsnPadded, LsnFormatError, parseLsn } from '../../src/wal/index.ts';

describe('LSN text', () => {
  it('formats like PostgreSQL: %X/%X upper-case without padding, pg_waldump pads the low half', () => {
    expect(formatLsn(0x185c8c0)).toBe('0/185C8C0');
    expect(formatLsn(0x3d_0000_0123)).toBe('3D/123');
    expect(formatLsnPadded(0x1e00750)).toBe('0/01E00750');
  });

  it('parses what psql and pg_waldump print, padded or not, either case', () => {
    expect(parseLsn('0/185C8C0')).toBe(0x185c8c0);
    expect(parseLsn('0/0185c8c0')).toBe(0x185c8c0);
    expect(parseLsn(' 3D/123 ')).toBe(0x3d_0000_0123);
  });

  it('round-trips every LSN up to 2^53', () => {
    fc.assert(
      fc.property(fc.maxSafeNat(), (n) => parseLsn(formatLsn(n)) === n && parseLsn(formatLsnPadded(n)) === n),
    );
  });

  it.each(['', '0', '0/', '/1', 'G/1', '0/123456789', '1/2/3', '0x0/1', '-1/0'])(
    'refuses %j with an error naming it',
    (text) => {
      expect(() => parseLsn(text)).toThrow(LsnFormatError);
      expect(() => parseLsn(text)).toThrow(`invalid LSN "${text}"`);
    },
  );

  it('refuses positions beyond 2^53 instead of rounding them', () => {
    expect(() => parseLsn('FFFFFFFF/0')).toThrow(/beyond 2\^53/);
  });
});
