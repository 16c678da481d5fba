import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatLsn, type Lsn } from '../wal/index.ts';
import { parseTimelineHistory, singleTimeline, type TimelineHistory, timelineOfSegment } from './history.ts';
import { historyFileName, SEGMENT_SIZES, segmentFileName } from './names.ts';
import { ArchiveError, type RestoreCommand } from './restore-command.ts';
import { checkSegment, segmentFacts } from './segment.ts';

export interface ArchivedSegment {
  readonly file: string;
  /** Where the segment starts. */
  readonly lsn: Lsn;
  readonly bytes: Uint8Array;
}

export interface FetchRange {
  /** The timeline to follow: each segment is read from the timeline of its history that holds it. */
  readonly tli: number;
  /** The history of `tli` (a server's own); else, for a timeline after 1, its history file from the archive. */
  readonly history?: TimelineHistory;
  readonly start: Lsn;
  /** Stop after the segment holding this LSN; every segment up to it must be in the archive. */
  readonly end?: Lsn;
  /**
   * The segment holding `end` may be missing: the server still has it (it holds a slot's restart LSN),
   * so the archive need not have it yet.
   */
  readonly endOnServer?: boolean;
  /** Known from the server when following one; else read from the first segment found. */
  readonly segmentSize?: number;
  readonly systemId?: string;
}

/**
 * The segments of timeline `tli` from the one holding `start`, in order, each checked (checkSegment);
 * segments before a switch to `tli` (or to one of its ancestors) are those of the timeline before.
 * Without `end` it goes on until the archive has no next segment; with it, a segment missing before
 * `end` is an ArchiveError naming the first missing file.
 */
export async function* fetchSegments(
  command: RestoreCommand,
  range: FetchRange,
): AsyncGenerator<ArchivedSegment> {
  const scratch = mkdtempSync(join(tmpdir(), 'ptrackd-archive-'));
  const target = join(scratch, 'RECOVERYXLOG');
  const fetch = async (file: string, oldest: string): Promise<Uint8Array | null> => {
    rmSync(target, { force: true });
    if (!(await command.restore(file, target, oldest))) return null;
    try {
      return readFileSync(target);
    } catch {
      throw new ArchiveError(`the restore command for ${file} succeeded but wrote nothing to %p`, file);
    }
  };
  try {
    const { segmentSize: size, end } = range;
    if (
      range.endOnServer &&
      size &&
      end !== undefined &&
      Math.floor(range.start / size) === Math.floor(end / size)
    )
      return; // all of it is still on the server
    const history = range.history ?? (await historyOf(range.tli, fetch, command));
    const first = await firstSegment(range, history, fetch, command);
    const { segmentSize } = first.facts;
    let lsn = Math.floor(range.start / segmentSize) * segmentSize;
    let bytes: Uint8Array | null = first.bytes;
    for (;;) {
      const tli = timelineOfSegment(history, lsn / segmentSize, segmentSize);
      const file = segmentFileName(tli, lsn, segmentSize);
      bytes ??= await fetch(file, first.file);
      if (bytes === null) {
        const needed = range.endOnServer ? lsn + segmentSize <= (range.end ?? 0) : lsn < (range.end ?? 0);
        if (needed) {
          throw new ArchiveError(
            `${file} (WAL from ${formatLsn(lsn)}) is not in the archive${said(command)}`,
            file,
            'missing',
          );
        }
        return;
      }
      checkSegment(bytes, file, { ...first.facts, tli, start: lsn });
      yield { file, lsn, bytes };
      bytes = null;
      lsn += segmentSize;
      if (range.end !== undefined && lsn > range.end) return;
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

type Fetch = (file: string, oldest: string) => Promise<Uint8Array | null>;

/** The restore command's own last words when it said no, as PostgreSQL logs them. */
const said = (command: RestoreCommand) =>
  command.lastRefusal ? `; the restore command said: ${command.lastRefusal}` : '';

/** Timeline 1 has no history; a later one's history file must be in the archive, as recovery needs it. */
async function historyOf(tli: number, fetch: Fetch, command: RestoreCommand): Promise<TimelineHistory> {
  if (tli === 1) return singleTimeline(1);
  const file = historyFileName(tli);
  const bytes = await fetch(file, file);
  if (bytes === null) {
    throw new ArchiveError(
      `${file} (the history of timeline ${tli}) is not in the archive${said(command)}`,
      file,
      'missing',
    );
  }
  return parseTimelineHistory(Buffer.from(bytes).toString('utf8'), tli, file);
}

/** The first segment, trying each possible segment size for its name when the size is not known. */
async function firstSegment(
  range: FetchRange,
  history: TimelineHistory,
  fetch: Fetch,
  command: RestoreCommand,
) {
  const tried: string[] = [];
  for (const size of range.segmentSize ? [range.segmentSize] : SEGMENT_SIZES) {
    const segno = Math.floor(range.start / size);
    const file = segmentFileName(timelineOfSegment(history, segno, size), range.start, size);
    if (tried.includes(file)) continue; // near the start of WAL, sizes share names
    const bytes = await fetch(file, file);
    tried.push(file);
    if (bytes === null) continue;
    const facts = segmentFacts(bytes, file);
    // While guessing the size, a file of that name but of other-sized segments is not the one; once
    // the size is known, such a file is wrong (checkSegment says how), not missing.
    if (facts.segmentSize !== size && !range.segmentSize) continue;
    return {
      file,
      bytes,
      facts: { ...facts, segmentSize: size, systemId: range.systemId ?? facts.systemId },
    };
  }
  throw new ArchiveError(
    `the archive has no segment holding ${formatLsn(range.start)} on timeline ${range.tli} (asked for ${tried.join(', ')})${said(command)}`,
    tried[0],
    'missing',
  );
}
