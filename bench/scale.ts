// At the scale ptrack's users complain about (issue 31): a simulated PGDATA of 100 GB, 1 TB and 10 TB
// (sparse 1 GB segment files of a few large relations, and many small relations: nothing real written),
// a catalog of 10 k / 100 k / 1 M forks, a 1 GB map filled with older changes, and 0.1% of the relations
// changed since X. Each question runs in a process of its own (its peak memory is its own): the map
// loaded from its checkpoint (start-up), then ptrack_get_pagemapset(X) reading only files that can have
// changed (pruned) or every file (whole, what ptrackd did before, and what ptrack does). Also: the
// catalog's size, applying WAL that names every fork, a checkpoint of the 1 GB map.
// `node bench/scale.ts` (BENCH_SCALE_SIZES: GB, comma-separated, default 100,1000,10000).
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, statSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { Catalog, type CatalogOp } from '../src/catalog/index.ts';
import { PtrackMap } from '../src/map/index.ts';
import {
  LimitIndex,
  pagemapset,
  QueryEngine,
  RELSEG_SIZE,
  relationFilesInPgdata,
  tablespaceVersionDir,
} from '../src/query/index.ts';
import { commitCheckpoint, loadCheckpointedMap, writeCheckpointFile } from '../src/tracker/index.ts';
import { ForkNumber } from '../src/wal/index.ts';
import { followArgs } from '../test/helpers/daemon.ts';
import { REPO_ROOT } from '../test/helpers/fixtures.ts';
import { freePort, PgCluster } from '../test/helpers/pg-cluster.ts';
import { scratchDir } from '../test/helpers/scratch.ts';

const INIT = 0x1_0000_0000;
const OLD = 0x2_0000_0000;
const X = 0x3_0000_0000;
const NEW = 0x3_0001_0000;
const MAP_MB = 1024;
const BLOCK = 8192;
const VERSION_DIR = tablespaceVersionDir(150018, 202209061);
/** The daemon applies the catalog's part of WAL in batches like these (one transaction per chunk). */
const OPS_PER_CHUNK = 10_000;

interface Question {
  readonly loadSeconds: number;
  readonly querySeconds: number;
  readonly rows: number;
  readonly blocks: number;
  /** Peak resident set of the process beyond the map itself. */
  readonly peakBeyondMapMb: number;
}

export interface ScaleRun {
  readonly sizeGb: number;
  readonly segmentFiles: number;
  readonly smallRelations: number;
  readonly forks: number;
  readonly changedRelations: number;
  readonly catalogMb: number;
  readonly applySeconds: number;
  readonly checkpointSeconds: number;
  readonly pruned: Question;
  readonly prunedCatalogMode: Question;
  readonly whole: Question | null;
}

/** The pieces of a cluster of `sizeGb`: large relations of 1 TB at most, and sizeGb × 10 small ones. */
function shape(sizeGb: number) {
  const segments = sizeGb; // 1 GB each
  const large = Math.max(1, Math.round(segments / 1000));
  const small = sizeGb * 10;
  return { segments, large, segmentsPerLarge: Math.ceil(segments / large), small, forks: sizeGb * 100 };
}

function sparseFile(path: string, blocks: number): void {
  mkdirSync(join(path, '..'), { recursive: true });
  closeSync(openSync(path, 'w'));
  truncateSync(path, blocks * BLOCK);
}

