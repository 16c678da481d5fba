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
  singleTimeline,
  type TimelineHistory,
  timelineOfPoint,
} from '../archive/index.ts';
import { Catalog } from '../catalog/index.ts';
import { MAX_MAP_SIZE_MB, type PtrackMap } from '../map/index.ts';
import { clusterSize, ReplicationConnection, type ServerInfo, type WalStream } from '../replication/index.ts';
import { formatLsn, type Lsn } from '../wal/index.ts';
import { CheckpointWriter } from './checkpoint-writer.ts';
import type { ChunkResult, ChunkTask } from './chunk.ts';
import { MapContinuity, restoreCommand } from './continuity.ts';
import { DataDirLock } from './data-dir-lock.ts';
import { classifyFailure, FollowError } from './failures.ts';
import { HeldCatalogOps } from './held-ops.ts';
import { loadCheckpointedMap, mapFillHint, resizeWithProgress } from './map-store.ts';
import type { TrackerOptions, TrackerStatus } from './options.ts';
import { ChunkPipeline } from './pipeline.ts';
import { describeProgress, reportProgress } from './progress.ts';

const DECODE_WORKER = new URL('../../workers/decode.ts', import.meta.url).href;
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

/**
 * Follows one server through a physical slot and keeps the map and catalog: WAL is decoded and applied
 * as it arrives; every checkpointIntervalMs or checkpointWalBytes the map is written durably and only
 * then is its LSN reported to the server as the flush position, so the slot never releases WAL the map
 * does not hold (design.md §1, promise 2). On a lost connection it reconnects with backoff and resumes
 * at the last applied record (classifyFailure says which failures end it instead).
 *
 * It owns the connection, the streaming loop, the decoding pipeline and when checkpoints are due, and
 * the status. Where the map starts or resumes, and every gap, is MapContinuity's; writing a checkpoint
 * is CheckpointWriter's; what ptrackd asks in plain SQL is replication/server-sql's.
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
  readonly #checkpoints: CheckpointWriter;
  /** The checkpoint being written, if one is. */
  #checkpointing: Promise<void> | undefined;
  /**
   * How far WAL is applied: just past the last complete record and any alignment padding (a decoder's
   * resumeLsn). It is where decoding resumes and what the server's own positions (the next record's
   * start) are compared with.
   */
  #appliedLsn: Lsn = 0;
  /** Catalog operations of chunks already in the map, written together (#settle). */
  readonly #held = new HeldCatalogOps();
  #receivedLsn: Lsn = 0;
  #recordsApplied = 0;
  #walBytesApplied = 0;
  #blocksMarked = 0;
  #checkpointSeconds = 0;
  /** Bytes checkpoints wrote (map file and log) since start, and how many wrote the whole map. */
  #checkpointBytes = 0;
  #wholeMapWrites = 0;
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
  readonly #continuity: MapContinuity;
  #running: Promise<void> | undefined;

  constructor(options: TrackerOptions) {
    this.#o = options;
    this.#checkpoints = new CheckpointWriter(options.dataDir, { logLimitMb: options.checkpointLogMb });
    // A connection attempt into a blocked port would otherwise wait forever (libpq's default, too).
    this.#connectionConfig = { connectionTimeoutMillis: 10_000, ...options.connection };
    const tracker = this;
    this.#continuity = new MapContinuity({
      options,
      sql: this.#connectionConfig,
      get catalog() {
        return tracker.catalog;
      },
      get server() {
        return tracker.#server!;
      },
      get history() {
        return tracker.#history;
      },
      get suggestedMapSizeMb() {
        return tracker.#suggestedMapSizeMb!;
      },
      get map() {
        return tracker.map;
      },
      get appliedLsn() {
        return tracker.#appliedLsn;
      },
      set appliedLsn(lsn: Lsn) {
        tracker.#appliedLsn = lsn;
      },
      get checkpointLsn() {
        return tracker.#checkpointLsn;
      },
      adoptMap: (map) => {
        this.#map = map;
        this.#checkpointLsn = 0;
        this.#noteMapFill(0);
      },
      settleCheckpoint: async () => {
        await this.#checkpointing;
      },
      checkpoint: async (why) => {
        await this.#checkpointing;
        await this.#checkpoint(why);
      },
      decodeArchive: (until) => this.#decodeArchive(until),
      loadMap: (mapSizeMb) => this.#loadMap(mapSizeMb),
    });
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
  /**
   * How far WAL is applied to the map and the catalog. Asking is what a query waiting to be fresh does:
   * WAL received is decoded at once (not a flush delay later), and the catalog operations held back are
   * written, so that the query may rely on both up to it.
   */
  get appliedLsn(): Lsn {
    this.#pipeline?.flushNow();
    this.#trySettle();
    return this.#appliedLsn;
  }

  /** How far WAL is applied to the map (its catalog operations maybe held back). */
  get #markedLsn(): Lsn {
    return this.#held.appliedLsn ?? this.#appliedLsn;
  }

  /** Writes the held catalog operations in one transaction; only then does the applied LSN move. */
  #settle(): void {
    const settled = this.#held.write(this.catalog);
    if (!settled) return;
    this.#walBytesApplied += Math.max(0, settled.applied - this.#appliedLsn);
    this.#appliedLsn = settled.applied;
    this.#recordsApplied += settled.records;
    this.#blocksMarked += settled.blocks;
  }

  /**
   * #settle where a failure must not escape (a status, a query's wait): the applied LSN then stays, and
   * the next chunk meets the error again. Returns whether the catalog is written.
   */
  #trySettle(): boolean {
    try {
      this.#settle();
      return true;
    } catch {
      return false;
    }
  }

  /**
   * The pipeline is gone: its held operations are written, or, if they cannot be, dropped — following
   * resumes from the applied LSN and decodes those records again.
   */
  #settleOrForget(): void {
    if (!this.#trySettle()) this.#held.forget();
  }

  /** Notes when the map fell behind the server, as the positions move (lag in seconds counts from it). */
  #noteBehind(): void {
    if (this.#markedLsn >= this.#serverLsn) this.#behindSince = undefined;
    else this.#behindSince ??= Date.now();
  }

  status(): TrackerStatus {
    this.#trySettle();
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
      walBytesApplied: this.#walBytesApplied,
      blocksMarked: this.#blocksMarked,
      checkpointSeconds: this.#checkpointSeconds,
      checkpointBytesWritten: this.#checkpointBytes,
      wholeMapWrites: this.#wholeMapWrites,
      checkpointLogBytes: state?.logBytes ?? 0,
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
    return this.#continuity.begin({
      reinit: this.#o.reinit === true && !this.#map,
      // Someone else streaming from our slot moves it; that is a second follower, not lost WAL.
      createSlot: async () => {
        await this.#continuity.awaitSlotFree(starting ? 5000 : 0);
        return this.#o.createSlot && (await connection.createPhysicalSlot(this.#o.slot));
      },
    });
  }

  /** The map as its last checkpoint left it (once per process), resized when --map-size names another size. */
  #loadMap(mapSizeMb: number): void {
    if (this.#map) return;
    const loaded = loadCheckpointedMap(this.#o.dataDir, this.catalog, (m) => this.#o.log('warn', m));
    this.#map = loaded.map;
    this.#checkpoints.mapFileRead(loaded.fileInitLsn, loaded.repairs.length > 0);
    this.#checkpointLsn = loaded.checkpointLsn;
    this.#appliedLsn = loaded.checkpointLsn;
    this.#noteMapFill(loaded.map.fillRatio());
    this.#o.log('info', `resuming from the checkpoint at ${formatLsn(loaded.checkpointLsn)}`);
    if (this.#o.mapSizeMb !== undefined && this.#o.mapSizeMb !== mapSizeMb) {
      // --map-size other than the map's: rebuilt at that size with its history
      this.#map = resizeWithProgress(this.#o.dataDir, this.catalog, this.#map, this.#o.mapSizeMb, this.#o);
      this.#noteMapFill(this.#map.fillRatio());
    }
    if (this.#mapHint) this.#o.log('warn', this.#mapHint);
  }

  /**
   * The fill changes at checkpoints, loads and resizes; so does the hint (status, a log line at start)
   * said when the estimated false-positive rate passes FALSE_POSITIVE_HINT — not at every status read.
   */
  #noteMapFill(fill: number): void {
    this.#mapFill = fill;
    this.#mapHint = this.#map ? mapFillHint(fill, this.#map.entries, () => this.catalog.namedBlocks()) : null;
  }

  /**
   * Decodes WAL from the archive, from the applied LSN through the segment holding `until`, through the
   * same pipeline and workers as streamed WAL, and checkpoints. Returns null when it got there, else the
   * first file missing from the archive; anything else wrong with the archive is thrown.
   */
  async #decodeArchive(until: Lsn): Promise<string | null> {
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
      for await (const segment of fetchSegments(restoreCommand(this.#o), range)) {
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
      this.#settleOrForget();
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
          (await this.#continuity.releaseRemovedWal(failure.segment, failure.message))
        )
          continue;
        const delay = Math.min(30_000, 250 * 2 ** Math.min(failures - 1, 7)) * (0.5 + Math.random() / 2);
        this.#o.log(
          'warn',
          `replication interrupted: ${failure.message}; reconnecting in ${Math.round(delay)} ms`,
        );
        await this.#continuity.inspectSlot().catch(() => {});
        // A stop does not wait out the backoff (up to 30 s).
        await Promise.race([new Promise((r) => setTimeout(r, delay)), this.#stopRequested]);
      }
    }
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
        if (this.#held.due) this.#trySettle();
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
      this.#settleOrForget();
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
        map: this.map.buffers,
        segmentSize: server.segmentSize,
        blockSize: server.blockSize,
        major: server.major,
      },
      pageSize: server.walBlockSize,
      windowSize: windowBytes(server.segmentSize),
      chunkSize: CHUNK_BYTES,
      maxInFlight: 2 * this.#workers,
      // Under steady load most chunks are partial, and each costs a task round trip: at 20 TPS, 50 ms
      // cost 1.35 s of CPU a minute, 1 s 0.82 s. A query does not wait it out (appliedLsn).
      flushDelayMs: 1000,
      run: (task) => pool.run(task),
      onApplied: (ops, applied, records, blocks) => {
        this.#held.hold(ops, applied, records, blocks);
        if (this.#held.due) this.#settle();
        this.#noteBehind();
        if (this.#checkpointDue()) void this.#checkpoint('periodic');
      },
      onDrain: () => this.#onDrain?.(),
      onWarn: (m) => this.#o.log('warn', m),
    });
  }

  /** During catch-up: how far behind, how fast, and when it should be done. */
  #progressReporter(): ReturnType<typeof setInterval> {
    return reportProgress(
      this.#o.progressIntervalMs ?? 10_000,
      () => ({ serverLsn: this.#serverLsn, appliedLsn: this.#markedLsn }),
      (progress) => {
        if (this.#o.onProgress) return this.#o.onProgress(progress);
        this.#o.log('info', describeProgress(progress), { ...progress });
      },
    );
  }

  #checkpointDue(): boolean {
    const applied = this.#markedLsn;
    if (applied <= this.#checkpointLsn) return false;
    return (
      Date.now() - this.#lastCheckpointAt >= this.#o.checkpointIntervalMs ||
      applied - this.#checkpointLsn >= this.#o.checkpointWalBytes
    );
  }

  /**
   * The map's changed lines (or, now and then, the whole map) durably written with the catalog's record
   * (CheckpointWriter), and only then the slot's flush position. One at a time: while one is being
   * written, asking again waits for it. A failure is logged and the next one is tried when due; the slot
   * stays at the last good checkpoint meanwhile.
   */
  #checkpoint(why: string): Promise<void> {
    if (this.#checkpointing) return this.#checkpointing;
    try {
      this.#settle();
    } catch (e) {
      this.#o.log('error', `checkpoint failed, will retry: ${(e as Error).message}`);
      return Promise.resolve();
    }
    const lsn = this.#appliedLsn;
    this.#checkpointing = this.#checkpoints
      .write(this.map, this.catalog, lsn)
      .then(({ kind, bytes, seconds }) => {
        this.#noteMapFill(this.map.fillRatio());
        this.#checkpointSeconds = seconds;
        this.#checkpointBytes += bytes;
        if (kind === 'whole') this.#wholeMapWrites++;
        this.#checkpointLsn = lsn;
        this.#lastCheckpointAt = Date.now();
        this.#stream?.sendStatus(lsn);
        this.#o.log('info', `checkpoint at ${formatLsn(lsn)} (${why}): ${describeWrite(kind, bytes)}`);
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

function describeWrite(kind: 'log' | 'whole', bytes: number): string {
  const size = bytes < 2 ** 20 ? `${(bytes / 1024).toFixed(1)} kB` : `${(bytes / 2 ** 20).toFixed(1)} MB`;
  return kind === 'whole' ? `the whole map written, ${size}` : `${size} of changed lines logged`;
}

/** ptrack's guidance: map_size of about 1/1024 of the cluster's size, here at least 64 MB (and at most 32 GB). */
async function suggestedMapSize(config: pg.ClientConfig): Promise<number> {
  const bytes = await clusterSize(config);
  return Math.min(MAX_MAP_SIZE_MB, Math.max(64, Math.ceil(bytes / 1024 / 2 ** 20)));
}
