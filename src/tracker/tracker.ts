import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import { Piscina } from 'piscina';
import {
  ArchiveError,
  fetchSegments,
  historyFileName,
  parseTimelineHistory,
  RestoreCommand,
  singleTimeline,
  spanOf,
  type TimelineHistory,
  timelineOfPoint,
} from '../archive/index.ts';
import { Catalog } from '../catalog/index.ts';
import {
  entriesForMapSize,
  FALSE_POSITIVE_HINT,
  falsePositiveRate,
  MAX_MAP_SIZE_MB,
  type MapFileWritten,
  mapSizeForFalsePositiveRate,
  PtrackMap,
} from '../map/index.ts';
import {
  connectClient,
  ReplicationConnection,
  type ServerInfo,
  type WalStream,
} from '../replication/index.ts';
import { formatLsn, type Lsn, parseLsn } from '../wal/index.ts';
import type { ChunkResult, ChunkTask } from './chunk.ts';
import { DataDirLock } from './data-dir-lock.ts';
import { classifyFailure, FollowError } from './failures.ts';
import {
  type CheckpointTask,
  commitCheckpoint,
  loadCheckpointedMap,
  resizeCheckpointedMap,
} from './map-store.ts';
import { ChunkPipeline } from './pipeline.ts';

const DECODE_WORKER = new URL('../../workers/decode.ts', import.meta.url).href;
const CHECKPOINT_WORKER = new URL('../../workers/checkpoint.ts', import.meta.url).href;
/** The chunks cut from the shared WAL window for the decoder workers. */
const CHUNK_BYTES = 4 << 20;

/**
 * The shared WAL window: two segments (an archived segment is read into it whole while the one before
 * is decoded), at least 32 MB, at most 64 MB. Larger is no faster: in alternating 1 GB catch-ups 16 and
 * 32 MB windows were as fast as 64 MB or faster (8 MB slower), and each MB less is a MB less resident.
 */
function windowBytes(segmentSize: number): number {
  return Math.min(64 << 20, 2 * Math.max(16 << 20, segmentSize));
}

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