/** Builds PGDATA, the catalog and a checkpointed 1 GB map in `dir`; how long the catalog and the checkpoint took. */
async function build(dir: string, sizeGb: number) {
  const s = shape(sizeGb);
  const pgdata = join(dir, 'pgdata');
  const dataDir = join(dir, 'ptrackd');
  mkdirSync(dataDir, { recursive: true });
  const ops: CatalogOp[] = [];
  const observe = (db: number, rel: number, fork: number, maxBlock: number, lsn: number) =>
    ops.push({ op: 'observe', spc: 1663, db, rel, fork, maxBlock, firstLsn: lsn, lastLsn: lsn });
  // large relations in database 5: main segments, the FSM (one page per ~4000 heap pages), the VM
  for (let r = 0; r < s.large; r++) {
    const rel = 16384 + r;
    const heapBlocks = s.segmentsPerLarge * RELSEG_SIZE;
    for (let seg = 0; seg < s.segmentsPerLarge; seg++)
      sparseFile(join(pgdata, 'base/5', seg === 0 ? `${rel}` : `${rel}.${seg}`), RELSEG_SIZE);
    sparseFile(join(pgdata, 'base/5', `${rel}_fsm`), Math.ceil(heapBlocks / 4000));
    sparseFile(join(pgdata, 'base/5', `${rel}_vm`), Math.ceil(heapBlocks / 32672));
    observe(5, rel, ForkNumber.main, heapBlocks - 1, OLD);
    observe(5, rel, ForkNumber.vm, Math.ceil(heapBlocks / 32672) - 1, OLD);
  }
  // small relations in ten databases, 1 to 8 blocks each
  for (let i = 0; i < s.small; i++) {
    const db = 16000 + (i % 10);
    const rel = 20000 + i;
    sparseFile(join(pgdata, 'base', String(db), String(rel)), 1 + (i % 8));
    observe(db, rel, ForkNumber.main, i % 8, OLD);
  }
  // the rest of the catalog: forks WAL named long ago whose files are elsewhere or gone
  for (let i = ops.length; i < s.forks; i++)
    observe(17000 + (i % 10), 1_000_000 + i, ForkNumber.main, 3, OLD);
  // 0.1% of the relations changed since X: small ones whole; in the first large one, scattered blocks
  const changed = Math.max(1, Math.round((s.large + s.small) / 1000));
  const map = PtrackMap.create(MAP_MB, INIT);
  let seed = 42;
  const random = () => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed;
  };
  // older changes all over the cluster: 20 M marks (the map ~15% full, as a busy day leaves it)
  for (let i = 0; i < 20_000_000; i++) {
    const r = random();
    map.markBlock(1663, 5, 16384 + (r % s.large), 0, r % (s.segmentsPerLarge * RELSEG_SIZE), OLD);
  }
  for (let c = 0; c < changed; c++) {
    const i = Math.floor((c * s.small) / changed);
    const [db, rel, blocks] = [16000 + (i % 10), 20000 + i, 1 + (i % 8)];
    for (let b = 0; b < blocks; b++) map.markBlock(1663, db, rel, 0, b, NEW);
    observe(db, rel, ForkNumber.main, blocks - 1, NEW);
  }
  // as the WAL applier says it: which segments the marks fell in (here the first seven of the relation)
  const later = new Map<number, number>();
  let seg0Lsn = 0;
  for (let i = 0; i < 1000; i++) {
    const block = (random() % RELSEG_SIZE) * 7;
    map.markBlock(1663, 5, 16384, 0, block, NEW);
    if (block < RELSEG_SIZE) seg0Lsn = NEW;
    else later.set(Math.floor(block / RELSEG_SIZE), NEW);
  }
  const maxBlock = s.segmentsPerLarge * RELSEG_SIZE - 1;
  ops.push({
    op: 'observe',
    spc: 1663,
    db: 5,
    rel: 16384,
    fork: 0,
    maxBlock,
    firstLsn: NEW,
    lastLsn: NEW,
    segments: { seg0Lsn, later },
  });

  const catalog = Catalog.open(join(dataDir, 'catalog.db'));
  catalog.setIdentity({
    systemIdentifier: '7000000000000000001',
    timeline: 1,
    serverVersionNum: 150018,
    catalogVersion: 202209061,
    blockSize: BLOCK,
    segmentSize: 16 << 20,
  });
  catalog.initMap(MAP_MB, map.entries, INIT, 'benchmark');
  let t = performance.now();
  for (let at = 0; at < ops.length; at += OPS_PER_CHUNK) catalog.applyOps(ops.slice(at, at + OPS_PER_CHUNK));
  const applySeconds = (performance.now() - t) / 1000;
  t = performance.now();
  commitCheckpoint(dataDir, catalog, NEW + 0x1000, await writeCheckpointFile(dataDir, map));
  const checkpointSeconds = (performance.now() - t) / 1000;
  catalog.close();
  const catalogBytes = ['catalog.db', 'catalog.db-wal']
    .map((f) => {
      try {
        return statSync(join(dataDir, f)).size;
      } catch {
        return 0;
      }
    })
    .reduce((a, b) => a + b, 0);
  return {
    ...s,
    pgdata,
    dataDir,
    changed,
    applySeconds,
    checkpointSeconds,
    catalogMb: catalogBytes / 2 ** 20,
  };
}

