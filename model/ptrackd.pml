/*
 * ptrackd's tracking protocol, for the SPIN model checker: the server (WAL, the slot, WAL removal, a slot
 * lost), ptrackd (apply, checkpoint, flush position, crash, restart, reconnect, gap, backfill from an
 * archive) and a backup client (ask for the pages changed since X, wait for the server's position).
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
#define CRASHES 3           /* ptrackd killed (kill -9, OOM) at any point */
#define DISCONNECTS 1       /* the replication connection cut, ptrackd running */
#define SLOT_LOSSES 1       /* the slot dropped or invalidated (max_slot_wal_keep_size) */

/* The protocol's rules. model/check.sh changes one of these lines at a time and expects a counterexample. */
#define FLUSH_POSITION cat_ckpt      /* the flush position reported is the durable checkpoint's LSN */
#define MARK_BEFORE_APPLIED 1        /* marks reach the map before the applied LSN moves */
#define MAP_FILE_BEFORE_CATALOG 1    /* a checkpoint writes the map file before its catalog record */
#define WAIT_FOR_SERVER 1            /* a query waits until the server's position is applied */

/* The server. */
byte written = 0;           /* records 1..written are in the WAL */
byte removed = 0;           /* records 1..removed are gone from pg_wal (recycled) */
byte slot_restart = 0;      /* the slot keeps every record after slot_restart (its restart_lsn) */
bool slot_lost = false;     /* the slot is gone: dropped, or invalidated */
bool archive;               /* archive_mode with a restore_command ptrackd can read: nothing is ever lost */
bool wal_lost = false;      /* ghost: the server removed WAL that a slot was keeping for ptrackd */

/* ptrackd's data directory: what survives a crash. */
byte file_map[P];           /* ptrack.map, as last written whole (write to a temporary file, rename) */
byte cat_ckpt = 0;          /* catalog: the checkpoint LSN the map file stands for */
byte init_lsn = 1;          /* catalog: the oldest X a question may ask about */
byte gaps = 0;              /* catalog: history entries of kind 'gap' */

/* ptrackd's memory. */
byte map[P];
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
  byte checkpointing = 0;    /* Tracker.#checkpoint: 1 = LSN taken, 2 = first durable write done */
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
#if MARK_BEFORE_APPLIED
         if :: map[PAGE(rec)] < rec -> map[PAGE(rec)] = rec :: else -> skip fi;   /* WalApplier.#mark, PtrackMap.markBlock */
#else
         applied = rec;
#endif
         applying = 1
       }
  :: applying ->
       atomic {
#if MARK_BEFORE_APPLIED
         applied = rec;                                                          /* ChunkPipeline.#applyHead */
#else
         if :: map[PAGE(rec)] < rec -> map[PAGE(rec)] = rec :: else -> skip fi;   /* (mutant: mark last) */
#endif
         applying = 0; rec = 0
       }
  /* Tracker.#checkpoint: the LSN is taken, the checkpoint thread writes the map as it is then (a superset
     of what that LSN needs), Catalog.recordCheckpoint, and WalStream.sendStatus reports the flush position. */
  :: checkpointing == 0 -> ckpt = applied; checkpointing = 1   /* Tracker.#checkpoint: const lsn = applied */
  :: checkpointing == 1 ->
       atomic {
#if MAP_FILE_BEFORE_CATALOG
         file_map[0] = map[0]; file_map[1] = map[1];   /* writeCheckpointFile, and commitCheckpoint's rename */
#else
         cat_ckpt = ckpt;
#endif
         checkpointing = 2
       }
  :: checkpointing == 2 ->
       atomic {
#if MAP_FILE_BEFORE_CATALOG
         cat_ckpt = ckpt;                                             /* Catalog.recordCheckpoint */
#else
         file_map[0] = map[0]; file_map[1] = map[1];
#endif
         if :: connected -> slot_restart = FLUSH_POSITION :: else -> skip fi;   /* WalStream.sendStatus */
         checkpointing = 0; ckpt = 0
       }
  /* A standby status update between checkpoints (keepalive replies) reports the flush position too. */
  :: connected -> slot_restart = FLUSH_POSITION        /* WalStream's status timer: sendStatus(positions()) */
  /* The connection is cut: ptrackd keeps its memory and reconnects (Tracker.#follow's retry); a record
     decoded but not yet applied is dropped with the pipeline (ChunkPipeline.close), its marks stay. */
  :: connected && disconnects < DISCONNECTS ->
       atomic { connected = false; applying = 0; rec = 0; disconnects++ }   /* Tracker.#follow's catch */
  /* kill -9 anywhere: memory is gone; Tracker.start loads the last checkpoint (loadCheckpointedMap). */
  :: crashes < CRASHES ->
       atomic {
         map[0] = file_map[0]; map[1] = file_map[1];
         applied = cat_ckpt;              /* a gap not yet checkpointed is found again on reconnecting */
         connected = false; applying = 0; checkpointing = 0; rec = 0; ckpt = 0;
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
