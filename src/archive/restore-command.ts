import { spawn } from 'node:child_process';
import { relative } from 'node:path';

/** The archive could not be read as asked: a command that hung or crashed, or a file that is not what it should be. */
export class ArchiveError extends Error {
  override readonly name = 'ArchiveError';
  /** The WAL or history file it is about. */
  readonly file: string | undefined;
  /**
   * `missing`: the archive says it does not have the file (the command exited non-zero), so that WAL is
   * gone; `unusable`: the command hung or crashed, or the file is not what it should be, which may pass.
   */
  readonly kind: 'missing' | 'unusable';
  constructor(message: string, file?: string, kind: 'missing' | 'unusable' = 'unusable') {
    super(message);
    this.file = file;
    this.kind = kind;
  }
}

/** What ptrackd substitutes: names it made itself, so nothing a shell would read as syntax. */
const SAFE = /^[A-Za-z0-9._/-]+$/;

/**
 * PostgreSQL's restore_command, run as PostgreSQL runs it: through the shell, with %f (the file name),
 * %p (where to put it), %r (the oldest file still needed) and %% replaced, so any archiver works
 * unchanged (`cp /archive/%f "%p"`, `pg_probackup archive-get …`, `pgbackrest … archive-get %f "%p"`,
 * `wal-g wal-fetch %f %p`). An exit status other than 0 means "not in the archive"; a command still
 * running after the timeout is killed with its whole process group and is an error.
 */
export class RestoreCommand {
  readonly #template: string;
  readonly #timeoutMs: number;
  /** What the command last said on stderr when it exited non-zero, for the error that names the file. */
  lastRefusal = '';

  readonly #cwd: string | undefined;

  /**
   * `cwd`: where the command runs. PostgreSQL runs restore_command in its data directory, and some
   * archivers read it there (pg_probackup archive-get checks the cluster's pg_control).
   */
  constructor(template: string, options: { timeoutMs?: number; cwd?: string } = {}) {
    if (!/%f/.test(template) || !/%p/.test(template)) {
      throw new ArchiveError(
        `a restore command needs %f and %p (as restore_command does), not "${template}"`,
      );
    }
    this.#template = template;
    this.#timeoutMs = options.timeoutMs ?? 60_000;
    this.#cwd = options.cwd;
  }

  /** Fetches `file` to `target`; false when the archive does not have it. */
  async restore(file: string, target: string, oldestKept: string): Promise<boolean> {
    for (const value of [file, target, oldestKept]) {
      if (!SAFE.test(value))
        throw new ArchiveError(`refusing to pass "${value}" to the restore command`, file);
    }
    // Relative to where the command runs, as the server's "pg_wal/RECOVERYXLOG" is (archivers such as
    // pg_probackup join %p to their working directory).
    const path = this.#cwd === undefined ? target : relative(this.#cwd, target);
    const command = this.#template.replace(/%[fpr%]/g, (m) =>
      m === '%f' ? file : m === '%p' ? path : m === '%r' ? oldestKept : '%',
    );
    return new Promise((resolve, reject) => {
      const child = spawn('/bin/sh', ['-c', command], {
        detached: true,
        cwd: this.#cwd,
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (b) => {
        stderr = (stderr + b).slice(-1000);
      });
      const timer = setTimeout(() => {
        timedOut = true;
        try {
          process.kill(-child.pid!, 'SIGKILL');
        } catch {
          // already gone
        }
      }, this.#timeoutMs);
      let timedOut = false;
      child.on('error', (e) => {
        clearTimeout(timer);
        reject(new ArchiveError(`could not run the restore command for ${file}: ${e.message}`, file));
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        if (timedOut) {
          reject(
            new ArchiveError(
              `the restore command for ${file} did not finish within ${this.#timeoutMs / 1000} s`,
              file,
            ),
          );
        } else if (signal !== null) {
          reject(
            new ArchiveError(
              `the restore command for ${file} was killed by ${signal}: ${stderr.trim()}`,
              file,
            ),
          );
        } else {
          this.lastRefusal = code === 0 ? '' : stderr.trim().split('\n').slice(-4).join(' | ');
          resolve(code === 0);
        }
      });
    });
  }
}
