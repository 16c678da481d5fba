import { closeSync, fsyncSync, openSync, readSync, renameSync, writeSync } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
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

/**
 * writeFileDurably without blocking the event loop: the writes and the fsync run on libuv's threads,
 * the pieces are made between them on the caller's.
 */
export async function writeFileDurablyAsync(path: string, pieces: Iterable<Uint8Array>): Promise<void> {
  const file = await open(path, 'w', 0o600);
  try {
    for (const bytes of pieces) await writeAll(file, bytes, null);
    await file.sync();
  } finally {
    await file.close();
  }
}

/** Writes all of `bytes` at `position` (null: where the file's offset is), however many writes it takes. */
export async function writeAll(file: FileHandle, bytes: Uint8Array, position: number | null): Promise<void> {
  for (let done = 0; done < bytes.length; ) {
    const at = position === null ? null : position + done;
    done += (await file.write(bytes, done, bytes.length - done, at)).bytesWritten;
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

/** Reads the file's bytes at `position` into all of `into`; a file that ends first is an error naming where. */
export function readAt(fd: number, into: Uint8Array, position: number): void {
  for (let done = 0; done < into.length; ) {
    const n = readSync(fd, into, done, into.length - done, position + done);
    if (n === 0) throw new Error(`the file ended at byte ${position + done} while being read`);
    done += n;
  }
}
