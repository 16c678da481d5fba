/*
 * ptrackd's tracking protocol, for the SPIN model checker: the server (WAL, the slot, WAL removal, a slot
 * lost), ptrackd (apply, checkpoint — of the whole map, or of the changed lines to the checkpoint log —,
 * a checkpoint that fails, flush position, crash, restart, reconnect, gap, backfill from an archive) and
 * a backup client (ask for the pages changed since X, wait for the server's position).
 * model/check.sh runs it and the mutations below; docs/design.md §6 says what is proven and what is not.
 *
 * Abstractions: a record is its LSN 1..N (record r spans (r-1, r], so "applied = r" means every record up
 * to r is in the map) and changes one page, PAGE(r). A map entry is the LSN of the last record that
 * changed its page; ptrack's hash table (two slots per block) only ever adds false positives, so one exact
 * entry per page is the conservative model. Each step is atomic where the code does it in one
 * synchronous stretch of JavaScript or one durable write.
 */

#define N 4                 /* records the server writes */
#define P 2                 /* pages */
#define PAGE(r) ((r) % P)
/*
 * Two configurations, each checked exhaustively (model/check.sh): all of them at once are more states
 * than this machine holds. CONFIG_LOG=0, the server's faults: slot losses, disconnects and kills, every
 * checkpoint writing the whole map. CONFIG_LOG=1, the checkpoint log: kills, a failed checkpoint, and
 * checkpoints of either kind, the server keeping its WAL (neither slot losses nor disconnects touch how a
 * checkpoint is written: they move the applied LSN and init_lsn, as a kill does).
 */
#ifndef CONFIG_LOG
#define CONFIG_LOG 0
#endif
#define CRASHES 3           /* ptrackd killed (kill -9, OOM) at any point */
#if CONFIG_LOG
#define DISCONNECTS 0
#define SLOT_LOSSES 0
#define FAILURES 1          /* checkpoints that fail (disk full, EIO) */
#define LOG_CHECKPOINTS 1   /* a checkpoint may append the changed lines to ptrack.map.log */
#define MARK_DIRTY(p) dirty[p] = 1
#else
#define DISCONNECTS 1       /* the replication connection cut, ptrackd running */
#define SLOT_LOSSES 1       /* the slot dropped or invalidated (max_slot_wal_keep_size) */
#define FAILURES 0
#define LOG_CHECKPOINTS 0
#define MARK_DIRTY(p) skip  /* no checkpoint reads the bits */
#endif

/* The protocol's rules. model/check.sh changes one of these lines at a time and expects a counterexample. */
#define FLUSH_POSITION cat_ckpt      /* the flush position reported is the durable checkpoint's LSN */
#define MARK_BEFORE_APPLIED 1        /* marks reach the map before the applied LSN moves */
#define MAP_FILE_BEFORE_CATALOG 1    /* a checkpoint writes the map file before its catalog record */
#define WAIT_FOR_SERVER 1            /* a query waits until the server's position is applied */
#define DIRTY_AFTER_RAISE 1          /* a marker sets the line's dirty bit after it raised the entry */
#define LOG_BEFORE_CATALOG 1         /* a log record is durable before the catalog counts it and moves */
#define FAILED_KEEPS_LINES 1         /* a failed checkpoint gives back the lines it took (and the next is whole) */

/* The server. */
byte written = 0;           /* records 1..written are in the WAL */
byte removed = 0;           /* records 1..removed are gone from pg_wal (recycled) */
byte slot_restart = 0;      /* the slot keeps every record after slot_restart (its restart_lsn) */
bool slot_lost = false;     /* the slot is gone: dropped, or invalidated */
bool archive;               /* archive_mode with a restore_command ptrackd can read: nothing is ever lost */
bool wal_lost = false;      /* ghost: the server removed WAL that a slot was keeping for ptrackd */

/* ptrackd's data directory: what survives a crash. */
byte file_map[P];           /* ptrack.map, as last written whole (write to a temporary file, rename) */
byte file_log[P];           /* ptrack.map.log as far as the catalog counts it (log_bytes): max per page */
byte cat_ckpt = 0;          /* catalog: the checkpoint LSN the map file stands for */
byte init_lsn = 1;          /* catalog: the oldest X a question may ask about */
byte gaps = 0;              /* catalog: history entries of kind 'gap' */

/* ptrackd's memory. */
byte map[P];
bit dirty[P];               /* PtrackMap's dirty bit of the page's line */
byte applied = 0;
bool connected = false;

inline gap(at) {
  /* Tracker.#gap: only WAL the server really lost, and no archive had, moves init_lsn, and only forward. */
  assert(wal_lost && !archive);
  assert(at + 1 >= init_lsn);
  init_lsn = at + 1;
  applied = at;
  gaps++
}

