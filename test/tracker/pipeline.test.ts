import { Piscina } from 'piscina';
import { describe, expect, it } from 'vitest';
import type { CatalogOp } from '../../src/catalog/index.ts';
import { PtrackMap } from '../../src/map/index.ts';
import { type ChunkResult, type ChunkTask, decodeChunk } from '../../src/tracker/chunk.ts';
import { WalApplier } from '../../src/tracker/index.ts';
import { ChunkPipeline } from '../../src/tracker/pipeline.ts';
import { type Lsn, WalDecodeError, WalStreamDecoder } from '../../src/wal/index.ts';
import { type Fixture, fixtureWal, listFixtures, loadFixture, seededRandom } from '../helpers/fixtures.ts';

const PAGE = 8192;
const MAP_ENTRIES = 65537;

/** The single-threaded answer: one decoder over the whole WAL, one applier, one map. */
function sequential(fixture: Fixture, wal: { lsn: Lsn; bytes: Uint8Array }) {
  const map = PtrackMap.withEntries(MAP_ENTRIES, wal.lsn);
  const applier = new WalApplier(map, 8192, wal.lsn);
  const decoder = new WalStreamDecoder({ startLsn: wal.lsn, segmentSize: fixture.segmentSize });
  decoder.feed(wal.bytes, wal.lsn);
  let error: WalDecodeError | undefined;
  try {
    for (let r = decoder.next(); r !== null; r = decoder.next()) applier.apply(r);
  } catch (e) {
    error = e as WalDecodeError;
  }
  return { map, ops: applier.takeOps(), resumeLsn: decoder.resumeLsn, error };
}

interface Run {
  map: PtrackMap;
  ops: CatalogOp[];
  applied: Lsn;
  error?: Error;
}

/**
 * Streams the WAL through a ChunkPipeline the way the tracker does: pieces of random size, pausing while
 * the window is full (a few more pieces still arrive, as pg's buffered messages do); tasks finish in a
 * random order when `run` is decodeChunk behind random delays.
 */
async function pipelined(
  fixture: Fixture,
  wal: { lsn: Lsn; bytes: Uint8Array },
  o: { seed: number; chunkSize: number; windowSize: number; run?: (t: ChunkTask) => Promise<ChunkResult> },
): Promise<Run> {
  const random = seededRandom(o.seed);
  const map = PtrackMap.withEntries(MAP_ENTRIES, wal.lsn);
  const ops: CatalogOp[] = [];
  let applied = wal.lsn;
  let resume: (() => void) | undefined;
  const pipeline = new ChunkPipeline({
    start: wal.lsn,
    task: { map: map.buffers, segmentSize: fixture.segmentSize, blockSize: 8192, major: fixture.major },
    pageSize: PAGE,
    windowSize: o.windowSize,
    chunkSize: o.chunkSize,
    maxInFlight: 4,
    flushDelayMs: 1,
    run:
      o.run ??
      ((task) =>
        new Promise((done, fail) =>
          setTimeout(
            () => {
              try {
                done(decodeChunk(task));
              } catch (e) {
                fail(e);
              }
            },
            Math.floor(random() * 4),
          ),
        )),
    onApplied: (batch, at) => {
      expect(at).toBeGreaterThanOrEqual(applied);
      ops.push(...batch);
      applied = at;
    },
    onDrain: () => resume?.(),
  });
  let error: Error | undefined;
  pipeline.failed.catch((e) => {
    error = e;
  });
  let at = 0;
  let extra = 0;
  // One read buffer, reused as node-postgres reuses its own: the pipeline must copy what it keeps.
  const readBuffer = Buffer.alloc(3 * PAGE);
  while (at < wal.bytes.length && !error) {
    const n = Math.min(wal.bytes.length - at, 1 + Math.floor(random() * 3 * PAGE));
    readBuffer.set(wal.bytes.subarray(at, at + n));
    const pause = pipeline.push(readBuffer.subarray(0, n), wal.lsn + at);
    readBuffer.fill(0x20);
    at += n;
    if (pause && extra++ >= 2) {
      extra = 0;
      await Promise.race([new Promise<void>((r) => (resume = r)), pipeline.failed.catch(() => {})]);
    }
    if (random() < 0.1) await new Promise((r) => setTimeout(r, 1));
  }
  await pipeline.settle().catch(() => {});
  await pipeline.close();
  return { map, ops, applied, error };
}

