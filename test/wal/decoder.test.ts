import { describe, expect, it } from 'vitest';
import { eventLine } from '../../src/cli/waldump.ts';
import {
  type DecodedRecord,
  fileEvents,
  formatLsn,
  WalDecodeError,
  WalStreamDecoder,
} from '../../src/wal/index.ts';
import { seededRandom } from '../helpers/fixtures.ts';
import { assembleRecord, type BuildRecord, buildWal, MAGIC, u32s } from '../helpers/wal-builder.ts';

const SEG = 1 << 20;

function decodeAll(
  bytes: Uint8Array,
  lsn: number,
  startLsn: number,
  opts: { major?: number; split?: () => number } = {},
) {
  const d = new WalStreamDecoder({ startLsn, segmentSize: SEG, major: opts.major });
  const out: DecodedRecord[] = [];
  let at = startLsn - (startLsn % 8192) - lsn;
  while (at < bytes.length) {
    const n = Math.min(opts.split?.() ?? bytes.length, bytes.length - at);
    d.feed(bytes.subarray(at, at + n), lsn + at);
    at += n;
    try {
      for (let r = d.next(); r; r = d.next()) out.push(r);
    } catch (e) {
      if (e instanceof WalDecodeError && e.code === 'end-of-wal') return { out, end: e.lsn, decoder: d };
      throw e;
    }
  }
  return { out, end: undefined, decoder: d };
}

const noop = (n: number): BuildRecord => ({ rmid: 0, info: 0x20, mainData: new Uint8Array(n).fill(0xab) });

describe('page framing', () => {
  it('reassembles records across pages and segments, whatever the feed sizes', () => {
    const sizes = [10, 3000, 8150, 8170, 20_000, 70_000, 1_100_000, 5, 16, 9000];
    const records = sizes.map(noop);
    const wal = buildWal(records, { major: 16, start: SEG });
    expect(wal.bytes.length).toBeGreaterThan(SEG);
    const random = seededRandom(7);
    for (const split of [
      undefined,
      () => 1 + Math.floor(random() * 100),
      () => 1 + Math.floor(random() * 200_000),
    ]) {
      const { out, end } = decodeAll(wal.bytes, SEG, SEG, { split });
      expect(out.map((r) => r.lsn)).toEqual(wal.lsns);
      expect(out.map((r) => r.mainData.length)).toEqual(sizes);
      expect(out.every((r) => r.mainData.every((b) => b === 0xab))).toBe(true);
      expect(out.at(-1)!.endLsn).toBe(wal.end);
      expect(end).toBe(Math.ceil(wal.end / 8) * 8);
    }
  });

  it('resumeLsn stays at a half-received record, and a new decoder started there decodes it', () => {
    const wal = buildWal([noop(100), noop(20_000), noop(30)], { major: 16, start: SEG });
    const d = new WalStreamDecoder({ startLsn: SEG, segmentSize: SEG });
    d.feed(wal.bytes.subarray(0, 12_000), SEG);
    expect(d.next()?.lsn).toBe(wal.lsns[0]);
    expect(d.next()).toBeNull();
    expect(d.position).toBeGreaterThan(wal.lsns[1]);
    expect(d.resumeLsn).toBe(wal.lsns[1]);
    const again = new WalStreamDecoder({ startLsn: d.resumeLsn, segmentSize: SEG, major: 16 });
    again.feed(
      wal.bytes.subarray(d.resumeLsn - SEG - (d.resumeLsn % 8192)),
      d.resumeLsn - (d.resumeLsn % 8192),
    );
    expect([again.next()?.lsn, again.next()?.lsn]).toEqual([wal.lsns[1], wal.lsns[2]]);
    expect(again.resumeLsn).toBe(Math.ceil(wal.end / 8) * 8);
  });

  it('starting at a page boundary skips the tail of a record begun earlier, even over whole pages', () => {
    const wal = buildWal([noop(100), noop(30_000), noop(50)], { major: 15, start: SEG });
    // Pages 1 and 2 of the long record are all continuation; page 3 holds its end and the next record.
    for (const page of [1, 2, 3]) {
      const { out } = decodeAll(wal.bytes, SEG, SEG + page * 8192);
      expect(out.map((r) => r.lsn)).toEqual([wal.lsns[2]]);
    }
  });

  it('after XLOG_SWITCH the next record opens the next segment, and the zeros between are not read', () => {
    const wal = buildWal([noop(10), { rmid: 0, info: 0x40 }, noop(20)], { major: 17, start: SEG });
    const { out } = decodeAll(wal.bytes, SEG, SEG);
    expect(out.map((r) => r.lsn)).toEqual(wal.lsns);
    expect(out[1].endLsn).toBe(2 * SEG);
    expect(wal.lsns[2]).toBe(2 * SEG + 40);
  });

  it('drops a half-read record at an OVERWRITE_CONTRECORD page and decodes the page afresh', () => {
    const wal = buildWal([noop(100), noop(20_000)], { major: 15, start: SEG });
    const brokenLsn = wal.lsns[1];
    const cut = 2 * 8192; // the second continuation page never reached disk
    const page = new Uint8Array(8192);
    const h = new DataView(page.buffer);
    h.setUint16(0, MAGIC[15], true);
    h.setUint16(2, 0x0008 | 0x0004, true);
    h.setUint32(4, 1, true);
    h.setUint32(8, SEG + cut, true);
    const main = new Uint8Array(16);
    new DataView(main.buffer).setUint32(0, brokenLsn, true);
    page.set(assembleRecord({ rmid: 0, info: 0xd0, mainData: main }, wal.lsns[0]), 24);
    const bytes = Buffer.concat([wal.bytes.subarray(0, cut), page]);
    const { out, decoder } = decodeAll(bytes, SEG, SEG);
    expect(out.map((r) => r.lsn)).toEqual([wal.lsns[0], SEG + cut + 24]);
    expect(decoder.overwrittenLsn).toBe(brokenLsn);
    expect(fileEvents(out[1]).map(eventLine)).toEqual([
      `0/104018 overwrite-contrecord ${formatLsn(brokenLsn)}`,
    ]);
  });

  it('names the page whose address does not match where it sits (a stale, recycled page)', () => {
    const wal = buildWal([noop(10), noop(9000)], { major: 15, start: SEG });
    const bytes = Uint8Array.from(wal.bytes);
    new DataView(bytes.buffer).setUint32(8192 + 8, 0x42000, true);
    expect(() => decodeAll(bytes, SEG, SEG)).toThrow(/unexpected pageaddr 0\/42000 in WAL page at 0\/102000/);
  });

  it('refuses options it cannot honour, naming the option', () => {
    expect(() => new WalStreamDecoder({ startLsn: 100, segmentSize: SEG })).toThrow(/options.startLsn/);
    expect(() => new WalStreamDecoder({ startLsn: 8192 + 40, segmentSize: SEG })).toThrow(
      /options.major is required/,
    );
    expect(() => new WalStreamDecoder({ startLsn: 0, segmentSize: 3 << 20 })).toThrow(/options.segmentSize/);
    const d = new WalStreamDecoder({ startLsn: SEG, segmentSize: SEG });
    d.feed(new Uint8Array(100), SEG);
    expect(() => d.feed(new Uint8Array(100), SEG + 200)).toThrow(/do not follow/);
  });
});

