import type pg from 'pg';
import { ReplicationError } from './connection.ts';

/** libpq keywords ptrackd understands, and their node-postgres names. */
const KEYWORDS: Record<string, string> = {
  host: 'host',
  hostaddr: 'host',
  port: 'port',
  user: 'user',
  password: 'password',
  dbname: 'database',
  application_name: 'application_name',
  connect_timeout: 'connectionTimeoutMillis',
  sslmode: 'sslmode',
};

/**
 * `--dbname` as PostgreSQL tools take it: a postgresql:// URI (node-postgres parses it), or libpq's
 * `key=value` list with single-quoted values and backslash escapes. Errors never repeat the string,
 * which may hold a password.
 */
export function connectionConfig(dbname: string): pg.ClientConfig {
  if (/^postgres(ql)?:\/\//.test(dbname)) return { connectionString: dbname };
  const config: Record<string, string | number | boolean | object> = {};
  const re = /\s*([a-z_]+)\s*=\s*(?:'((?:[^'\\]|\\.)*)'|((?:[^\s'\\]|\\.)*))/gy;
  let at = 0;
  for (let m = re.exec(dbname); m !== null; m = re.exec(dbname)) {
    const [, key, quoted, bare] = m;
    const value = (quoted ?? bare).replace(/\\(.)/g, '$1');
    const name = KEYWORDS[key];
    if (!name) throw new ReplicationError(`unknown connection option "${key}" in --dbname`);
    if (name === 'port') config.port = Number(value);
    else if (name === 'connectionTimeoutMillis') config.connectionTimeoutMillis = Number(value) * 1000;
    else if (name === 'sslmode')
      config.ssl = value === 'disable' ? false : value === 'require' ? { rejectUnauthorized: false } : true;
    else config[name] = value;
    at = re.lastIndex;
  }
  if (dbname.slice(at).trim() !== '' || at === 0) {
    throw new ReplicationError(
      'the connection string is neither a valid postgresql:// URI nor a key=value list',
    );
  }
  return config as pg.ClientConfig;
}
