import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';

const LOCK_FILE = 'ptrackd.lock';
const PID_FILE = 'ptrackd.pid';

/** Another process holds the data directory: nothing may be written to it. */
export class DataDirInUseError extends Error {
  override readonly name = 'DataDirInUseError';
  readonly dataDir: string;
  readonly pid: number | null;
  constructor(dataDir: string, pid: number | null) {
    super(`data directory ${dataDir} is in use by ptrackd (pid ${pid ?? 'unknown'})`);
    this.dataDir = dataDir;
    this.pid = pid;
  }
}

/**
 * One process at a time owns a data directory: the daemon for its whole life, `drop` while it works.
 * The lock is an exclusive SQLite transaction held open on a file of its own, i.e. a POSIX record lock
 * that the kernel drops when the process dies, so a kill -9 never leaves a stale lock for a human to
 * clear. The pid file beside it only names the holder in the refusal; it is not the lock.
 */
export class DataDirLock {
  readonly #db: Database.Database;
  readonly #dataDir: string;

  private constructor(db: Database.Database, dataDir: string) {
    this.#db = db;
    this.#dataDir = dataDir;
  }

  /** Takes the lock (creating the directory), or throws DataDirInUseError without writing anything. */
  static acquire(dataDir: string): DataDirLock {
    mkdirSync(dataDir, { recursive: true });
    const db = new Database(join(dataDir, LOCK_FILE), { timeout: 0 });
    try {
      db.pragma('journal_mode = DELETE');
      db.exec('CREATE TABLE IF NOT EXISTS lock (held INTEGER)');
      db.exec('BEGIN EXCLUSIVE');
    } catch (e) {
      db.close();
      if ((e as { code?: string }).code === 'SQLITE_BUSY')
        throw new DataDirInUseError(dataDir, holder(dataDir));
      throw e;
    }
    writeFileSync(join(dataDir, PID_FILE), `${process.pid}\n`);
    return new DataDirLock(db, dataDir);
  }

  release(): void {
    if (!this.#db.open) return;
    rmSync(join(this.#dataDir, PID_FILE), { force: true });
    this.#db.close();
  }
}

function holder(dataDir: string): number | null {
  try {
    const pid = Number.parseInt(readFileSync(join(dataDir, PID_FILE), 'utf8'), 10);
    return Number.isInteger(pid) ? pid : null;
  } catch {
    return null;
  }
}
