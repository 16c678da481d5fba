// `ptrackd waldump`: the views of decoded WAL, from segment files or an archive (the command is in commands/).
import { basename } from 'node:path';
import type { Writable } from 'node:stream';
import { ArchiveError, fetchSegments, RestoreCommand } from '../archive/index.ts';
import {
  type BlockRef,
  type DecodedRecord,
  type FileEvent,
  FORK_NAMES,
  fileEvents,
  formatLsn,
  formatLsnPadded,
  type ImpliedBlockRef,
  impliedBlockRefs,
  type Lsn,
  Rmgr,
  recordTypeName,
  rmgrName,
  SIZE_OF_LONG_PAGE_HEADER,
  SIZE_OF_SHORT_PAGE_HEADER,
  WalDecodeError,
  WalStreamDecoder,
  XLOG_SWITCH,
} from '../wal/index.ts';
import { ExitError, UsageError } from './errors.ts';
import { LineWriter } from './output.ts';
import { findSegmentFiles, readSegments, segmentSizeOfFiles } from './wal-files.ts';

export interface WaldumpOptions {
  readonly paths: readonly string[];
  /** Read the segments from an archive through this restore_command instead of from `paths`. */
  readonly restoreCommand?: string;
  readonly restoreTimeoutMs?: number;
  readonly start?: Lsn;
  readonly end?: Lsn;
  readonly timeline?: number;
  readonly mode: 'records' | 'blocks' | 'events' | 'stats';
  readonly statsPerRecord: boolean;
  readonly implied: boolean;
  readonly format: 'text' | 'json';
  readonly blockSize: number;
}

/** Decodes the files and prints one of the views; throws ExitError for anything that stops it early. */
export async function runWaldump(o: WaldumpOptions, stdout: Writable, stderr: Writable): Promise<void> {
  if (o.start !== undefined && o.end !== undefined && o.end < o.start) {
    throw new UsageError(
      `end WAL location ${formatLsn(o.end)} is before start location ${formatLsn(o.start)}`,
    );
  }
  const out = new LineWriter(stdout);
  const stats = new WalStats(o.statsPerRecord);
  let decoder: WalStreamDecoder | undefined;
  let file: string | undefined;
  let lastEnd: Lsn | undefined;
  let firstLsn: Lsn | undefined;
  try {
    let segmentSize = 0;
    for await (const piece of walSource(o, (size) => (segmentSize = size))) {
      file = piece.file;
      if (!decoder) {
        const startLsn = Math.max(piece.lsn, pageFloor(o.start ?? 0));
        decoder = new WalStreamDecoder({ startLsn, segmentSize, blockSize: o.blockSize });
      }
      decoder.feed(piece.bytes, piece.lsn);
      for (;;) {
        // A record that starts at or after --end cannot end before it: do not read past it.
        if (o.end !== undefined && decoder.position >= o.end) return finish();
        const rec = decoder.next();
        if (rec === null) break;
        if (o.start !== undefined && rec.lsn < o.start) continue;
        if (o.end !== undefined && bytesEnd(rec, segmentSize) > o.end) return finish();
        if (firstLsn === undefined) {
          firstLsn = rec.lsn;
          // pg_waldump's own first line, in the views that are pg_waldump's
          if (
            o.start !== undefined &&
            rec.lsn > o.start &&
            o.format === 'text' &&
            (o.mode === 'records' || o.mode === 'stats')
          ) {
            out.line(
              `first record is after ${formatLsn(o.start)}, at ${formatLsn(rec.lsn)}, skipping over ${rec.lsn - o.start} bytes`,
            );
          }
        }
        lastEnd = rec.endLsn;
        print(rec);
        // --stats prints nothing per record: no promise to settle for each of millions of them
        if (o.mode !== 'stats') await out.flush();
      }
    }
    if (o.end !== undefined) {
      throw new ExitError(
        `WAL ends at ${formatLsn(decoder!.position)} (in ${file}), before --end ${formatLsn(o.end)}`,
      );
    }
    stderr.write(`ptrackd waldump: end of WAL at ${formatLsn(decoder!.position)}: the files end there\n`);
    return finish();
  } catch (e) {
    if (!(e instanceof WalDecodeError)) throw e;
    const where = file ? ` in ${file}` : '';
    if (e.code === 'end-of-wal' && o.end === undefined) {
      stderr.write(`ptrackd waldump: end of WAL at ${formatLsn(e.lsn)}${where}: ${e.message}\n`);
      return finish();
    }
    await finish();
    throw new ExitError(`error in WAL${where}: ${e.message}`);
  }

  async function finish(): Promise<void> {
    if (o.mode === 'stats') {
      // As pg_waldump: from the first record counted to the end of the last, MAXALIGNed (EndRecPtr)
      const to = lastEnd === undefined ? (o.end ?? 0) : Math.ceil(lastEnd / 8) * 8;
      for (const line of stats.render(firstLsn ?? o.start ?? 0, to)) out.line(line);
    }
    await out.flush(true);
  }

  function print(rec: DecodedRecord): void {
    const json = o.format === 'json';
    switch (o.mode) {
      case 'stats':
        stats.add(rec);
        return;
      case 'blocks':
        for (const b of rec.blocks) out.line(json ? blockJson(rec, b, false) : blockLine(rec, b, false));
        if (o.implied) {
          for (const b of impliedBlockRefs(rec, o.blockSize))
            out.line(json ? blockJson(rec, b, true) : blockLine(rec, b, true));
        }
        return;
      case 'events':
        for (const ev of fileEvents(rec)) out.line(json ? JSON.stringify(eventJson(ev)) : eventLine(ev));
        return;
      case 'records':
        out.line(json ? recordJson(rec, o.blockSize) : recordLine(rec));
    }
  }
}

