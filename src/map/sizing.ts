import { fileSizeForEntries, MAX_MAP_SIZE_MB } from './layout.ts';

/**
 * Past this estimated false-positive rate ptrackd says which --map-size would bring it back under. A
 * false positive costs one needless page copy: at 1% of a cluster's unchanged pages, a PTRACK backup
 * after a day that changed 1% of the pages copies twice what changed — as much again as the backup
 * itself, the point where a bigger map (some MB of memory and disk) plainly pays.
 */
export const FALSE_POSITIVE_HINT = 0.01;

/**
 * A block never marked reads as changed when both its slots are taken by other blocks: with a share
 * `fill` of entries in use, about fill².
 */
export const falsePositiveRate = (fill: number): number => fill * fill;

/**
 * The smallest map (MB) whose estimated false-positive rate stays under `target` once this map is
 * resized to it. B distinct blocks, two slots each, in N entries fill about 1 - e^(-2B/N) of them, so
 * the fill seen gives B; a resize carries B and also the blocks WAL named (`namedBlocks`, from the
 * catalog) that this map already reports by collision, fill² of the rest, since they cannot be told
 * apart. The size with fill sqrt(target) for those follows. Null when the map is full (B cannot be
 * told) or no size up to ptrack's ceiling is enough.
 */
export function mapSizeForFalsePositiveRate(
  fill: number,
  entries: number,
  target: number,
  namedBlocks = 0,
): number | null {
  if (fill >= 1) return null;
  const marked = (-entries * Math.log(1 - fill)) / 2;
  const blocks = marked + falsePositiveRate(fill) * Math.max(0, namedBlocks - marked);
  const needed = Math.ceil((-2 * blocks) / Math.log(1 - Math.sqrt(target)));
  const mb = Math.max(1, Math.ceil(fileSizeForEntries(needed) / 2 ** 20));
  return mb <= MAX_MAP_SIZE_MB ? mb : null;
}
