import { closeSync, fstatSync, mkdtempSync, openSync, readSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatLsn, type Lsn } from '../wal/index.ts';
import { parseTimelineHistory, singleTimeline, type TimelineHistory, timelineOfSegment } from './history.ts';
import { historyFileName, SEGMENT_SIZES, segmentFileName } from './names.ts';
import { ArchiveError, type RestoreCommand } from './restore-command.ts';
import { checkSegment, SEGMENT_HEADER_SIZE, segmentFacts } from './segment.ts';

/**
 * A fetched segment, checked, readable until the generator moves to the next one: read straight into
 * where it is decoded (readInto) rather than copied there from a buffer of its own.
 */
export interface ArchivedSegment {
  readonly file: string;
  /** Where the segment starts. */
  readonly lsn: Lsn;
  readonly size: number;
  /** Fills `into` with the segment's bytes from `position`. */
  readInto(into: Uint8Array, position: number): void;
  /** The whole segment in a buffer of its own. */
  bytes(): Uint8Array;
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

/** A file the restore command delivered: open, its name already gone from the scratch directory. */
interface Fetched {
  readonly fd: number;
  readonly size: number;
  readonly header: Uint8Array;
  close(): void;
}

/**
 * The segments of timeline `tli` from the one holding `start`, in order, each checked (checkSegment);
 * segments before a switch to `tli` (or to one of its ancestors) are those of the timeline before.
 * Without `end` it goes on until the archive has no next segment; with it, a segment missing before
 * `end` is an ArchiveError naming the first missing file. The next segment is fetched while the
 * consumer reads the current one.
 */
export async function* fetchSegments(
  command: RestoreCommand,
  range: FetchRange,
): AsyncGenerator<ArchivedSegment> {
  const scratch = mkdtempSync(join(tmpdir(), 'ptrackd-archive-'));
  const open = new Set<number>();
  const fetch = async (file: string, oldest: string): Promise<Fetched | null> => {
    const target = join(scratch, file);
    if (!(await command.restore(file, target, oldest))) return null;
    let fd: number;
    try {
      fd = openSync(target, 'r');
    } catch {
      throw new ArchiveError(`the restore command for ${file} succeeded but wrote nothing to %p`, file);
    } finally {
      rmSync(target, { force: true });
    }
    open.add(fd);
    const close = () => {
      if (open.delete(fd)) closeSync(fd);
    };
    const size = fstatSync(fd).size;
    const header = new Uint8Array(Math.min(size, SEGMENT_HEADER_SIZE));
    readFully(fd, header, 0, file);
    return { fd, size, header, close };
  };
  let next: Promise<Fetched | null> | undefined;
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
    let current: Fetched | null = first.fetched;
    for (;;) {
      const tli = timelineOfSegment(history, lsn / segmentSize, segmentSize);
      const file = segmentFileName(tli, lsn, segmentSize);
      current ??= await (next ?? fetch(file, first.file));
      next = undefined;
      if (current === null) {
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
      const { fd, header } = current;
      checkSegment(header, current.size, file, { ...first.facts, tli, start: lsn });
      const nextLsn = lsn + segmentSize;
      if (range.end === undefined || nextLsn <= range.end) {
        const nextTli = timelineOfSegment(history, nextLsn / segmentSize, segmentSize);
        next = fetch(segmentFileName(nextTli, nextLsn, segmentSize), first.file);
        next.catch(() => {}); // its error is thrown when it is awaited, not as an unhandled rejection
      }
      yield {
        file,
        lsn,
        size: segmentSize,
        readInto: (into, position) => readFully(fd, into, position, file),
        bytes() {
          const all = new Uint8Array(segmentSize);
          readFully(fd, all, 0, file);
          return all;
        },
      };
      current.close();
      current = null;
      lsn = nextLsn;
      if (range.end !== undefined && lsn > range.end) return;
    }
  } finally {
    await next?.catch(() => {}); // a command still running writes into the scratch directory
    for (const fd of open) closeSync(fd);
    rmSync(scratch, { recursive: true, force: true });
  }
}

function readFully(fd: number, into: Uint8Array, position: number, file: string): void {
  for (let done = 0; done < into.length; ) {
    const n = readSync(fd, into, done, into.length - done, position + done);
    if (n === 0) throw new ArchiveError(`${file} ended while it was being read`, file);
    done += n;
  }
}

type Fetch = (file: string, oldest: string) => Promise<Fetched | null>;

/** The restore command's own last words when it said no, as PostgreSQL logs them. */
const said = (command: RestoreCommand) =>
  command.lastRefusal ? `; the restore command said: ${command.lastRefusal}` : '';

/** Timeline 1 has no history; a later one's history file must be in the archive, as recovery needs it. */
async function historyOf(tli: number, fetch: Fetch, command: RestoreCommand): Promise<TimelineHistory> {
  if (tli === 1) return singleTimeline(1);
  const file = historyFileName(tli);
  const fetched = await fetch(file, file);
  if (fetched === null) {
    throw new ArchiveError(
      `${file} (the history of timeline ${tli}) is not in the archive${said(command)}`,
      file,
      'missing',
    );
  }
  const text = new Uint8Array(fetched.size);
  try {
    readFully(fetched.fd, text, 0, file);
  } finally {
    fetched.close();
  }
  return parseTimelineHistory(Buffer.from(text).toString('utf8'), tli, file);
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
    const fetched = await fetch(file, file);
    tried.push(file);
    if (fetched === null) continue;
    const facts = segmentFacts(fetched.header, file, fetched.size);
    // While guessing the size, a file of that name but of other-sized segments is not the one; once
    // the size is known, such a file is wrong (checkSegment says how), not missing.
    if (facts.segmentSize !== size && !range.segmentSize) {
      fetched.close();
      continue;
    }
    return {
      file,
      fetched,
      facts: { ...facts, segmentSize: size, systemId: range.systemId ?? facts.systemId },
    };
  }
  throw new ArchiveError(
    `the archive has no segment holding ${formatLsn(range.start)} on timeline ${range.tli} (asked for ${tried.join(', ')})${said(command)}`,
    tried[0],
    'missing',
  );
}
