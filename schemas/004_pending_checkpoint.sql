-- A checkpoint's map file is written under a temporary name, its block CRCs recorded here, and only then
-- renamed over ptrack.map; recordCheckpoint moves them to block_crcs. A kill between the rename and that
-- record leaves a map file newer than block_crcs: its blocks match these CRCs, so it loads as it is
-- instead of being repaired (every changed block read as changed at the older checkpoint).
ALTER TABLE map_state ADD COLUMN pending_block_crcs BLOB;
