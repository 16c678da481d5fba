import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Server as NetServer } from 'node:net';
import client from 'prom-client';
import { falsePositiveRate } from '../map/index.ts';
import { type AnswerOutcome, type FreshAnswer, type QueryService, StaleAnswerError } from '../query/index.ts';
import type { Tracker, TrackerStatus } from '../tracker/index.ts';
import { formatLsn } from '../wal/index.ts';

export interface ServeOptions {
  readonly host: string;
  readonly port: number;
  readonly readyMaxLagBytes: number;
  readonly queries: QueryService;
  readonly metrics: DaemonMetrics;
}

/**
 * The daemon's HTTP endpoint: /healthz (alive), /readyz (streaming and caught up), /metrics
 * (Prometheus), and POST /query {sql, waitLsn?, timeoutMs?}, which waits until the map has applied WAL
 * up to waitLsn (default: the server's position when asked) and answers {columns, rows, appliedLsn}.
 */
export function serve(tracker: Tracker, o: ServeOptions): Promise<Server> {
  const registry = o.metrics;
  const queries = o.queries;
  const server = createServer((req, res) => {
    handle(req, res).catch((e) => reply(res, 500, { error: (e as Error).message }));
  });
  async function handle(req: IncomingMessage, res: ServerResponse) {
    if (req.url === '/healthz') return reply(res, 200, { status: 'alive' });
    if (req.url === '/metrics') {
      res.writeHead(200, { 'content-type': registry.contentType });
      return res.end(await registry.scrape());
    }
    if (req.url === '/query' && req.method === 'POST') return query(await body(req), res);
    const s = tracker.status();
    if (req.url === '/readyz') {
      const lag = s.serverLsn - s.appliedLsn;
      const ready = s.streaming && lag <= o.readyMaxLagBytes;
      return reply(res, ready ? 200 : 503, { ready, streaming: s.streaming, lagBytes: lag });
    }
    if (req.url === '/status') {
      const hex = (n: number) => formatLsn(n);
      return reply(res, 200, {
        server: s.server && {
          systemId: s.server.systemId,
          version: s.server.versionNum,
          timeline: s.server.timeline,
        },
        streaming: s.streaming,
        initLsn: hex(s.initLsn),
        appliedLsn: hex(s.appliedLsn),
        receivedLsn: hex(s.receivedLsn),
        checkpointLsn: hex(s.checkpointLsn),
        serverLsn: hex(s.serverLsn),
        slot: s.slot,
        lagBytes: Math.max(0, s.serverLsn - s.appliedLsn),
        lagSeconds: s.lagSeconds,
        retainedWalBytes: Math.max(0, s.serverLsn - s.checkpointLsn),
        mapSizeMb: s.mapSizeMb,
        lastGap: s.lastGap && {
          ...s.lastGap,
          initLsn: s.lastGap.initLsn === null ? null : hex(s.lastGap.initLsn),
        },
        reconnects: s.reconnects,
        checkpoint: {
          seconds: s.checkpointSeconds,
          bytesWritten: s.checkpointBytesWritten,
          wholeMapWrites: s.wholeMapWrites,
          logBytes: s.checkpointLogBytes,
        },
        mapFill: s.mapFill,
        estFalsePositiveRate: falsePositiveRate(s.mapFill),
        suggestedMapSizeMb: s.suggestedMapSizeMb,
        mapHint: s.mapHint,
        problem: s.problem,
        problemSince: s.problemSince === null ? null : new Date(s.problemSince).toISOString(),
        problemSeconds: s.problemSince === null ? 0 : (Date.now() - s.problemSince) / 1000,
      });
    }
    return reply(res, 404, { error: `no such endpoint: ${req.method} ${req.url}` });
  }
  async function query(
    input: { sql?: unknown; waitLsn?: unknown; noWait?: unknown; timeoutMs?: unknown },
    res: ServerResponse,
  ) {
    if (typeof input.sql !== 'string') return reply(res, 400, { error: 'the request needs "sql", a string' });
    let answer: FreshAnswer;
    try {
      answer = await queries.answer({
        sql: input.sql,
        waitLsn: typeof input.waitLsn === 'string' ? input.waitLsn : undefined,
        noWait: input.noWait === true,
        timeoutMs: typeof input.timeoutMs === 'number' ? input.timeoutMs : undefined,
      });
    } catch (e) {
      const status =
        e instanceof StaleAnswerError ? { beyond: 400, timeout: 504, server: 503 }[e.reason] : 400;
      return reply(res, status, { error: (e as Error).message });
    }
    return reply(res, 200, {
      columns: answer.columns,
      rows: answer.rows.map((row) => row.map(jsonValue)),
      appliedLsn: formatLsn(answer.appliedLsn),
    });
  }
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => resolve(server));
  });
}

function jsonValue(v: unknown): unknown {
  if (v instanceof Uint8Array) return `\\x${Buffer.from(v).toString('hex')}`;
  if (typeof v === 'bigint') return Number(v);
  return v;
}

function reply(res: ServerResponse, status: number, payload: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(`${JSON.stringify(payload)}\n`);
}

async function body(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
  } catch {
    return {};
  }
}

