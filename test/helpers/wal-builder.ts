import { crc32c } from '../../src/wal/crc32c.ts';

/** Test-only WAL writer: records as XLogRecordAssemble lays them out, pages as CopyXLogRecordToWAL does. */

export interface BuildBlock {
  id: number;
  spc: number;
  db: number;
  rel: number;
  fork: number;
  block: number;
  sameRel?: boolean;
  data?: Uint8Array;
  willInit?: boolean;
}

export interface BuildRecord {
  rmid: number;
  info: number;
  xid?: number;
  blocks?: BuildBlock[];
  mainData?: Uint8Array;
  /** Raw fragment headers inserted before the main-data header (e.g. id 252 + xid). */
  extraHeader?: Uint8Array;
}

export const MAGIC: Record<number, number> = {
  13: 0xd106,
  14: 0xd10d,
  15: 0xd110,
  16: 0xd113,
  17: 0xd116,
  18: 0xd118,
};

/** One record's bytes with a correct CRC; `prev` is xl_prev. */
export function assembleRecord(r: BuildRecord, prev: number): Uint8Array {
  const parts: number[] = [];
  const u8 = (v: number) => parts.push(v & 0xff);
  const u16 = (v: number) => parts.push(v & 0xff, (v >>> 8) & 0xff);
  const u32 = (v: number) => parts.push(v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff);
  const datas: Uint8Array[] = [];
  for (const b of r.blocks ?? []) {
    const data = b.data ?? new Uint8Array(0);
    u8(b.id);
    u8(b.fork | (data.length > 0 ? 0x20 : 0) | (b.willInit ? 0x40 : 0) | (b.sameRel ? 0x80 : 0));
    u16(data.length);
    if (!b.sameRel) {
      u32(b.spc);
      u32(b.db);
      u32(b.rel);
    }
    u32(b.block);
    datas.push(data);
  }
  for (const x of r.extraHeader ?? []) u8(x);
  const main = r.mainData ?? new Uint8Array(0);
  if (main.length > 255) {
    u8(254);
    u32(main.length);
  } else if (main.length > 0) {
    u8(255);
    u8(main.length);
  }
  const body = Buffer.concat([Uint8Array.from(parts), ...datas, main]);
  const rec = new Uint8Array(24 + body.length);
  const dv = new DataView(rec.buffer);
  dv.setUint32(0, rec.length, true);
  dv.setUint32(4, r.xid ?? 0, true);
  dv.setUint32(8, prev % 0x1_0000_0000, true);
  dv.setUint32(12, Math.floor(prev / 0x1_0000_0000), true);
  rec[16] = r.info;
  rec[17] = r.rmid;
  rec.set(body, 24);
  dv.setUint32(20, crc32c(rec, 0, 20, crc32c(rec, 24, rec.length)), true);
  return rec;
}

export interface BuiltWal {
  bytes: Uint8Array;
  /** Start LSN of each record, in order. */
  lsns: number[];
  /** End LSN of the last record. */
  end: number;
}

/** Lays records into WAL pages from `start` (a segment boundary) with page headers and continuations. */
export function buildWal(
  records: BuildRecord[],
  opts: {
    major: number;
    segmentSize?: number;
    pageSize?: number;
    start?: number;
    sysid?: bigint;
    tli?: number;
  },
): BuiltWal {
  const seg = opts.segmentSize ?? 1 << 20;
  const page = opts.pageSize ?? 8192;
  const start = opts.start ?? seg;
  const out: number[] = [];
  let pos = start;
  let prev = 0;
  const lsns: number[] = [];
  let end = start;
  const writeHeader = (remLen: number) => {
    const long = pos % seg === 0;
    const h = new DataView(new ArrayBuffer(long ? 40 : 24));
    h.setUint16(0, MAGIC[opts.major], true);
    h.setUint16(2, (remLen > 0 ? 1 : 0) | (long ? 2 : 0) | 4, true);
    h.setUint32(4, opts.tli ?? 1, true);
    h.setUint32(8, pos % 0x1_0000_0000, true);
    h.setUint32(12, Math.floor(pos / 0x1_0000_0000), true);
    h.setUint32(16, remLen, true);
    if (long) {
      h.setBigUint64(24, opts.sysid ?? 7000000000000000001n, true);
      h.setUint32(32, seg, true);
      h.setUint32(36, page, true);
    }
    for (const b of new Uint8Array(h.buffer)) out.push(b);
    pos += h.byteLength;
  };
  for (const r of records) {
    if (pos % page === 0) writeHeader(0);
    const rec = assembleRecord(r, prev);
    lsns.push(pos);
    prev = pos;
    let i = 0;
    while (i < rec.length) {
      if (pos % page === 0) writeHeader(rec.length - i);
      const n = Math.min(rec.length - i, page - (pos % page));
      for (let k = 0; k < n; k++) out.push(rec[i + k]);
      i += n;
      pos += n;
    }
    end = pos;
    if (r.rmid === 0 && (r.info & 0xf0) === 0x40) {
      // XLOG_SWITCH: the rest of the segment is zeros, page headers included.
      while (pos % seg !== 0) {
        out.push(0);
        pos++;
      }
    }
    while (pos % 8 !== 0) {
      out.push(0);
      pos++;
    }
  }
  while (pos % page !== 0) {
    out.push(0);
    pos++;
  }
  return { bytes: Uint8Array.from(out), lsns, end };
}

export function u32s(...values: number[]): Uint8Array {
  const b = new Uint8Array(values.length * 4);
  const dv = new DataView(b.buffer);
  for (const [i, v] of values.entries()) dv.setUint32(i * 4, v >>> 0, true);
  return b;
}
