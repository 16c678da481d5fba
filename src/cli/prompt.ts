import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import type { Answer } from './commands/sql.ts';
import { formatResult, formatTable, type OutputFormat, splitStatements } from './format.ts';

const FUNCTIONS = {
  columns: ['function', 'returns'],
  rows: [
    ['ptrack_version()', 'text'],
    ['ptrack_init_lsn()', 'text (LSN): history is complete from here'],
    ['ptrack_get_pagemapset(start_lsn)', 'table (path, pagecount, pagemap): changed blocks per segment file'],
    ['ptrack_get_change_stat(start_lsn)', 'table (files, pages, "size, MB")'],
    ['ptrack_status()', 'table: init, applied, checkpoint LSNs, map size, fill, est. false positives'],
    ['ptrack_relations()', 'table: relation forks WAL named since init_lsn'],
  ],
};

/** What psql prints for `help` on an empty line. */
const GREETING_HELP = `You are using ptrackd sql, the SQL interface to ptrackd's changed-block map.
Type:  \\dt to list ptrack's functions
       \\? for help with commands
       \\q to quit
`;

const HELP = `  \\q        quit
  \\?        this help
  \\dt, \\df  list ptrack's functions
  SQL runs when a line ends with ";"; statements may span lines.
`;

/**
 * psql-like prompt: line editing and history (kept in `historyFile`), statements over several lines
 * ended by ";", \\q, \\?, \\dt. An error prints one line and the prompt goes on.
 */
export function interactive(
  answer: Answer,
  o: { format: OutputFormat; tuplesOnly: boolean; historyFile: string },
): Promise<void> {
  const history = existsSync(o.historyFile)
    ? readFileSync(o.historyFile, 'utf8').split('\n').filter(Boolean).slice(-500).reverse()
    : [];
  const rl = createInterface({
    input: process.stdin,
    output: process.stdout,
    terminal: true,
    history,
    historySize: 500,
  });
  let buffer = '';
  const prompt = () => {
    rl.setPrompt(buffer ? 'ptrackd-# ' : 'ptrackd=# ');
    rl.prompt();
  };
  process.stdout.write(
    'ptrackd: ptrack 2.4 functions over the changed-block map. Type \\? for help, \\q to quit.\n',
  );
  return new Promise((resolve) => {
    rl.on('close', () => {
      process.stdout.write('\n');
      resolve();
    });
    rl.on('line', async (line) => {
      const trimmed = line.trim();
      if (!buffer && /^help;?$/i.test(trimmed)) {
        process.stdout.write(GREETING_HELP);
        return prompt();
      }
      // As in psql, a backslash command acts at once, even in the middle of a statement.
      if (trimmed.startsWith('\\')) {
        if (trimmed === '\\q') return rl.close();
        if (trimmed === '\\?') process.stdout.write(HELP);
        else if (trimmed === '\\dt' || trimmed === '\\df') process.stdout.write(formatTable(FUNCTIONS));
        else process.stdout.write(`invalid command ${trimmed}\nTry \\? for help.\n`);
        return prompt();
      }
      buffer += `${line}\n`;
      if (!trimmed.endsWith(';')) return prompt();
      const statement = buffer;
      buffer = '';
      appendFileSync(o.historyFile, `${statement.trim().replace(/\s*\n\s*/g, ' ')}\n`);
      rl.pause();
      for (const sql of splitStatements(statement)) {
        try {
          process.stdout.write(formatResult(await answer(sql), o.format, o.tuplesOnly));
        } catch (e) {
          process.stdout.write(`ERROR:  ${(e as Error).message}\n`);
        }
      }
      rl.resume();
      prompt();
    });
    prompt();
  });
}
