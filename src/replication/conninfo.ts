import { readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import type { ConnectionOptions } from 'node:tls';
import type pg from 'pg';
import { parse as parseUri } from 'pg-connection-string';
import pgpass from 'pgpass';
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
  sslrootcert: 'sslrootcert',
  sslcert: 'sslcert',
  sslkey: 'sslkey',
};

const SSL_MODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'];

/**
 * `--dbname` as PostgreSQL tools take it: a postgresql:// URI (node-postgres parses it), or libpq's
 * `key=value` list with single-quoted values and backslash escapes. Errors never repeat the string,
 * which may hold a password.
 */
export function connectionConfig(dbname: string): pg.ClientConfig {
  if (/^postgres(ql)?:\/\//.test(dbname)) return uriConfig(dbname);
  const config: Record<string, string | number | boolean | object> = {};
  const tls: Record<string, string> = {};
  const re = /\s*([a-z_]+)\s*=\s*(?:'((?:[^'\\]|\\.)*)'|((?:[^\s'\\]|\\.)*))/gy;
  let at = 0;
  for (let m = re.exec(dbname); m !== null; m = re.exec(dbname)) {
    const [, key, quoted, bare] = m;
    const value = (quoted ?? bare).replace(/\\(.)/g, '$1');
    const name = KEYWORDS[key];
    if (!name) throw new ReplicationError(`unknown connection option "${key}" in --dbname`);
    if (name === 'port') config.port = Number(value);
    else if (name === 'connectionTimeoutMillis') config.connectionTimeoutMillis = Number(value) * 1000;
    else if (name.startsWith('ssl')) tls[name] = value;
    else config[name] = value;
    at = re.lastIndex;
  }
  if (dbname.slice(at).trim() !== '' || at === 0) {
    throw new ReplicationError(
      'the connection string is neither a valid postgresql:// URI nor a key=value list',
    );
  }
  if (Object.keys(tls).length > 0) config.ssl = tlsOptions(tls);
  return config as pg.ClientConfig;
}

/**
 * libpq's sslmode with node-postgres, which cannot fall back to plain text: allow and prefer use TLS
 * without checking the certificate, like require; verify-ca checks the chain against sslrootcert,
 * verify-full the host name too. Certificates and keys are read from the files named.
 */
function tlsOptions(o: Record<string, string>): false | ConnectionOptions {
  const mode = o.sslmode ?? (o.sslrootcert ? 'verify-full' : 'prefer');
  if (!SSL_MODES.includes(mode)) {
    throw new ReplicationError(`sslmode must be one of ${SSL_MODES.join(', ')}, not "${mode}"`);
  }
  if (mode === 'disable') return false;
  const read = (key: string) => {
    try {
      return readFileSync(o[key], 'utf8');
    } catch (e) {
      throw new ReplicationError(`cannot read ${key} ${o[key]}: ${(e as Error).message}`);
    }
  };
  const verify = mode === 'verify-ca' || mode === 'verify-full';
  if (verify && !o.sslrootcert) throw new ReplicationError(`sslmode=${mode} needs sslrootcert`);
  return {
    rejectUnauthorized: verify,
    ...(o.sslrootcert && { ca: read('sslrootcert') }),
    ...(o.sslcert && { cert: read('sslcert') }),
    ...(o.sslkey && { key: read('sslkey') }),
    ...(mode === 'verify-ca' && { checkServerIdentity: () => undefined }),
  };
}

/**
 * A URI parsed here rather than by node-postgres, which lets the URI's absent user and password (empty
 * strings) override the password callback and user default that libpqDefaults adds.
 */
function uriConfig(uri: string): pg.ClientConfig {
  let parsed: Record<string, unknown>;
  try {
    parsed = parseUri(uri) as Record<string, unknown>;
  } catch {
    throw new ReplicationError(
      'the connection string is neither a valid postgresql:// URI nor a key=value list',
    );
  }
  const config: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(parsed)) {
    if (value !== undefined && value !== null && value !== '') config[key] = value;
  }
  if (typeof config.port === 'string') config.port = Number(config.port);
  return config as pg.ClientConfig;
}

/** The server asked for a password and none was to be had. */
export class PasswordMissingError extends ReplicationError {
  constructor(user: string) {
    super(
      `the server asked for a password for user "${user}" and none was found: set PGPASSWORD, add a line to ~/.pgpass ` +
        '(or to the file PGPASSFILE names), give password= in --dbname, or use -W to be asked for it',
      '28P01',
    );
  }
}

/**
 * What libpq does that node-postgres does not: the user defaults to the OS user when neither the
 * settings nor PGUSER name one (even with $USER unset), and a password the server asks for comes from
 * PGPASSWORD, then the password file, then `ask` (a prompt), else a PasswordMissingError at once.
 */
export function libpqDefaults(
  config: pg.ClientConfig,
  ask?: () => Promise<string | undefined>,
): pg.ClientConfig {
  const user = config.user ?? process.env.PGUSER ?? process.env.USER ?? userInfo().username;
  const password =
    config.password ??
    (async (params: { host?: string; port?: number; database?: string; user?: string }) => {
      if (process.env.PGPASSWORD) return process.env.PGPASSWORD;
      const stored = await new Promise<string | undefined>((done) => pgpass(params, done));
      const given = stored ?? (await ask?.());
      if (given === undefined) throw new PasswordMissingError(params.user ?? user);
      return given;
    });
  // node-postgres calls the callback with the connection's parameters; its typings say with none.
  return { ...config, user, password: password as pg.ClientConfig['password'] };
}
