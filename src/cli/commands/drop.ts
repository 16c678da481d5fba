import { existsSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline/promises';
import type { Argv } from 'yargs';
import { ReplicationConnection, ReplicationError } from '../../replication/index.ts';
import { connectionFromArgs, withConnectionOptions } from '../connection-options.ts';
import { ExitError, UsageError } from '../errors.ts';

/**
 * `ptrackd drop`: stop tracking for good (ptrack's map_size = 0). Drops the slot on the server, so that
 * a removed sidecar cannot hold WAL back forever, and removes the data directory.
 */
export function dropCommand(y: Argv): Argv {
  return y.command(
    'drop',
    "Stop tracking for good: drop the slot on the server and remove ptrackd's data directory",
    (c) =>
      withConnectionOptions(c)
        .option('slot', { type: 'string', demandOption: true })
        .option('data-dir', { type: 'string', default: 'ptrackd-data' })
        .option('yes', {
          alias: 'y',
          type: 'boolean',
          default: false,
          describe: 'do not ask for confirmation',
        }),
    async (a) => {
      const dataDir = resolve(a['data-dir']);
      if (existsSync(dataDir) && !existsSync(join(dataDir, 'catalog.db'))) {
        throw new ExitError(`${dataDir} is not a ptrackd data directory (no catalog.db); not removing it`);
      }
      if (!a.yes) {
        if (!process.stdin.isTTY)
          throw new UsageError('ptrackd drop removes the slot and all tracked history: confirm with --yes');
        const rl = createInterface({ input: process.stdin, output: process.stderr });
        const answer = await rl.question(
          `Drop slot "${a.slot}" on the server and remove ${dataDir}? History is lost. [y/N] `,
        );
        rl.close();
        if (!/^y(es)?$/i.test(answer.trim())) throw new ExitError('nothing dropped', 1);
      }
      const connection = await ReplicationConnection.connect(connectionFromArgs(a));
      try {
        await connection.dropSlot(a.slot);
        process.stderr.write(`dropped slot ${a.slot}\n`);
      } catch (e) {
        if (!(e instanceof ReplicationError && e.sqlState === '42704')) throw e;
        process.stderr.write(`slot ${a.slot} did not exist\n`);
      } finally {
        await connection.close().catch(() => {});
      }
      rmSync(dataDir, { recursive: true, force: true });
      process.stderr.write(`removed ${dataDir}\n`);
    },
  );
}