/** The WAL to decode, a piece at a time: from segment files, or from an archive (--restore-command). */
async function* walSource(
  o: WaldumpOptions,
  onSegmentSize: (n: number) => void,
): AsyncGenerator<{ file: string; lsn: Lsn; bytes: Uint8Array }> {
  if (o.restoreCommand !== undefined) {
    const command = new RestoreCommand(o.restoreCommand, { timeoutMs: o.restoreTimeoutMs });
    try {
      for await (const s of fetchSegments(command, {
        tli: o.timeline ?? 1,
        start: o.start ?? 0,
        end: o.end,
      })) {
        onSegmentSize(s.size);
        yield { file: s.file, lsn: s.lsn, bytes: s.bytes() };
      }
    } catch (e) {
      if (e instanceof ArchiveError) throw new ExitError(e.message);
      throw e;
    }
    return;
  }
  const files = findSegmentFiles(o.paths, o.timeline);
  const size = segmentSizeOfFiles(files);
  onSegmentSize(size);
  for (const piece of readSegments(files, size, o.start ?? 0, { recycle: true })) {
    yield { file: basename(piece.file.path), lsn: piece.lsn, bytes: piece.bytes };
  }
}

/**
 * Where a record's own bytes end. An XLOG_SWITCH record's endLsn is the end of its segment (the rest is
 * unused); pg_waldump --end counts it when its bytes end in time, as for any other record.
 */
function bytesEnd(rec: DecodedRecord, segmentSize: number): Lsn {
  if (rec.rmid !== Rmgr.XLOG || (rec.info & 0xf0) !== XLOG_SWITCH) return rec.endLsn;
  const pageEnd = pageFloor(rec.lsn) + WAL_PAGE_SIZE;
  const end = rec.lsn + rec.totLen;
  if (end <= pageEnd) return end;
  return end + (pageEnd % segmentSize === 0 ? SIZE_OF_LONG_PAGE_HEADER : SIZE_OF_SHORT_PAGE_HEADER);
}

/** XLOG_BLCKSZ: pages of 8 kB, as in every build this reads. */
const WAL_PAGE_SIZE = 8192;

function pageFloor(lsn: Lsn): Lsn {
  return lsn - (lsn % WAL_PAGE_SIZE);
}

const rel = (b: { spc: number; db: number; rel: number }) => `${b.spc}/${b.db}/${b.rel}`;

/** `--blocks`: `<record LSN> <spc>/<db>/<rel> <fork> <block>[ implied]`. */
function blockLine(rec: DecodedRecord, b: BlockRef | ImpliedBlockRef, implied: boolean): string {
  return `${formatLsn(rec.lsn)} ${rel(b)} ${FORK_NAMES[b.fork]} ${b.block}${implied ? ' implied' : ''}`;
}

