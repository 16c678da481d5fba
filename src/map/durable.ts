import { closeSync, fsyncSync, openSync, renameSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

/**
 * Writes `pieces` in order to `path` (created or truncated) and fsyncs it. A file that replaces another
 * is written under a temporary name and then renamed over it (replaceDurably), as ptrack does with
 * ptrack.map.tmp, so that a crash leaves the old file or the new one. Each piece is written before the
 * next is asked for, so a producer may reuse its buffer.
 */
export function writeFileDurably(path: string, pieces: Iterable<Uint8Array>): void {
  const fd = openSync(path, 'w', 0o600);
  try {
    for (const bytes of pieces) {
      let at = 0;
      while (at < bytes.length) at += writeSync(fd, bytes, at, bytes.length - at);
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Renames `from` over `to` and fsyncs their directory, so that the rename survives a power loss. */
export function replaceDurably(from: string, to: string): void {
  renameSync(from, to);
  const dir = openSync(dirname(to), 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}
