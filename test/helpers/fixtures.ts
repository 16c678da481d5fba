import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { findSegmentFiles, readSegments } from '../../src/cli/wal-files.ts';
import { type DecodedRecord, type Lsn, parseLsn, WalStreamDecoder } from '../../src/wal/index.ts';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
/** Real WAL of PostgreSQL 13–18 with pg_waldump's output (test/fixtures/wal/README.md says how it was made). */
export const FIXTURES_DIR = resolve(REPO_ROOT, 'test/fixtures/wal');

export interface Fixture {
  readonly name: string;
  readonly dir: string;
  readonly segmentsDir: string;
  readonly major: number;
  readonly segmentSize: number;
  readonly startLsn: Lsn;
  readonly endLsn: Lsn;
  readonly meta: Record<string, unknown>;
}

export function listFixtures(): Fixture[] {
  return readdirSync(FIXTURES_DIR, { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => loadFixture(d.name));
}

export function loadFixture(name: string): Fixture {
  const dir = join(FIXTURES_DIR, name);
  const meta = JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8'));
  return {
    name,
    dir,
    segmentsDir: join(dir, 'segments'),
    major: meta.major,
    segmentSize: meta.wal_segment_size,
    startLsn: parseLsn(meta.start_lsn),
    endLsn: parseLsn(meta.end_lsn),
    meta,
  };
}

export function readTsv(fixture: Fixture, file: 'records.tsv.gz' | 'blockrefs.tsv.gz'): string[][] {
  const text = gunzipSync(readFileSync(join(fixture.dir, file))).toString('utf8');
  return text
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => l.split('\t'));
}

/** The fixture's WAL as one contiguous buffer starting at `lsn` (the first segment's start). */
export function fixtureWal(fixture: Fixture): { lsn: Lsn; bytes: Uint8Array } {
  const files = findSegmentFiles([fixture.segmentsDir]);
  const pieces = [...readSegments(files, fixture.segmentSize)];
  return { lsn: pieces[0].lsn, bytes: Buffer.concat(pieces.map((p) => p.bytes)) };
}

/**
 * Decodes the fixture's ground-truth range, feeding the WAL in pieces whose sizes `nextSize` picks,
 * starting at the segment start (so the decoder finds its own way to start_lsn) unless told otherwise.
 */
export function decodeFixture(
  fixture: Fixture,
  nextSize: () => number = () => fixture.segmentSize,
  options: { startAtRecord?: boolean } = {},
): DecodedRecord[] {
  const wal = fixtureWal(fixture);
  const start = options.startAtRecord ? fixture.startLsn : wal.lsn;
  const decoder = new WalStreamDecoder({
    startLsn: start,
    segmentSize: fixture.segmentSize,
    major: options.startAtRecord ? fixture.major : undefined,
  });
  const out: DecodedRecord[] = [];
  let at = start - wal.lsn;
  while (at < wal.bytes.length) {
    const n = Math.max(1, Math.min(nextSize(), wal.bytes.length - at));
    decoder.feed(wal.bytes.subarray(at, at + n), wal.lsn + at);
    at += n;
    for (let r = decoder.next(); r !== null; r = decoder.next()) {
      if (r.endLsn > fixture.endLsn) return out;
      if (r.lsn >= fixture.startLsn) out.push(r);
    }
  }
  throw new Error(`fixture ${fixture.name}: WAL ended before end_lsn`);
}

/** A seeded PRNG (mulberry32), so a failing random split can be replayed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
