/**
 * The ptrack 2.4 map file (format version 220), little-endian; the live map uses the same layout in a
 * SharedArrayBuffer, minus the trailing CRC:
 *
 *   0..3   magic "ptk\0"
 *   4..7   uint32 version_num = 220
 *   8..15  uint64 init_lsn
 *   16..   N uint64 entries (LSNs)
 *   last 4 uint32 CRC-32C of everything before it (file only)
 */
export const MAP_MAGIC = Uint8Array.of(0x70, 0x74, 0x6b, 0x00);
export const MAP_VERSION = 220;
export const HEADER_SIZE = 16;
export const INIT_LSN_OFFSET = 8;
export const FILE_CRC_SIZE = 4;
/** ptrack's ceiling for ptrack.map_size (32 GB), which also keeps N below 2^32. */
export const MAX_MAP_SIZE_MB = 32 * 1024;

/** N = (MB * 2^20 - 16 - 4) / 8, as ptrack sizes its map (ptrack-compat.md §3). */
export function entriesForMapSize(mapSizeMb: number): number {
  if (!Number.isInteger(mapSizeMb) || mapSizeMb < 1 || mapSizeMb > MAX_MAP_SIZE_MB) {
    throw new RangeError(
      `map size must be a whole number of MB from 1 to ${MAX_MAP_SIZE_MB}, got ${mapSizeMb}`,
    );
  }
  return Math.floor((mapSizeMb * 2 ** 20 - HEADER_SIZE - FILE_CRC_SIZE) / 8);
}

export function fileSizeForEntries(entries: number): number {
  return HEADER_SIZE + entries * 8 + FILE_CRC_SIZE;
}
