-- A question about X reads the map only for files that can have changed since X: the forks WAL named at
-- an LSN >= X (this index), the FSM forks (reported whole: the FSM is not WAL-logged), and those under a
-- limit event >= X (limit_events_by_lsn, then the primary key).
CREATE INDEX relation_forks_by_last_seen ON relation_forks (last_seen_lsn);
CREATE INDEX relation_forks_fsm ON relation_forks (spc, db, rel) WHERE fork = 1;
