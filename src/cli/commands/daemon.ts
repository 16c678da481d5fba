import { readFileSync } from 'node:fs';
import type { Server } from 'node:net';
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import type pg from 'pg';
import type { Argv } from 'yargs';
import type { Upstream } from '../../pgwire/index.ts';
import type { QueryService } from '../../query/index.ts';
import { connectionFromArgs, withConnectionOptions } from '../connection-options.ts';
import { ExitError, UsageError } from '../errors.ts';
import type { DaemonOutput } from '../logging.ts';

/** `ptrackd --slot ptrack …`: follow the server, keep the map, answer queries until SIGTERM/SIGINT. */
export function daemonCommand(y: Argv): Argv {
  return y.command(
    '$0',
    'Follow a PostgreSQL server over a physical replication slot and keep its changed-block map',
    (c) =>
      withConnectionOptions(c)
        .option('slot', {
          alias: 'S',
          type: 'string',
          describe: 'physical replication slot to follow (created if missing)',
        })
        .option('data-dir', {
          type: 'string',
          describe: 'where the map and the catalog live (one daemon and one slot per directory)',
        })
        .option('pgdata', {
          type: 'string',
          describe: "the server's data directory, read-only (else the catalog lists files)",
        })
        .option('listen', {
          type: 'string',
          default: '127.0.0.1:7432',
          describe: 'address of the HTTP endpoint',
        })
        .option('restore-command', {
          type: 'string',
          describe:
            "the WAL archive, as PostgreSQL's restore_command (%f, %p, %r; run in --pgdata when given, as the server runs it): WAL the slot no longer holds is read from it instead of recording a gap",
        })
        .option('restore-timeout', {
          type: 'number',
          default: 60,
          describe: 'seconds the restore command may take for one file',
        })
        .option('init-from', {
          type: 'string',
          describe:
            'on first start (or with --reinit): start the map at this LSN in the past, reading the archive from it (needs --restore-command)',
        })
        .option('pg-listen', {
          type: 'string',
          describe:
            "address of a PostgreSQL-protocol endpoint (host:port): sessions are relayed to the server, and ptrack's functions (schema ptrack) answered by ptrackd, for pg_probackup -b PTRACK; off unless given",
        })
        .option('pg-upstream', {
          type: 'string',
          describe:
            "with --pg-listen: host:port of the server to relay to (default: the daemon's own --host/--port)",
        })
        .option('pg-ssl-cert', {
          type: 'string',
          describe:
            'with --pg-listen: a certificate (PEM) for clients that ask for TLS (else they are answered: no TLS)',
        })
        .option('pg-ssl-key', {
          type: 'string',
          describe: 'with --pg-listen: the key of --pg-ssl-cert (PEM)',
        })
        .option('map-size', {
          type: 'number',
          describe:
            'map size in MB (ptrack.map_size) for a new map; default: cluster size / 1024, at least 64',
        })
        .option('progress-interval', {
          type: 'number',
          default: 10,
          describe: 'seconds between progress lines while catching up (a bar on a terminal: at most 1)',
        })
        .option('reinit', {
          type: 'boolean',
          default: false,
          describe: 'start a new map even though one exists',
        })
        .option('checkpoint-interval', {
          type: 'number',
          default: 30,
          describe: 'seconds between map checkpoints',
        })
        .option('checkpoint-wal', {
          type: 'number',
          default: 256 * 1024 * 1024,
          describe: 'bytes of WAL between map checkpoints',
        })
        .option('checkpoint-log', {
          type: 'number',
          defaultDescription: 'a quarter of the map',
          describe:
            'MB of changed lines checkpoints append to ptrack.map.log before one writes the whole map again (0: every checkpoint writes the whole map)',
        })
        .option('ready-max-lag', {
          type: 'number',
          default: 16 * 1024 * 1024,
          describe: '/readyz fails beyond this lag in bytes',
        })
        .option('workers', {
          type: 'number',
          default: availableParallelism(),
          defaultDescription: 'the number of cores',
          describe: 'decoder worker threads',
        })
        .option('replication-timeout', {
          type: 'number',
          default: 60,
          describe:
            'seconds without any message from the server after which the connection is presumed lost and made again (as wal_receiver_timeout)',
        })
        .option('wait-for-server', {
          type: 'number',
          default: 0,
          describe:
            'seconds to keep retrying a server that refuses connections or is starting up (a sidecar that starts first); 0: fail at once',
        })
        .option('create-slot', {
          type: 'boolean',
          default: true,
          describe: 'create the slot when missing (--no-create-slot refuses)',
        })
        .check((a) => {
          // Checked here rather than by demandOption, so that a mistyped option is named first.
          const missing = ['slot', 'data-dir'].filter((k) => a[k] === undefined);
          if (missing.length) {
            throw new UsageError(`missing required option: ${missing.map((k) => `--${k}`).join(', ')}`);
          }
          if (!Number.isInteger(a.workers) || a.workers < 1 || a.workers > 256) {
            throw new UsageError(`--workers must be a whole number from 1 to 256, not ${a.workers}`);
          }
          for (const name of [
            'checkpoint-interval',
            'checkpoint-wal',
            'ready-max-lag',
            'progress-interval',
            'replication-timeout',
          ] as const) {
            if (!(a[name] > 0)) throw new UsageError(`--${name} must be a positive number, not ${a[name]}`);
          }
          const logMb = a['checkpoint-log'];
          if (logMb !== undefined && !(logMb >= 0 && Number.isFinite(logMb))) {
            throw new UsageError(`--checkpoint-log is in MB, 0 or more, not ${logMb}`);
          }
          if (!(a['wait-for-server'] >= 0)) {
            throw new UsageError(`--wait-for-server is in seconds, 0 or more, not ${a['wait-for-server']}`);
          }
          splitListen(a.listen);
          if (a['pg-listen'] !== undefined) splitListen(a['pg-listen'], '--pg-listen');
          if (a['init-from'] !== undefined && a['restore-command'] === undefined) {
            throw new UsageError('--init-from reads the WAL archive: it needs --restore-command');
          }
          if (!(a['restore-timeout'] > 0))
            throw new UsageError('--restore-timeout is in seconds, more than 0');
          if (a['pg-upstream'] !== undefined) splitListen(a['pg-upstream'], '--pg-upstream');
          if ((a['pg-ssl-cert'] === undefined) !== (a['pg-ssl-key'] === undefined)) {
            throw new UsageError('--pg-ssl-cert and --pg-ssl-key go together');
          }
          return true;
        }),
    async (a) => {
      // Imported when the daemon runs, not to start the other commands (or to print --help).
      const [
        { MAX_MAP_SIZE_MB },
        { ServerWalPosition },
        { Tracker },
        { QueryService },
        { parseLsn },
        { daemonOutput },
        { DaemonMetrics, serve },
      ] = await Promise.all([
        import('../../map/index.ts'),
        import('../../replication/index.ts'),
        import('../../tracker/index.ts'),
        import('../../query/index.ts'),
        import('../../wal/index.ts'),
        import('../logging.ts'),
        import('../server.ts'),
      ]);
      const size = a['map-size'];
      if (size !== undefined && (!Number.isInteger(size) || size < 1 || size > MAX_MAP_SIZE_MB)) {
        throw new UsageError(`--map-size is in MB, a whole number from 1 to ${MAX_MAP_SIZE_MB}, not ${size}`);
      }
      const [host, portText] = splitListen(a.listen);
      const { log, tty, progress } = daemonOutput();
      const connection = await connectionFromArgs(a);
      const tracker = new Tracker({
        dataDir: resolve(a['data-dir']!),
        slot: a.slot!,
        connection,
        mapSizeMb: a['map-size'],
        reinit: a.reinit,
        // A bar on a terminal moves every second; log lines keep to the interval.
        progressIntervalMs: Math.min(a['progress-interval'], tty ? 1 : Number.POSITIVE_INFINITY) * 1000,
        onProgress: progress,
        checkpointIntervalMs: a['checkpoint-interval'] * 1000,
        checkpointWalBytes: a['checkpoint-wal'],
        checkpointLogMb: a['checkpoint-log'],
        createSlot: a['create-slot'],
        restoreCommand: a['restore-command'],
        restoreTimeoutMs: a['restore-timeout'] * 1000,
        pgdata: a.pgdata ? resolve(a.pgdata) : undefined,
        initFrom: a['init-from'] === undefined ? undefined : parseLsn(a['init-from']),
        workers: a.workers,
        replicationTimeoutMs: a['replication-timeout'] * 1000,
        log: (level, message, fields) => log[level](fields ?? {}, message),
      });
      // Before anything listens: a second daemon on this directory is refused having done nothing.
      tracker.lockDataDir();
      // Listening first: a sidecar that starts before its server is alive (and not ready) meanwhile.
      const metrics = new DaemonMetrics(tracker);
      const queries = new QueryService({
        source: tracker,
        pgdata: a.pgdata ? resolve(a.pgdata) : undefined,
        serverPosition: new ServerWalPosition(connection),
        onAnswered: (seconds, outcome) => metrics.observeQuery(seconds, outcome),
      });
      const server = await serve(tracker, {
        host,
        port: portText,
        readyMaxLagBytes: a['ready-max-lag'],
        queries,
        metrics,
      }).catch((e: NodeJS.ErrnoException) => {
        tracker.releaseDataDir();
        void queries.close();
        throw new ExitError(`cannot listen on ${a.listen} (--listen): ${listenFailure(e)}`);
      });
      log.info(`listening on ${a.listen}`);
      const pgServer = a['pg-listen']
        ? await startPgEndpoint(a['pg-listen'], a['pg-upstream'], connection, queries, a, log).catch((e) => {
            server.close();
            tracker.releaseDataDir();
            void queries.close();
            throw e;
          })
        : undefined;
      if (pgServer) metrics.watchPgEndpoint(pgServer);
      let stopping = false;
      let shutdown: (why: string) => void = () => {};
      const stopped = new Promise<void>((done) => {
        shutdown = (why: string) => {
          if (stopping) return;
          stopping = true;
          log.info(`${why}: final checkpoint`);
          server.close();
          pgServer?.close();
          void queries.close();
          tracker.stop().then(done, (e) => {
            log.error(`shutdown failed: ${(e as Error).message}`);
            done();
          });
        };
        process.once('SIGTERM', () => shutdown('SIGTERM'));
        process.once('SIGINT', () => shutdown('SIGINT'));
      });
      const deadline = Date.now() + a['wait-for-server'] * 1000;
      for (let attempt = 0; !stopping; attempt++) {
        try {
          await tracker.start();
          break;
        } catch (e) {
          if (stopping) break;
          if (!(await serverUnavailable(e)) || Date.now() >= deadline) {
            server.close();
            pgServer?.close();
            void queries.close();
            throw e;
          }
          const delay = Math.min(5000, 250 * 2 ** attempt);
          log.warn(`the server is not available yet (${(e as Error).message}); retrying in ${delay} ms`);
          await new Promise((r) => setTimeout(r, delay));
        }
      }
      // A fault that waiting cannot mend ends following: stop as at SIGTERM, then exit saying what to do.
      const fault = await tracker.following.then(
        () => undefined,
        (e: Error) => e,
      );
      if (fault) shutdown('cannot go on');
      await stopped;
      if (fault) throw fault;
    },
  );
}