active proctype server() {
  do
  :: written < N -> written++                                   /* a transaction commits */
  :: removed < slot_restart -> removed = slot_restart           /* a checkpoint recycles old segments */
  :: !slot_lost && SLOT_LOSSES > 0 && !wal_lost ->              /* pg_drop_replication_slot, or lost */
       atomic { slot_lost = true; wal_lost = true; removed = written }
  od
}

active proctype ptrackd() {
  byte rec, ckpt, crashes = 0, disconnects = 0;    /* rec and ckpt are 0 when not in use */
  bit applying = 0;          /* between the two halves of applying record rec (WalApplier.apply, ChunkPipeline.#applyHead) */
  byte checkpointing = 0;    /* Tracker.#checkpoint: 2 = LSN and lines taken, 3 = first durable write done */
  bit whole = 0;             /* this checkpoint writes the whole map (else a log record) */
  bit whole_next = 0;        /* CheckpointWriter.#wholeNext: after a failure */
  bit taken[P];              /* the dirty bits this checkpoint took */
  byte record[P];            /* the log record's copy of the lines taken */
  byte failures = 0;
  do
  /* Tracker.#connect: the slot created when missing; a slot that starts after the applied LSN is
     either backfilled from the archive (Tracker.#backfill, records then read as below) or a gap. */
  :: !connected && !applying ->
       atomic {
         if
         :: slot_lost -> slot_lost = false; slot_restart = written  /* ReplicationConnection.createPhysicalSlot */
         :: else -> skip
         fi;
         if
         :: slot_restart > applied && !archive -> gap(slot_restart)
         :: else -> skip
         fi;
         connected = true
       }
  /* Tracker.#follow / #stream1 and the decoder pipeline: the next record, from the server while it keeps
     it, else from the archive. */
  :: connected && !applying && applied < written && (applied + 1 > removed || archive) ->
       atomic {
         rec = applied + 1;
#if MARK_BEFORE_APPLIED && DIRTY_AFTER_RAISE
         /* WalApplier.#mark, PtrackMap.markBlock: the entry raised (under its lock), then its line's bit */
         if :: map[PAGE(rec)] < rec -> map[PAGE(rec)] = rec; MARK_DIRTY(PAGE(rec)) :: else -> skip fi;
#elif MARK_BEFORE_APPLIED
         MARK_DIRTY(PAGE(rec));                                         /* (mutant: the bit before the raise) */
#else
         applied = rec;
#endif
         applying = 1
       }
  :: applying ->
       atomic {
#if MARK_BEFORE_APPLIED && DIRTY_AFTER_RAISE
         applied = rec;                                                          /* ChunkPipeline.#applyHead */
#elif MARK_BEFORE_APPLIED
         if :: map[PAGE(rec)] < rec -> map[PAGE(rec)] = rec :: else -> skip fi;
         applied = rec;
#else
         if :: map[PAGE(rec)] < rec -> map[PAGE(rec)] = rec; MARK_DIRTY(PAGE(rec)) :: else -> skip fi;   /* (mutant: mark last) */
#endif
         applying = 0; rec = 0
       }
  /* Tracker.#checkpoint and CheckpointWriter.write: the LSN is taken, then the dirty bits (each cleared as
     taken), and the checkpoint is either the whole map (writeCheckpointFile: the map as it is then, a
     superset of what that LSN needs; commitCheckpoint: rename, Catalog.recordCheckpoint, which empties
     the log) or a log record of the lines taken (buildLogRecord copies them; appendLogRecord makes it
     durable; Catalog.recordLogCheckpoint counts it). WalStream.sendStatus then reports the flush position. */
  :: checkpointing == 0 ->                /* one synchronous stretch: Tracker.#checkpoint to the first await */
       atomic {
         ckpt = applied;                                                       /* const lsn = applied */
#if LOG_CHECKPOINTS
         taken[0] = dirty[0]; taken[1] = dirty[1]; dirty[0] = 0; dirty[1] = 0;   /* PtrackMap.takeDirtyLines */
#endif
         if
         :: whole = 1
         :: LOG_CHECKPOINTS && !whole_next -> whole = 0;                       /* within the log's limit */
              if :: taken[0] -> record[0] = map[0] :: else -> skip fi;        /* buildLogRecord */
              if :: taken[1] -> record[1] = map[1] :: else -> skip fi
         fi;
         checkpointing = 2
       }
  :: checkpointing == 2 ->
       atomic {
         if
         :: whole ->
#if MAP_FILE_BEFORE_CATALOG
              file_map[0] = map[0]; file_map[1] = map[1];   /* writeCheckpointFile, and commitCheckpoint's rename */
#else
              cat_ckpt = ckpt; file_log[0] = 0; file_log[1] = 0;
#endif
         :: !whole ->
#if LOG_BEFORE_CATALOG
              if :: file_log[0] < record[0] -> file_log[0] = record[0] :: else -> skip fi;   /* appendLogRecord */
              if :: file_log[1] < record[1] -> file_log[1] = record[1] :: else -> skip fi;
#else
              cat_ckpt = ckpt;                              /* (mutant: counted before it is durable) */
#endif
         fi;
         checkpointing = 3
       }
  :: checkpointing == 2 && failures < FAILURES ->          /* the write fails: ENOSPC, EIO, EISDIR */
       atomic {
#if FAILED_KEEPS_LINES
         if :: taken[0] -> dirty[0] = 1 :: else -> skip fi;   /* PtrackMap.restoreDirtyLines */
         if :: taken[1] -> dirty[1] = 1 :: else -> skip fi;
         whole_next = 1;
#endif
         failures++;
         checkpointing = 0; ckpt = 0; whole = 0; taken[0] = 0; taken[1] = 0; record[0] = 0; record[1] = 0
       }
  :: checkpointing == 3 ->
       atomic {
         if
         :: whole ->
#if MAP_FILE_BEFORE_CATALOG
              cat_ckpt = ckpt; file_log[0] = 0; file_log[1] = 0;   /* Catalog.recordCheckpoint: log_bytes = 0 */
#else
              file_map[0] = map[0]; file_map[1] = map[1];
#endif
              whole_next = 0
         :: !whole ->
#if LOG_BEFORE_CATALOG
              cat_ckpt = ckpt;                                      /* Catalog.recordLogCheckpoint */
#else
              if :: file_log[0] < record[0] -> file_log[0] = record[0] :: else -> skip fi;
              if :: file_log[1] < record[1] -> file_log[1] = record[1] :: else -> skip fi;
#endif
         fi;
         if :: connected -> slot_restart = FLUSH_POSITION :: else -> skip fi;   /* WalStream.sendStatus */
         checkpointing = 0; ckpt = 0; whole = 0; taken[0] = 0; taken[1] = 0; record[0] = 0; record[1] = 0
       }
  /* A standby status update between checkpoints (keepalive replies) reports the flush position too. */
  :: connected -> slot_restart = FLUSH_POSITION        /* WalStream's status timer: sendStatus(positions()) */
  /* The connection is cut: ptrackd keeps its memory and reconnects (Tracker.#follow's retry); a record
     decoded but not yet applied is dropped with the pipeline (ChunkPipeline.close), its marks stay. */
  :: connected && disconnects < DISCONNECTS ->
       atomic { connected = false; applying = 0; rec = 0; disconnects++ }   /* Tracker.#follow's catch */
  /* kill -9 anywhere: memory is gone; Tracker.start loads the last checkpoint (loadCheckpointedMap: the
     map file, the log replayed over it as far as the catalog counts it; every dirty bit clear). */
  :: crashes < CRASHES ->
       atomic {
         map[0] = file_map[0]; map[1] = file_map[1];
         if :: map[0] < file_log[0] -> map[0] = file_log[0] :: else -> skip fi;   /* replayMapLog */
         if :: map[1] < file_log[1] -> map[1] = file_log[1] :: else -> skip fi;
         applied = cat_ckpt;              /* a gap not yet checkpointed is found again on reconnecting */
         connected = false; applying = 0; checkpointing = 0; rec = 0; ckpt = 0;
         dirty[0] = 0; dirty[1] = 0; whole = 0; whole_next = 0;
         taken[0] = 0; taken[1] = 0; record[0] = 0; record[1] = 0;
         crashes++
       }
  od
}

/*
 * A backup: ptrack_get_pagemapset(X) through QueryService.answer, asked once at any moment; the answer is
 * checked for every X at once (an X older than init_lsn is refused: a full backup is needed).
 */
active proctype client() {
  byte target, x, r;
  target = written;                      /* ServerWalPosition.read: the server's position when asked */
  d_step {
#if WAIT_FOR_SERVER
    applied >= target ->                 /* QueryService.#awaitFresh */
#endif
    /* the safety property: every page a record in [X, target] changed is reported (its entry >= X) */
    x = init_lsn;
    do
    :: x <= target ->
         r = x;
         do
         :: r <= target -> assert(map[PAGE(r)] >= x); r++
         :: else -> break
         od;
         x++
    :: else -> break
    od;
    x = 0; r = 0; target = 0
  }
}