function blockJson(rec: DecodedRecord, b: BlockRef | ImpliedBlockRef, implied: boolean): string {
  return JSON.stringify({
    lsn: formatLsn(rec.lsn),
    endLsn: formatLsn(rec.endLsn),
    spc: b.spc,
    db: b.db,
    rel: b.rel,
    fork: FORK_NAMES[b.fork],
    block: b.block,
    ...(implied ? { implied: true } : { image: (b as BlockRef).hasImage }),
  });
}

/** `--events` lines, e.g. `0/21EDCA0 dbcopy 1663/16425 from 1663/1`. */
export function eventLine(ev: FileEvent): string {
  const at = formatLsn(ev.lsn);
  switch (ev.kind) {
    case 'create':
      return `${at} create ${rel(ev)} ${FORK_NAMES[ev.fork]}`;
    case 'truncate':
      return `${at} truncate ${rel(ev)} ${ev.nblocks} ${ev.flags}`;
    case 'drop':
      return `${at} drop ${rel(ev)}`;
    case 'dbcopy':
      return `${at} dbcopy ${ev.spc}/${ev.db} from ${ev.srcSpc}/${ev.srcDb}`;
    case 'dbcreate':
      return `${at} dbcreate ${ev.spc}/${ev.db}`;
    case 'dbdrop':
      return `${at} dbdrop ${ev.spc}/${ev.db}`;
    case 'tblspc-create':
      return `${at} tblspc-create ${ev.spc} ${JSON.stringify(ev.path)}`;
    case 'tblspc-drop':
      return `${at} tblspc-drop ${ev.spc}`;
    case 'relmap':
      return `${at} relmap ${ev.spc}/${ev.db}`;
    case 'checkpoint':
      return `${at} checkpoint ${ev.shutdown ? 'shutdown' : 'online'} redo ${formatLsn(ev.redo)} tli ${ev.tli} prev ${ev.prevTli}`;
    case 'end-of-recovery':
      return `${at} end-of-recovery tli ${ev.tli} prev ${ev.prevTli}`;
    case 'overwrite-contrecord':
      return `${at} overwrite-contrecord ${formatLsn(ev.overwrittenLsn)}`;
  }
}

function eventJson(ev: FileEvent): Record<string, unknown> {
  const out: Record<string, unknown> = { ...ev, lsn: formatLsn(ev.lsn), endLsn: formatLsn(ev.endLsn) };
  if (ev.kind === 'checkpoint') out.redo = formatLsn(ev.redo);
  if (ev.kind === 'overwrite-contrecord') out.overwrittenLsn = formatLsn(ev.overwrittenLsn);
  if ('fork' in ev) out.fork = FORK_NAMES[ev.fork];
  return out;
}

/** pg_waldump's line, with the record type in place of its rmgr-specific description. */
function recordLine(rec: DecodedRecord): string {
  const head =
    `rmgr: ${rmgrName(rec.rmid).padEnd(11)} len (rec/tot): ${String(rec.totLen - rec.fpiLength).padStart(6)}/` +
    `${String(rec.totLen).padStart(6)}, tx: ${String(rec.xid).padStart(10)}, lsn: ${formatLsnPadded(rec.lsn)}, ` +
    `prev ${formatLsnPadded(rec.prevLsn)}, desc: ${recordTypeName(rec)}`;
  const blocks = rec.blocks.map(
    (b) =>
      `blkref #${b.id}: rel ${rel(b)}${b.fork === 0 ? '' : ` fork ${FORK_NAMES[b.fork]}`} blk ${b.block}${b.hasImage ? ' FPW' : ''}`,
  );
  return blocks.length === 0 ? head : `${head}, ${blocks.join(', ')}`;
}

function recordJson(rec: DecodedRecord, blockSize: number): string {
  return JSON.stringify({
    lsn: formatLsn(rec.lsn),
    endLsn: formatLsn(rec.endLsn),
    prev: formatLsn(rec.prevLsn),
    rmgr: rmgrName(rec.rmid),
    type: recordTypeName(rec),
    xid: rec.xid,
    totLen: rec.totLen,
    fpiLen: rec.fpiLength,
    blocks: rec.blocks.map((b) => ({
      id: b.id,
      spc: b.spc,
      db: b.db,
      rel: b.rel,
      fork: FORK_NAMES[b.fork],
      block: b.block,
      image: b.hasImage,
    })),
    implied: impliedBlockRefs(rec, blockSize).map((b) => ({ ...b, fork: FORK_NAMES[b.fork] })),
    events: fileEvents(rec).map(eventJson),
  });
}

