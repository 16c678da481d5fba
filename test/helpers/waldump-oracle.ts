import { formatLsn, parseLsn } from '../../src/wal/index.ts';
import type { PgCluster } from './pg-cluster.ts';

/** What pg_waldump says about WAL, parsed from `pg_waldump --bkp-details` output: the oracle nobody here wrote. */
export interface WaldumpRecord {
  readonly lsn: string;
  readonly rmgr: string;
  readonly type: string;
  readonly totLen: number;
  readonly desc: string;
}

export interface WaldumpOutput {
  readonly records: WaldumpRecord[];
  /** `--blocks` lines: `<LSN> <spc>/<db>/<rel> <fork> <block>`. */
  readonly blocks: string[];
}

const HEADER =
  /^rmgr: (\S+)\s+len \(rec\/tot\):\s*\d+\/\s*(\d+), tx:\s*\d+, lsn: (\S+), prev \S+, desc: (\S+)\s?(.*)$/;
const BLKREF = /^\tblkref #\d+: rel (\d+\/\d+\/\d+) fork (\w+) blk (\d+)/;

export function parseWaldump(text: string): WaldumpOutput {
  const records: WaldumpRecord[] = [];
  const blocks: string[] = [];
  for (const line of text.split('\n')) {
    const h = HEADER.exec(line);
    if (h) {
      records.push({
        rmgr: h[1],
        totLen: Number(h[2]),
        lsn: formatLsn(parseLsn(h[3])),
        type: h[4],
        desc: h[5].trimEnd(),
      });
      continue;
    }
    const b = BLKREF.exec(line);
    if (b) blocks.push(`${records.at(-1)!.lsn} ${b[1]} ${b[2]} ${b[3]}`);
  }
  return { records, blocks };
}

/**
 * The cluster's own pg_waldump over [start, end] with --bkp-details, parsed. The start and end segments
 * are named: without them pg_waldump takes the segment size from whichever file it lists first, which
 * may be a preallocated segment of zeros.
 */
export async function waldumpOf(cluster: PgCluster, start: string, end: string): Promise<WaldumpOutput> {
  const [first, last] = (
    await cluster.sql(`SELECT pg_walfile_name('${start}'), pg_walfile_name('${end}')`)
  ).split('|');
  const args = ['-p', cluster.walDir, '-s', start, '-e', end, '--bkp-details', first, last];
  return parseWaldump(await cluster.client('pg_waldump', args));
}

/** pg_waldump's relation path (base/5/16384_vm, global/1262, pg_tblspc/…/5/16440) → `spc/db/rel` and fork. */
function locatorOfPath(path: string): { rel: string; fork: string } {
  const m = /^(?:base\/(\d+)|global|pg_tblspc\/(\d+)\/PG_[^/]+\/(\d+))\/(\d+)(?:_(fsm|vm|init))?$/.exec(path);
  if (!m) throw new Error(`unexpected relation path ${path}`);
  const [, baseDb, spc, spcDb, rel, fork] = m;
  const loc = baseDb ? `1663/${baseDb}/${rel}` : spc ? `${spc}/${spcDb}/${rel}` : `1664/0/${rel}`;
  return { rel: loc, fork: fork ?? 'main' };
}

/** Event kinds whose facts pg_waldump's descriptions state, so they can be checked against it. */
export const DESCRIBED_EVENT_KINDS = new Set([
  'create',
  'truncate',
  'drop',
  'dbcopy',
  'dbcreate',
  'dbdrop',
  'tblspc-create',
  'tblspc-drop',
  'relmap',
  'checkpoint',
  'end-of-recovery',
]);

/** The file-level events pg_waldump's description of a record states, in `ptrackd waldump --events` form. */
export function eventsFromDescription(r: Pick<WaldumpRecord, 'lsn' | 'rmgr' | 'type' | 'desc'>): string[] {
  const at = formatLsn(parseLsn(r.lsn));
  const { rmgr, type, desc } = r;
  if (rmgr === 'Storage' && type === 'CREATE') {
    const { rel, fork } = locatorOfPath(desc);
    return [`${at} create ${rel} ${fork}`];
  }
  if (rmgr === 'Storage' && type === 'TRUNCATE') {
    const m = /^(\S+) to (\d+) blocks flags (\d+)$/.exec(desc)!;
    return [`${at} truncate ${locatorOfPath(m[1]).rel} ${m[2]} ${m[3]}`];
  }
  if (rmgr === 'Database') {
    let m = /^copy dir (\d+\/\d+) to (\d+\/\d+)$/.exec(desc);
    if (m) return [`${at} dbcopy ${m[2]} from ${m[1]}`];
    m = /^create dir (\d+\/\d+)$/.exec(desc);
    if (m) return [`${at} dbcreate ${m[1]}`];
    if (desc.startsWith('dir '))
      return desc
        .slice(4)
        .split(' ')
        .map((d) => `${at} dbdrop ${d}`);
    throw new Error(`unexpected Database description ${desc}`);
  }
  if (rmgr === 'Transaction' && /^(COMMIT|ABORT|COMMIT_PREPARED|ABORT_PREPARED)$/.test(type)) {
    const m = /; rels: ([^;]+)/.exec(desc);
    return m
      ? m[1]
          .trim()
          .split(' ')
          .map((p) => `${at} drop ${locatorOfPath(p).rel}`)
      : [];
  }
  if (rmgr === 'Tablespace')
    return [type === 'CREATE' ? `${at} tblspc-create ${desc}` : `${at} tblspc-drop ${desc}`];
  if (rmgr === 'RelMap') {
    const m = /^database (\d+) tablespace (\d+) size \d+$/.exec(desc)!;
    return [`${at} relmap ${m[2]}/${m[1]}`];
  }
  if (rmgr === 'XLOG' && (type === 'CHECKPOINT_SHUTDOWN' || type === 'CHECKPOINT_ONLINE')) {
    const m = /^redo ([0-9A-F]+\/[0-9A-F]+); tli (\d+); prev tli (\d+);.*; (shutdown|online)$/.exec(desc)!;
    return [`${at} checkpoint ${m[4]} redo ${m[1]} tli ${m[2]} prev ${m[3]}`];
  }
  if (rmgr === 'XLOG' && type === 'END_OF_RECOVERY') {
    const m = /^tli (\d+); prev tli (\d+);/.exec(desc)!;
    return [`${at} end-of-recovery tli ${m[1]} prev ${m[2]}`];
  }
  return [];
}
