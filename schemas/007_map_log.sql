-- Checkpoints between two writes of the whole map append the lines that changed to ptrack.map.log
-- (src/map/log.ts). log_bytes is how much of it is durable and counts: a record appended after it is a
-- checkpoint that never happened. log_regions is a bit per region of 8,192 entries that the log's records
-- hold, so that a record too damaged to name its lines costs false positives in those regions only.
-- Writing the whole map (and a resize, a new map) empties the log.
ALTER TABLE map_state ADD COLUMN log_bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE map_state ADD COLUMN log_regions BLOB;