/** `--stats[=record]`, laid out as pg_waldump's XLogDumpDisplayStats. */
export class WalStats {
  readonly #perRecord: boolean;
  readonly #rows = new Map<number, { n: number; rec: number; fpi: number; name: string }>();

  constructor(perRecord: boolean) {
    this.#perRecord = perRecord;
  }

  add(rec: DecodedRecord): void {
    // As pg_waldump: a Transaction record's top info bit is a flag (XLOG_XACT_HAS_INFO), not its type
    const type = rec.rmid === Rmgr.Transaction ? (rec.info >> 4) & 0x07 : rec.info >> 4;
    const key = this.#perRecord ? rec.rmid * 16 + type : rec.rmid * 16;
    let row = this.#rows.get(key);
    if (!row) {
      const name = this.#perRecord ? `${rmgrName(rec.rmid)}/${recordTypeName(rec)}` : rmgrName(rec.rmid);
      row = { n: 0, rec: 0, fpi: 0, name };
      this.#rows.set(key, row);
    }
    row.n++;
    row.rec += rec.totLen - rec.fpiLength;
    row.fpi += rec.fpiLength;
  }

  render(from: Lsn, to: Lsn): string[] {
    if (!this.#perRecord) {
      for (let rmid = 0; rmid <= 21; rmid++) {
        if (!this.#rows.has(rmid * 16))
          this.#rows.set(rmid * 16, { n: 0, rec: 0, fpi: 0, name: rmgrName(rmid) });
      }
    }
    const rows = [...this.#rows.entries()].sort((a, b) => a[0] - b[0]).map(([, r]) => r);
    const total = rows.reduce((t, r) => ({ n: t.n + r.n, rec: t.rec + r.rec, fpi: t.fpi + r.fpi }), {
      n: 0,
      rec: 0,
      fpi: 0,
    });
    const all = total.rec + total.fpi;
    const pct = (a: number, b: number) => (b === 0 ? 0 : (100 * a) / b).toFixed(2).padStart(6);
    const num = (n: number) => String(n).padStart(20);
    const cols = (...c: string[]) => c.map((s) => s.padStart(20)).join(' ');
    const lines = [
      `WAL statistics between ${formatLsn(from)} and ${formatLsn(to)}:`,
      `${'Type'.padEnd(27)} ${cols('N')} ${'(%)'.padStart(8)} ${cols('Record size')} ${'(%)'.padStart(8)} ${cols('FPI size')} ${'(%)'.padStart(8)} ${cols('Combined size')} ${'(%)'.padStart(8)}`,
      `${'----'.padEnd(27)} ${cols('-')} ${'---'.padStart(8)} ${cols('-----------')} ${'---'.padStart(8)} ${cols('--------')} ${'---'.padStart(8)} ${cols('-------------')} ${'---'.padStart(8)}`,
    ];
    for (const r of rows) {
      lines.push(
        `${r.name.padEnd(27)} ${num(r.n)} (${pct(r.n, total.n)}) ${num(r.rec)} (${pct(r.rec, total.rec)}) ` +
          `${num(r.fpi)} (${pct(r.fpi, total.fpi)}) ${num(r.rec + r.fpi)} (${pct(r.rec + r.fpi, all)})`,
      );
    }
    const dashes = '--------'.padStart(20);
    lines.push(
      `${''.padEnd(27)} ${dashes} ${''.padStart(8)} ${dashes} ${''.padStart(8)} ${dashes} ${''.padStart(8)} ${dashes}`,
    );
    const share = (a: number) => `[${pct(a, all).trim()}%]`.padEnd(9);
    lines.push(
      `${'Total'.padEnd(27)} ${num(total.n)} ${''.padEnd(9)}${num(total.rec)} ${share(total.rec)}${num(total.fpi)} ` +
        `${share(total.fpi)}${num(all)} [100%]`,
    );
    return lines;
  }
}