export interface CatchUpProgress {
  readonly behindBytes: number;
  readonly bytesPerSecond: number;
  /** null while the rate is still 0. */
  readonly etaSeconds: number | null;
  /** The most this catch-up was behind: where a progress bar starts. */
  readonly maxBehindBytes: number;
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
  readonly blocksMarked: number;
  /** How long the last checkpoint took, in seconds. */
  readonly checkpointSeconds: number;
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

/**
 * Follows one server through a physical slot and keeps the map and catalog: WAL is decoded and applied
 * as it arrives; every checkpointIntervalMs or checkpointWalBytes the map is written durably and only
 * then is its LSN reported to the server as the flush position, so the slot never releases WAL the map
 * does not hold (design.md §1, promise 2). On a lost connection it reconnects with backoff and resumes
 * at the last applied record.
 */
export class Tracker {
  readonly #o: TrackerOptions;
  readonly #connectionConfig: pg.ClientConfig;
  #catalog: Catalog | undefined;
  #map: PtrackMap | undefined;
  #server: ServerInfo | null = null;
  /** The server's timeline and those before it. */
  #history: TimelineHistory = singleTimeline(1);
  #connection: ReplicationConnection | undefined;
  #stream: WalStream | undefined;
  #pool: Piscina<ChunkTask, ChunkResult> | undefined;
  #pipeline: ChunkPipeline | undefined;
  /** What resumes the pipeline's input (the archive's reader, or the stream) once it has room again. */
  #onDrain: (() => void) | undefined;
  /**
   * Writes map files in its own thread, so that a large map's checkpoint never stalls decoding. The
   * thread outlives a default checkpoint interval (loading it costs more CPU than a small map's
   * checkpoint) and goes away when checkpoints are rare.
   */
  readonly #checkpointPool = new Piscina<CheckpointTask, MapFileWritten>({
    filename: CHECKPOINT_WORKER,
    minThreads: 0,
    maxThreads: 1,
    idleTimeout: 60_000,
  });
  /** The checkpoint being written, if one is. */
  #checkpointing: Promise<void> | undefined;
  /**
   * How far WAL is applied: just past the last complete record and any alignment padding (a decoder's
   * resumeLsn). It is where decoding resumes and what the server's own positions (the next record's
   * start) are compared with.
   */
  #appliedLsn: Lsn = 0;
  #receivedLsn: Lsn = 0;
  #recordsApplied = 0;
  #blocksMarked = 0;
  #checkpointSeconds = 0;
  /** The map's fill at the last checkpoint. */
  #mapFill = 0;
  /** What to do about that fill's false positives, if anything (#noteMapFill). */
  #mapHint: string | null = null;
  #checkpointLsn: Lsn = 0;
  #serverLsn: Lsn = 0;
  #lastCheckpointAt = Date.now();
  #reconnects = 0;
  #suggestedMapSizeMb: number | null = null;
  #behindSince: number | undefined;
  #stopping = false;
  #requestStop: () => void = () => {};
  readonly #stopRequested = new Promise<void>((r) => (this.#requestStop = r));
  #lock: DataDirLock | undefined;
  #problem: string | null = 'starting';
  #problemSince: number | undefined = Date.now();
  /** WAL arrived since the last failure: the next failure is a new one, with a new count and backoff. */
  #delivered = false;
  /** Why the slot lost WAL we needed, when #inspectSlot found out. */
  #lostWal: string | undefined;
  #running: Promise<void> | undefined;

  constructor(options: TrackerOptions) {
    this.#o = options;
    // A connection attempt into a blocked port would otherwise wait forever (libpq's default, too).
    this.#connectionConfig = { connectionTimeoutMillis: 10_000, ...options.connection };
  }

  /** ptrack's guidance for the map size, for the cluster's size when this process first connected. */
  get suggestedMapSizeMb(): number | null {
    return this.#suggestedMapSizeMb;
  }

  get catalog(): Catalog {
    if (!this.#catalog) throw new Error('the tracker has not started');
    return this.#catalog;
  }

  get catalogPath(): string {
    return join(this.#o.dataDir, 'catalog.db');
  }

  get map(): PtrackMap {
    if (!this.#map) throw new Error('the tracker has not started');
    return this.#map;
  }

  /** How far WAL is applied (cheap: no catalog reads, unlike status()). */
  get appliedLsn(): Lsn {
    return this.#appliedLsn;
  }

  /** Notes when the map fell behind the server, as the positions move (lag in seconds counts from it). */
  #noteBehind(): void {
    if (this.#appliedLsn >= this.#serverLsn) this.#behindSince = undefined;
    else this.#behindSince ??= Date.now();
  }

  status(): TrackerStatus {
    this.#noteBehind();
    const gaps = this.#catalog?.history().filter((h) => h.kind === 'gap') ?? [];
    const state = this.#catalog?.mapState();
    const lastGap = gaps.at(-1);
    return {
      slot: this.#o.slot,
      gaps: gaps.length,
      lagSeconds: this.#behindSince === undefined ? 0 : (Date.now() - this.#behindSince) / 1000,
      mapSizeMb: state?.mapSizeMb ?? 0,
      lastGap: lastGap ? { at: lastGap.at, initLsn: lastGap.initLsn, reason: lastGap.reason } : null,
      server: this.#server,
      streaming: this.#stream !== undefined,
      initLsn: state?.initLsn ?? 0,
      appliedLsn: this.#appliedLsn,
      checkpointLsn: this.#checkpointLsn,
      serverLsn: this.#serverLsn,
      reconnects: this.#reconnects,
      receivedLsn: this.#receivedLsn,
      recordsApplied: this.#recordsApplied,
      blocksMarked: this.#blocksMarked,
      checkpointSeconds: this.#checkpointSeconds,
      mapFill: this.#mapFill,
      suggestedMapSizeMb: this.#suggestedMapSizeMb,
      mapHint: this.#mapHint,
      problem: this.#stream ? null : this.#problem,
      problemSince: this.#stream ? null : (this.#problemSince ?? null),
    };
  }

  /**
   * Takes the data directory for this process when it exists (a new one is created, and locked, only
   * once the server has answered). A second ptrackd on the same directory fails here, having written
   * nothing (DataDirInUseError).
   */
  lockDataDir(): void {
    if (!this.#lock && existsSync(this.#o.dataDir)) this.#lock = DataDirLock.acquire(this.#o.dataDir);
  }

  /** Gives the data directory up (a daemon that could not start). */
  releaseDataDir(): void {
    this.#lock?.release();
    this.#lock = undefined;
  }

  /** Connects, prepares the map and starts following; resolves once streaming has begun. */
  async start(): Promise<void> {
    let resume: Lsn;
    // Before connecting: a backfill from the archive (in #connect) decodes through the same workers.
    this.#pool = new Piscina({
      filename: DECODE_WORKER,
      minThreads: this.#workers,
      maxThreads: this.#workers,
      idleTimeout: Number.POSITIVE_INFINITY,
    });
    try {
      this.lockDataDir();
      resume = await this.#connect({ starting: true });
    } catch (e) {
      await this.#pool.destroy();
      this.#pool = undefined;
      this.#problem = (e as Error).message;
      await this.#connection?.close().catch(() => {});
      this.#catalog?.close();
      this.#catalog = undefined;
      this.releaseDataDir();
      throw e;
    }
    this.#running = this.#follow(resume);
    this.#running.catch(() => {}); // reported through following
  }

  /** Settles when following ends: at stop(), or rejects (FollowError) on a fault waiting cannot mend. */
  get following(): Promise<void> {
    return this.#running ?? Promise.resolve();
  }

  /** Writes a final checkpoint, reports it to the server while the stream is still open, then stops (SIGTERM). */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#requestStop();
    await this.#pipeline?.settle().catch(() => {});
    await this.#checkpointing;
    if (this.#map) await this.#checkpoint('shutdown');
    this.#stream?.stop();
    await this.#running?.catch(() => {});
    await this.#connection?.close().catch(() => {});
    await this.#pool?.destroy();
    await this.#checkpointPool.destroy();
    this.#catalog?.close();
    this.releaseDataDir();
  }

  get #workers(): number {
    return this.#o.workers ?? availableParallelism();
  }

  async #connect({ starting = false } = {}): Promise<Lsn> {
    // A timeline that ended leaves its connection open; a new one replaces it.
    await this.#connection?.close().catch(() => {});
    const connection = await ReplicationConnection.connect(this.#connectionConfig);
    this.#connection = connection;
    const server = await connection.serverInfo();
    this.#history =
      server.timeline === 1
        ? singleTimeline(1)
        : parseTimelineHistory(
            await connection.timelineHistory(server.timeline),
            server.timeline,
            historyFileName(server.timeline),
          );
    // Only a server that answered as a replication peer gets a data directory written for it.
    if (!this.#catalog) {
      this.#lock ??= DataDirLock.acquire(this.#o.dataDir);
      this.#catalog = Catalog.open(this.catalogPath);
    }
    this.#server = server;
    this.#serverLsn = server.xlogPos;
    // The cluster's size (a walk of every database directory on the server) once per process.
    this.#suggestedMapSizeMb ??= await suggestedMapSize(this.#connectionConfig);
    const known = this.catalog.identity();
    const otherCluster = known !== null && known.systemIdentifier !== server.systemId;
    this.catalog.setIdentity({
      systemIdentifier: server.systemId,
      // The map's timeline changes only once its position is known to be on this server's history.
      timeline: known && !otherCluster ? known.timeline : server.timeline,
      serverVersionNum: server.versionNum,
      catalogVersion:
        known && !otherCluster ? known.catalogVersion : await catalogVersion(this.#connectionConfig),
      blockSize: server.blockSize,
      segmentSize: server.segmentSize,
    });
    const slot = this.#o.slot;
    const reinit = this.#o.reinit && !this.#map;
    const followed = this.catalog.mapState()?.slotName;
    if (followed && followed !== slot && !reinit) {
      throw new SlotError(
        `data directory ${this.#o.dataDir} follows slot ${followed}, not ${slot}: its map holds what that slot delivered. ` +
          `Start with --slot ${followed}; or stop tracking with "ptrackd drop --slot ${followed} --data-dir ${this.#o.dataDir}"; ` +
          `or add --reinit to start a new map with slot ${slot} (history is lost, and slot ${followed} stays on the server until dropped)`,
      );
    }
    // Someone else streaming from our slot moves it; that is a second follower, not lost WAL.
    await this.#awaitSlotFree(starting ? 5000 : 0);
    const created = this.#o.createSlot && (await connection.createPhysicalSlot(slot));
    const state = this.catalog.mapState();
    if (state && state.slotName !== slot && !reinit) this.catalog.setSlotName(slot);
    if (otherCluster) {
      const why = `the server is system ${server.systemId}, not ${known.systemIdentifier}: another cluster answers at this address`;
      return this.#startMap(`${why}; a new map starts`, 'gap');
    }
    if (!state || reinit) {
      this.catalog.setTimeline(server.timeline);
      const why = !state
        ? created
          ? `slot ${slot} created`
          : `tracking started with slot ${slot}`
        : `--reinit: a new map replaces the one from ${formatLsn(state.initLsn)}`;
      if (this.#o.initFrom === undefined) return this.#startMap(why, 'init');
      return this.#startMapInThePast(this.#o.initFrom, why);
    }
    if (!this.#map) {
      const loaded = loadCheckpointedMap(this.#o.dataDir, this.catalog, (m) => this.#o.log('warn', m));
      this.#map = loaded.map;
      this.#checkpointLsn = loaded.resumeLsn;
      this.#appliedLsn = loaded.resumeLsn;
      this.#noteMapFill(loaded.map.fillRatio());
      this.#o.log('info', `resuming from the checkpoint at ${formatLsn(loaded.resumeLsn)}`);
      if (this.#o.mapSizeMb !== undefined && this.#o.mapSizeMb !== state.mapSizeMb)
        this.#resize(this.#o.mapSizeMb);
      if (this.#mapHint) this.#o.log('warn', this.#mapHint);
    }
    const onOtherBranch = await this.#joinTimeline(known?.timeline ?? server.timeline);
    if (onOtherBranch) return onOtherBranch;
    // A slot that had to be created again, or that kept less than we need, may start after our position.
    const restart = (await slotState(this.#connectionConfig, slot))?.restartLsn ?? null;
    if (restart !== null && restart > this.#appliedLsn) {
      const why =
        this.#lostWal ??
        (created ? `slot ${slot} was missing and was created again` : `slot ${slot} no longer holds the WAL`);
      this.#lostWal = undefined;
      const from = this.#appliedLsn;
      const missing = this.#o.restoreCommand === undefined ? undefined : await this.#backfill(restart);
      if (missing === null) {
        this.#o.log(
          'info',
          `${why}: WAL from ${formatLsn(from)} read from the archive up to ${formatLsn(this.#appliedLsn)}: no gap`,
        );
        return this.#appliedLsn;
      }
      const archive = missing === undefined ? '' : `, and the archive does not have it either (${missing})`;
      return await this.#gap(
        restart,
        `${why}: WAL from ${formatLsn(this.#appliedLsn)} to ${formatLsn(restart)} is gone${archive}`,
      );
    }
    this.#lostWal = undefined;
    return this.#appliedLsn;
  }

  /** --map-size other than the map's: the map is rebuilt at that size with its history (resizeCheckpointedMap). */
  #resize(mapSizeMb: number): void {
    const started = performance.now();
    let last = started;
    const { map, reason, blocksCarried } = resizeCheckpointedMap(
      this.#o.dataDir,
      this.catalog,
      this.map,
      mapSizeMb,
      ({ blocksDone, blocksTotal }) => {
        const now = performance.now();
        if (now - last < (this.#o.progressIntervalMs ?? 10_000)) return;
        last = now;
        const rate = (blocksDone * 1000) / (now - started);
        this.#o.log(
          'info',
          `resizing the map: ${blocksDone} of ${blocksTotal} blocks, ${Math.round(rate)} blocks/s, ETA ${Math.round((blocksTotal - blocksDone) / rate)} s`,
        );
      },
      crashPoint,
    );
    this.#map = map;
    this.#noteMapFill(map.fillRatio());
    const seconds = (performance.now() - started) / 1000;
    this.#o.log(
      'info',
      `${reason} (${seconds.toFixed(1)} s, ${Math.round(blocksCarried / Math.max(seconds, 1e-3))} blocks/s)`,
    );
  }

  /**
   * The fill changes at checkpoints, loads and resizes; so does the hint (status, a log line at start)
   * said when the estimated false-positive rate passes FALSE_POSITIVE_HINT — not at every status read.
   */
  #noteMapFill(fill: number): void {
    this.#mapFill = fill;
    const rate = falsePositiveRate(fill);
    if (!this.#map || rate <= FALSE_POSITIVE_HINT) {
      this.#mapHint = null;
      return;
    }
    const size = mapSizeForFalsePositiveRate(
      fill,
      this.#map.entries,
      FALSE_POSITIVE_HINT,
      this.catalog.namedBlocks(),
    );
    const now = `the map's estimated false-positive rate is ${(rate * 100).toFixed(1)}%, over ${FALSE_POSITIVE_HINT * 100}%`;
    this.#mapHint =
      size === null
        ? `${now}, and no map up to ${MAX_MAP_SIZE_MB} MB would bring it under: backups copy more than changed`
        : `${now}: restart with --map-size ${size} to bring it under (the map is resized, its history kept)`;
  }

  /**
   * The map's position is on timeline `mapTli`; the server is on its own. Where the server's history
   * left `mapTli` before that position (a failover to a standby promoted while the old primary went on),
   * what was applied past the switch is not this server's WAL: tracking goes back to the switch point
   * and reads the server's timeline from there (the marks already made only add false positives). A
   * timeline not in the server's history at all cannot be placed: that is a gap.
   */
  async #joinTimeline(mapTli: number): Promise<Lsn | undefined> {
    const server = this.#server!;
    if (mapTli === server.timeline) return undefined;
    const span = spanOf(this.#history, mapTli);
    if (!span) {
      const restart = (await slotState(this.#connectionConfig, this.#o.slot))?.restartLsn ?? server.xlogPos;
      const at = await this.#gap(
        restart,
        `the map followed timeline ${mapTli}, which is not in the history of the server's timeline ${server.timeline}`,
      );
      this.catalog.setTimeline(server.timeline);
      return at;
    }
    if (span.end < this.#appliedLsn) {
      this.#o.log(
        'warn',
        `timeline ${mapTli} ended at ${formatLsn(span.end)} on this server, before the map's position ${formatLsn(this.#appliedLsn)}: ` +
          `WAL from ${formatLsn(span.end)} is read again from timeline ${server.timeline}`,
      );
      await this.#checkpointing;
      this.#appliedLsn = span.end;
      await this.#checkpoint('timeline switch');
      if (this.#checkpointLsn !== span.end)
        throw new Error(`could not record the move back to the switch point ${formatLsn(span.end)}`);
    }
    this.catalog.setTimeline(server.timeline);
    return undefined;
  }

  /** A new map from the slot's restart LSN (first start, or another cluster). */
  async #startMap(why: string, kind: 'init' | 'gap'): Promise<Lsn> {
    const restart = (await slotState(this.#connectionConfig, this.#o.slot))?.restartLsn ?? null;
    if (restart === null) {
      throw new SlotError(
        `slot ${this.#o.slot} reserves no WAL (create it with RESERVE_WAL, or let ptrackd create it)`,
      );
    }
    const mapSizeMb = this.#o.mapSizeMb ?? this.#suggestedMapSizeMb!;
    await this.#checkpointing; // of the map this one replaces
    const map = PtrackMap.create(mapSizeMb, restart);
    this.catalog.initMap(mapSizeMb, entriesForMapSize(mapSizeMb), restart, why, kind);
    this.catalog.setSlotName(this.#o.slot);
    this.#map = map;
    this.#noteMapFill(0);
    this.#appliedLsn = restart;
    this.#checkpointLsn = 0;
    await this.#checkpoint('initial');
    this.#o.log(kind === 'gap' ? 'warn' : 'info', `tracking from ${formatLsn(restart)} (${why})`);
    return restart;
  }

  /**
   * A new map whose history starts at `initLsn`, before the slot's restart LSN: the archive is decoded
   * from there up to the slot. The first segment is fetched before anything is written, so an init LSN
   * older than the archive fails at once, naming the file.
   */
  async #startMapInThePast(initLsn: Lsn, why: string): Promise<Lsn> {
    const restart = (await slotState(this.#connectionConfig, this.#o.slot))?.restartLsn ?? null;
    if (restart === null) throw new SlotError(`slot ${this.#o.slot} reserves no WAL`);
    if (initLsn > restart) {
      throw new ArchiveError(
        `--init-from ${formatLsn(initLsn)} is after the slot's restart LSN ${formatLsn(restart)}: nothing to read from the archive`,
      );
    }
    const server = this.#server!;
    const range = {
      tli: server.timeline,
      history: this.#history,
      start: initLsn,
      end: initLsn,
      segmentSize: server.segmentSize,
      systemId: server.systemId,
    };
    const first = fetchSegments(this.#restoreCommand(), range);
    try {
      await first.next(); // there, whole and ours, or an ArchiveError
    } finally {
      await first.return(undefined); // its scratch directory goes
    }
    const mapSizeMb = this.#o.mapSizeMb ?? this.#suggestedMapSizeMb!;
    await this.#checkpointing;
    this.#map = PtrackMap.create(mapSizeMb, initLsn);
    this.catalog.initMap(
      mapSizeMb,
      entriesForMapSize(mapSizeMb),
      initLsn,
      `${why}; --init-from ${formatLsn(initLsn)} (the archive)`,
      'init',
    );
    this.catalog.setSlotName(this.#o.slot);
    this.#noteMapFill(0);
    this.#appliedLsn = initLsn;
    this.#checkpointLsn = 0;
    await this.#checkpoint('initial');
    this.#o.log(
      'info',
      `tracking from ${formatLsn(initLsn)} (--init-from): reading the archive up to the slot at ${formatLsn(restart)}`,
    );
    const missing = await this.#backfill(restart);
    if (missing !== null) {
      return this.#gap(
        restart,
        `the archive ends before the slot's restart LSN ${formatLsn(restart)} (${missing})`,
      );
    }
    return this.#appliedLsn;
  }

  #restoreCommand(): RestoreCommand {
    if (this.#o.restoreCommand === undefined) throw new ArchiveError('--init-from needs --restore-command');
    return new RestoreCommand(this.#o.restoreCommand, {
      timeoutMs: this.#o.restoreTimeoutMs,
      cwd: this.#o.pgdata,
    });
  }

  /**
   * Decodes WAL from the archive, from the applied LSN through the segment holding `until`, through the
   * same pipeline and workers as streamed WAL, and checkpoints. Returns null when it got there, else the
   * first file missing from the archive; anything else wrong with the archive is thrown.
   */
  async #backfill(until: Lsn): Promise<string | null> {
    const server = this.#server!;
    const from = this.#appliedLsn;
    let resume: (() => void) | undefined;
    const pipeline = this.#newPipeline(from);
    this.#pipeline = pipeline;
    this.#onDrain = () => resume?.();
    this.#serverLsn = Math.max(this.#serverLsn, until);
    this.#noteBehind();
    const progress = this.#progressReporter();
    try {
      const range = {
        tli: server.timeline,
        history: this.#history,
        start: from,
        end: until,
        endOnServer: true,
        segmentSize: server.segmentSize,
        systemId: server.systemId,
      };
      for await (const segment of fetchSegments(this.#restoreCommand(), range)) {
        const skip = Math.max(0, from - segment.lsn);
        const read = (into: Uint8Array, offset: number) => segment.readInto(into, skip + offset);
        if (pipeline.pushWith(segment.size - skip, segment.lsn + skip, read)) {
          await Promise.race([new Promise<void>((r) => (resume = r)), pipeline.failed]);
        }
        this.#receivedLsn = pipeline.receivedLsn;
      }
      await pipeline.settle();
    } catch (e) {
      await pipeline.settle().catch(() => {});
      await pipeline.close();
      this.#pipeline = undefined;
      // Only WAL the archive does not have is gone; a command that hung, or a file that is not right,
      // fails this attempt (the next reconnect or start tries again) rather than give history up.
      if (!(e instanceof ArchiveError && e.kind === 'missing')) throw e;
      return e.message;
    } finally {
      clearInterval(progress);
    }
    await this.#checkpoint('archive');
    // The pipeline stays: streaming goes on with it from the first byte the archive did not give, which
    // may be in the middle of a record (the slot's segment need not be archived yet).
    return null;
  }

  /** Continuity is broken: history before `at` is incomplete. init_lsn moves there and says why. */
  async #gap(at: Lsn, why: string): Promise<Lsn> {
    await this.#checkpointing;
    this.catalog.moveInitLsn(at, why);
    this.map.initLsn = at;
    this.#appliedLsn = at;
    await this.#checkpoint('gap');
    this.#o.log('warn', `gap: ${why}; init_lsn is now ${formatLsn(at)}`);
    return at;
  }

  /**
   * Waits up to `ms` for no other process to stream from the slot (a walsender of ours that the server
   * has not yet seen go, after a kill or a cut connection), then refuses with who holds it.
   */
  async #awaitSlotFree(ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    for (;;) {
      const pid = (await slotState(this.#connectionConfig, this.#o.slot))?.activePid ?? null;
      if (pid === null) return;
      if (Date.now() >= deadline) {
        throw new SlotError(
          `slot ${this.#o.slot} is in use by another process (walsender pid ${pid} on the server): is another ptrackd ` +
            'or pg_receivewal following it? Stop it, or give this one its own --slot and --data-dir',
        );
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** After a failed stream: a slot the server invalidated is dropped, so that #connect creates it again. */
  async #inspectSlot(): Promise<void> {
    const slot = await slotState(this.#connectionConfig, this.#o.slot);
    if (slot && (slot.restartLsn === null || slot.walStatus === 'lost')) {
      this.#lostWal = `slot ${this.#o.slot} was invalidated (wal_status ${slot.walStatus}): the server removed WAL it held`;
      await withSql(this.#connectionConfig, (c) =>
        c.query('SELECT pg_drop_replication_slot($1)', [this.#o.slot]),
      );
    }
  }

  /**
   * Streams, and after a failure reconnects: with backoff while the failure may pass (classifyFailure);
   * at once, through a gap, when the server has removed the WAL the map needs next; never for a fault
   * that waiting cannot mend, which ends following (FollowError) for the daemon to exit with.
   */
  async #follow(from: Lsn): Promise<void> {
    let start = from;
    let failures = 0;
    // After the first stream (from start()'s connection), each one begins with a new connection.
    for (let connected = true; !this.#stopping; connected = false) {
      try {
        if (!connected) {
          start = await this.#connect();
          this.#o.log('info', `reconnected: streaming resumes at ${formatLsn(start)}`);
        }
        await this.#stream1(start);
        failures = 0;
      } catch (e) {
        if (this.#stopping) return;
        if (this.#delivered) {
          failures = 0;
          this.#problemSince = undefined;
        }
        this.#delivered = false;
        failures++;
        const failure = classifyFailure(e, this.#o);
        this.#problem = failure.message;
        this.#problemSince ??= Date.now();
        this.#reconnects++;
        await this.#connection?.close().catch(() => {});
        if (failure.kind === 'fatal') {
          this.#o.log('error', `${failure.message}: ${failure.remedy}`);
          throw new FollowError(failure.message, failure.remedy);
        }
        if (
          failure.kind === 'wal-removed' &&
          (await this.#releaseRemovedWal(failure.segment, failure.message))
        )
          continue;
        const delay = Math.min(30_000, 250 * 2 ** Math.min(failures - 1, 7)) * (0.5 + Math.random() / 2);
        this.#o.log(
          'warn',
          `replication interrupted: ${failure.message}; reconnecting in ${Math.round(delay)} ms`,
        );
        await this.#inspectSlot().catch(() => {});
        // A stop does not wait out the backoff (up to 30 s).
        await Promise.race([new Promise((r) => setTimeout(r, delay)), this.#stopRequested]);
      }
    }
  }

  /**
   * The server says the WAL at the map's position is gone (pg_resetwal, a segment removed by hand, a
   * standby that never had it) while the slot still claims it: the slot is dropped so that #connect
   * creates it where WAL is available again, reads what the archive has, and records the rest as a gap
   * naming the segment. False when the slot could not be dropped yet (the next attempt tries again).
   */
  async #releaseRemovedWal(segment: string, message: string): Promise<boolean> {
    const slot = this.#o.slot;
    // A slot the server invalidated says why itself (and is dropped by #inspectSlot).
    await this.#inspectSlot().catch(() => {});
    if (this.#lostWal) return true;
    if (!this.#o.createSlot) {
      const remedy = `drop slot ${slot} and create it again (SELECT pg_drop_replication_slot('${slot}'); SELECT pg_create_physical_replication_slot('${slot}', true)), or drop --no-create-slot; ptrackd then records a gap from the new slot's position`;
      this.#o.log('error', `${message}: ${remedy}`);
      throw new FollowError(message, remedy);
    }
    this.#o.log(
      'info',
      `the server no longer has WAL segment ${segment}, which the map needs next: slot ${slot} is made again where WAL is available`,
    );
    try {
      await this.#awaitSlotFree(10_000);
      await withSql(this.#connectionConfig, (c) => c.query('SELECT pg_drop_replication_slot($1)', [slot]));
    } catch (e) {
      this.#o.log('warn', `could not drop slot ${slot} yet: ${(e as Error).message}`);
      return false;
    }
    this.#lostWal = `the server no longer has WAL segment ${segment} (${message}), and slot ${slot} was made again`;
    return true;
  }

  /** One START_REPLICATION from `startLsn` (where the last complete record applied ends) until it ends. */
  async #stream1(startLsn: Lsn): Promise<void> {
    // After a backfill, its pipeline: the stream continues the WAL the archive gave.
    const pipeline = this.#pipeline ?? this.#newPipeline(startLsn);
    this.#pipeline = pipeline;
    const from = pipeline.receivedLsn;
    this.#receivedLsn = from;
    // From a point before the server's timeline began, its history's timeline, which the server ends at
    // the switch (the stream then ends and the next connect goes on with the next timeline).
    const timeline = timelineOfPoint(this.#history, from);
    const stream = this.#connection!.startReplication(this.#o.slot, from, timeline, {
      positions: () => this.#checkpointLsn,
      timeoutMs: this.#o.replicationTimeoutMs,
      onWal: (bytes, walStart, walEnd) => {
        this.#delivered = true;
        this.#serverLsn = Math.max(this.#serverLsn, walEnd);
        this.#noteBehind();
        if (pipeline.push(bytes, walStart)) stream.pause();
        this.#receivedLsn = pipeline.receivedLsn;
      },
    });
    this.#stream = stream;
    this.#onDrain = () => stream.resume();
    const timer = setInterval(
      () => {
        if (this.#checkpointDue()) void this.#checkpoint('periodic');
      },
      Math.min(1000, this.#o.checkpointIntervalMs),
    );
    const progress = this.#progressReporter();
    try {
      await Promise.race([stream.done, pipeline.failed]);
    } finally {
      clearInterval(timer);
      clearInterval(progress);
      this.#stream = undefined;
      await pipeline.close();
      this.#pipeline = undefined;
    }
  }

  /** WAL from `start` into the window, decoded by the workers, applied in LSN order (streamed or archived). */
  #newPipeline(start: Lsn): ChunkPipeline {
    const server = this.#server!;
    const pool = this.#pool!;
    return new ChunkPipeline({
      start,
      task: {
        map: this.map.buffer,
        segmentSize: server.segmentSize,
        blockSize: server.blockSize,
        major: server.major,
      },
      pageSize: server.walBlockSize,
      windowSize: windowBytes(server.segmentSize),
      chunkSize: CHUNK_BYTES,
      maxInFlight: 2 * this.#workers,
      // Under steady load most chunks are partial: each costs a task round trip, so not too many.
      flushDelayMs: 50,
      run: (task) => pool.run(task),
      onApplied: (ops, applied, records, blocks) => {
        this.catalog.applyOps(ops);
        this.#appliedLsn = applied;
        this.#noteBehind();
        this.#recordsApplied += records;
        this.#blocksMarked += blocks;
        if (this.#checkpointDue()) void this.#checkpoint('periodic');
      },
      onDrain: () => this.#onDrain?.(),
      onWarn: (m) => this.#o.log('warn', m),
    });
  }

  /** During catch-up: how far behind, how fast, and when it should be done. */
  #progressReporter(): ReturnType<typeof setInterval> {
    const every = this.#o.progressIntervalMs ?? 10_000;
    let last = { at: Date.now(), applied: this.#appliedLsn };
    let maxBehind = 0;
    return setInterval(() => {
      const now = Date.now();
      const behind = this.#serverLsn - this.#appliedLsn;
      const rate = ((this.#appliedLsn - last.applied) * 1000) / Math.max(1, now - last.at);
      last = { at: now, applied: this.#appliedLsn };
      const caughtUp = behind < 1 << 20;
      if (caughtUp && maxBehind === 0) return;
      maxBehind = Math.max(maxBehind, behind);
      const progress = {
        behindBytes: behind,
        bytesPerSecond: Math.round(rate),
        etaSeconds: rate > 0 ? Math.round(behind / rate) : null,
        maxBehindBytes: maxBehind,
      };
      // One last report when catch-up ends, so a progress bar reaches 100%.
      if (caughtUp) maxBehind = 0;
      if (this.#o.onProgress) return this.#o.onProgress(progress);
      this.#o.log('info', describeProgress(progress), progress);
    }, every);
  }

  #checkpointDue(): boolean {
    const applied = this.#appliedLsn;
    if (applied <= this.#checkpointLsn) return false;
    return (
      Date.now() - this.#lastCheckpointAt >= this.#o.checkpointIntervalMs ||
      applied - this.#checkpointLsn >= this.#o.checkpointWalBytes
    );
  }

  /**
   * Durable map file (written by the checkpoint thread) + catalog record (commitCheckpoint), and only
   * then the slot's flush position. One at a time: while one is being written, asking again waits for it. A failure is logged
   * and the next one is tried when due; the slot stays at the last good checkpoint meanwhile.
   */
  #checkpoint(why: string): Promise<void> {
    if (this.#checkpointing) return this.#checkpointing;
    const lsn = this.#appliedLsn;
    const started = performance.now();
    const catalog = this.catalog;
    this.#checkpointing = this.#checkpointPool
      .run({ dataDir: this.#o.dataDir, map: this.map.buffer })
      .then(({ blockCrcs, fill }) => {
        commitCheckpoint(this.#o.dataDir, catalog, lsn, blockCrcs, crashPoint);
        this.#noteMapFill(fill);
        this.#checkpointSeconds = (performance.now() - started) / 1000;
        this.#checkpointLsn = lsn;
        this.#lastCheckpointAt = Date.now();
        this.#stream?.sendStatus(lsn);
        this.#o.log('info', `checkpoint at ${formatLsn(lsn)} (${why})`);
      })
      .catch((e: Error) => {
        this.#o.log('error', `checkpoint at ${formatLsn(lsn)} failed, will retry: ${e.message}`);
      })
      .finally(() => {
        this.#checkpointing = undefined;
      });
    return this.#checkpointing;
  }
}

/** "catching up: 812.0 MB behind, 95.1 MB/s, ETA 9 s", or "caught up" at the end. */
export function describeProgress(p: CatchUpProgress): string {
  const mb = (n: number) => (n / 2 ** 20).toFixed(1);
  if (p.behindBytes < 1 << 20) return `caught up: ${mb(p.maxBehindBytes)} MB of WAL applied`;
  const eta = p.etaSeconds === null ? 'unknown' : `${p.etaSeconds} s`;
  return `catching up: ${mb(p.behindBytes)} MB behind, ${mb(p.bytesPerSecond)} MB/s, ETA ${eta}`;
}

/** The slot named is not this data directory's, or another process streams from it. */
export class SlotError extends Error {
  override readonly name = 'SlotError';
}

/** ptrack's guidance: map_size of about 1/1024 of the cluster's size, here at least 64 MB (and at most 32 GB). */
async function suggestedMapSize(config: pg.ClientConfig): Promise<number> {
  return withSql(config, async (c) => {
    const bytes = Number(
      (await c.query('SELECT sum(pg_database_size(oid))::bigint AS size FROM pg_database')).rows[0].size,
    );
    return Math.min(MAX_MAP_SIZE_MB, Math.max(64, Math.ceil(bytes / 1024 / 2 ** 20)));
  });
}

/** A regular (non-replication) connection, to database postgres unless the settings name another. */
async function sqlClient(config: pg.ClientConfig): Promise<pg.Client> {
  const { default: pgModule } = await import('pg');
  const client = new pgModule.Client({ database: 'postgres', ...config });
  await connectClient(client, 'could not connect');
  return client;
}

/** A regular (non-replication) connection for what the replication protocol cannot ask before 15. */
async function withSql<T>(config: pg.ClientConfig, f: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = await sqlClient(config);
  try {
    return await f(client);
  } finally {
    await client.end().catch(() => {});
  }
}

const SERVER_POSITION_SQL =
  'SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_flush_lsn() END)::text AS lsn';

/**
 * The server's current WAL position, what a query waits for by default, asked over one connection that
 * stays open while questions come (a new connection made each answer ~20 ms slower). A connection that
 * fails, or is slower than `timeoutMs`, is dropped and the next question makes a new one; after
 * `idleMs` without a question it is closed, so that an idle daemon holds no backend on the server.
 */
export class ServerWalPosition {
  readonly #config: pg.ClientConfig;
  readonly #timeoutMs: number;
  readonly #idleMs: number;
  #client: Promise<pg.Client> | undefined;
  #idle: NodeJS.Timeout | undefined;

  constructor(config: pg.ClientConfig, o: { timeoutMs?: number; idleMs?: number } = {}) {
    this.#config = config;
    this.#timeoutMs = o.timeoutMs ?? 10_000;
    this.#idleMs = o.idleMs ?? 60_000;
  }

  async read(): Promise<Lsn> {
    clearTimeout(this.#idle);
    const kept = this.#client !== undefined;
    try {
      return await this.#ask();
    } catch (e) {
      // A kept connection the server has closed since (a restart) is not the server being unreachable.
      if (!kept) throw e;
      return await this.#ask();
    } finally {
      this.#idle = setTimeout(() => this.close(), this.#idleMs).unref();
    }
  }

  async #ask(): Promise<Lsn> {
    const client = this.#client ?? this.#connect();
    let timer: NodeJS.Timeout | undefined;
    try {
      const result = await Promise.race([
        client.then((c) => c.query(SERVER_POSITION_SQL)),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`the server did not answer within ${this.#timeoutMs / 1000} s`)),
            this.#timeoutMs,
          );
        }),
      ]);
      return parseLsn(String(result.rows[0].lsn));
    } catch (e) {
      this.#drop(client);
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  close(): void {
    clearTimeout(this.#idle);
    if (this.#client) this.#drop(this.#client);
  }

  /** A new connection, kept until it fails or ends (the server restarting, idle_session_timeout). */
  #connect(): Promise<pg.Client> {
    const connecting = sqlClient({ connectionTimeoutMillis: this.#timeoutMs, ...this.#config });
    this.#client = connecting;
    connecting.then(
      (c) =>
        c.on('end', () => {
          if (this.#client === connecting) this.#client = undefined;
        }),
      () => {},
    );
    return connecting;
  }

  #drop(client: Promise<pg.Client>): void {
    if (this.#client === client) this.#client = undefined;
    client.then((c) => c.end()).catch(() => {});
  }
}

async function catalogVersion(config: pg.ClientConfig): Promise<number> {
  return withSql(config, async (c) =>
    Number((await c.query('SELECT catalog_version_no FROM pg_control_system()')).rows[0].catalog_version_no),
  );
}

/** The slot as pg_replication_slots shows it, or null when it does not exist. */
async function slotState(
  config: pg.ClientConfig,
  slot: string,
): Promise<{ restartLsn: Lsn | null; walStatus: string; activePid: number | null } | null> {
  return withSql(config, async (c) => {
    const sql =
      'SELECT restart_lsn::text AS lsn, wal_status, active_pid FROM pg_replication_slots WHERE slot_name = $1';
    const row = (await c.query(sql, [slot])).rows[0];
    if (!row) return null;
    return {
      restartLsn: row.lsn ? parseLsn(String(row.lsn)) : null,
      walStatus: String(row.wal_status),
      activePid: row.active_pid === null ? null : Number(row.active_pid),
    };
  });
}

/**
 * Stops the process at once, as a crash would, where CRASH_PTRACKD_AT names this moment: how the
 * tests show that a kill at any step of a resize or a checkpoint leaves a whole map.
 */
function crashPoint(name: string): void {
  if (process.env.CRASH_PTRACKD_AT === name) process.kill(process.pid, 'SIGKILL');
}
