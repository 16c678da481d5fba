import { describe, expect, it } from 'vitest';
import { connectionConfig, ReplicationError } from '../../src/replication/index.ts';

describe('--dbname as PostgreSQL tools take it', () => {
  it('passes URIs to node-postgres and parses key=value lists with quoting and escapes', () => {
    expect(connectionConfig('postgresql://u@h:5433/db')).toEqual({
      connectionString: 'postgresql://u@h:5433/db',
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
});