/** What /metrics exports: name, help, kind, and its value in one status snapshot. */
const METRICS: readonly [string, string, 'gauge' | 'counter', (s: TrackerStatus) => number][] = [
  [
    'ptrackd_applied_lsn_bytes',
    'End of the last WAL record applied to the map',
    'gauge',
    (s) => s.appliedLsn,
  ],
  [
    'ptrackd_checkpoint_lsn_bytes',
    'LSN of the last durable map checkpoint (the slot flush position)',
    'gauge',
    (s) => s.checkpointLsn,
  ],
  ['ptrackd_server_lsn_bytes', "The server's WAL position as last seen", 'gauge', (s) => s.serverLsn],
  [
    'ptrackd_lag_bytes',
    'WAL the map has not applied yet',
    'gauge',
    (s) => Math.max(0, s.serverLsn - s.appliedLsn),
  ],
  ['ptrackd_init_lsn_bytes', 'The LSN from which the map is complete', 'gauge', (s) => s.initLsn],
  ['ptrackd_lag_seconds', 'How long the oldest WAL not yet applied has waited', 'gauge', (s) => s.lagSeconds],
  [
    'ptrackd_retained_wal_bytes',
    'WAL the slot holds back on the server (server position - checkpoint)',
    'gauge',
    (s) => Math.max(0, s.serverLsn - s.checkpointLsn),
  ],
  ['ptrackd_received_lsn_bytes', 'End of the WAL received from the server', 'gauge', (s) => s.receivedLsn],
  // Totals kept by the tracker; Prometheus' rate() gives records and blocks per second.
  ['ptrackd_records_total', 'WAL records applied to the map', 'counter', (s) => s.recordsApplied],
  [
    'ptrackd_wal_applied_bytes_total',
    'WAL applied to the map since start, in bytes',
    'counter',
    (s) => s.walBytesApplied,
  ],
  [
    'ptrackd_blocks_marked_total',
    'Block marks made in the map (explicit and implied references)',
    'counter',
    (s) => s.blocksMarked,
  ],
  [
    'ptrackd_map_fill_ratio',
    'Fraction of map entries in use, as of the last checkpoint',
    'gauge',
    (s) => s.mapFill,
  ],
  [
    'ptrackd_map_false_positive_ratio',
    'Estimated share of unchanged blocks the map reports as changed (fill squared)',
    'gauge',
    (s) => falsePositiveRate(s.mapFill),
  ],
  [
    'ptrackd_map_suggested_size_megabytes',
    "ptrack's guidance for the map size: about 1/1024 of the cluster's size (0: not known)",
    'gauge',
    (s) => s.suggestedMapSizeMb ?? 0,
  ],
  [
    'ptrackd_checkpoint_duration_seconds',
    'How long the last map checkpoint took (file, fsync, catalog)',
    'gauge',
    (s) => s.checkpointSeconds,
  ],
  [
    'ptrackd_checkpoint_bytes_written_total',
    'Bytes map checkpoints wrote since start (changed lines to ptrack.map.log, and whole map files)',
    'counter',
    (s) => s.checkpointBytesWritten,
  ],
  [
    'ptrackd_checkpoint_whole_map_writes_total',
    'Map checkpoints since start that wrote the whole map file (and emptied the log)',
    'counter',
    (s) => s.wholeMapWrites,
  ],
  [
    'ptrackd_checkpoint_log_bytes',
    'Bytes the checkpoint log (ptrack.map.log) holds: replayed at start, folded into the map file when full',
    'gauge',
    (s) => s.checkpointLogBytes,
  ],
  ['ptrackd_gaps', 'Gaps in the tracked history since the map was created', 'gauge', (s) => s.gaps],
  ['ptrackd_reconnects', 'Replication reconnects since start', 'gauge', (s) => s.reconnects],
  [
    'ptrackd_not_streaming_seconds',
    'How long the daemon has not streamed (the current failure has lasted); 0 while it streams',
    'gauge',
    (s) => (s.problemSince === null ? 0 : (Date.now() - s.problemSince) / 1000),
  ],
];

/**
 * What /metrics exports: the tracker's status (METRICS, read once a scrape), how long queries take
 * (HTTP and the PostgreSQL-protocol port alike, waiting for freshness included), and the port's sessions.
 */
export class DaemonMetrics {
  readonly #registry = new client.Registry();
  readonly #tracker: Tracker;
  readonly #fromStatus: ((s: TrackerStatus) => void)[];
  readonly #queries = new client.Histogram({
    name: 'ptrackd_query_duration_seconds',
    help: 'Time to answer a statement, waiting until WAL is applied up to the server included, by outcome (answered, stale, failed)',
    labelNames: ['outcome'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [this.#registry],
  });
  readonly #sessions = new client.Counter({
    name: 'ptrackd_pgwire_sessions_total',
    help: 'Connections accepted on the PostgreSQL-protocol port (--pg-listen)',
    registers: [this.#registry],
  });
  #open = 0;

  constructor(tracker: Tracker) {
    this.#tracker = tracker;
    const registry = this.#registry;
    this.#fromStatus = METRICS.map(([name, help, kind, value]) => {
      if (kind === 'gauge') {
        const g = new client.Gauge({ name, help, registers: [registry] });
        return (s: TrackerStatus) => g.set(value(s));
      }
      const c = new client.Counter({ name, help, registers: [registry] });
      return (s: TrackerStatus) => {
        c.reset();
        c.inc(value(s));
      };
    });
    const open = () => this.#open;
    new client.Gauge({
      name: 'ptrackd_pgwire_sessions',
      help: 'Sessions open on the PostgreSQL-protocol port (--pg-listen)',
      registers: [registry],
      collect() {
        this.set(open());
      },
    });
  }

  get contentType(): string {
    return this.#registry.contentType;
  }

  observeQuery(seconds: number, outcome: AnswerOutcome): void {
    this.#queries.observe({ outcome }, seconds);
  }

  /** Counts the sessions of the PostgreSQL-protocol endpoint. */
  watchPgEndpoint(server: NetServer): void {
    server.on('connection', (socket) => {
      this.#sessions.inc();
      this.#open++;
      socket.once('close', () => this.#open--);
    });
  }

  scrape(): Promise<string> {
    const s = this.#tracker.status();
    for (const f of this.#fromStatus) f(s);
    return this.#registry.metrics();
  }
}
