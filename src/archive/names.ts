import type { Lsn } from '../wal/index.ts';

/** wal_segment_size may be any power of two from 1 MB to 1 GB; 16 MB is the default, tried first. */
export const SEGMENT_SIZES = [16, 1, 2, 4, 8, 32, 64, 128, 256, 512, 1024].map((mb) => mb << 20);

const hex8 = (n: number) => n.toString(16).toUpperCase().padStart(8, '0');

/** XLogFileName: TTTTTTTTXXXXXXXXYYYYYYYY, the segment holding `lsn` on timeline `tli`. */
export function segmentFileName(tli: number, lsn: Lsn, segmentSize: number): string {
  const segno = Math.floor(lsn / segmentSize);
  const perLogId = 0x1_0000_0000 / segmentSize;
  return `${hex8(tli)}${hex8(Math.floor(segno / perLogId))}${hex8(segno % perLogId)}`;
}

/** TLHistoryFileName. */
export function historyFileName(tli: number): string {
  return `${hex8(tli)}.history`;
}
