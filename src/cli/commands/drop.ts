import { existsSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type pg from 'pg';
import type { Argv } from 'yargs';
import type { DataDirLock } from '../../tracker/index.ts';
import { connectionFromArgs, withConnectionOptions } from '../connection-options.ts';
import { ExitError, UsageError } from '../errors.ts';

/**
 * `ptrackd drop`: stop tracking for good (ptrack's map_size = 0). Drops the slot on the server, so that
 * a removed sidecar cannot hold WAL back forever, and removes the data directory. It holds the data
 * directory's lock meanwhile: a running daemon is never pulled out from under.
 */
export function dropCommand(y: Argv): Argv {
  return y.command(
    'drop',
    "Stop tracking for good: drop the slot on the server and remove ptrackd's data directory",
    (c) =>
      withConnectionOptions(c)
        .option('slot', {
          alias: 'S',
          type: 'string',
          demandOption: true,
          describe: 'the physical replication slot to drop on the server',
        })
        .option('data-dir', {
          type: 'string',
          demandOption: true,
          describe: "the daemon's data directory, to remove (the daemon must be stopped)",
        })
        .option('yes', {
          alias: 'y',
          type: 'boolean',
          default: false,
          describe: 'do not ask for confirmation',
        }),
    async (a) => {
      const { DataDirInUseError, DataDirLock } = await import('../../tracker/index.ts');
      const dataDir = resolve(a['data-dir']);
      const exists = existsSync(dataDir);
      if (exists && !existsSync(join(dataDir, 'catalog.db'))) {
        throw new ExitError(`${dataDir} is not a ptrackd data directory (no catalog.db); not removing it`);
      }
      let lock: DataDirLock | undefined;
      try {
        lock = exists ? DataDirLock.acquire(dataDir) : undefined;
      } catch (e) {
        if (e instanceof DataDirInUseError)
          throw new ExitError(`stop ptrackd first (pid ${e.pid ?? 'unknown'})`);
        throw e;
      }
      try {
        if (!a.yes) {
          if (!process.stdin.isTTY)
            throw new UsageError('ptrackd drop removes the slot and all tracked history: confirm with --yes');
          const { createInterface } = await import('node:readline/promises');
          const rl = createInterface({ input: process.stdin, output: process.stderr });
          const answer = await rl.question(
            `Drop slot "${a.slot}" on the server${exists ? ` and remove ${dataDir}` : ''}? History is lost. [y/N] `,
          );
          rl.close();
          if (!/^y(es)?$/i.test(answer.trim())) {
            process.stderr.write('nothing dropped\n');
            return;
          }
        }
        await dropSlot(a.slot, await connectionFromArgs(a));
        if (exists) {
          rmSync(dataDir, { recursive: true, force: true });
          process.stderr.write(`removed ${dataDir}\n`);
        } else process.stderr.write(`${dataDir} did not exist\n`);
      } finally {
        lock?.release();
      }
    },
  );
}

async function dropSlot(slot: string, config: pg.ClientConfig) {
  const { ReplicationConnection, ReplicationError } = await import('../../replication/index.ts');
  const connection = await ReplicationConnection.connect(config);
  try {
    await connection.dropSlot(slot);
    process.stderr.write(`dropped slot ${slot}\n`);
  } catch (e) {
    if (!(e instanceof ReplicationError)) throw e;
    if (e.sqlState === '42704') process.stderr.write(`slot ${slot} did not exist\n`);
    else if (e.sqlState === '55006') {
      // object_in_use: a walsender streams from it
      throw new ExitError(
        `slot ${slot} is in use on the server (${e.message.replace(/^[A-Z_]+: /, '')}): stop the ptrackd following it first`,
      );
    } else throw e;
  } finally {
    await connection.close().catch(() => {});
  }
}
