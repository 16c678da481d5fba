import type { Argv } from 'yargs';
import { UsageError } from '../errors.ts';

export function waldumpCommand(y: Argv): Argv {
  return y.command(
    'waldump [paths..]',
    'Decode WAL segment files (plain or .gz, files or directories, or an archive) like pg_waldump',
    (c) =>
      c
        .positional('paths', {
          type: 'string',
          array: true,
          describe: 'segment files or directories',
        })
        .option('restore-command', {
          type: 'string',
          describe:
            "read the segments from an archive with this command, as PostgreSQL's restore_command (%f, %p, %r); needs --start",
        })
        .option('restore-timeout', {
          type: 'number',
          default: 60,
          describe: 'seconds the restore command may take for one file',
        })
        .option('start', {
          alias: 's',
          type: 'string',
          describe: 'from the first record at or after this LSN',
        })
        .option('end', {
          alias: 'e',
          type: 'string',
          describe: 'only records that end at or before this LSN',
        })
        .option('timeline', {
          alias: 't',
          type: 'number',
          describe: 'use segment files of this timeline only',
        })
        .option('blocks', { type: 'boolean', default: false, describe: 'one line per block reference' })
        .option('implied', {
          type: 'boolean',
          default: false,
          describe: 'with --blocks: also implied VM references',
        })
        .option('events', { type: 'boolean', default: false, describe: 'one line per file-level event' })
        .option('stats', {
          type: 'boolean',
          default: false,
          describe: 'statistics per resource manager (--stats=record: per record type)',
        })
        .option('per-record', { type: 'boolean', default: false, hidden: true })
        .option('format', {
          choices: ['text', 'json'] as const,
          default: 'text' as const,
          describe: 'one line per record as pg_waldump prints it, or one JSON object per line',
        })
        .option('block-size', { type: 'number', default: 8192, describe: "the server's BLCKSZ" })
        .check((a) => {
          const modes = [a.blocks, a.events, a.stats].filter(Boolean).length;
          if (modes > 1) throw new UsageError('choose one of --blocks, --events and --stats');
          if (a.implied && !a.blocks) throw new UsageError('--implied goes with --blocks');
          const fromArchive = a['restore-command'] !== undefined;
          if (fromArchive === (a.paths?.length ?? 0) > 0) {
            throw new UsageError('give either segment files or directories, or --restore-command');
          }
          if (fromArchive && a.start === undefined) throw new UsageError('--restore-command needs --start');
          if (!(a['restore-timeout'] > 0))
            throw new UsageError('--restore-timeout is in seconds, more than 0');
          return true;
        }),
    async (a) => {
      // Imported when the command runs: the decoder is not needed to start any other command.
      const [{ runWaldump }, { parseLsn }] = await Promise.all([
        import('../waldump.ts'),
        import('../../wal/index.ts'),
      ]);
      await runWaldump(
        {
          paths: a.paths ?? [],
          restoreCommand: a['restore-command'],
          restoreTimeoutMs: a['restore-timeout'] * 1000,
          start: a.start === undefined ? undefined : parseLsn(a.start),
          end: a.end === undefined ? undefined : parseLsn(a.end),
          timeline: a.timeline,
          mode: a.blocks ? 'blocks' : a.events ? 'events' : a.stats ? 'stats' : 'records',
          statsPerRecord: a['per-record'],
          implied: a.implied,
          format: a.format,
          blockSize: a['block-size'],
        },
        process.stdout,
        process.stderr,
      );
    },
  );
}

/**
 * pg_waldump spells it `--stats[=record]`; an option with an optional value would swallow the next path,
 * so the two spellings become boolean flags before parsing.
 */
export function normalizeWaldumpArgs(argv: readonly string[]): string[] {
  return argv.flatMap((a) => {
    if (a === '--stats=record') return ['--stats', '--per-record'];
    if (a === '--stats=rmgr') return ['--stats'];
    if (a.startsWith('--stats='))
      throw new UsageError(`--stats takes "rmgr" or "record", not "${a.slice(8)}"`);
    return [a];
  });
}
