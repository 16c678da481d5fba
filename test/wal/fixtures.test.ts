import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { eventLine, WalStats } from '../../src/cli/waldump.ts';
import {
  type DecodedRecord,
  FORK_NAMES,
  ForkNumber,
  fileEvents,
  formatLsn,
  formatLsnPadded,
  impliedBlockRefs,
  Rmgr,
  recordTypeName,
  rmgrName,
  vmPagesCleared,
  WalStreamDecoder,
} from '../../src/wal/index.ts';
import {
  decodeFixture,
  type Fixture,
  fixtureWal,
  listFixtures,
  readTsv,
  seededRandom,
} from '../helpers/fixtures.ts';
import { DESCRIBED_EVENT_KINDS, eventsFromDescription } from '../helpers/waldump-oracle.ts';

const fixtures = listFixtures();

function recordRow(r: DecodedRecord): string {
  return [formatLsnPadded(r.lsn), rmgrName(r.rmid), recordTypeName(r), r.totLen].join('\t');
}

function blockRows(records: DecodedRecord[]): string[] {
  return records.flatMap((r) =>
    r.blocks.map((b) =>
      [
        formatLsnPadded(r.lsn),
        rmgrName(r.rmid),
        recordTypeName(r),
        `${b.spc}/${b.db}/${b.rel}`,
        FORK_NAMES[b.fork],
        b.block,
      ].join('\t'),
    ),
  );
}

describe.each(fixtures.map((f) => [f.name, f] as [string, Fixture]))(
  'fixture %s against pg_waldump',
  (_name, fixture) => {
    const records = decodeFixture(fixture);
    const expectedRecords = readTsv(fixture, 'records.tsv.gz');

    it('decodes every record with a valid CRC: same LSNs, resource managers, record types and lengths', () => {
      expect(records.length).toBe(fixture.meta.records);
      expect(records.map(recordRow)).toEqual(expectedRecords.map((r) => r.slice(0, 4).join('\t')));
    });

    it('finds every explicit block reference, in order', () => {
      const expected = readTsv(fixture, 'blockrefs.tsv.gz').map((r) => r.join('\t'));
      expect(expected.length).toBe(fixture.meta.block_refs);
      expect(blockRows(records)).toEqual(expected);
    });

    it('reads the file-level events pg_waldump describes', () => {
      const expected = expectedRecords.flatMap(([lsn, rmgr, type, , desc]) =>
        eventsFromDescription({ lsn, rmgr, type, desc: desc ?? '' }),
      );
      const actual = records
        .flatMap(fileEvents)
        .filter((e) => DESCRIBED_EVENT_KINDS.has(e.kind))
        .map(eventLine);
      expect(expected.length).toBeGreaterThan(fixture.name === 'pg17-tli2' ? 5 : 100);
      expect(actual).toEqual(expected);
    });

    it('computes the same statistics as pg_waldump --stats', () => {
      const stats = new WalStats(false);
      for (const r of records) stats.add(r);
      const expected = readFileSync(join(fixture.dir, 'waldump-stats.txt'), 'utf8').trimEnd().split('\n');
      // pg_waldump 13 and 14 print no "WAL statistics between" line; the table is the same.
      const rendered = stats.render(fixture.startLsn, fixture.endLsn);
      expect(fixture.major <= 14 ? rendered.slice(1) : rendered).toEqual(expected);
    });

    it('gives identical records when the same WAL is fed in random pieces of 1 byte to 1 MB', () => {
      const random = seededRandom(fixture.major * 7919);
      const sizes = [() => 1 + Math.floor(random() * 64), () => 1 + Math.floor(random() ** 3 * (1 << 20))];
      for (const size of sizes) {
        const again = decodeFixture(fixture, size);
        expect(again.length).toBe(records.length);
        expect(again.map(recordRow)).toEqual(records.map(recordRow));
        expect(blockRows(again)).toEqual(blockRows(records));
      }
    }, 300_000);

    it('gives identical records, blocks and events when its input buffers are recycled', () => {
      // Each piece is copied into one of two scratch buffers that are overwritten two pieces later,
      // as `ptrackd waldump` reads segment files; everything is taken from a record as it arrives.
      const wal = fixtureWal(fixture);
      const random = seededRandom(fixture.major);
      const scratch = [new Uint8Array(1 << 20), new Uint8Array(1 << 20)];
      const decoder = new WalStreamDecoder({ startLsn: wal.lsn, segmentSize: fixture.segmentSize });
      const seen: string[] = [];
      let at = 0;
      for (let turn = 0; at < wal.bytes.length; turn++) {
        const n = Math.min(1 + Math.floor(random() ** 3 * 65536), wal.bytes.length - at);
        const piece = scratch[turn % 2].subarray(0, n);
        piece.set(wal.bytes.subarray(at, at + n));
        decoder.feed(piece, wal.lsn + at);
        at += n;
        for (let r = decoder.next(); r !== null && r.endLsn <= fixture.endLsn; r = decoder.next()) {
          if (r.lsn >= fixture.startLsn)
            seen.push([recordRow(r), ...blockRows([r]), ...fileEvents(r).map(eventLine)].join('|'));
        }
        if (decoder.position >= fixture.endLsn) break;
      }
      expect(seen).toEqual(
        records.map((r) => [recordRow(r), ...blockRows([r]), ...fileEvents(r).map(eventLine)].join('|')),
      );
    });

    it('starts mid-page at a record LSN when told the version', () => {
      const fromRecord = decodeFixture(fixture, undefined, { startAtRecord: true });
      expect(fromRecord.map(recordRow)).toEqual(records.map(recordRow));
    });
  },
);

describe('visibility-map clears (wal-format.md §5.6)', () => {
  it('PostgreSQL 18.6 names the VM page of every clear explicitly; our flag-based pages are exactly those', () => {
    // 18.6 writes HEAP_*_BLKREF_VM references for the clears that older servers only flag. The server's
    // own choice of VM page is the oracle for the page we derive from the flags of 13–18.4 records.
    const fixture = fixtures.find((f) => f.name === 'pg18')!;
    let clears = 0;
    for (const r of decodeFixture(fixture)) {
      const derived = vmPagesCleared(r, 8192).map((b) => `${b.spc}/${b.db}/${b.rel} ${b.block}`);
      const isHeapChange =
        r.rmid === Rmgr.Heap || (r.rmid === Rmgr.Heap2 && [0x50, 0x60].includes(r.info & 0x70));
      const explicit = isHeapChange
        ? r.blocks.filter((b) => b.fork === ForkNumber.vm).map((b) => `${b.spc}/${b.db}/${b.rel} ${b.block}`)
        : [];
      expect(new Set(derived), formatLsn(r.lsn)).toEqual(new Set(explicit));
      expect(impliedBlockRefs(r, 8192)).toEqual([]);
      clears += derived.length;
    }
    expect(clears).toBeGreaterThan(50);
  });

  it('older versions clear VM bits with no VM reference, and each clear yields an implied VM page', () => {
    for (const name of ['pg13', 'pg15', 'pg17']) {
      const records = decodeFixture(fixtures.find((f) => f.name === name)!);
      const implied = records.flatMap((r) => impliedBlockRefs(r, 8192));
      expect(implied.length, name).toBeGreaterThan(50);
      expect(implied.every((b) => b.fork === ForkNumber.vm && b.block === 0)).toBe(true);
    }
  });
});
