import { beforeAll, describe, expect, it } from 'vitest';
import { loadStatementParser, recognise } from '../../src/pgwire/index.ts';

beforeAll(loadStatementParser);

/** Every statement of a real PTRACK backup (docs/pg_probackup-ptrack-session.md §2), schema `ptrack`. */
const PG_PROBACKUP_SESSION: [string, string | null][] = [
  ["SELECT pg_catalog.set_config('search_path', '', false);", null],
  ['SELECT pg_catalog.current_setting($1)', null],
  ["SELECT pg_catalog.current_setting('is_superuser')", null],
  [
    "SELECT proname FROM pg_catalog.pg_proc WHERE proname='pgpro_edition'::name AND pronamespace='pg_catalog'::regnamespace::oid",
    null,
  ],
  ['SELECT pg_catalog.pg_is_in_recovery()', null],
  ['SHOW data_checksums', null],
  ['SELECT system_identifier FROM pg_catalog.pg_control_system()', null],
  ['SHOW wal_segment_size', null],
  [
    "SELECT extnamespace::regnamespace, extversion FROM pg_catalog.pg_extension WHERE extname = 'ptrack'::name",
    'extension',
  ],
  ['SHOW ptrack.map_size', 'map-size'],
  ['SELECT pg_catalog.pg_backup_start($1, $2)', null],
  ['SELECT timeline_id FROM pg_catalog.pg_control_checkpoint()', null],
  ['SELECT ptrack.ptrack_init_lsn()', 'scalar'],
  ['show checkpoint_timeout', null],
  [
    "SELECT oid, datname FROM pg_catalog.pg_database WHERE datname NOT IN ('template1'::name, 'template0'::name)",
    null,
  ],
  ['SELECT path, pagemap FROM ptrack.ptrack_get_pagemapset($1) ORDER BY 1', 'table'],
  ['SET client_min_messages = warning;', null],
  ['SELECT pg_catalog.pg_create_restore_point($1)', null],
  ["SET datestyle = 'ISO, DMY';", null],
  [
    'SELECT pg_catalog.txid_snapshot_xmax(pg_catalog.txid_current_snapshot()), current_timestamp(0)::timestamptz, lsn, labelfile, spcmapfile FROM pg_catalog.pg_backup_stop(false)',
    null,
  ],
];

describe('recognising ptrack’s statements with PostgreSQL’s parser', () => {
  it.each(PG_PROBACKUP_SESSION)('pg_probackup: %s', (sql, kind) => {
    expect(recognise(sql, 'ptrack')?.kind ?? null).toBe(kind);
  });

  it('reads what pg_probackup asks for: the function, its $1, the columns and the order', () => {
    expect(
      recognise('SELECT path, pagemap FROM ptrack.ptrack_get_pagemapset($1) ORDER BY 1', 'ptrack'),
    ).toEqual({
      kind: 'table',
      fn: 'ptrack_get_pagemapset',
      argument: { param: 1 },
      columns: [
        { source: 'path', name: 'path' },
        { source: 'pagemap', name: 'pagemap' },
      ],
      orderBy: [{ column: 0, descending: false }],
      limit: null,
      offset: null,
    });
  });

  it('reads what a person types: *, a literal or cast LSN, aliases, ORDER BY a name, LIMIT, OFFSET, any spacing and case', () => {
    expect(
      recognise(
        "select  pagecount AS n, path\nFROM Ptrack.PTRACK_GET_PAGEMAPSET('0/3000028'::pg_lsn) order by path desc limit 3 offset 1;",
        'ptrack',
      ),
    ).toEqual({
      kind: 'table',
      fn: 'ptrack_get_pagemapset',
      argument: { literal: '0/3000028' },
      columns: [
        { source: 'pagecount', name: 'n' },
        { source: 'path', name: 'path' },
      ],
      orderBy: [{ column: 1, descending: true }],
      limit: 3,
      offset: 1,
    });
    expect(recognise("SELECT * FROM ptrack.ptrack_get_change_stat('0/0')", 'ptrack')).toMatchObject({
      columns: [
        { source: 'files', name: 'files' },
        { source: 'pages', name: 'pages' },
        { source: 'size, MB', name: 'size, MB' },
      ],
    });
    expect(recognise('SELECT ptrack.ptrack_version() AS v', 'ptrack')).toEqual({
      kind: 'scalar',
      fn: 'ptrack_version',
      column: 'v',
    });
  });

  it.each([
    ["SELECT * FROM ptrack.ptrack_get_pagemapset('0/0') p JOIN pg_class c ON true", 'also reads a table'],
    [
      "SELECT * FROM ptrack.ptrack_get_pagemapset('0/0') WHERE path LIKE 'base/%'",
      'a WHERE the engine would have to run',
    ],
    ["SELECT count(*) FROM ptrack.ptrack_get_pagemapset('0/0')", 'an aggregate'],
    ['SELECT ptrack.ptrack_version(), now()', 'another function beside'],
    ['SELECT public.ptrack_init_lsn()', 'another schema'],
    ['SELECT ptrack_init_lsn()', 'no schema: whatever search_path finds'],
    ["SELECT * FROM ptrack.ptrack_get_pagemapset('0/0') UNION SELECT * FROM t", 'a set operation'],
    ["WITH x AS (SELECT 1) SELECT * FROM ptrack.ptrack_get_pagemapset('0/0')", 'a WITH'],
    ['SELECT ptrack.ptrack_version(); DROP TABLE t', 'two statements'],
    ["SELECT * FROM ptrack.ptrack_get_pagemapset('0/0'::text)", 'a cast to another type'],
    ["SELECT nosuch FROM ptrack.ptrack_get_pagemapset('0/0')", 'a column the function has not'],
    ["SELECT * FROM ptrack.ptrack_get_pagemapset('0/0') ORDER BY 4", 'an ORDER BY position past the columns'],
    [
      "SELECT extnamespace::regnamespace, extversion FROM pg_catalog.pg_extension WHERE extname = 'other'::name",
      'another extension',
    ],
    ['SHOW ptrack.other', 'another setting'],
    ['SELECT ptrack.ptrack_version(', 'a syntax error: the server says it'],
    ["SELECT 'ptrack'", 'the word in a string'],
  ])('relays %s (%s)', (sql) => {
    expect(recognise(sql, 'ptrack')).toBeNull();
  });
});
