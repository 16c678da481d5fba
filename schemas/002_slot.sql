-- The physical slot this data directory follows: another --slot on the same directory is refused
-- (a new slot would hold WAL beside the old one, and the map would miss what only the old one saw).
-- NULL in a directory made before this column: the next start records its --slot.
ALTER TABLE map_state ADD COLUMN slot_name TEXT;
