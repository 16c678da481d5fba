import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Argv } from 'yargs';
import { ExitError, UsageError } from '../errors.ts';
import { formatResult, type OutputFormat, type ResultSet, splitStatements } from '../format.ts';

const listenOption = {
  type: 'string',
  default: '127.0.0.1:7432',
  describe: 'where the daemon listens (its --listen)',
} as const;

/**
 * Calls the daemon's HTTP endpoint; a daemon that is not there is a clear error. node:http rather than
 * fetch, whose implementation costs a command ~30 ms to load.
 */
function call(
  listen: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; json: Record<string, unknown> }> {
  let url: URL;
  try {
    url = new URL(`http://${listen}${path}`);
  } catch {
    throw new UsageError(`--listen takes host:port, not "${listen}"`);
  }
  // Loaded when called, and as the plain module: `import` of node:http builds its whole namespace, WebSocket's
  // implementation included (~50 ms and 17 MB of a command that takes ~150 ms).
  const { request } = process.getBuiltinModule('node:http');
  return new Promise((resolveCall, rejectCall) => {
    const req = request(url, { method }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('error', rejectCall);
      res.on('end', () => {
        try {
          resolveCall({ status: res.statusCode ?? 0, json: JSON.parse(text) as Record<string, unknown> });
        } catch {
          rejectCall(
            new ExitError(`the daemon at ${listen} answered ${res.statusCode} with something not JSON`),
          );
        }
      });
    });
    req.on('error', () => {
      const offline =
        path === '/query' ? '; or answer from its last checkpoint with --offline --data-dir DIR' : '';
      rejectCall(
        new ExitError(
          `ptrackd is not running at ${listen} (start it with: ptrackd --slot NAME --data-dir DIR; another address: --listen)${offline}`,
        ),
      );
    });
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

/** Answers one statement; errors are ExitErrors with the one line to show. */
export type Answer = (sql: string) => Promise<ResultSet>;

function daemonAnswer(
  listen: string,
  wait: { waitLsn?: string; noWait: boolean; timeoutMs: number },
): Answer {
  return async (sql) => {
    const { status, json } = await call(listen, 'POST', '/query', { sql, ...wait });
    if (status !== 200) throw new ExitError(String(json.error ?? `the daemon answered ${status}`));
    if (wait.noWait)
      process.stderr.write(`NOTICE:  answered without waiting, at applied LSN ${json.appliedLsn}\n`);
    return json as unknown as ResultSet;
  };
}

/** The same engine over the last durable checkpoint in the data directory, read-only (daemon stopped). */
async function offlineAnswer(dataDir: string, pgdata: string | undefined): Promise<Answer> {
  // Imported here: SQLite, the map and the engine are the offline path's alone.
  const [{ Catalog }, { QueryEngine }, { readCheckpointedMap }, { formatLsn }] = await Promise.all([
    import('../../catalog/index.ts'),
    import('../../query/index.ts'),
    import('../../tracker/index.ts'),
    import('../../wal/index.ts'),
  ]);
  const catalog = Catalog.open(join(dataDir, 'catalog.db'), { readonly: true });
  const state = catalog.mapState();
  if (!state || state.checkpointLsn === null) throw new ExitError(`${dataDir} holds no map checkpoint yet`);
  const loaded = readCheckpointedMap(dataDir, state);
  const checkpointLsn = loaded.checkpointLsn;
  for (const repair of loaded.repairs) process.stderr.write(`WARNING:  ${repair}\n`);
  const engine = new QueryEngine({ map: loaded.map, catalog, pgdata, appliedLsn: () => checkpointLsn });
  process.stderr.write(
    `NOTICE:  offline: answers are valid up to the last checkpoint, ${formatLsn(checkpointLsn)}\n`,
  );
  return async (sql) => {
    try {
      return engine.query(sql);
    } catch (e) {
      throw new ExitError((e as Error).message);
    }
  };
}

/** `ptrackd sql`: SQL over ptrack's functions, answered by the daemon once it is fresh, or offline. */
export function sqlCommand(y: Argv): Argv {
  return y.command(
    'sql [statement]',
    "Run SQL over ptrack's functions (an interactive prompt when no SQL is given on a terminal)",
    (c) =>
      c
        .positional('statement', { type: 'string', describe: 'SQL to run (several separated by ;)' })
        .option('command', { alias: 'c', type: 'string', describe: 'SQL to run' })
        .option('file', { alias: 'f', type: 'string', describe: 'read SQL from a file' })
        .option('format', {
          choices: ['table', 'csv', 'tsv', 'json'] as const,
          default: 'table' as const,
          describe: 'output format',
        })
        .option('tuples-only', {
          alias: 't',
          type: 'boolean',
          default: false,
          describe: 'rows only: no header or footer',
        })
        .option('wait-lsn', {
          type: 'string',
          describe: 'answer once WAL up to this LSN is applied (a backup passes its start LSN)',
        })
        .option('wait', {
          type: 'boolean',
          default: true,
          describe: '--no-wait: answer at once (the applied LSN is shown on stderr)',
        })
        .option('timeout', { type: 'number', default: 60, describe: 'seconds to wait for freshness' })
        .option('offline', {
          type: 'boolean',
          default: false,
          describe: "answer from --data-dir's last checkpoint, the daemon stopped",
        })
        .option('data-dir', {
          type: 'string',
          describe: 'with --offline: the daemon’s data directory',
        })
        .option('pgdata', {
          type: 'string',
          describe: "with --offline: the server's data directory (else the catalog lists files)",
        })
        .option('listen', listenOption)
        .check((a) => {
          if (a.offline && a['data-dir'] === undefined) throw new UsageError('--offline needs --data-dir');
          if (!(a.timeout > 0))
            throw new UsageError(`--timeout is in seconds, more than 0, not ${a.timeout}`);
          return true;
        }),
    async (a) => {
      if (a['wait-lsn'] !== undefined) (await import('../../wal/index.ts')).parseLsn(a['wait-lsn']);
      const answer = a.offline
        ? await offlineAnswer(resolve(a['data-dir']!), a.pgdata ? resolve(a.pgdata) : undefined)
        : daemonAnswer(a.listen, {
            ...(a['wait-lsn'] ? { waitLsn: a['wait-lsn'] } : {}),
            noWait: !a.wait,
            timeoutMs: a.timeout * 1000,
          });
      const format = a.format as OutputFormat;
      const script =
        a.command ??
        a.statement ??
        (a.file ? readFileSync(a.file, 'utf8') : process.stdin.isTTY ? undefined : readFileSync(0, 'utf8'));
      if (script === undefined) {
        const { interactive } = await import('../prompt.ts');
        await interactive(answer, {
          format,
          tuplesOnly: a['tuples-only'],
          historyFile: join(homedir(), '.ptrackd_history'),
        });
        return;
      }
      for (const sql of splitStatements(script))
        process.stdout.write(formatResult(await answer(sql), format, a['tuples-only']));
    },
  );
}

/** `ptrackd status`: how the daemon stands; exit 0 when streaming within --max-lag. */
export function statusCommand(y: Argv): Argv {
  return y.command(
    'status',
    'Show what the running daemon follows and how far it is',
    (c) =>
      c
        .option('format', {
          choices: ['text', 'json'] as const,
          default: 'text' as const,
          describe: 'output format',
        })
        .option('max-lag', {
          type: 'number',
          default: 16 * 1024 * 1024,
          describe: 'bytes of lag beyond which the exit code is 1',
        })
        .option('listen', listenOption),
    async (a) => {
      const { json } = await call(a.listen, 'GET', '/status');
      if (a.format === 'json') process.stdout.write(`${JSON.stringify(json, null, 2)}\n`);
      else {
        const server = json.server as { systemId: string; version: number; timeline: number } | null;
        const lines = [
          [
            'server',
            server
              ? `system ${server.systemId}, server_version_num ${server.version}, timeline ${server.timeline}`
              : 'not connected',
          ],
          [
            'streaming',
            json.streaming
              ? 'yes'
              : `no, retrying for ${Math.floor(Number(json.problemSeconds))} s (since ${json.problemSince}): ${json.problem ?? 'not connected'}`,
          ],
          ['init LSN', json.initLsn],
          ['applied LSN', json.appliedLsn],
          ['checkpoint LSN', `${json.checkpointLsn} (the slot's flush position)`],
          ['server LSN', json.serverLsn],
          ['slot', `${json.slot}, holding back ${json.retainedWalBytes} bytes of WAL on the server`],
          ['lag', `${json.lagBytes} bytes, ${Number(json.lagSeconds).toFixed(1)} s`],
          [
            'map size',
            `${json.mapSizeMb} MB${json.suggestedMapSizeMb == null ? '' : ` (ptrack's guidance for this cluster: ${json.suggestedMapSizeMb} MB)`}`,
          ],
          [
            'map fill',
            `${(Number(json.mapFill) * 100).toFixed(2)}% (estimated false positives ${(Number(json.estFalsePositiveRate) * 100).toFixed(4)}%)`,
          ],
          ...(json.mapHint ? [['hint', String(json.mapHint)]] : []),
          ['reconnects', String(json.reconnects)],
          [
            'last gap',
            json.lastGap
              ? `${(json.lastGap as { at: string }).at}: ${(json.lastGap as { reason: string }).reason}`
              : 'none',
          ],
        ];
        for (const [k, v] of lines) process.stdout.write(`${String(k).padEnd(16)}${v}\n`);
      }
      if (!json.streaming)
        throw new ExitError(`not ready: not streaming (${json.problem ?? 'not connected'})`);
      if (Number(json.lagBytes) > a['max-lag']) {
        throw new ExitError(
          `not ready: ${json.lagBytes} bytes behind the server (--max-lag ${a['max-lag']})`,
        );
      }
    },
  );
}
