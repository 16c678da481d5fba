import type { CatalogOp } from '../catalog/index.ts';
import { formatLsn, type Lsn, prevLinkError, WalDecodeError } from '../wal/index.ts';
import type { ChunkResult, ChunkTask } from './chunk.ts';
import { copiedFrom, WalWindow } from './window.ts';

export interface PipelineOptions {
  /** Where the next record starts (or a page boundary): the applied LSN so far. */
  readonly start: Lsn;
  /** What every task carries besides its range. */
  readonly task: Pick<ChunkTask, 'map' | 'segmentSize' | 'blockSize' | 'major'>;
  /** XLOG_BLCKSZ: chunks end on WAL page boundaries. */
  readonly pageSize: number;
  readonly windowSize: number;
  readonly chunkSize: number;
  /** Tasks handed to the pool at once (a few per worker keeps every worker busy). */
  readonly maxInFlight: number;
  /** Received WAL waits at most this long (ms) before a chunk smaller than chunkSize is decoded. */
  readonly flushDelayMs: number;
  /** Decodes a chunk and marks the map: a worker pool, or decodeChunk itself. */
  readonly run: (task: ChunkTask) => Promise<ChunkResult>;
  /** Called in LSN order: the catalog ops of the records up to `applied`, which is where the next starts. */
  readonly onApplied: (ops: readonly CatalogOp[], applied: Lsn, records: number, blocks: number) => void;
  /** The window has room again after push() asked the caller to pause its input. */
  readonly onDrain: () => void;
  readonly onWarn?: (message: string) => void;
}

/** Bytes past a chunk's end that must have arrived before it is decoded, so its last record is whole. */
const TAIL_SLACK = 1 << 20;

interface Job {
  /** Where the next run starts (after a run: where its next record starts): a record start or a page boundary. */
  from: Lsn;
  readonly stopBefore: Lsn;
  /** Where the results held so far started decoding. */
  startedAt: Lsn;
  state: 'queued' | 'running' | 'done';
  /** The window's end when it last ran (0: never ran); a remainder waits for more bytes than that. */
  ranTo: Lsn;
  ops: CatalogOp[][];
  firstLsn: Lsn | null;
  firstPrev: Lsn | null;
  lastLsn: Lsn | null;
  records: number;
  blocks: number;
  error: ChunkResult['error'];
}

/**
 * The tracker's side of parallel decoding (design.md §3, §5 "Parallelism"): received WAL goes into the
 * shared window; page-aligned chunks go to the decoder workers, which mark the map at once (marks
 * commute); their catalog ops come back in any order and are applied strictly in LSN order, and the
 * applied LSN only moves over contiguous finished chunks.
 *
 * A chunk that starts at a page boundary trusts xlp_rem_len to find its first record. That is checked
 * when the chunk reaches the head: its first record must start exactly where the previous chunk's last
 * record ended and name it as xl_prev. Otherwise (say the chunk began in the zeros after an
 * XLOG_SWITCH) it is decoded again from that point, and only an error found from there is real.
 */
export class ChunkPipeline {
  readonly #o: PipelineOptions;
  readonly #window: WalWindow;
  readonly #jobs: Job[] = [];
  /** Received bytes the window had no room for yet, in order. */
  readonly #overflow: Uint8Array[] = [];
  #received: Lsn;
  /** Chunks cover [start, cut). */
  #cut: Lsn;
  #applied: Lsn;
  #lastRecordLsn: Lsn | null = null;
  #inFlight = 0;
  #paused = false;
  #flushTimer: ReturnType<typeof setTimeout> | undefined;
  #failure: Error | undefined;
  readonly #failed: Promise<never>;
  #reject: (e: Error) => void = () => {};
  #idleWaiters: (() => void)[] = [];

