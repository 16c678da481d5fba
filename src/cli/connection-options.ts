import type pg from 'pg';
import type { Argv } from 'yargs';
import { connectionConfig } from '../replication/index.ts';

/** The connection options of every command that talks to the server, as PostgreSQL tools name them. */
export function withConnectionOptions<T>(y: Argv<T>) {
  return y
    .option('dbname', {
      alias: 'd',
      type: 'string',
      describe: 'connection string or URI (else PG* variables and .pgpass)',
    })
    .option('host', { alias: 'h', type: 'string' })
    .option('port', { alias: 'p', type: 'number' })
    .option('username', { alias: 'U', type: 'string' });
}

export function connectionFromArgs(a: {
  dbname?: string;
  host?: string;
  port?: number;
  username?: string;
}): pg.ClientConfig {
  return {
    ...(a.dbname ? connectionConfig(a.dbname) : {}),
    ...(a.host ? { host: a.host } : {}),
    ...(a.port ? { port: a.port } : {}),
    ...(a.username ? { user: a.username } : {}),
  };
}
