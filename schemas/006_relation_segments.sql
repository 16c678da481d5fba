-- Which 1 GB segment of a fork WAL named last, and when: a question about X reads the map only for
-- the segments named at or after X, so a large relation changed in a few places costs those segments,
-- not the whole relation. Segment 0 in relation_forks (most forks have no other), later ones here.
ALTER TABLE relation_forks ADD COLUMN seg0_last_seen_lsn INTEGER NOT NULL DEFAULT 0;
UPDATE relation_forks SET seg0_last_seen_lsn = last_seen_lsn;
CREATE TABLE relation_segments (
  spc           INTEGER NOT NULL,
  db            INTEGER NOT NULL,
  rel           INTEGER NOT NULL,
  fork          INTEGER NOT NULL,
  segno         INTEGER NOT NULL,   -- 1 and up: blocks segno * 131072 to segno * 131072 + 131071
  last_seen_lsn INTEGER NOT NULL,
  PRIMARY KEY (spc, db, rel, fork, segno)
) WITHOUT ROWID;
CREATE INDEX relation_segments_by_last_seen ON relation_segments (last_seen_lsn);
-- Forks already longer than one segment: each later segment as last named when the fork was (what
-- was recorded before cannot say which one it was).
INSERT INTO relation_segments (spc, db, rel, fork, segno, last_seen_lsn)
  WITH RECURSIVE seg (spc, db, rel, fork, segno, last_seen_lsn, last_segno) AS (
    SELECT spc, db, rel, fork, 1, last_seen_lsn, max_block / 131072 FROM relation_forks WHERE max_block >= 131072
    UNION ALL
    SELECT spc, db, rel, fork, segno + 1, last_seen_lsn, last_segno FROM seg WHERE segno < last_segno
  )
  SELECT spc, db, rel, fork, segno, last_seen_lsn FROM seg;
