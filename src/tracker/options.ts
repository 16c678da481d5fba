import type pg from 'pg';
import type { ServerInfo } from '../replication/index.ts';
import type { Lsn } from '../wal/index.ts';
import type { CatchUpProgress } from './progress.ts';

/** What a Tracker is told, what it reports, and the errors it raises for the daemon to say. */

export interface TrackerOptions {
  readonly dataDir: string;
  readonly slot: string;
  readonly connection: pg.ClientConfig;
  /**
   * ptrack.map_size in MB for a new map; undefined: the cluster's size / 1024, at least 64 MB (ptrack's
   * guidance). A later start that names another size is refused unless `reinit`.
   */
  readonly mapSizeMb?: number;
  /** Start a new map (history restarts at the slot's position) even though one exists. */
  readonly reinit?: boolean;
  readonly checkpointIntervalMs: number;
  readonly checkpointWalBytes: number;
  /**
   * MB of changed lines the checkpoint log may hold before a checkpoint writes the whole map again
   * (default: a quarter of the map; 0: every checkpoint writes the whole map).
   */
  readonly checkpointLogMb?: number;
  readonly createSlot: boolean;
  /**
   * PostgreSQL's restore_command for the WAL archive: WAL the slot no longer holds is read from there
   * (backfill) before any gap is recorded, and --init-from starts the map in the past.
   */
  readonly restoreCommand?: string;
  readonly restoreTimeoutMs?: number;
  /** The server's data directory when readable here: the restore command runs in it, as the server runs it. */
  readonly pgdata?: string;
  /** On first start (or with reinit): init_lsn here, in the past, the archive decoded from it (restoreCommand). */
  readonly initFrom?: Lsn;
  /** No message from the server for this long (ms): the connection is presumed lost (default 60 s). */
  readonly replicationTimeoutMs?: number;
  /** Decoder worker threads (default: the number of cores). */
  readonly workers?: number;
  /** While behind the server by 1 MB or more, onProgress this often (ms). */
  readonly progressIntervalMs?: number;
  /** Catch-up progress; without it, a log line. */
  readonly onProgress?: (p: CatchUpProgress) => void;
  readonly log: (level: 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>) => void;
}

export interface TrackerStatus {
  readonly slot: string;
  readonly server: ServerInfo | null;
  readonly streaming: boolean;
  readonly initLsn: Lsn;
  readonly appliedLsn: Lsn;
  readonly checkpointLsn: Lsn;
  readonly serverLsn: Lsn;
  readonly reconnects: number;
  /** The end of the WAL received from the server. */
  readonly receivedLsn: Lsn;
  readonly recordsApplied: number;
  /** WAL applied to the map since start, in bytes (streamed or read from the archive). */
  readonly walBytesApplied: number;
  readonly blocksMarked: number;
  /** How long the last checkpoint took, in seconds. */
  readonly checkpointSeconds: number;
  /** Bytes checkpoints wrote since start: changed lines to the log, and whole maps. */
  readonly checkpointBytesWritten: number;
  /** Checkpoints since start that wrote the whole map. */
  readonly wholeMapWrites: number;
  /** Bytes the checkpoint log holds (emptied when the whole map is written). */
  readonly checkpointLogBytes: number;
  /** Fraction of map entries in use, as of the last checkpoint. */
  readonly mapFill: number;
  /** Seconds the oldest WAL not yet applied has been waiting (0 when caught up). */
  readonly lagSeconds: number;
  readonly mapSizeMb: number;
  /** ptrack's guidance (about 1/1024 of the cluster's size) as of start; null: not known. */
  readonly suggestedMapSizeMb: number | null;
  /** Set when the estimated false-positive rate is past FALSE_POSITIVE_HINT: what to do about it. */
  readonly mapHint: string | null;
  readonly gaps: number;
  /** The last gap in the history, if any. */
  readonly lastGap: { readonly at: string; readonly initLsn: Lsn | null; readonly reason: string } | null;
  /** Why the daemon is not streaming (the last connection or stream failure), null while it streams. */
  readonly problem: string | null;
  /** Since when (ms since the epoch) the daemon has not streamed: how long the current failure has lasted. */
  readonly problemSince: number | null;
}

/** The slot named is not this data directory's, or another process streams from it. */
export class SlotError extends Error {
  override readonly name = 'SlotError';
}
