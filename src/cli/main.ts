import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { LsnFormatError } from '../wal/index.ts';
import { normalizeWaldumpArgs, waldumpCommand } from './commands/waldump.ts';
import { ExitError, UsageError } from './errors.ts';

/** The one entry point, and the only place that exits: every command reports through errors. */
async function main(argv: string[]): Promise<number> {
  try {
    return await parse(normalizeWaldumpArgs(argv));
  } catch (e) {
    return report(e);
  }
}

async function parse(argv: string[]): Promise<number> {
  const cli = waldumpCommand(
    yargs(argv)
      .scriptName('ptrackd')
      .usage('$0 <command> [options]')
      .strict()
      .demandCommand(1, 'name a command (see --help)')
      .help()
      .version(false)
      .wrap(Math.min(110, process.stdout.columns ?? 110))
      .fail((msg, err) => {
        throw err ?? new UsageError(msg);
      }),
  );
  await cli.parseAsync();
  return 0;
}

function report(e: unknown): number {
  if (e instanceof UsageError) {
    process.stderr.write(`ptrackd: ${e.message}\nTry "ptrackd --help".\n`);
    return e.exitCode;
  }
  if (e instanceof ExitError) {
    process.stderr.write(`ptrackd: error: ${e.message}\n`);
    return e.exitCode;
  }
  if (e instanceof LsnFormatError) {
    process.stderr.write(`ptrackd: error: ${e.message}\n`);
    return 2;
  }
  if ((e as NodeJS.ErrnoException)?.code === 'EPIPE') return 0;
  process.stderr.write(`ptrackd: internal error (please report it): ${(e as Error)?.stack ?? String(e)}\n`);
  return 70;
}

process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0);
});
process.exitCode = await main(hideBin(process.argv));