/** One question in a process of its own: `node bench/scale.ts question DATA_DIR PGDATA|- pruned|whole`. */
function ask(dataDir: string, pgdata: string | undefined, kind: 'pruned' | 'whole'): Question {
  const run = spawnSync(process.execPath, [import.meta.filename, 'question', dataDir, pgdata ?? '-', kind], {
    encoding: 'utf8',
    maxBuffer: 16 << 20,
  });
  if (run.status !== 0) throw new Error(`the question failed: ${run.stderr}`);
  return JSON.parse(run.stdout.trim().split('\n').at(-1)!);
}

function answerQuestion(dataDir: string, pgdata: string | undefined, kind: 'pruned' | 'whole'): Question {
  const catalog = Catalog.open(join(dataDir, 'catalog.db'), { readonly: true });
  let t = performance.now();
  const { map } = loadCheckpointedMap(dataDir, catalog, (m) => {
    throw new Error(m);
  });
  const loadSeconds = (performance.now() - t) / 1000;
  t = performance.now();
  const rows =
    kind === 'pruned'
      ? new QueryEngine({ map, catalog, pgdata, appliedLsn: () => NEW + 0x1000 }).pagemapset(X)
      : pagemapset(
          X,
          INIT,
          map,
          new LimitIndex(catalog.limitEventsSince(X)),
          relationFilesInPgdata(pgdata!, VERSION_DIR, BLOCK),
        );
  let count = 0;
  let blocks = 0;
  for (const r of rows) {
    count++;
    blocks += r.pagecount;
  }
  const querySeconds = (performance.now() - t) / 1000;
  const hwm = Number(/^VmHWM:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]) / 1024;
  return { loadSeconds, querySeconds, rows: count, blocks, peakBeyondMapMb: hwm - MAP_MB };
}

