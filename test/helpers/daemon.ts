import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { formatLsn, type Lsn } from '../../src/wal/index.ts';
import { REPO_ROOT } from './fixtures.ts';
import { clusterPagesChangedSince, reportedBlocks } from './oracle.ts';
import { freePort, type PgCluster } from './pg-cluster.ts';

export interface QueryAnswer {
  readonly columns: string[];
  readonly rows: unknown[][];
  readonly appliedLsn: string;
}

/**
 * The arguments that make ptrackd follow `cluster` through `slot`, keeping its map in `dataDir`; `port`
 * when it must go through something else (a proxy) on the way.
 */
export function followArgs(cluster: PgCluster, slot: string, dataDir: string, port = cluster.port): string[] {
  return [
    '--slot',
    slot,
    '--data-dir',
    dataDir,
    '--host',
    '127.0.0.1',
    '--port',
    String(port),
    '--username',
    'postgres',
  ];
}

/** `ptrackd --slot …` run as a user runs it (bin/ptrackd), following a PgCluster, with its HTTP endpoint. */
export class DaemonProcess {
  readonly listen: number;
  readonly #child: ChildProcess;
  #output = '';

  private constructor(child: ChildProcess, listen: number) {
    this.#child = child;
    this.listen = listen;
    child.stdout!.on('data', (b) => (this.#output += b));
    child.stderr!.on('data', (b) => (this.#output += b));
  }

  /**
   * Starts the daemon and waits until /readyz says it is streaming and caught up (with `ready: false`,
   * only until it answers HTTP).
   */
  static async start(
    cluster: PgCluster,
    dataDir: string,
    extra: readonly string[] = [],
    options: {
      readonly slot?: string;
      readonly listen?: number;
      readonly serverPort?: number;
      readonly ready?: boolean;
      /** The role it connects as (default postgres). */
      readonly user?: string;
    } = {},
  ): Promise<DaemonProcess> {
    const port = options.listen ?? (await freePort());
    const args = followArgs(cluster, options.slot ?? 'ptrack', dataDir, options.serverPort);
    if (options.user) args[args.indexOf('--username') + 1] = options.user;
    args.push(
      '--pgdata',
      cluster.dataDir,
      '--listen',
      `127.0.0.1:${port}`,
      '--checkpoint-interval',
      '1',
      // a small map keeps the per-second checkpoints of the tests cheap, unless the test sizes it
      ...(extra.some((a) => a === '--map-size' || a === '--default-map-size') ? [] : ['--map-size', '8']),
      ...extra.filter((a) => a !== '--default-map-size'),
    );
    const daemon = new DaemonProcess(
      spawn(join(REPO_ROOT, 'bin/ptrackd'), args, { stdio: ['ignore', 'pipe', 'pipe'] }),
      port,
    );
    const wanted = options.ready === false ? (s: number) => s !== 0 : (s: number) => s === 200;
    await daemon.until(
      async () => wanted((await daemon.http('GET', '/readyz').catch(() => ({ status: 0 }))).status),
      options.ready === false ? 'answer HTTP' : 'become ready',
      30_000,
    );
    return daemon;
  }

  /** Waits for `condition`, failing with the daemon's output if it exits or `ms` pass first. */
  async until(condition: () => Promise<boolean>, what: string, ms = 60_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!(await condition())) {
      if (this.#child.exitCode !== null || Date.now() > deadline) {
        throw new Error(`ptrackd did not ${what}; its output:\n${this.#output}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Waits until the daemon has logged a line matching `pattern` (its log reaches the pipe when it does). */
  async untilLogged(pattern: RegExp, ms = 60_000): Promise<void> {
    await this.until(async () => pattern.test(this.#output), `log ${pattern}`, ms);
  }

  get output(): string {
    return this.#output;
  }

  get pid(): number {
    return this.#child.pid!;
  }

  async http(method: string, path: string, body?: unknown): Promise<{ status: number; text: string }> {
    const res = await fetch(`http://127.0.0.1:${this.listen}${path}`, {
      method,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, text: await res.text() };
  }

  /** Runs SQL through POST /query; waits for `waitLsn`, else for the server's position when asked. */
  async query(sql: string, waitLsn?: string): Promise<QueryAnswer> {
    const res = await this.http('POST', '/query', { sql, ...(waitLsn ? { waitLsn } : {}) });
    if (res.status !== 200) throw new Error(`query failed (${res.status}): ${res.text}`);
    return JSON.parse(res.text);
  }

  /** The blocks ptrack_get_pagemapset(since) reports, as `path block`, once WAL up to waitLsn is applied. */
  async changedBlocks(since: Lsn, waitLsn: string): Promise<Set<string>> {
    const { rows } = await this.query(
      `SELECT path, pagemap FROM ptrack_get_pagemapset('${formatLsn(since)}')`,
      waitLsn,
    );
    return reportedBlocks(
      (rows as [string, string][]).map(([path, hex]) => ({
        path,
        pagemap: Buffer.from(hex.slice(2), 'hex'),
      })),
    );
  }

  /**
   * The page-LSN oracle through this daemon: the pages of `cluster` whose LSN is >= `since` (checked
   * after a CHECKPOINT), and those of them pagemapset(since) did not report once `waitLsn` is applied.
   */
  async pagesMissed(
    cluster: PgCluster,
    since: Lsn,
    waitLsn: string,
  ): Promise<{ changed: number; missed: string[] }> {
    const expected = await clusterPagesChangedSince(cluster, since);
    const reported = await this.changedBlocks(since, waitLsn);
    return { changed: expected.size, missed: [...expected].filter((p) => !reported.has(p)) };
  }

  /** Resolves with the exit code once the daemon exits by itself; fails with its output after `ms`. */
  async exited(ms = 60_000): Promise<number | null> {
    await this.until(async () => false, 'exit', ms).catch((e) => {
      if (this.#child.exitCode === null) throw e;
    });
    return this.#child.exitCode;
  }

  /** Sends a signal and resolves with the exit code. */
  async stop(signal: NodeJS.Signals): Promise<number | null> {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return this.#child.exitCode;
    const exited = new Promise<number | null>((r) => this.#child.once('exit', (code) => r(code)));
    this.#child.kill(signal);
    return exited;
  }
}
