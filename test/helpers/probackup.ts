import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { REPO_ROOT } from './fixtures.ts';
import { PgCluster } from './pg-cluster.ts';

/** Unmodified pg_probackup 2.5.15 for Debian's PostgreSQL 15, as this repository's checkouts have it. */
const SHARED_PG_PROBACKUP = join(REPO_ROOT, '../shared/tools/pg_probackup-15/pg_probackup');

/** What findPgProbackup looks for, for a line saying what is missing. */
export const PG_PROBACKUP_WANTED = `pg_probackup for PostgreSQL 15 (pg_probackup-15 or pg_probackup on PATH, or ${SHARED_PG_PROBACKUP}, which comes with ../shared)`;

/** pg_probackup for PostgreSQL 15: on PATH (Debian's pg-probackup-15 names it pg_probackup-15), else ../shared's; null: none. */
export function findPgProbackup(): string | null {
  for (const dir of (process.env.PATH ?? '').split(delimiter).filter(Boolean)) {
    for (const name of ['pg_probackup-15', 'pg_probackup']) {
      if (existsSync(join(dir, name))) return join(dir, name);
    }
  }
  return existsSync(SHARED_PG_PROBACKUP) ? SHARED_PG_PROBACKUP : null;
}

export interface ShownBackup {
  id: string;
  'backup-mode': string;
  status: string;
  'data-bytes': number;
  'parent-backup-id'?: string;
  'start-lsn': string;
}

/**
 * pg_probackup run as the server's user against `source`, with the backup catalog `backups` and one
 * instance, pg15; each backup remembers the source's pg_dumpall at its end, to compare restores with.
 */
export function pgProbackupFor(pgProbackup: string, source: PgCluster, backups: () => string) {
  const program = source.serverUserProgram(pgProbackup); // where the server's user can run it
  const asServerUser = (args: string[]) =>
    process.getuid?.() === 0
      ? (['/usr/sbin/runuser', ['-u', 'postgres', '--', program, ...args]] as const)
      : ([program, args] as const);
  const dumps = new Map<string, string>();
  const restored: PgCluster[] = [];
  /** pg_probackup's stdout and stderr, run from the backup catalog's directory (the server's user's). */
  const output = (args: string[]) =>
    new Promise<{ stdout: string; stderr: string }>((resolve, reject) => {
      const [cmd, argv] = asServerUser(args);
      execFile(
        cmd,
        [...argv],
        { encoding: 'utf8', maxBuffer: 64 << 20, cwd: source.dir },
        (e, stdout, stderr) =>
          e ? reject(new Error(`pg_probackup ${args[0]} failed: ${stderr}`)) : resolve({ stdout, stderr }),
      );
    });
  const run = async (...args: string[]) => {
    const { stdout, stderr } = await output(args);
    return stdout + stderr;
  };
  const instance = () => ['-B', backups(), '--instance', 'pg15'];
  return {
    program,
    dumps,
    run,
    /** Sets up the catalog and the instance. */
    async init() {
      await run('init', '-B', backups());
      await run('add-instance', '-B', backups(), '-D', source.dataDir, '--instance', 'pg15');
    },
    /** A backup taken through `port` (ptrackd's PostgreSQL-protocol port for PTRACK); its ID. */
    async backup(mode: 'FULL' | 'PTRACK', port: number) {
      const connect = ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', 'postgres'];
      const out = await run('backup', ...instance(), '-b', mode, '--stream', ...connect);
      const id = /INFO: Backup (\w+) completed/.exec(out)?.[1];
      if (!id) throw new Error(`no backup ID in:\n${out}`);
      dumps.set(id, await source.dumpDigest());
      return id;
    },
    async show(): Promise<ShownBackup[]> {
      return JSON.parse((await output(['show', ...instance(), '--format=json'])).stdout)[0].backups;
    },
    async restore(id: string) {
      const root = source.makeServerDir(`restore-${id}`);
      await run('restore', ...instance(), '-i', id, '-D', join(root, 'data'));
      const cluster = await PgCluster.startExisting(root, source.bindir);
      restored.push(cluster);
      return cluster;
    },
    /** Restores `id`, which must equal the source at that backup's end and pass pg_amcheck (else throws). */
    async restoresIdentical(id: string) {
      const cluster = await this.restore(id);
      if ((await cluster.dumpDigest()) !== dumps.get(id))
        throw new Error(`backup ${id} restored differs from the source at its end (pg_dumpall)`);
      await cluster.amcheck();
      await cluster.destroy();
    },
    async destroy() {
      for (const c of restored) await c.destroy();
    },
  };
}