describe('records by version', () => {
  const decodeOne = (major: number, r: BuildRecord) => {
    const wal = buildWal([r], { major, start: SEG });
    return decodeAll(wal.bytes, SEG, SEG).out[0];
  };
  const events = (major: number, r: BuildRecord) => fileEvents(decodeOne(major, r)).map(eventLine);

  it('reads Database opcode 0x10 as DROP in 13/14 and as CREATE_WAL_LOG in 15+', () => {
    const data = u32s(16500, 1, 1663);
    expect(events(13, { rmid: 4, info: 0x10, mainData: data })).toEqual(['0/100028 dbdrop 1663/16500']);
    expect(events(14, { rmid: 4, info: 0x10, mainData: data })).toEqual(['0/100028 dbdrop 1663/16500']);
    expect(events(15, { rmid: 4, info: 0x10, mainData: data })).toEqual(['0/100028 dbcreate 1/16500']);
    expect(events(18, { rmid: 4, info: 0x21, mainData: u32s(16500, 2, 1663, 16600) })).toEqual([
      '0/100028 dbdrop 1663/16500',
      '0/100028 dbdrop 16600/16500',
    ]);
  });

  it('finds dropped relations after subtransactions in COMMIT and ABORT_PREPARED', () => {
    const time = new Uint8Array(8);
    const xinfo = 0x01 | 0x02 | 0x04; // dbinfo, subxacts, relfilelocators
    const body = Buffer.concat([time, u32s(xinfo, 5, 1663, 2, 900, 901, 2, 1663, 5, 16400, 1663, 5, 16401)]);
    const expected = ['0/100028 drop 1663/5/16400', '0/100028 drop 1663/5/16401'];
    expect(events(15, { rmid: 1, info: 0x80, mainData: body })).toEqual(expected);
    expect(events(13, { rmid: 1, info: 0xc0, mainData: body })).toEqual(expected);
    expect(events(15, { rmid: 1, info: 0x10, mainData: body })).toEqual([]); // PREPARE drops nothing
  });

  it('accepts block id 252 (top-level xid) from 14 on and refuses it in 13', () => {
    const r: BuildRecord = {
      rmid: 10,
      info: 0x00,
      extraHeader: Uint8Array.of(252, 1, 0, 0, 0),
      mainData: new Uint8Array(3),
    };
    expect(
      decodeOne(14, { ...r, blocks: [{ id: 0, spc: 1663, db: 5, rel: 1, fork: 0, block: 7 }] }).blocks[0]
        .block,
    ).toBe(7);
    expect(() => decodeOne(13, r)).toThrow(/invalid block_id 252/);
  });

  it.each([
    ['ids that do not increase', [0, 0], false, 0, /invalid block_id 0/],
    ['an id above 32', [33], false, 0, /invalid block_id 33/],
    ['SAME_REL on the first block', [0], true, 0, /BKPBLOCK_SAME_REL set but no previous rel/],
    ['a fork number above 3', [0], false, 5, /invalid fork number 5/],
  ])('refuses %s', (_what, ids, sameRel, fork, message) => {
    const blocks = ids.map((id) => ({ id, spc: 1663, db: 5, rel: 1, fork, block: 0, sameRel }));
    let err: unknown;
    try {
      decodeOne(16, { rmid: 10, info: 0, blocks, mainData: new Uint8Array(3) });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(WalDecodeError);
    expect((err as WalDecodeError).message).toMatch(message);
    expect((err as WalDecodeError).lsn).toBe(SEG + 40);
  });
});
