export { MarkCache } from './coalesce.ts';
export { replaceDurably, writeFileDurably } from './durable.ts';
export {
  type CheckpointRecord,
  CRC_BLOCK_SIZE,
  type LoadedMap,
  loadMapFile,
  writeMapFile,
  writeMapFileAsync,
} from './file.ts';
export { blockHash, mod64 } from './hash.ts';
export { entriesForMapSize, fileSizeForEntries, MAP_VERSION, MAX_MAP_SIZE_MB } from './layout.ts';
export {
  appendLogRecord,
  countDirtyLines,
  type LogRecordWritten,
  type LogReplay,
  type LogState,
  logRecordSize,
  MapLogError,
  replayMapLog,
  unionRegions,
} from './log.ts';
export { type DirtyLines, LINE_ENTRIES, type MapBuffers, PtrackMap } from './map.ts';
export { type ForkExtent, type ResizeProgress, resizeMap } from './resize.ts';
export { FALSE_POSITIVE_HINT, falsePositiveRate, mapSizeForFalsePositiveRate } from './sizing.ts';
