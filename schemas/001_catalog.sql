-- ptrackd catalog, version 1. LSNs are INTEGER byte positions (exact below 2^53).

-- The cluster this data directory tracks (one row).
CREATE TABLE cluster (
  id                 INTEGER PRIMARY KEY CHECK (id = 1),
  system_identifier  TEXT    NOT NULL,
  timeline           INTEGER NOT NULL,
  server_version_num INTEGER NOT NULL,
  catalog_version    INTEGER NOT NULL,   -- for pg_tblspc/<spc>/PG_<major>_<catversion>
  block_size         INTEGER NOT NULL,
  segment_size       INTEGER NOT NULL    -- wal_segment_size
);

-- The map and its last durable checkpoint (one row).
CREATE TABLE map_state (
  id              INTEGER PRIMARY KEY CHECK (id = 1),
  map_size_mb     INTEGER NOT NULL,
  entries         INTEGER NOT NULL,
  init_lsn        INTEGER NOT NULL,
  init_reason     TEXT    NOT NULL,
  checkpoint_lsn  INTEGER,
  checkpoint_time TEXT,
  block_crcs      BLOB               -- CRC-32C of each 64 kB block of the checkpoint file, uint32 LE
);

-- Every relation fork WAL has named since init_lsn: how far it reaches, and whether it was dropped.
CREATE TABLE relation_forks (
  spc            INTEGER NOT NULL,
  db             INTEGER NOT NULL,
  rel            INTEGER NOT NULL,
  fork           INTEGER NOT NULL,
  max_block      INTEGER NOT NULL,   -- -1: created, no block seen yet
  first_seen_lsn INTEGER NOT NULL,
  last_seen_lsn  INTEGER NOT NULL,
  dropped_lsn    INTEGER,
  PRIMARY KEY (spc, db, rel, fork)
) WITHOUT ROWID;

-- Changes that block references do not describe, in LSN order: from `limit_block` on, every block of
-- the fork (fork -1: every fork) counts as changed for a question about any X <= lsn; rel 0 is the
-- whole-database sentinel (every file under spc/db).
CREATE TABLE limit_events (
  lsn         INTEGER NOT NULL,
  spc         INTEGER NOT NULL,
  db          INTEGER NOT NULL,
  rel         INTEGER NOT NULL,
  fork        INTEGER NOT NULL,
  limit_block INTEGER NOT NULL,
  kind        TEXT    NOT NULL
);
CREATE INDEX limit_events_by_lsn ON limit_events (lsn);

-- Every time continuity was broken (init_lsn moved) or the map was repaired, and why.
CREATE TABLE history (
  id           INTEGER PRIMARY KEY,
  at           TEXT    NOT NULL,
  kind         TEXT    NOT NULL CHECK (kind IN ('init', 'gap', 'repair')),
  init_lsn     INTEGER,
  reason       TEXT    NOT NULL
);
