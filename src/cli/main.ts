import { readFileSync } from 'node:fs';
import yargs, { type Argv } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { PTRACK_VERSION } from '../query/version.ts';
import { daemonCommand } from './commands/daemon.ts';
import { dropCommand } from './commands/drop.ts';
import { sqlCommand, statusCommand } from './commands/sql.ts';
import { normalizeWaldumpArgs, waldumpCommand } from './commands/waldump.ts';
import { loadConfig, parseConfig } from './config.ts';
import { ExitError, UsageError } from './errors.ts';

/** The one entry point, and the only place that exits: every command reports through errors. */
async function main(argv: string[]): Promise<number> {
  try {
    return await parse(normalizeWaldumpArgs(argv));
  } catch (e) {
    return await report(e, COMMANDS.includes(argv[0] ?? '') ? `ptrackd ${argv[0]}` : 'ptrackd');
  }
}

const COMMANDS = ['waldump', 'sql', 'status', 'drop'];

async function parse(argv: string[]): Promise<number> {
  const first = argv[0];
  if (first !== undefined && !first.startsWith('-') && !COMMANDS.includes(first)) {
    throw new UsageError(
      `unknown command "${first}" (commands: ${COMMANDS.join(', ')}; without one, ptrackd --slot NAME follows a server)`,
    );
  }
  const base = yargs(argv)
    .scriptName('ptrackd')
    .usage('$0 --slot <slot> [options]  follow a server\n$0 <command> [options]')
    .env('PTRACKD')
    .config('config', 'a JSON or YAML file of settings (schemas/config.schema.json)', (path) =>
      parseConfig(path, loadConfig(path)),
    )
    .strict()
    .help()
    .alias('help', '?')
    .version(version())
    .alias('version', 'V')
    .middleware(rejectNaN, true)
    .wrap(Math.min(110, process.stdout.columns ?? 110))
    .fail((msg, err) => {
      // yargs wraps what its own checks and the config parser throw in a YError: all usage errors
      if (err && err.name === 'YError') throw new UsageError(err.message);
      throw err ?? new UsageError(fromEnvironment(msg) ?? msg);
    });
  skipHelpInAdvance(base);
  await daemonCommand(dropCommand(statusCommand(sqlCommand(waldumpCommand(base))))).parseAsync();
  return 0;
}

/**
 * Before running a command's handler yargs renders that command's whole help, to show it should the
 * handler fail: ~25 ms of every `ptrackd sql` or `status`. Our .fail() reports errors itself and never
 * shows that text, so the rendering is skipped (where this yargs has the internal hook at all).
 */
function skipHelpInAdvance(y: Argv): void {
  const internal = (y as unknown as { getInternalMethods?: () => { getUsageInstance?: () => unknown } })
    .getInternalMethods?.()
    .getUsageInstance?.() as { cacheHelpMessage?: () => void } | undefined;
  if (typeof internal?.cacheHelpMessage === 'function') internal.cacheHelpMessage = () => {};
}

/**
 * yargs reads every PTRACKD_* variable as an option, so a stray one (a typo, another tool's) is an
 * "Unknown argument" that nobody typed: the message names the variable instead.
 */
function fromEnvironment(message: string): string | undefined {
  const names = /^Unknown arguments?: (.+)$/.exec(message)?.[1].split(', ') ?? [];
  const variables = names
    .map((n) => `PTRACKD_${n.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`)
    .filter((v) => process.env[v] !== undefined);
  if (variables.length === 0) return undefined;
  return `the environment variable ${variables.join(', ')} is not a ptrackd setting (every PTRACKD_* variable is read as one)`;
}

/** A number option given text: yargs makes it NaN, which no check should ever have to explain. */
function rejectNaN(a: Record<string, unknown>): void {
  // Each option appears under its name, its aliases and a camelCase twin: name the option as typed.
  const named = Object.keys(a).find((k) => k.length > 1 && !/[A-Z]/.test(k) && Number.isNaN(a[k]));
  if (named !== undefined) throw new UsageError(`--${named} expected a number`);
}

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
  return `ptrackd ${pkg.version} (ptrack ${PTRACK_VERSION} compatible)`;
}

async function report(e: unknown, command: string): Promise<number> {
  if (e instanceof UsageError) {
    process.stderr.write(`ptrackd: ${e.message}\nTry "${command} --help".\n`);
    return e.exitCode;
  }
  if (e instanceof ExitError) {
    process.stderr.write(`ptrackd: error: ${e.message}\n`);
    return e.exitCode;
  }
  // Each piece's errors are imported only now: a command that succeeds never loads the pieces it does not use.
  const [{ ArchiveError }, { CatalogError }, { QueryError }, { ReplicationError }, tracker, wal] =
    await Promise.all([
      import('../archive/index.ts'),
      import('../catalog/index.ts'),
      import('../query/index.ts'),
      import('../replication/index.ts'),
      import('../tracker/index.ts'),
      import('../wal/index.ts'),
    ]);
  if (e instanceof wal.LsnFormatError) {
    process.stderr.write(`ptrackd: error: ${e.message}\n`);
    return 2;
  }
  if ((e as NodeJS.ErrnoException)?.code === 'EPIPE') return 0;
  if (
    e instanceof ReplicationError ||
    e instanceof CatalogError ||
    e instanceof QueryError ||
    e instanceof wal.WalDecodeError ||
    e instanceof tracker.SlotError ||
    e instanceof tracker.FollowError ||
    e instanceof tracker.DataDirInUseError ||
    e instanceof ArchiveError ||
    isOperatingSystemError(e)
  ) {
    process.stderr.write(`ptrackd: error: ${(e as Error).message}\n`);
    return 1;
  }
  process.stderr.write(`ptrackd: internal error (please report it): ${(e as Error)?.stack ?? String(e)}\n`);
  return 70;
}

process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0);
});
process.exitCode = await main(hideBin(process.argv));

/**
 * What the operating system refused (a directory that cannot be created or written, a full disk, a
 * missing file): the operator's to fix, reported in one line with the path, never as a bug.
 */
function isOperatingSystemError(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException)?.code;
  return (
    typeof code === 'string' &&
    typeof (e as NodeJS.ErrnoException).syscall === 'string' &&
    /^E[A-Z]+$/.test(code)
  );
}
