export { type ArchivedSegment, type FetchRange, fetchSegments } from './fetch.ts';
export {
  parseTimelineHistory,
  singleTimeline,
  spanOf,
  type TimelineHistory,
  type TimelineSpan,
  timelineOfPoint,
  timelineOfSegment,
} from './history.ts';
export { historyFileName, SEGMENT_SIZES, segmentFileName } from './names.ts';
export { ArchiveError, RestoreCommand } from './restore-command.ts';
export { checkSegment, type SegmentFacts, segmentFacts } from './segment.ts';
