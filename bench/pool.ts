import { Piscina } from 'piscina';
import { findSegmentFiles, readSegments } from '../src/cli/wal-files.ts';
import { PtrackMap } from '../src/map/index.ts';
import type { ChunkResult, ChunkTask } from '../src/tracker/chunk.ts';
import { ChunkPipeline } from '../src/tracker/pipeline.ts';
import { parseLsn } from '../src/wal/index.ts';
import type { WalCorpus } from './wal-corpus.ts';

export interface PoolResult {
  readonly workers: number;
  readonly seconds: number;
  readonly records: number;
  readonly blocks: number;
  /** Time the main thread spent copying WAL into the window and applying results, in seconds. */
  readonly mainThreadSeconds: number;
}

/**
 * Catch-up as the daemon does it, minus the network: the corpus read from its files into the shared
 * window, decoded, CRC-checked and marked into a 64 MB map by `workers` piscina threads, results
 * applied in LSN order. The pool is started (and its threads loaded) before the clock starts.
 */
export async function benchPool(corpus: WalCorpus, workers: number, runs = 3): Promise<PoolResult> {
  const pool = new Piscina<ChunkTask, ChunkResult>({
    filename: new URL('../workers/decode.ts', import.meta.url).href,
    minThreads: workers,
    maxThreads: workers,
    idleTimeout: Number.POSITIVE_INFINITY,
  });
  await Promise.all(Array.from({ length: workers }, () => pool.run(null as never).catch(() => {})));
  const start = parseLsn(corpus.start);
  const end = parseLsn(corpus.end);
  let best: PoolResult | undefined;
  try {
    for (let run = 0; run < runs; run++) {
      const map = PtrackMap.create(64, start);
      let records = 0;
      let blocks = 0;
      let applied = start;
      let main = 0;
      let drained: (() => void) | undefined;
      const t = performance.now();
      const pipeline = new ChunkPipeline({
        start,
        task: { map: map.buffers, segmentSize: 16 << 20, blockSize: 8192, major: 15 },
        pageSize: 8192,
        windowSize: 64 << 20,
        chunkSize: 4 << 20,
        maxInFlight: 2 * workers,
        flushDelayMs: 5,
        run: (task) => pool.run(task),
        onApplied: (_ops, at, r, b) => {
          records += r;
          blocks += b;
          applied = at;
        },
        onDrain: () => drained?.(),
      });
      for (const piece of readSegments(findSegmentFiles([corpus.dir]), 16 << 20, start, { recycle: true })) {
        if (piece.lsn >= end) break;
        const from = Math.max(piece.lsn, start);
        const bytes = piece.bytes.subarray(from - piece.lsn, Math.min(piece.bytes.length, end - piece.lsn));
        if (bytes.length === 0) continue;
        const m = performance.now();
        const pause = pipeline.push(bytes, from);
        main += performance.now() - m;
        // Reading files is synchronous: yield, as a socket would, so that finished tasks are collected.
        if (pause) await new Promise<void>((r) => (drained = r));
        else await new Promise((r) => setImmediate(r));
      }
      await pipeline.settle();
      await pipeline.close();
      const seconds = (performance.now() - t) / 1000;
      if (applied !== end) throw new Error(`the pipeline applied up to ${applied}, not ${end}`);
      if (!best || seconds < best.seconds) {
        best = { workers, seconds, records, blocks, mainThreadSeconds: main / 1000 };
      }
    }
  } finally {
    await pool.destroy();
  }
  return best!;
}
