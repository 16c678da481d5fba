import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';

/**
 * A throwaway PostgreSQL cluster for tests: initdb into a temp dir, a free port on 127.0.0.1, no Unix
 * socket. initdb refuses root, so when the tests run as root every server command runs as `postgres`.
 * `destroy()` stops and removes it; a process exit does the same for any cluster a failed test left.
 */

/**
 * The servers the live tests run: Debian's 15, stock 13 and 18 from ../shared/pg's tarballs, and
 * '15-ptrack', PostgreSQL 15.18 with ptrack's core patch and the ptrack 2.4 extension (the same tarballs).
 */
export type Major = 13 | 15 | 18 | '15-ptrack';

const REPO = join(import.meta.dirname, '../..');

/**
 * Where a major's binaries are, unpacking its tarball from ../shared/pg into .tools/pg (git ignores it)
 * the first time; null, with the reason, when they cannot be had (a public clone has no
 * ../shared): the caller skips, saying so.
 */
export function pgBinDirFor(major: Major): { bindir: string } | { missing: string } {
  if (major === 15) return { bindir: pgBinDir() };
  const root = join(REPO, '.tools/pg');
  const bindir = join(root, String(major), 'bin');
  if (existsSync(join(bindir, 'initdb'))) return { bindir };
  const tarball = join(REPO, `../shared/pg/postgresql-${major}.tar.xz`);
  if (!existsSync(tarball))
    return { missing: `PostgreSQL ${major}: ${tarball} is missing (it comes with ../shared)` };
  // Unpacked beside, then renamed into place: test files in parallel may race here.
  mkdirSync(root, { recursive: true });
  const scratch = mkdtempSync(join(root, `unpack-${major}-`));
  try {
    execFileSync('tar', ['-xJf', tarball, '-C', scratch]);
    try {
      renameSync(join(scratch, String(major)), join(root, String(major)));
    } catch (e) {
      if (!existsSync(join(bindir, 'initdb'))) throw e; // another process put it there first
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  return { bindir };
}

/**
 * Whether the server's user can run programs from `bindir`: a clone in a directory only root may enter
 * (mktemp -d) holds binaries that postgres cannot reach.
 */
function serverUserCanRun(bindir: string): boolean {
  return serverUserCanExecute(join(bindir, 'postgres'));
}

function serverUserCanExecute(program: string): boolean {
  if (!asRoot || program.startsWith('/usr/')) return true;
  try {
    execFileSync(RUNUSER, ['-u', 'postgres', '--', 'test', '-x', program]);
    return true;
  } catch {
    return false;
  }
}

/** A copy of a major's install (bin, lib, share) inside a cluster's own directory, removed with it. */
function copyBinaries(bindir: string, clusterDir: string): string {
  const install = join(clusterDir, 'install');
  execFileSync('cp', ['-a', join(bindir, '..'), install]);
  return join(install, 'bin');
}

export function pgBinDir(): string {
  if (process.env.PG_BINDIR) return process.env.PG_BINDIR;
  const root = '/usr/lib/postgresql';
  if (existsSync(join(root, '15/bin/initdb'))) return join(root, '15/bin');
  const versions = existsSync(root)
    ? readdirSync(root).filter((v) => existsSync(join(root, v, 'bin/initdb')))
    : [];
  if (versions.length > 0) return join(root, versions.sort((a, b) => Number(b) - Number(a))[0], 'bin');
  throw new Error('PostgreSQL binaries not found: install postgresql-15 or set PG_BINDIR');
}

const asRoot = process.getuid?.() === 0;
const DUMP_ARGS = ['--no-unlogged-table-data', '--no-role-passwords'];
/** pg_dump 15.14+'s \\restrict lines carry a random key: not data. */
const DUMP_NOISE = /^\\(un)?restrict \S+$/gm;
/** runuser lives in /usr/sbin, which a minimal PATH (cron, CI) may lack. */
const RUNUSER =
  ['/usr/sbin/runuser', '/sbin/runuser', '/usr/bin/runuser'].find((p) => existsSync(p)) ?? 'runuser';
const live = new Set<PgCluster>();
process.on('exit', () => {
  for (const c of live) c.destroySync();
});

export interface ClusterOptions {
  /** postgresql.conf settings on top of the defaults below. */
  readonly settings?: Record<string, string | number>;
  readonly initdbArgs?: readonly string[];
  /** Listen on this port (to stand in for another server at the same address) instead of a free one. */
  readonly port?: number;
  /** The server's major version (default 15, Debian's); see pgBinDirFor. */
  readonly major?: Major;
}

export class PgCluster {
  readonly dir: string;
  readonly dataDir: string;
  readonly bindir: string;
  port = 0;
  #running = false;

  private constructor(dir: string, bindir = pgBinDir()) {
    this.dir = dir;
    this.dataDir = join(dir, 'data');
    this.bindir = bindir;
  }

  /**
   * Starts a server on a data directory made elsewhere (a restored backup) at `dir`/data, on a free
   * port, with the binaries in `bindir` (those of the server it came from); the directory is handed to
   * the server's user and removed by destroy().
   */
  static async startExisting(dir: string, bindir = pgBinDir()): Promise<PgCluster> {
    const cluster = new PgCluster(dir, bindir);
    live.add(cluster);
    if (asRoot) execFileSync('chown', ['-R', 'postgres:postgres', dir]);
    execFileSync('chmod', ['700', cluster.dataDir]);
    cluster.port = await freePort();
    const conf = join(cluster.dataDir, 'postgresql.auto.conf');
    writeFileSync(conf, `${readFileSync(conf, 'utf8')}\nport = ${cluster.port}\n`);
    cluster.#startServer(120);
    cluster.#running = true;
    return cluster;
  }

  static async start(options: ClusterOptions = {}): Promise<PgCluster> {
    const binaries = pgBinDirFor(options.major ?? 15);
    if ('missing' in binaries) throw new Error(binaries.missing);
    const dir = mkdtempSync(join(tmpdir(), 'ptrackd-pg-'));
    const cluster = new PgCluster(
      dir,
      serverUserCanRun(binaries.bindir) ? binaries.bindir : copyBinaries(binaries.bindir, dir),
    );
    live.add(cluster);
    cluster.#ownByServerUser(dir);
    cluster.run('initdb', [
      '-D',
      cluster.dataDir,
      '-U',
      'postgres',
      '-A',
      'trust',
      '-E',
      'UTF8',
      '--locale=C',
      '--no-sync',
      ...(options.initdbArgs ?? []),
    ]);
    for (let attempt = 1; ; attempt++) {
      cluster.port = options.port ?? (await freePort());
      const settings: Record<string, string | number> = {
        listen_addresses: "'127.0.0.1'",
        port: cluster.port,
        unix_socket_directories: "''",
        wal_level: 'replica',
        max_wal_senders: 5,
        max_replication_slots: 5,
        max_prepared_transactions: 5,
        fsync: 'off',
        shared_buffers: "'64MB'",
        ...options.settings,
      };
      const conf = Object.entries(settings)
        .map(([k, v]) => `${k} = ${v}`)
        .join('\n');
      writeFileSync(join(cluster.dataDir, 'postgresql.auto.conf'), `${conf}\n`);
      cluster.#ownByServerUser(join(cluster.dataDir, 'postgresql.auto.conf'));
      try {
        cluster.#startServer(60);
        cluster.#running = true;
        return cluster;
      } catch (e) {
        if (attempt >= 3 || options.port !== undefined) {
          cluster.destroySync();
          throw e;
        }
      }
    }
  }

  /** A connection string for client programs and libraries. */
  get connectionString(): string {
    return `postgresql://postgres@127.0.0.1:${this.port}/postgres`;
  }

  get walDir(): string {
    return join(this.dataDir, 'pg_wal');
  }

  /** Runs a server-side program (initdb, pg_ctl, …) from the PostgreSQL bin dir as the server's user. */
  run(program: string, args: readonly string[]): string {
    const bin = join(this.bindir, program);
    const [cmd, argv] = asRoot ? [RUNUSER, ['-u', 'postgres', '--', bin, ...args]] : [bin, [...args]];
    return execFileSync(cmd, argv, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], cwd: this.dir });
  }

  /** Runs a client program (psql, pgbench, pg_waldump, …) against this cluster; returns stdout. */
  async client(program: string, args: readonly string[], options: { input?: string } = {}): Promise<string> {
    const env = {
      ...process.env,
      PGHOST: '127.0.0.1',
      PGPORT: String(this.port),
      PGUSER: 'postgres',
      PGDATABASE: 'postgres',
    };
    return new Promise((resolve, reject) => {
      const child = spawn(join(this.bindir, program), args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout.on('data', (b) => out.push(b));
      child.stderr.on('data', (b) => err.push(b));
      child.on('error', reject);
      child.stdin.on('error', () => {}); // a program that exits without reading its input
      child.on('close', (code) => {
        if (code === 0) resolve(Buffer.concat(out).toString('utf8'));
        else
          reject(
            new Error(`${program} ${args.join(' ')} exited ${code}: ${Buffer.concat(err).toString('utf8')}`),
          );
      });
      child.stdin.end(options.input ?? '');
    });
  }

  /** Runs SQL through psql (stops at the first error) and returns unaligned, tuples-only output. */
  async sql(sql: string, database = 'postgres'): Promise<string> {
    const out = await this.client('psql', ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-d', database], {
      input: sql,
    });
    return out.trim();
  }

  /** pg_dumpall of everything logged, to compare clusters (pg_dump 15.14+'s random \\restrict keys are not data). */
  async dumpAll(): Promise<string> {
    const dump = await this.client('pg_dumpall', DUMP_ARGS);
    return dump.replace(DUMP_NOISE, '');
  }

  /**
   * SHA-256 of what dumpAll() returns, hashed as pg_dumpall streams it: equal digests, equal dumps, for
   * clusters whose dump is larger than a string may hold.
   */
  async dumpDigest(): Promise<string> {
    const env = { ...process.env, PGHOST: '127.0.0.1', PGPORT: String(this.port), PGUSER: 'postgres' };
    const child = spawn(join(this.bindir, 'pg_dumpall'), DUMP_ARGS, {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const hash = createHash('sha256');
    let partial = '';
    const lines = (text: string) => hash.update(text.replace(DUMP_NOISE, ''));
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (text: string) => {
      const cut = (partial + text).lastIndexOf('\n') + 1;
      lines((partial + text).slice(0, cut));
      partial = (partial + text).slice(cut);
    });
    let stderr = '';
    child.stderr.on('data', (b) => (stderr += b));
    const code = await new Promise<number | null>((resolve, reject) => {
      child.on('error', reject);
      child.on('close', resolve);
    });
    if (code !== 0) throw new Error(`pg_dumpall exited ${code}: ${stderr}`);
    lines(partial);
    return hash.digest('hex');
  }

  /** pg_amcheck over every database (heap and B-tree checks); fails on any corruption it reports. */
  async amcheck(): Promise<void> {
    await this.client('pg_amcheck', ['--all', '--install-missing']);
  }

  /**
   * `program` where the server's user can run it: as it is, or copied into this cluster's directory when
   * the path to it is closed to that user (a checkout in a directory only root may enter).
   */
  serverUserProgram(program: string): string {
    if (serverUserCanExecute(program)) return program;
    const copy = join(this.dir, basename(program));
    copyFileSync(program, copy);
    chmodSync(copy, 0o755);
    return copy;
  }

  /** A directory the server may write into (for tablespaces). */
  makeServerDir(name: string): string {
    const path = join(this.dir, name);
    mkdirSync(path);
    this.#ownByServerUser(path);
    return path;
  }

  async stop(mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
    if (!this.#running) return;
    this.run('pg_ctl', ['-D', this.dataDir, '-m', mode, '-w', 'stop']);
    this.#running = false;
  }

  /** Starts again a server that stop() stopped. */
  async startAgain(): Promise<void> {
    if (this.#running) return;
    this.#startServer(60);
    this.#running = true;
  }

  async destroy(): Promise<void> {
    this.destroySync();
  }

  destroySync(): void {
    if (this.#running) {
      const bin = join(this.bindir, 'pg_ctl');
      const args = ['-D', this.dataDir, '-m', 'immediate', '-w', 'stop'];
      spawnSync(asRoot ? RUNUSER : bin, asRoot ? ['-u', 'postgres', '--', bin, ...args] : args, {
        stdio: 'ignore',
      });
      this.#running = false;
    }
    rmSync(this.dir, { recursive: true, force: true });
    live.delete(this);
  }

  /** pg_ctl start; a server that will not start is an error carrying the end of its log. */
  #startServer(timeoutSeconds: number): void {
    const log = join(this.dir, 'server.log');
    try {
      this.run('pg_ctl', ['-D', this.dataDir, '-l', log, '-w', '-t', String(timeoutSeconds), 'start']);
    } catch (e) {
      const tail = existsSync(log)
        ? readFileSync(log, 'utf8').split('\n').slice(-15).join('\n')
        : '(no server log)';
      throw new Error(`the server would not start on ${this.dataDir}: ${(e as Error).message}\n${tail}`);
    }
  }

  #ownByServerUser(path: string): void {
    if (!asRoot) return;
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }));
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }));
    chownSync(path, uid, gid);
  }
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}