  constructor(options: PipelineOptions) {
    if (options.chunkSize % options.pageSize !== 0 || options.chunkSize <= 0) {
      throw new RangeError(`chunkSize must be a multiple of the WAL page size, got ${options.chunkSize}`);
    }
    this.#o = options;
    this.#window = new WalWindow(options.windowSize, options.start);
    this.#cut = options.start;
    this.#applied = options.start;
    this.#received = options.start;
    this.#failed = new Promise<never>((_, reject) => {
      this.#reject = reject;
    });
    this.#failed.catch(() => {});
  }

  /** Where the next record to apply starts: everything before it is in the map and the catalog. */
  get appliedLsn(): Lsn {
    return this.#applied;
  }

  /** The end of the WAL received so far. */
  get receivedLsn(): Lsn {
    return this.#received;
  }

  /** Rejects with the first decode error (a WalDecodeError naming its LSN) or pool failure. */
  get failed(): Promise<never> {
    return this.#failed;
  }

  /**
   * Takes received WAL (copied: the caller may reuse `bytes`). Returns true when the caller should pause
   * its input until onDrain.
   */
  push(bytes: Uint8Array, lsn: Lsn): boolean {
    return this.pushWith(bytes.length, lsn, copiedFrom(bytes));
  }

  /**
   * Takes `length` bytes of WAL that `fill` writes (WalWindow.writeWith): straight into the window when
   * it has room, else into a buffer of their own that waits for room. Returns as push does.
   */
  pushWith(length: number, lsn: Lsn, fill: (into: Uint8Array, offset: number) => void): boolean {
    if (lsn !== this.#received) {
      throw new RangeError(
        `WAL at ${formatLsn(lsn)} does not follow what was received, which ends at ${formatLsn(this.#received)}`,
      );
    }
    this.#received += length;
    if (this.#overflow.length === 0 && length <= this.#window.free) this.#window.writeWith(length, lsn, fill);
    else {
      const waiting = new Uint8Array(length);
      fill(waiting, 0);
      this.#overflow.push(waiting);
    }
    this.#dispatch(false);
    this.#armFlush();
    this.#paused ||= this.#overflow.length > 0 || this.#window.free < this.#window.size / 4;
    return this.#paused;
  }

  /** Resolves once everything received is decoded and applied, as far as whole records go. */
  async settle(): Promise<void> {
    for (;;) {
      this.#dispatch(true);
      if (this.#failure) throw this.#failure;
      if (this.#inFlight === 0) return;
      await Promise.race([new Promise<void>((r) => this.#idleWaiters.push(r)), this.#failed]);
    }
  }

  /** Stops dispatching; tasks still running are awaited and their results dropped. */
  async close(): Promise<void> {
    clearTimeout(this.#flushTimer);
    this.#failure ??= new Error('the pipeline is closed');
    while (this.#inFlight > 0) await new Promise<void>((r) => this.#idleWaiters.push(r));
  }

  /** Decodes what has arrived now, rather than when flushDelayMs is out: someone waits for it applied. */
  flushNow(): void {
    if (this.#flushTimer === undefined) return;
    clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    this.#dispatch(true);
  }

  /** Soon, decode what has arrived even if it is less than a chunk: a record waits at most flushDelayMs. */
  #armFlush(): void {
    if (this.#flushTimer !== undefined || this.#failure) return;
    this.#flushTimer = setTimeout(() => {
      this.#flushTimer = undefined;
      this.#dispatch(true);
    }, this.#o.flushDelayMs);
  }

  #dispatch(flush: boolean): void {
    if (this.#failure) return;
    const page = this.#o.pageSize;
    const end = this.#window.end;
    for (;;) {
      const stop = Math.floor((this.#cut + this.#o.chunkSize) / page) * page;
      if (end < stop + TAIL_SLACK) break;
      this.#addJob(stop);
    }
    // Short chunks only while a worker is idle: under load, chunks fill up instead.
    if (flush && end > this.#cut && this.#inFlight * 2 < this.#o.maxInFlight) {
      this.#addJob(Math.ceil(end / page) * page);
    }
    for (const job of this.#jobs) {
      if (this.#inFlight >= this.#o.maxInFlight) break;
      if (job.state !== 'queued' || job.ranTo >= end) continue;
      // A remainder (its last record was cut off) runs again once that record has surely arrived.
      if (!flush && job.ranTo > 0 && end < job.stopBefore + TAIL_SLACK) continue;
      this.#start(job, end);
    }
  }

  #addJob(stopBefore: Lsn): void {
    const job = { stopBefore, state: 'queued', ranTo: 0 } as Job;
    this.#reset(job, this.#cut);
    this.#jobs.push(job);
    this.#cut = stopBefore;
  }

  /** Drops a job's results; it decodes from `from` next. */
  #reset(job: Job, from: Lsn): void {
    job.from = from;
    job.startedAt = from;
    job.ops = [];
    job.firstLsn = null;
    job.firstPrev = null;
    job.lastLsn = null;
    job.records = 0;
    job.blocks = 0;
    job.error = undefined;
  }

  #start(job: Job, dataEnd: Lsn): void {
    job.state = 'running';
    job.ranTo = dataEnd;
    this.#inFlight++;
    const task: ChunkTask = {
      ...this.#o.task,
      window: this.#window.buffer,
      from: job.from,
      stopBefore: job.stopBefore,
      dataEnd,
    };
    this.#o.run(task).then(
      (result) => this.#finished(job, result),
      (e: Error) => {
        this.#inFlight--;
        this.#stop(e);
        this.#wakeIfIdle();
      },
    );
  }

  #wakeIfIdle(): void {
    if (this.#inFlight === 0) for (const wake of this.#idleWaiters.splice(0)) wake();
  }

  #finished(job: Job, r: ChunkResult): void {
    this.#inFlight--;
    if (!this.#failure) {
      if (job.firstLsn === null) {
        job.firstLsn = r.firstLsn;
        job.firstPrev = r.firstPrev;
      } else if (r.firstPrev !== null && job.lastLsn !== null && r.firstPrev !== job.lastLsn) {
        this.#stop(prevLinkError(r.firstLsn!, r.firstPrev, job.lastLsn));
      }
      job.ops.push(r.ops);
      job.records += r.records;
      job.blocks += r.blocks;
      job.lastLsn = r.lastLsn ?? job.lastLsn;
      job.error = r.error;
      job.state = r.error || r.complete ? 'done' : 'queued';
      job.from = r.resumeAt;
      this.#applyHead();
      this.#dispatch(false);
      this.#armFlush();
    }
    this.#wakeIfIdle();
  }

  /** Applies finished chunks at the head in LSN order; decodes one again whose start proves wrong. */
  #applyHead(): void {
    while (this.#jobs.length > 0 && !this.#failure) {
      const job = this.#jobs[0];
      const expected = this.#applied;
      if (job.stopBefore <= expected) {
        // Wholly inside a record (or an XLOG_SWITCH's padding) that an earlier chunk finished.
        this.#jobs.shift();
        continue;
      }
      if (job.state === 'running' || job.ops.length === 0) break;
      if (job.startedAt !== expected && job.firstLsn !== expected) {
        this.#reset(job, expected);
        job.state = 'queued';
        job.ranTo = 0;
        break;
      }
      if (job.firstPrev !== null && this.#lastRecordLsn !== null && job.firstPrev !== this.#lastRecordLsn) {
        this.#stop(prevLinkError(job.firstLsn!, job.firstPrev, this.#lastRecordLsn));
        return;
      }
      this.#o.onApplied(job.ops.flat(), job.from, job.records, job.blocks);
      this.#applied = job.from;
      // After an XLOG_SWITCH the next record starts at the next segment, maybe past what was cut.
      this.#cut = Math.max(this.#cut, this.#applied);
      this.#lastRecordLsn = job.lastLsn ?? this.#lastRecordLsn;
      if (job.error) {
        const { code, detail, lsn } = job.error;
        this.#stop(new WalDecodeError(code, detail, lsn));
        return;
      }
      if (job.state === 'queued') {
        // Its last record is not all here yet: what came before it is applied, the rest runs later.
        const ranTo = job.ranTo;
        this.#reset(job, job.from);
        job.ranTo = ranTo;
        break;
      }
      this.#jobs.shift();
    }
    this.#window.release(Math.min(this.#applied, this.#jobs[0]?.from ?? this.#applied));
    this.#drainOverflow();
  }

  /**
   * Moves held-back bytes into the window as room frees up, and resumes the input at half full. When
   * nothing can run and nothing fits, one record is larger than the window allows: the window grows.
   */
  #drainOverflow(): void {
    const window = this.#window;
    for (;;) {
      while (this.#overflow.length > 0 && this.#overflow[0].length <= window.free) {
        window.write(this.#overflow.shift()!, window.end);
      }
      if (this.#paused && this.#overflow.length === 0 && window.free >= window.size / 2) {
        this.#paused = false;
        this.#o.onDrain();
        return;
      }
      if (!this.#paused || this.#failure) return;
      this.#dispatch(true);
      if (this.#inFlight > 0) return;
      window.grow(window.size * 2);
      this.#o.onWarn?.(`a WAL record needs more than the window holds: grown to ${window.size >> 20} MB`);
    }
  }

  #stop(e: Error): void {
    if (this.#failure) return;
    this.#failure = e;
    clearTimeout(this.#flushTimer);
    this.#reject(e);
  }
}
