import { closeSync, fsyncSync, openSync, renameSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

/**
 * Writes `pieces` in order to `path` so that a crash leaves either the old file or the new one: a temp
 * file, fsync, rename over the target, fsync of the directory (what ptrack does with ptrack.map.tmp).
 * Each piece is written before the next is asked for, so a producer may reuse its buffer.
 */
export function writeFileDurably(path: string, pieces: Iterable<Uint8Array>): void {
  const tmp = `${path}.tmp`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    for (const bytes of pieces) {
      let at = 0;
      while (at < bytes.length) at += writeSync(fd, bytes, at, bytes.length - at);
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  const dir = openSync(dirname(path), 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}
