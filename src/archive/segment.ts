import { formatLsn, type Lsn, MAGIC_TO_MAJOR } from '../wal/index.ts';
import { ArchiveError } from './restore-command.ts';

const XLP_LONG_HEADER = 0x0002;
const LONG_HEADER_SIZE = 40;

export interface SegmentFacts {
  readonly systemId: string;
  readonly segmentSize: number;
  readonly tli: number;
}

/** How many bytes of a segment segmentFacts reads. */
export const SEGMENT_HEADER_SIZE = LONG_HEADER_SIZE;

/**
 * The long page header's facts: what cluster a segment is from, and how big its segments are.
 * `bytes` is the start of a file of `size` bytes.
 */
export function segmentFacts(
  bytes: Uint8Array,
  file: string,
  size = bytes.length,
): SegmentFacts & { pageAddr: Lsn } {
  if (size < LONG_HEADER_SIZE) throw new ArchiveError(`${file} is ${size} bytes: not a WAL segment`, file);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, LONG_HEADER_SIZE);
  const magic = dv.getUint16(0, true);
  if (!MAGIC_TO_MAJOR.has(magic)) {
    throw new ArchiveError(
      `${file} is not a WAL segment of PostgreSQL 13 to 18 (page magic 0x${magic.toString(16)})`,
      file,
    );
  }
  if ((dv.getUint16(2, true) & XLP_LONG_HEADER) === 0)
    throw new ArchiveError(`${file} does not start with a segment's long page header`, file);
  return {
    tli: dv.getUint32(4, true),
    pageAddr: dv.getUint32(8, true) + dv.getUint32(12, true) * 2 ** 32,
    systemId: dv.getBigUint64(24, true).toString(),
    segmentSize: dv.getUint32(32, true),
  };
}

/**
 * A fetched segment is used only if it is whole, from the tracked cluster, of its segment size, and
 * holds the WAL its name says (its first page's address); otherwise an ArchiveError names the file.
 */
export function checkSegment(
  header: Uint8Array,
  size: number,
  file: string,
  expected: SegmentFacts & { start: Lsn },
): void {
  const facts = segmentFacts(header, file, size);
  if (facts.systemId !== expected.systemId) {
    throw new ArchiveError(
      `${file} is from another cluster (system ${facts.systemId}, not ${expected.systemId})`,
      file,
    );
  }
  if (facts.segmentSize !== expected.segmentSize) {
    throw new ArchiveError(
      `${file} has ${facts.segmentSize}-byte segments, not ${expected.segmentSize}`,
      file,
    );
  }
  if (facts.pageAddr !== expected.start) {
    throw new ArchiveError(
      `${file} holds WAL from ${formatLsn(facts.pageAddr)}, not from ${formatLsn(expected.start)} as its name says`,
      file,
    );
  }
  // A segment where the timeline switched begins with pages of the timeline before.
  if (facts.tli > expected.tli)
    throw new ArchiveError(`${file} holds timeline ${facts.tli}, not ${expected.tli}`, file);
  if (size !== expected.segmentSize) {
    throw new ArchiveError(
      `${file} is ${size} bytes, not a whole ${expected.segmentSize}-byte segment (truncated?)`,
      file,
    );
  }
}
