import { availableParallelism } from 'node:os';
import { Piscina } from 'piscina';
import type { MapBuffers } from '../map/index.ts';
import { formatLsn, type Lsn, parseLsn } from '../wal/index.ts';
import type { QueryResult } from './engine.ts';
import type { QueryTask } from './task.ts';

/** What the answers are read from: the live map, the catalog, and how far WAL is applied to them. */
export interface AnswerSource {
  readonly appliedLsn: Lsn;
  readonly map: { readonly buffers: MapBuffers };
  readonly catalogPath: string;
  /** ptrack's guidance for the map size, for the cluster's size when last asked (null: not known). */
  readonly suggestedMapSizeMb: number | null;
}

export interface QueryRequest {
  readonly sql: string;
  /** Answer once WAL up to here is applied (a backup's start LSN); default: the server's position now. */
  readonly waitLsn?: string;
  /** Answer at once, however far WAL is applied. */
  readonly noWait?: boolean;
  readonly timeoutMs?: number;
}

export interface FreshAnswer extends QueryResult {
  /** The LSN up to which WAL was applied when the statement ran. */
  readonly appliedLsn: Lsn;
}

/**
 * Why an answer could not be given fresh (design.md §1, promise 4): `beyond`, the LSN asked for is past
 * the server's position; `timeout`, WAL was not applied up to it in time; `server`, the server's
 * position could not be had, so freshness cannot be judged.
 */
export class StaleAnswerError extends Error {
  override readonly name = 'StaleAnswerError';
  readonly reason: 'beyond' | 'timeout' | 'server';
  constructor(reason: 'beyond' | 'timeout' | 'server', message: string) {
    super(message);
    this.reason = reason;
  }
}

/** How a statement ended: answered, refused as it could not be fresh, or failed (bad SQL, an old LSN, …). */
export type AnswerOutcome = 'answered' | 'stale' | 'failed';

/** Where the server's WAL is now: what an answer must have applied to be fresh. */
export interface ServerPosition {
  read(): Promise<Lsn>;
  /** Lets go of whatever it holds on the server. */
  close(): void;
}

/**
 * The daemon's answers, shared by its HTTP endpoint and its PostgreSQL-protocol endpoint: each statement
 * waits until the map has applied WAL up to the LSN that makes it fresh, then runs in a query worker
 * thread (so that a big scan never stalls the replication loop), which starts with the first query and
 * goes after a minute idle (backups ask in bursts; an idle thread is memory).
 */
export class QueryService {
  readonly #source: AnswerSource;
  readonly #pgdata: string | undefined;
  readonly #serverPosition: ServerPosition;
  readonly #pool = new Piscina<QueryTask, QueryResult>({
    filename: new URL('../../workers/query.ts', import.meta.url).href,
    minThreads: 0,
    maxThreads: Math.max(1, Math.floor(availableParallelism() / 2)),
    idleTimeout: 60_000,
  });

  readonly #onAnswered: ((seconds: number, outcome: AnswerOutcome) => void) | undefined;

  constructor(o: {
    source: AnswerSource;
    pgdata?: string;
    serverPosition: ServerPosition;
    /** Told how long each statement took, waiting for freshness included, and how it ended. */
    onAnswered?: (seconds: number, outcome: AnswerOutcome) => void;
  }) {
    this.#source = o.source;
    this.#pgdata = o.pgdata;
    this.#serverPosition = o.serverPosition;
    this.#onAnswered = o.onAnswered;
  }

  /** Waits for freshness (or throws StaleAnswerError), then runs the statement (its errors as they are). */
  async answer(request: QueryRequest): Promise<FreshAnswer> {
    const started = performance.now();
    let outcome: AnswerOutcome = 'failed';
    try {
      const answer = await this.#answer(request);
      outcome = 'answered';
      return answer;
    } catch (e) {
      if (e instanceof StaleAnswerError) outcome = 'stale';
      throw e;
    } finally {
      this.#onAnswered?.((performance.now() - started) / 1000, outcome);
    }
  }

  async #answer(request: QueryRequest): Promise<FreshAnswer> {
    await this.#awaitFresh(request);
    const appliedLsn = this.#source.appliedLsn;
    const result = await this.#pool.run({
      sql: request.sql,
      map: this.#source.map.buffers,
      catalogPath: this.#source.catalogPath,
      pgdata: this.#pgdata,
      appliedLsn,
      suggestedMapSizeMb: this.#source.suggestedMapSizeMb,
    });
    return { ...result, appliedLsn };
  }

  close(): Promise<void> {
    this.#serverPosition.close();
    return this.#pool.destroy();
  }

  async #awaitFresh(request: QueryRequest): Promise<void> {
    if (request.noWait) return;
    const timeoutMs = request.timeoutMs ?? 60_000;
    const deadline = Date.now() + timeoutMs;
    // The server's position, or null when it cannot be had before the deadline (an unreachable server).
    const serverPosition = () =>
      Promise.race([
        this.#serverPosition.read(),
        new Promise<null>((r) => setTimeout(() => r(null), Math.max(0, deadline - Date.now())).unref()),
      ]);
    let target: Lsn;
    if (request.waitLsn !== undefined) {
      target = parseLsn(request.waitLsn);
      // Nothing will ever be applied up to an LSN the server has not written yet: say so now.
      const server = this.#source.appliedLsn < target ? await serverPosition().catch(() => null) : null;
      if (server !== null && target > server) {
        throw new StaleAnswerError(
          'beyond',
          `--wait-lsn ${formatLsn(target)} is beyond the server's current WAL position ${formatLsn(server)}`,
        );
      }
    } else {
      const server = await serverPosition().catch((e: Error) => e);
      if (server === null || server instanceof Error) {
        throw new StaleAnswerError(
          'server',
          `cannot ask the server how far it is, so an answer could be stale: ${server?.message ?? `no answer within ${timeoutMs / 1000} s`}`,
        );
      }
      target = server;
    }
    while (this.#source.appliedLsn < target) {
      if (Date.now() > deadline) {
        const applied = this.#source.appliedLsn;
        throw new StaleAnswerError(
          'timeout',
          `timed out after ${timeoutMs / 1000} s waiting for ${formatLsn(target)}: applied up to ${formatLsn(applied)}, ${target - applied} bytes behind`,
        );
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}