export async function benchScale(log: (s: string) => void, sizesGb: readonly number[]): Promise<ScaleRun[]> {
  const runs: ScaleRun[] = [];
  for (const sizeGb of sizesGb) {
    const dir = scratchDir('ptrackd-bench-scale-');
    try {
      const b = await build(dir, sizeGb);
      const pruned = ask(b.dataDir, b.pgdata, 'pruned');
      const prunedCatalogMode = ask(b.dataDir, undefined, 'pruned');
      const whole = ask(b.dataDir, b.pgdata, 'whole');
      runs.push({
        sizeGb,
        segmentFiles: b.segments,
        smallRelations: b.small,
        forks: b.forks,
        changedRelations: b.changed + 1,
        catalogMb: b.catalogMb,
        applySeconds: b.applySeconds,
        checkpointSeconds: b.checkpointSeconds,
        pruned,
        prunedCatalogMode,
        whole,
      });
      printRun(runs.at(-1)!, log);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  return runs;
}

function printRun(r: ScaleRun, log: (s: string) => void): void {
  const q = (name: string, x: Question | null) =>
    x &&
    log(
      `    ${name.padEnd(26)} ${x.querySeconds.toFixed(2).padStart(8)} s  ${String(x.rows).padStart(7)} rows ${String(x.blocks).padStart(11)} blocks  peak map + ${x.peakBeyondMapMb.toFixed(0)} MB  (map loaded in ${x.loadSeconds.toFixed(2)} s)`,
    );
  log(
    `\n  ${r.sizeGb >= 1000 ? `${r.sizeGb / 1000} TB` : `${r.sizeGb} GB`}: ${r.segmentFiles} segment files of 1 GB, ${r.smallRelations} small relations, ${r.forks} forks in the catalog (${r.catalogMb.toFixed(0)} MB on disk), ${r.changedRelations} relations changed since X`,
  );
  log(
    `    catalog: ${r.forks} forks applied in ${r.applySeconds.toFixed(1)} s (${OPS_PER_CHUNK} per transaction, as the daemon's chunks); a checkpoint of the 1 GB map ${r.checkpointSeconds.toFixed(1)} s`,
  );
  q('pagemapset, pruned', r.pruned);
  q('pagemapset, pruned, no PGDATA', r.prunedCatalogMode);
  q('pagemapset, every file', r.whole);
  if (r.whole) log(`    pruned / every file: ${(r.pruned.querySeconds / r.whole.querySeconds).toFixed(4)}x`);
}

/**
 * Memory at scale (issue 31 §3): a daemon with a 1 GB map whose catalog holds `forks` forks, following a
 * PostgreSQL 15 under a light pgbench (20 transactions a second): its resident set sampled every second
 * for 30 s, as map + N MB. The forks are written into the catalog between two starts, as years of WAL
 * would have left them.
 */
export async function benchDaemonMemory(
  log: (s: string) => void,
  forks = 1_000_000,
): Promise<{ steadyMb: number; peakMb: number }> {
  const cluster = await PgCluster.start({ settings: { autovacuum: 'off' } });
  const scratch = scratchDir('ptrackd-bench-memory-');
  const dataDir = join(scratch, 'data');
  const listen = await freePort();
  const start = () => {
    const args = [...followArgs(cluster, 'ptrack', dataDir), '--map-size', String(MAP_MB)];
    args.push('--listen', `127.0.0.1:${listen}`, '--pgdata', cluster.dataDir);
    return spawn(join(REPO_ROOT, 'bin/ptrackd'), args, { stdio: 'ignore' });
  };
  const ready = async () => {
    for (const deadline = Date.now() + 120_000; Date.now() < deadline; ) {
      const status = await fetch(`http://127.0.0.1:${listen}/readyz`).then(
        (r) => r.status,
        () => 0,
      );
      if (status === 200) return;
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error('ptrackd did not become ready');
  };
  const stop = (child: ReturnType<typeof spawn>) =>
    new Promise((r) => {
      child.once('exit', r);
      child.kill('SIGTERM');
    });
  try {
    await cluster.client('pgbench', ['-i', '-q', '-s', '1']);
    let daemon = start();
    await ready();
    await stop(daemon);
    const catalog = Catalog.open(join(dataDir, 'catalog.db'));
    for (let at = 0; at < forks; at += OPS_PER_CHUNK) {
      const ops: CatalogOp[] = [];
      for (let i = at; i < Math.min(forks, at + OPS_PER_CHUNK); i++)
        ops.push({
          op: 'observe',
          spc: 1663,
          db: 17000 + (i % 10),
          rel: 1_000_000 + i,
          fork: 0,
          maxBlock: 3,
          firstLsn: OLD,
          lastLsn: OLD,
        });
      catalog.applyOps(ops);
    }
    catalog.close();
    daemon = start();
    await ready();
    const load = cluster.client('pgbench', ['-n', '-c', '2', '-R', '20', '-T', '30']);
    const samples: number[] = [];
    for (let i = 0; i < 30; i++) {
      await new Promise((r) => setTimeout(r, 1000));
      const rss = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${daemon.pid}/status`, 'utf8'));
      samples.push(Number(rss![1]) / 1024);
    }
    await load;
    const hwm =
      Number(/^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${daemon.pid}/status`, 'utf8'))![1]) / 1024;
    await stop(daemon);
    const steady = samples.slice(10).sort((a, b) => a - b)[Math.floor(samples.slice(10).length / 2)]!;
    log(
      `\n  the daemon, 1 GB map, ${forks} forks in its catalog, pgbench -R 20: resident ${steady.toFixed(0)} MB steady = map + ${(steady - MAP_MB).toFixed(0)} MB (median of 20 s), peak ${hwm.toFixed(0)} MB = map + ${(hwm - MAP_MB).toFixed(0)} MB`,
    );
    return { steadyMb: steady, peakMb: hwm };
  } finally {
    await cluster.destroy();
    rmSync(scratch, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  if (process.argv[2] === 'question') {
    const [dataDir, pgdata, kind] = process.argv.slice(3);
    const answer = answerQuestion(dataDir!, pgdata === '-' ? undefined : pgdata, kind as 'pruned' | 'whole');
    process.stdout.write(`${JSON.stringify(answer)}\n`);
  } else {
    const log = (s: string) => process.stdout.write(`${s}\n`);
    const sizes = (process.env.BENCH_SCALE_SIZES ?? '100,1000,10000').split(',').map(Number);
    log(`issue 31 at scale: a 1 GB map (~15% full of older changes), X after them`);
    await benchScale(log, sizes);
    await benchDaemonMemory(log);
  }
}