/** More random splits with `npm run test:soak` (SOAK_SEEDS per fixture). */
function soakCases(): number[][] {
  const n = Number(process.env.SOAK_SEEDS ?? 0);
  return Array.from({ length: n }, (_, i) => [1000 + i, (i % 2 ? 5 : 2) * PAGE, i % 2 ? 256 * 1024 : 65536]);
}

const events = (ops: CatalogOp[]) => ops.filter((o) => o.op === 'event').map((o) => o.event);

/** Per fork, the largest block seen (observations are coalesced differently per chunk, never lost). */
function maxBlocks(ops: CatalogOp[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const o of ops) {
    if (o.op !== 'observe') continue;
    const key = `${o.spc}/${o.db}/${o.rel}/${o.fork}`;
    out.set(key, Math.max(out.get(key) ?? -1, o.maxBlock));
  }
  return out;
}

describe('the chunk pipeline decodes in parallel exactly what one decoder does', () => {
  for (const fixture of listFixtures()) {
    it(
      `${fixture.name}: same map, same catalog events in order, same applied LSN`,
      async () => {
        const whole = fixtureWal(fixture);
        // Up to the last record of the ground truth: beyond it the files hold zeros.
        const wal = { lsn: whole.lsn, bytes: whole.bytes.subarray(0, fixture.endLsn - whole.lsn) };
        const expected = sequential(fixture, wal);
        expect(expected.error).toBeUndefined();
        for (const [seed, chunkSize, windowSize] of [
          [1, 2 * PAGE, 65536],
          [2, 5 * PAGE, 256 * 1024],
          [3, 64 * PAGE, 4 << 20],
          // found by the soak run: a chunk cut before the segment an XLOG_SWITCH jumps to
          [195, 2 * PAGE, 65536],
          ...soakCases(),
        ]) {
          const got = await pipelined(fixture, wal, { seed, chunkSize, windowSize });
          expect(got.error).toBeUndefined();
          expect(got.applied).toBe(expected.resumeLsn);
          expect(Buffer.from(got.map.buffer).equals(Buffer.from(expected.map.buffer))).toBe(true);
          expect(events(got.ops)).toEqual(events(expected.ops));
          expect(maxBlocks(got.ops)).toEqual(maxBlocks(expected.ops));
        }
      },
      60_000 + Number(process.env.SOAK_SEEDS ?? 0) * 5_000,
    );
  }

  it('in piscina worker threads, on a shared map', async () => {
    const fixture = loadFixture('pg16');
    const whole = fixtureWal(fixture);
    const wal = { lsn: whole.lsn, bytes: whole.bytes.subarray(0, fixture.endLsn - whole.lsn) };
    const expected = sequential(fixture, wal);
    const pool = new Piscina<ChunkTask, ChunkResult>({
      filename: new URL('../../workers/decode.ts', import.meta.url).href,
      maxThreads: 2,
    });
    try {
      const got = await pipelined(fixture, wal, {
        seed: 7,
        chunkSize: 8 * PAGE,
        windowSize: 1 << 20,
        run: (t) => pool.run(t),
      });
      expect(got.error).toBeUndefined();
      expect(got.applied).toBe(expected.resumeLsn);
      expect(Buffer.from(got.map.buffer).equals(Buffer.from(expected.map.buffer))).toBe(true);
      expect(events(got.ops)).toEqual(events(expected.ops));
    } finally {
      await pool.destroy();
    }
  }, 60_000);

  it('reports damage with the same error and LSN as one decoder, having applied everything before it', async () => {
    const fixture = loadFixture('pg15');
    const whole = fixtureWal(fixture);
    const random = seededRandom(11);
    for (let trial = 0; trial < 8; trial++) {
      const bytes = whole.bytes.slice(0, fixture.endLsn - whole.lsn);
      const at = Math.floor(bytes.length * (0.1 + 0.8 * random()));
      bytes[at] ^= 0x5a;
      const wal = { lsn: whole.lsn, bytes };
      const expected = sequential(fixture, wal);
      expect(expected.error).toBeInstanceOf(WalDecodeError);
      const got = await pipelined(fixture, wal, { seed: trial, chunkSize: 4 * PAGE, windowSize: 256 * 1024 });
      expect(got.error).toBeInstanceOf(WalDecodeError);
      expect((got.error as WalDecodeError).lsn).toBe(expected.error!.lsn);
      expect((got.error as WalDecodeError).code).toBe(expected.error!.code);
      expect(got.applied).toBe(expected.resumeLsn);
      expect(events(got.ops)).toEqual(events(expected.ops));
    }
  }, 60_000);
});
