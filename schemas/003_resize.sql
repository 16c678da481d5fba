-- A map resized with its history kept (ptrackd --map-size on an existing map) is a history event too.
-- SQLite cannot change a CHECK constraint in place: the table is rebuilt with the new kind allowed.
CREATE TABLE history_v3 (
  id           INTEGER PRIMARY KEY,
  at           TEXT    NOT NULL,
  kind         TEXT    NOT NULL CHECK (kind IN ('init', 'gap', 'repair', 'resize')),
  init_lsn     INTEGER,
  reason       TEXT    NOT NULL
);
INSERT INTO history_v3 (id, at, kind, init_lsn, reason) SELECT id, at, kind, init_lsn, reason FROM history;
DROP TABLE history;
ALTER TABLE history_v3 RENAME TO history;