/** Refused, unreachable, or starting up: worth waiting for (--wait-for-server). Anything else is final. */
async function serverUnavailable(e: unknown): Promise<boolean> {
  const { ReplicationError } = await import('../../replication/index.ts');
  const code = e instanceof ReplicationError ? e.sqlState : (e as { code?: string })?.code;
  return [
    'ECONNREFUSED',
    'ECONNRESET',
    'ETIMEDOUT',
    'EHOSTUNREACH',
    'ENOTFOUND',
    'EAI_AGAIN',
    '57P03',
  ].includes(code ?? '');
}

/** The PostgreSQL-protocol endpoint (--pg-listen), relaying to the daemon's own server unless told another. */
async function startPgEndpoint(
  listen: string,
  upstreamOption: string | undefined,
  connection: pg.ClientConfig,
  queries: QueryService,
  a: { 'pg-ssl-cert'?: string; 'pg-ssl-key'?: string },
  log: DaemonOutput['log'],
): Promise<Server> {
  const [host, port] = splitListen(listen, '--pg-listen');
  const [upHost, upPort] = upstreamOption
    ? splitListen(upstreamOption, '--pg-upstream')
    : [
        connection.host ?? process.env.PGHOST ?? 'localhost',
        Number(connection.port ?? process.env.PGPORT ?? 5432),
      ];
  const tls = a['pg-ssl-cert']
    ? { cert: readFileSync(a['pg-ssl-cert']), key: readFileSync(a['pg-ssl-key']!) }
    : undefined;
  const { listenPgWire, loadStatementParser, WireAnswers } = await import('../../pgwire/index.ts');
  await loadStatementParser();
  const server = await listenPgWire({
    host,
    port,
    upstream: { host: upHost, port: upPort, ssl: connection.ssl as Upstream['ssl'] },
    schema: PTRACK_SCHEMA,
    answers: new WireAnswers({ queries, schema: PTRACK_SCHEMA, timeoutMs: 60_000 }),
    tls,
    log: (level, message) => log[level](message),
  }).catch((e: NodeJS.ErrnoException) => {
    throw new ExitError(`cannot listen on ${listen} (--pg-listen): ${listenFailure(e)}`);
  });
  log.info(
    `PostgreSQL-protocol endpoint on ${listen}, relaying to ${upHost}:${upPort}; ptrack's functions in schema ${PTRACK_SCHEMA}`,
  );
  return server;
}

/** The schema pg_probackup is told ptrack lives in; it sends ptrack's calls qualified with it. */
const PTRACK_SCHEMA = 'ptrack';

function listenFailure(e: NodeJS.ErrnoException): string {
  if (e.code === 'EADDRINUSE') return 'the address is already in use (another ptrackd?)';
  if (e.code === 'EACCES') return 'permission denied (a port below 1024?)';
  if (e.code === 'EADDRNOTAVAIL') return 'no interface of this machine has that address';
  return e.message;
}

function splitListen(listen: string, option = '--listen'): [string, number] {
  const m = /^(.*):(\d+)$/.exec(listen);
  if (!m) throw new UsageError(`${option} takes host:port, not "${listen}"`);
  return [m[1] || '127.0.0.1', Number(m[2])];
}
