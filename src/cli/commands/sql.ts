import { readFileSync } from 'node:fs';
import type { Argv } from 'yargs';
import { parseLsn } from '../../wal/index.ts';
import { ExitError } from '../errors.ts';
import { formatResult, type OutputFormat, splitStatements } from '../format.ts';

const listenOption = {
  type: 'string',
  default: '127.0.0.1:7432',
  describe: 'where the daemon listens (its --listen)',
} as const;

/** Calls the daemon's HTTP endpoint; a daemon that is not there is a clear error. */
async function call(
  listen: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; json: Record<string, unknown> }> {
  let res: Response;
  try {
    res = await fetch(`http://${listen}${path}`, {
      method,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ExitError(`ptrackd is not running at ${listen} (start it with: ptrackd --slot NAME)`);
  }
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

/** `ptrackd sql`: runs SQL in the daemon's engine, after it has applied WAL up to the server's position. */
export function sqlCommand(y: Argv): Argv {
  return y.command(
    'sql [statement]',
    "Run SQL over ptrack's functions in the running daemon",
    (c) =>
      c
        .positional('statement', { type: 'string', describe: 'SQL to run (several separated by ;)' })
        .option('command', { alias: 'c', type: 'string', describe: 'SQL to run' })
        .option('file', { alias: 'f', type: 'string', describe: 'read SQL from a file' })
        .option('format', { choices: ['table', 'csv', 'tsv', 'json'] as const, default: 'table' as const })
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
        .option('timeout', { type: 'number', default: 60, describe: 'seconds to wait for freshness' })
        .option('listen', listenOption),
    async (a) => {
      if (a['wait-lsn'] !== undefined) parseLsn(a['wait-lsn']);
      const script =
        a.command ??
        a.statement ??
        (a.file ? readFileSync(a.file, 'utf8') : process.stdin.isTTY ? undefined : readFileSync(0, 'utf8'));
      if (script === undefined)
        throw new ExitError('give a statement, -c SQL, -f FILE, or SQL on standard input', 2);
      for (const sql of splitStatements(script)) {
        const { status, json } = await call(a.listen, 'POST', '/query', {
          sql,
          ...(a['wait-lsn'] ? { waitLsn: a['wait-lsn'] } : {}),
          timeoutMs: a.timeout * 1000,
        });
        if (status !== 200) throw new ExitError(String(json.error ?? `the daemon answered ${status}`));
        process.stdout.write(
          formatResult(
            json as { columns: string[]; rows: unknown[][] },
            a.format as OutputFormat,
            a['tuples-only'],
          ),
        );
      }
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
        .option('format', { choices: ['text', 'json'] as const, default: 'text' as const })
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
          ['streaming', String(json.streaming)],
          ['init LSN', json.initLsn],
          ['applied LSN', json.appliedLsn],
          ['checkpoint LSN', `${json.checkpointLsn} (the slot's flush position)`],
          ['server LSN', json.serverLsn],
          ['lag', `${json.lagBytes} bytes`],
          [
            'map fill',
            `${(Number(json.mapFill) * 100).toFixed(2)}% (estimated false positives ${(Number(json.mapFill) ** 2 * 100).toFixed(4)}%)`,
          ],
          ['reconnects', String(json.reconnects)],
        ];
        for (const [k, v] of lines) process.stdout.write(`${String(k).padEnd(16)}${v}\n`);
      }
      if (!json.streaming || Number(json.lagBytes) > a['max-lag'])
        throw new ExitError('not ready: not streaming or lagging', 1);
    },
  );
}
