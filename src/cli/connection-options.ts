import type pg from 'pg';
import type { Argv } from 'yargs';

/** The connection options of every command that talks to the server, as pg_receivewal names them. */
export function withConnectionOptions<T>(y: Argv<T>) {
  return (
    y
      .option('dbname', {
        alias: 'd',
        type: 'string',
        describe: 'connection string or URI (else PG* variables and .pgpass)',
      })
      .option('host', { alias: 'h', type: 'string', describe: 'database server host (PGHOST)' })
      .option('port', { alias: 'p', type: 'number', describe: 'database server port (PGPORT)' })
      .option('username', {
        alias: 'U',
        type: 'string',
        describe: 'connect as this user (PGUSER; else the operating-system user)',
      })
      .option('password', {
        alias: 'W',
        type: 'boolean',
        describe: 'prompt for the password before connecting',
      })
      // --no-password is the negation yargs gives --password; -w is pg_receivewal's short form of it.
      .option('w', {
        type: 'boolean',
        describe: 'never prompt for a password, the default (--no-password)',
      })
      .conflicts('W', 'w')
  );
}

/**
 * The settings as libpq would take them. A password is prompted for on a terminal only with -W, up
 * front as pg_receivewal does; otherwise a server asking for one that PGPASSWORD and the password file
 * do not have is a clear error at once (a daemon has no one to ask).
 */
export async function connectionFromArgs(a: {
  dbname?: string;
  host?: string;
  port?: number;
  username?: string;
  password?: boolean;
}): Promise<pg.ClientConfig> {
  // Imported when a command connects: pg is not needed to start the others.
  const { connectionConfig, libpqDefaults } = await import('../replication/index.ts');
  const config: pg.ClientConfig = {
    ...(a.dbname ? connectionConfig(a.dbname) : {}),
    ...(a.host ? { host: a.host } : {}),
    ...(a.port ? { port: a.port } : {}),
    ...(a.username ? { user: a.username } : {}),
  };
  if (a.password) config.password = await promptPassword();
  return libpqDefaults(config);
}

async function promptPassword(): Promise<string> {
  const [{ createInterface }, { Writable }] = await Promise.all([
    import('node:readline/promises'),
    import('node:stream'),
  ]);
  process.stderr.write('Password: ');
  // Echo nothing while the password is typed.
  const silent = new Writable({ write: (_chunk, _encoding, done) => done() });
  const rl = createInterface({ input: process.stdin, output: silent, terminal: process.stdin.isTTY });
  try {
    return await rl.question('');
  } finally {
    rl.close();
    process.stderr.write('\n');
  }
}
