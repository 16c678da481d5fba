import { spawnSync } from 'node:child_process';
import { findSegmentFiles, readSegments } from '../src/cli/wal-files.ts';
import { parseLsn, WalStreamDecoder } from '../src/wal/index.ts';
import { pgWaldumpStats, type WalCorpus } from './wal-corpus.ts';

export interface DecodeResult {
  readonly bytes: number;
  readonly records: number;
  readonly blockRefs: number;
  readonly waldumpSeconds: number;
  readonly ptrackdSeconds: number;
}

/**
 * Times pg_waldump --stats=record and single-threaded ptrackd decoding (CRC checked) over the same WAL,
 * alternating, and keeps each side's best run: on a shared VM a single run varies by up to ±25%.
 */
export function benchDecode(corpus: WalCorpus, runs = 10): DecodeResult {
  const start = parseLsn(corpus.start);
  const end = parseLsn(corpus.end);
  const waldump = () => {
    const t = performance.now();
    const [program, ...args] = pgWaldumpStats(corpus);
    const r = spawnSync(program, args, { encoding: 'utf8', maxBuffer: 1 << 26 });
    if (r.status !== 0) throw new Error(`pg_waldump failed: ${r.stderr}`);
    return { seconds: (performance.now() - t) / 1000, records: Number(/^Total\s+(\d+)/m.exec(r.stdout)![1]) };
  };
  const ptrackd = () => {
    const t = performance.now();
    const files = findSegmentFiles([corpus.dir]);
    let decoder: WalStreamDecoder | undefined;
    let records = 0;
    let blockRefs = 0;
    outer: for (const piece of readSegments(files, 16 << 20, start, { recycle: true })) {
      decoder ??= new WalStreamDecoder({ startLsn: piece.lsn, segmentSize: 16 << 20 });
      decoder.feed(piece.bytes, piece.lsn);
      for (let r = decoder.next(); r; r = decoder.next()) {
        if (r.endLsn > end) break outer;
        if (r.lsn < start) continue;
        records++;
        blockRefs += r.blocks.length;
      }
    }
    return { seconds: (performance.now() - t) / 1000, records, blockRefs };
  };
  let best = { waldump: Infinity, ptrackd: Infinity };
  let counts = { records: 0, blockRefs: 0, waldumpRecords: 0 };
  for (let i = 0; i < runs; i++) {
    const w = waldump();
    const p = ptrackd();
    best = { waldump: Math.min(best.waldump, w.seconds), ptrackd: Math.min(best.ptrackd, p.seconds) };
    counts = { records: p.records, blockRefs: p.blockRefs, waldumpRecords: w.records };
  }
  if (counts.records !== counts.waldumpRecords) {
    throw new Error(`ptrackd decoded ${counts.records} records, pg_waldump ${counts.waldumpRecords}`);
  }
  return {
    bytes: end - start,
    records: counts.records,
    blockRefs: counts.blockRefs,
    waldumpSeconds: best.waldump,
    ptrackdSeconds: best.ptrackd,
  };
}
