import type { PgCluster } from './pg-cluster.ts';

/**
 * The workload mix every WAL-facing proof runs: pgbench plus the operations that change files in ways
 * plain block references do not (wal-format.md §5): 2PC, both CREATE DATABASE strategies, TRUNCATE,
 * VACUUM tail truncation and re-extension, VACUUM FULL, CLUSTER, every index AM, SET TABLESPACE and
 * back, unlogged tables, visibility-map clears, a record over 1 MB, DROP TABLE and DROP DATABASE.
 */
export async function runWorkloadMix(
  c: PgCluster,
  options: { scale?: number; transactions?: number } = {},
): Promise<void> {
  await c.client('pgbench', ['-i', '-q', '-s', String(options.scale ?? 1)]);
  await c.client('pgbench', ['-n', '-c', '2', '-t', String(options.transactions ?? 200)]);
  const tablespaceDir = c.makeServerDir(`ts-${Date.now()}`);
  // CREATE DATABASE's strategies came with PostgreSQL 15; before it, every CREATE DATABASE copies files.
  const strategies = Number(await c.sql('SHOW server_version_num')) >= 150000;
  const createDatabase = (name: string, strategy: string) =>
    `CREATE DATABASE ${name}${strategies ? ` STRATEGY ${strategy}` : ''};`;
  await c.sql(`
    BEGIN; CREATE TABLE t2pc (id int PRIMARY KEY, v text);
    INSERT INTO t2pc SELECT g, md5(g::text) FROM generate_series(1, 200) g;
    PREPARE TRANSACTION 'p1'; COMMIT PREPARED 'p1';
    BEGIN; CREATE TABLE t2pc_rb (id int PRIMARY KEY); INSERT INTO t2pc_rb SELECT generate_series(1, 100);
    PREPARE TRANSACTION 'p2'; ROLLBACK PREPARED 'p2';

    ${createDatabase('db_file_copy', 'FILE_COPY')}
    ${createDatabase('db_wal_log', 'WAL_LOG')}

    CREATE TABLE ttrunc (id int PRIMARY KEY, v text);
    INSERT INTO ttrunc SELECT g, repeat('x', 100) FROM generate_series(1, 5000) g;
    TRUNCATE ttrunc; INSERT INTO ttrunc VALUES (1, 'a');

    CREATE TABLE tvac (id int, v text) WITH (autovacuum_enabled = off);
    INSERT INTO tvac SELECT g, repeat('y', 200) FROM generate_series(1, 3000) g;
    DELETE FROM tvac WHERE id > 300; VACUUM tvac;
    INSERT INTO tvac SELECT g, repeat('z', 200) FROM generate_series(301, 1200) g;

    CREATE TABLE tfull AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 3000) g;
    DELETE FROM tfull WHERE id % 3 = 0; VACUUM FULL tfull;
    CREATE INDEX tfull_v ON tfull (v); CLUSTER tfull USING tfull_v; REINDEX TABLE tfull;

    CREATE TABLE tidx (id int, t text, ts tsvector, arr int[], p point, b box);
    INSERT INTO tidx SELECT g, md5(g::text), to_tsvector('simple', md5(g::text)), ARRAY[g, g + 1],
      point(g, g), box(point(g, g), point(g + 1, g + 1)) FROM generate_series(1, 3000) g;
    CREATE INDEX ON tidx USING btree (id); CREATE INDEX ON tidx USING hash (t);
    CREATE INDEX ON tidx USING gin (ts); CREATE INDEX ON tidx USING gin (arr);
    CREATE INDEX ON tidx USING gist (p); CREATE INDEX ON tidx USING gist (b);
    CREATE INDEX ON tidx USING spgist (p); CREATE INDEX ON tidx USING spgist (t);
    CREATE INDEX ON tidx USING brin (id) WITH (pages_per_range = 4);
    INSERT INTO tidx SELECT g, md5(g::text), to_tsvector('simple', md5(g::text)), ARRAY[g], point(g, g),
      box(point(g, g), point(g + 1, g + 1)) FROM generate_series(3001, 3300) g;

    CREATE TABLESPACE ts_mix LOCATION '${tablespaceDir}';
    ALTER TABLE tidx SET TABLESPACE ts_mix;
    CREATE TABLE tin_ts (id int PRIMARY KEY) TABLESPACE ts_mix; INSERT INTO tin_ts SELECT generate_series(1, 500);
    INSERT INTO tidx SELECT g, md5(g::text) FROM generate_series(3301, 3400) g;
    ALTER TABLE tidx SET TABLESPACE pg_default; DROP TABLE tin_ts; DROP TABLESPACE ts_mix;

    CREATE UNLOGGED TABLE tunlogged (id int PRIMARY KEY); INSERT INTO tunlogged SELECT generate_series(1, 2000);

    CREATE TABLE tvm (id int, v int) WITH (autovacuum_enabled = off);
    INSERT INTO tvm SELECT g, g FROM generate_series(1, 4000) g; VACUUM (FREEZE) tvm;
    UPDATE tvm SET v = v + 1 WHERE id % 100 = 0; DELETE FROM tvm WHERE id % 150 = 0;
    SELECT id FROM tvm WHERE id % 170 = 0 FOR UPDATE;

    CREATE TABLE ttoast (id int, v text); ALTER TABLE ttoast ALTER COLUMN v SET STORAGE EXTERNAL;
    INSERT INTO ttoast SELECT g, repeat(md5(g::text), 6000) FROM generate_series(1, 3) g;
    SELECT pg_logical_emit_message(true, 'big', repeat('m', 1500000));

    DROP TABLE ttrunc;
    DROP DATABASE db_file_copy;
    CHECKPOINT;
  `);
}
