import { userInfo } from 'node:os';
import { describe, expect, it } from 'vitest';
import {
  connectionConfig,
  libpqDefaults,
  PasswordMissingError,
  ReplicationError,
} from '../../src/replication/index.ts';

describe('--dbname as PostgreSQL tools take it', () => {
  it('parses URIs (leaving out what they do not name) and key=value lists with quoting and escapes', () => {
    expect(connectionConfig('postgresql://u@h:5433/db')).toEqual({
      user: 'u',
      host: 'h',
      port: 5433,
      database: 'db',
    });
    expect(connectionConfig('postgresql://u:p%40ss@h/db?application_name=x')).toEqual({
      user: 'u',
      password: 'p@ss',
      host: 'h',
      database: 'db',
      application_name: 'x',
    });
    expect(
      connectionConfig(
        `host=db.example port=5433 user=rep password='it\\'s \\'quoted\\' x' dbname=postgres sslmode=disable`,
      ),
    ).toEqual({
      host: 'db.example',
      port: 5433,
      user: 'rep',
      password: "it's 'quoted' x",
      database: 'postgres',
      ssl: false,
    });
  });

  it('refuses what it cannot read, without repeating a password', () => {
    expect(() => connectionConfig('host=h passwd=s3cret')).toThrow(/unknown connection option "passwd"/);
    for (const bad of ['just words s3cret', "host=h password='s3cret"]) {
      expect(() => connectionConfig(bad)).toThrow(ReplicationError);
      expect(() => connectionConfig(bad)).not.toThrow(/s3cret/);
    }
  });

  it('fills in what libpq would: the OS user when none is named, a password callback when none is given', async () => {
    const saved = { USER: process.env.USER, PGUSER: process.env.PGUSER, PGPASSWORD: process.env.PGPASSWORD };
    try {
      delete process.env.USER;
      delete process.env.PGUSER;
      process.env.PGPASSWORD = 'from-env';
      const filled = libpqDefaults({ host: 'h' });
      expect(filled.user).toBe(userInfo().username);
      expect(await (filled.password as (p: object) => Promise<string>)({ user: 'x' })).toBe('from-env');
      delete process.env.PGPASSWORD;
      process.env.PGPASSFILE = '/nonexistent/pgpass';
      await expect((filled.password as (p: object) => Promise<string>)({ user: 'x' })).rejects.toThrow(
        PasswordMissingError,
      );
      expect(libpqDefaults({ user: 'u', password: 'given' })).toMatchObject({ user: 'u', password: 'given' });
    } finally {
      delete process.env.PGPASSFILE;
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });
});
