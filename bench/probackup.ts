import { execFileSync, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { DaemonProcess } from '../test/helpers/daemon.ts';
import { REPO_ROOT } from '../test/helpers/fixtures.ts';
import { freePort, PgCluster } from '../test/helpers/pg-cluster.ts';
import { scratchDir } from '../test/helpers/scratch.ts';
import { median } from './catchup.ts';

const PG_PROBACKUP = join(REPO_ROOT, '../shared/tools/pg_probackup-15/pg_probackup');

export interface BackupRun {
  readonly mode: 'FULL' | 'DELTA' | 'PTRACK';
  readonly seconds: number;
  /** What pg_probackup made the kernel read from storage, readahead included (read_bytes; page cache dropped first when we may). */
  readonly readBytes: number;
  /** Everything it read through read(2): files, the WAL stream and its sockets (rchar). */
  readBytesAll: number;
  readonly dataBytes: number;
}

export interface ProbackupBench {
  readonly databaseMb: number;
  readonly changedPages: number;
  readonly totalPages: number;
  readonly runs: BackupRun[];
  readonly cacheDropped: boolean;
  /**
   * pgbench -S (TPS, latency in ms) straight to the server, through a bare Node.js TCP pipe (the least any
   * relay written in Node costs: one more hop through an event loop) and through ptrackd's port.
   */
  readonly relay: Record<RelayPath, { tps: number[]; latencyMs: number[] }>;
}

/**
 * pg_probackup -b PTRACK through ptrackd against -b DELTA (which reads every page to compare its LSN) and
 * -b FULL, each after the same changes to a pgbench database of about `scale` × 15 MB (scale 130 ≈ 2 GB),
 * each with the FULL backup as its parent (the others are deleted between runs). And what the relay
 * costs an ordinary session: pgbench -S straight to the server against through the port.
 */
export async function benchProbackup(
  scale: number,
  log: (s: string) => void,
): Promise<ProbackupBench | null> {
  try {
    readFileSync(PG_PROBACKUP);
  } catch {
    log(`pg_probackup benchmark skipped: ${PG_PROBACKUP} is missing`);
    return null;
  }
  const cluster = await PgCluster.start({
    settings: {
      wal_keep_size: "'16GB'",
      max_wal_size: "'8GB'",
      autovacuum: 'off',
      shared_buffers: "'256MB'",
    },
  });
  const pgPort = await freePort();
  let daemon: DaemonProcess | undefined;
  try {
    log(`loading pgbench scale ${scale}…`);
    await cluster.client('pgbench', ['-i', '-q', '-s', String(scale)]);
    await cluster.sql('VACUUM ANALYZE; CHECKPOINT');
    daemon = await DaemonProcess.start(cluster, join(scratchDir('ptrackd-bench-pb-'), 'data'), [
      '--pg-listen',
      `127.0.0.1:${pgPort}`,
      '--map-size',
      '64',
    ]);
    const backups = join(cluster.makeServerDir('backups'), 'catalog');
    const pgProbackup = cluster.serverUserProgram(PG_PROBACKUP);
    const probackup = (args: string[]) => runAsServerUser([pgProbackup, ...args], cluster.dir);
    await probackup(['init', '-B', backups]);
    await probackup(['add-instance', '-B', backups, '-D', cluster.dataDir, '--instance', 'bench']);
    const connect = ['--stream', '-h', '127.0.0.1', '-p', String(pgPort), '-U', 'postgres', '-d', 'postgres'];
    const cacheDropped = dropCaches();
    const backup = async (mode: BackupRun['mode']) => {
      await cluster.sql('CHECKPOINT');
      dropCaches();
      const r = await probackup(['backup', '-B', backups, '--instance', 'bench', '-b', mode, ...connect]);
      const id = /INFO: Backup (\w+) completed/.exec(r.output)?.[1];
      const shown = JSON.parse(
        (await probackup(['show', '-B', backups, '--instance', 'bench', '--format=json'])).stdout,
      );
      const entry = shown[0].backups.find((b: { id: string }) => b.id === id);
      if (entry['backup-mode'] !== mode) throw new Error(`asked for ${mode}, got ${entry['backup-mode']}`);
      const run: BackupRun = {
        mode,
        seconds: r.seconds,
        readBytes: r.readBytes,
        readBytesAll: r.rchar,
        dataBytes: entry['data-bytes'],
      };
      log(
        `  ${mode.padEnd(6)} ${r.seconds.toFixed(1).padStart(6)} s, read ${mb(run.readBytes)} MB from storage (${mb(run.readBytesAll)} MB in all), wrote ${mb(run.dataBytes)} MB of data`,
      );
      return { run, id: id as string };
    };
    const totalPages = Number(
      await cluster.sql("SELECT sum(relpages) FROM pg_class WHERE relkind IN ('r', 'i', 't', 'm')"),
    );
    const databaseMb = Number(await cluster.sql('SELECT pg_database_size(current_database()) / 1048576'));
    log(`FULL backup as the parent (${databaseMb} MB database)…`);
    await backup('FULL');
    const since = await cluster.sql('SELECT pg_current_wal_insert_lsn()');
    // About 1% of the pages: each transaction updates one random account row (its heap and index pages).
    await cluster.client('pgbench', ['-n', '-c', '2', '-t', String(Math.round(totalPages / 100 / 2 / 2))]);
    await cluster.sql('CHECKPOINT');
    const changedPages = Number(
      (
        await daemon.query(
          `SELECT sum(pagecount) FROM ptrack_get_pagemapset('${since}') WHERE path NOT LIKE '%_fsm'`,
        )
      ).rows[0][0],
    );
    log(
      `changed: ${changedPages} of ${totalPages} pages (${((100 * changedPages) / totalPages).toFixed(2)}%, as ptrackd reports them)`,
    );
    const runs: BackupRun[] = [];
    for (const mode of ['PTRACK', 'DELTA', 'FULL'] as const) {
      const { run, id } = await backup(mode);
      runs.push(run);
      await probackup(['delete', '-B', backups, '--instance', 'bench', '-i', id]); // the next one's parent is the FULL again
    }
    const pipe = await nodePipe(cluster.port);
    const ports: Record<RelayPath, number> = {
      direct: cluster.port,
      'node pipe': pipe.port,
      ptrackd: pgPort,
    };
    const relay = Object.fromEntries(
      Object.keys(ports).map((k) => [k, { tps: [] as number[], latencyMs: [] as number[] }]),
    ) as ProbackupBench['relay'];
    log(
      'pgbench -S -c 4 -j 2 -T 10: straight to the server, through a bare Node.js pipe, through ptrackd (order reversed each round):',
    );
    try {
      for (let round = 0; round < 3; round++) {
        const order = Object.keys(ports) as RelayPath[];
        for (const via of round % 2 === 0 ? order : order.reverse()) {
          const out = await cluster.client('pgbench', [
            '-n',
            '-S',
            '-c',
            '4',
            '-j',
            '2',
            '-T',
            '10',
            '-p',
            String(ports[via]),
          ]);
          const tps = Number(/tps = ([\d.]+)/.exec(out)?.[1]);
          const latency = Number(/latency average = ([\d.]+) ms/.exec(out)?.[1]);
          relay[via].tps.push(tps);
          relay[via].latencyMs.push(latency);
          log(`  ${via.padEnd(10)} ${tps.toFixed(0).padStart(7)} TPS, latency ${latency.toFixed(3)} ms`);
        }
      }
    } finally {
      pipe.server.close();
    }
    return { databaseMb, changedPages, totalPages, runs, cacheDropped, relay };
  } finally {
    await daemon?.stop('SIGTERM');
    await cluster.destroy();
  }
}

type RelayPath = 'direct' | 'node pipe' | 'ptrackd';

const mb = (n: number) => (n / 2 ** 20).toFixed(1);

/** Drops the kernel's page cache (root only), so that what a backup reads comes from storage. */
export function dropCaches(): boolean {
  try {
    execFileSync('sync'); // only clean pages can be dropped
    writeFileSync('/proc/sys/vm/drop_caches', '3');
    return true;
  } catch {
    return false;
  }
}

/**
 * Runs a program as the server's user (pg_probackup reads PGDATA) in `cwd`, returning its output, wall time and
 * the bytes it read: /proc/PID/io sampled until it exits (the last 20 ms may be missed).
 */
export interface ServerUserRun {
  readonly output: string;
  readonly stdout: string;
  readonly seconds: number;
  readonly readBytes: number;
  readonly rchar: number;
  /** Each line of stderr with when it arrived, in seconds from the start (pg_probackup logs there). */
  readonly lines: readonly { readonly at: number; readonly line: string }[];
}

export function runAsServerUser(argv: string[], cwd: string): Promise<ServerUserRun> {
  const asRoot = process.getuid?.() === 0;
  const ids = asRoot ? postgresIds() : {};
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(argv[0], argv.slice(1), {
      ...ids,
      env: { ...process.env, HOME: cwd },
      cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    let stdout = '';
    child.stdout.on('data', (b) => {
      output += b;
      stdout += b;
    });
    const lines: { at: number; line: string }[] = [];
    let partial = '';
    child.stderr.on('data', (b) => {
      output += b;
      const at = (performance.now() - started) / 1000;
      const parts = (partial + b).split('\n');
      partial = parts.pop()!;
      for (const line of parts) lines.push({ at, line });
    });
    let io = { readBytes: 0, rchar: 0 };
    const sample = setInterval(() => {
      try {
        const text = readFileSync(`/proc/${child.pid}/io`, 'utf8');
        io = {
          readBytes: Number(/read_bytes: (\d+)/.exec(text)?.[1]),
          rchar: Number(/rchar: (\d+)/.exec(text)?.[1]),
        };
      } catch {
        // gone, or not readable
      }
    }, 20);
    child.on('error', reject);
    child.on('close', (code) => {
      clearInterval(sample);
      if (code !== 0) return reject(new Error(`${argv.slice(0, 2).join(' ')} exited ${code}: ${output}`));
      resolve({ output, stdout, seconds: (performance.now() - started) / 1000, ...io, lines });
    });
  });
}

/** The yardstick relay: a bare TCP pipe in this Node.js process, no protocol at all. */
async function nodePipe(target: number): Promise<{ port: number; server: Server }> {
  const port = await freePort();
  const server = createServer((client) => {
    const upstream = connect(target, '127.0.0.1');
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    client.pipe(upstream);
    upstream.pipe(client);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return { port, server };
}

function postgresIds(): { uid: number; gid: number } {
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('postgres:'));
  if (!line) throw new Error('no postgres user');
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

if (import.meta.main) {
  const scale = Number(process.argv[2] ?? 130);
  const log = (s: string) => process.stdout.write(`${s}\n`);
  const r = await benchProbackup(scale, log);
  if (r) printProbackup(r, log);
}

export function printProbackup(r: ProbackupBench, log: (s: string) => void): void {
  const full = r.runs.find((x) => x.mode === 'FULL')!;
  log(
    `\npg_probackup on a ${r.databaseMb} MB database, ${r.changedPages} of ${r.totalPages} pages changed since the FULL parent${r.cacheDropped ? ' (page cache dropped before each backup)' : ' (page cache NOT dropped: not root)'}`,
  );
  log('  mode       seconds   vs FULL   from storage (readahead incl.)   through read(2)   data written');
  for (const x of r.runs) {
    log(
      `  ${x.mode.padEnd(8)} ${x.seconds.toFixed(1).padStart(8)} ${(x.seconds / full.seconds).toFixed(2).padStart(8)}x ${mb(x.readBytes).padStart(14)} MB = ${(x.readBytes / full.readBytes).toFixed(3)}x FULL ${mb(x.readBytesAll).padStart(12)} MB ${mb(x.dataBytes).padStart(12)} MB`,
    );
  }
  const direct = median(r.relay.direct.tps);
  log('  pgbench -S, median of 3 rounds:   TPS   vs direct   latency ms');
  for (const [via, x] of Object.entries(r.relay)) {
    log(
      `    ${via.padEnd(12)} ${median(x.tps).toFixed(0).padStart(10)} ${(median(x.tps) / direct).toFixed(3).padStart(9)}x ${median(x.latencyMs).toFixed(3).padStart(11)}`,
    );
  }
}
