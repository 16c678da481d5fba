import { crc32c as nativeCrc32c } from '@node-rs/crc32';
import { crc32c, crc32cTable } from '../src/wal/crc32c.ts';

/** CRC-32C candidates on WAL-like sizes: the table-driven TypeScript loop, the native SIMD package, and the hybrid ptrackd uses. */
export function benchCrc32c(): { size: number; table: number; native: number; hybrid: number }[] {
  const rows = [];
  for (const size of [32, 64, 128, 256, 512, 1024, 8192, 1 << 20]) {
    const buf = new Uint8Array(size).map((_, i) => (i * 31) & 0xff);
    const iterations = Math.max(20, Math.floor((64 << 20) / size));
    const rate = (f: () => number) => {
      let x = 0;
      for (let i = 0; i < Math.min(iterations, 1000); i++) x ^= f();
      const t = performance.now();
      for (let i = 0; i < iterations; i++) x ^= f();
      const seconds = (performance.now() - t) / 1000;
      if (x === 0.5) throw new Error('unreachable');
      return (iterations * size) / seconds / 1e6;
    };
    rows.push({
      size,
      table: rate(() => crc32cTable(buf)),
      native: rate(() => nativeCrc32c(buf)),
      hybrid: rate(() => crc32c(buf)),
    });
  }
  return rows;
}
