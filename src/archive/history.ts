import { type Lsn, parseLsn } from '../wal/index.ts';
import { ArchiveError } from './restore-command.ts';

/** One timeline of a history: WAL from `begin` (inclusive) to `end` (exclusive) belongs to it. */
export interface TimelineSpan {
  readonly tli: number;
  readonly begin: Lsn;
  readonly end: Lsn;
}

/** The timelines that lead to one, oldest first; the last is that timeline itself, open-ended. */
export type TimelineHistory = readonly TimelineSpan[];

/** The history of timeline 1, or of a timeline whose history is not needed: itself from the start. */
export const singleTimeline = (tli: number): TimelineHistory => [{ tli, begin: 0, end: Infinity }];

/**
 * readTimeLineHistory: a history file (`0000000N.history`) is one line per ancestor, "parentTLI
 * switchpoint reason", oldest first; comments and blank lines are skipped.
 */
export function parseTimelineHistory(text: string, tli: number, file: string): TimelineHistory {
  const spans: TimelineSpan[] = [];
  let begin = 0;
  for (const line of text.split('\n')) {
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    const [parent, switchpoint] = trimmed.split(/\s+/);
    const parentTli = Number(parent);
    let end: Lsn;
    try {
      end = parseLsn(switchpoint ?? '');
    } catch {
      throw new ArchiveError(`${file}: "${trimmed}" is not "timeline switchpoint reason"`, file);
    }
    const previous = spans.at(-1);
    if (!Number.isInteger(parentTli) || parentTli < 1 || parentTli >= tli || end < begin) {
      throw new ArchiveError(`${file}: "${trimmed}" does not continue the history before it`, file);
    }
    if (previous && parentTli <= previous.tli)
      throw new ArchiveError(`${file}: timeline IDs must increase ("${trimmed}")`, file);
    spans.push({ tli: parentTli, begin, end });
    begin = end;
  }
  spans.push({ tli, begin, end: Infinity });
  return spans;
}

/** tliOfPointInHistory: the timeline that WAL at `lsn` belongs to (a switch point is the new timeline's). */
export function timelineOfPoint(history: TimelineHistory, lsn: Lsn): number {
  return (history.find((s) => lsn >= s.begin && lsn < s.end) ?? history.at(-1)!).tli;
}

/**
 * The timeline whose file holds segment `segno`, as recovery picks it (XLogFileReadAnyTLI): the newest
 * one that began at or before that segment, so the segment where the timeline switched is read from
 * the new timeline's file (it holds the old timeline's WAL up to the switch, and none of what the old
 * timeline may have written after it).
 */
export function timelineOfSegment(history: TimelineHistory, segno: number, segmentSize: number): number {
  for (let i = history.length - 1; i > 0; i--) {
    if (Math.floor(history[i].begin / segmentSize) <= segno) return history[i].tli;
  }
  return history[0].tli;
}

/** The span of timeline `tli` in `history`, if it is there. */
export const spanOf = (history: TimelineHistory, tli: number): TimelineSpan | undefined =>
  history.find((s) => s.tli === tli);
