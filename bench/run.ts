import { cpus } from 'node:os';
import { benchAnchor } from './anchor.ts';
import { benchBackfill, printBackfill } from './backfill.ts';
import { benchCatchUp, printCatchUp } from './catchup.ts';
import { benchCheckpointCost } from './checkpoint-cost.ts';
import { benchCrc32c } from './crc32c.ts';
import { benchDecode } from './decode.ts';
import { benchLargeMap, benchMarking, benchResize } from './map.ts';
import { benchPool } from './pool.ts';
import { benchProbackup, printProbackup } from './probackup.ts';
import { benchQueries } from './queries.ts';
import { benchDaemonMemory, benchScale } from './scale.ts';
import { benchStartup, printStartup } from './startup.ts';
import { walCorpus } from './wal-corpus.ts';

/** `npm run bench`: every benchmark, each as ratios against a yardstick measured in the same run. */
const log = (s: string) => process.stdout.write(`${s}\n`);
log(
  `ptrackd benchmarks — ${new Date().toISOString().slice(0, 10)}, ${cpus().length} × ${cpus()[0]?.model}, Node ${process.version}`,
);

log(
  '\nCRC-32C, MB/s by input size (table = TypeScript slicing-by-8, native = @node-rs/crc32, hybrid = ptrackd)',
);
log('  size      table     native     hybrid');
for (const r of benchCrc32c()) {
  log(
    `${String(r.size).padStart(6)} ${r.table.toFixed(0).padStart(10)} ${r.native.toFixed(0).padStart(10)} ${r.hybrid.toFixed(0).padStart(10)}`,
  );
}

const decodes: [string, ReturnType<typeof benchDecode>][] = [];
for (const kind of ['pgbench', 'small-records'] as const) {
  const d = benchDecode(await walCorpus(log, kind));
  decodes.push([kind, d]);
  const mb = d.bytes / 1e6;
  log(
    `\nDecode the ${kind} corpus: ${mb.toFixed(0)} MB of WAL, ${d.records} records, ${d.blockRefs} block refs (best of 10, alternating)`,
  );
  log('                                   seconds      MB/s   records/s');
  const row = (name: string, s: number) =>
    log(
      `${name.padEnd(34)} ${s.toFixed(3).padStart(7)} ${(mb / s).toFixed(0).padStart(9)} ${(d.records / s / 1e3).toFixed(0).padStart(9)}k`,
    );
  row('pg_waldump --stats=record', d.waldumpSeconds);
  row('ptrackd, 1 thread, CRC checked', d.ptrackdSeconds);
  log(
    `ratio ptrackd / pg_waldump throughput: ${(d.waldumpSeconds / d.ptrackdSeconds).toFixed(2)}x${kind === 'pgbench' ? ' (target >= 0.5x)' : ''}`,
  );
}
const d = decodes[0][1];

printStartup(await benchStartup(log, await walCorpus(log, 'pgbench')), log);

const m = benchMarking();
const waldumpBlockRate = d.blockRefs / d.waldumpSeconds;
log(`\nMarking ${m.blocks} blocks in a 64 MB map, 1 thread (yardstick: pg_waldump's block refs/s above)`);
log(
  `  marks that raise a slot:    ${(m.updatesPerSecond / 1e6).toFixed(2)} M blocks/s = ${(m.updatesPerSecond / waldumpBlockRate).toFixed(2)}x pg_waldump's ${(waldumpBlockRate / 1e6).toFixed(2)} M block refs/s`,
);
log(`  marks already covered:      ${(m.noOpsPerSecond / 1e6).toFixed(2)} M blocks/s`);

const pools = [
  await benchPool(await walCorpus(log, 'pgbench'), 1),
  await benchPool(await walCorpus(log, 'pgbench'), 2),
];
log(
  `\nCatch-up with the worker pool over the pgbench corpus (decode + CRC + mark + ordered apply; best of 3)`,
);
log('workers   seconds      MB/s   x pg_waldump   main thread s');
for (const p of pools) {
  log(
    `${String(p.workers).padStart(7)} ${p.seconds.toFixed(3).padStart(9)} ${(d.bytes / 1e6 / p.seconds).toFixed(0).padStart(9)} ${(d.waldumpSeconds / p.seconds).toFixed(2).padStart(14)} ${p.mainThreadSeconds.toFixed(3).padStart(15)}`,
  );
}

const backlogMb = Number(process.env.BENCH_BACKLOG_MB ?? 1024);
const c = await benchCatchUp(log, backlogMb);
printCatchUp(c, log);
const avg = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const overhead = (1 - avg(c.tpsWith) / avg(c.tpsWithout)) * 100;

const big = await benchLargeMap();
log(
  `\nA ${big.mapMb} MB map: durable checkpoint of the whole map ${big.checkpointSeconds.toFixed(2)} s, load + verify ${big.loadSeconds.toFixed(2)} s (touching ${big.mapMb} MB of fresh memory alone: ${big.freshMemorySeconds.toFixed(2)} s)`,
);

const rs = await benchResize();
log(
  `\nResizing the map of a pgbench scale-130 cluster (${rs.blocks} blocks in the catalog, all changed) from 64 to 128 MB: ${rs.resizeSeconds.toFixed(2)} s, ${(rs.blocks / rs.resizeSeconds / 1e6).toFixed(2)} M blocks/s; ${(rs.resizeSeconds / rs.checkpointSeconds).toFixed(1)}x a durable checkpoint of the 128 MB map (${rs.checkpointSeconds.toFixed(2)} s)`,
);

const scale = Number(process.env.BENCH_SCALE ?? 700);
const q = await benchQueries(scale, log);
log(`\nQueries on a ${q.databaseMb} MB pgbench database (scale ${scale}), ${q.blocks} blocks in PGDATA`);
log(
  `yardsticks: walking PGDATA's relation files ${q.walkSeconds.toFixed(3)} s; reading every page's LSN ${q.scanSeconds.toFixed(3)} s`,
);
log(
  'mode     since              pagemapset s   change_stat s   files      pages   blocks/s scanned   x walk',
);
for (const r of q.rows) {
  log(
    `${r.mode.padEnd(8)} ${r.since.padEnd(18)} ${r.pagemapsetSeconds.toFixed(3).padStart(12)} ${r.changeStatSeconds.toFixed(3).padStart(15)} ` +
      `${String(r.files).padStart(6)} ${String(r.pages).padStart(10)} ${(q.blocks / r.pagemapsetSeconds / 1e6).toFixed(2).padStart(15)} M ` +
      `${(r.pagemapsetSeconds / q.walkSeconds).toFixed(1).padStart(8)}`,
  );
}

printBackfill(log, await benchBackfill(log));

const probackup = await benchProbackup(Number(process.env.BENCH_PROBACKUP_SCALE ?? 130), log);
if (probackup) printProbackup(probackup, log);

// ptrack 2.4 itself, on its own benchmarks (prints as it goes; skipped without ../shared's ptrack build)
await benchAnchor(log);

// issue 30: what checkpoints write and cost on a quiet server, against whole-map checkpoints
await benchCheckpointCost(log);

// issue 31: questions at 100 GB, 1 TB and 10 TB (simulated PGDATA), and the daemon's memory at scale
log('\nAt scale: a 1 GB map (~15% full of older changes), 0.1% of the relations changed since X');
await benchScale(log, [100, 1000, 10000]);
await benchDaemonMemory(log);

const pgdataAfter = q.rows.find((r) => r.mode === 'pgdata' && r.since !== q.rows[0].since) ?? q.rows[0];
const best2 = pools[1];
const e2e = c.ptrackdSeconds.get(2)!;
const rows: [string, string, string, string, string, boolean][] = [
  [
    '1 catch-up, 2 workers',
    '>= 1.0x',
    `pg_waldump ${d.waldumpSeconds.toFixed(3)} s`,
    `${best2.seconds.toFixed(3)} s`,
    `${(d.waldumpSeconds / best2.seconds).toFixed(2)}x`,
    d.waldumpSeconds / best2.seconds >= 1,
  ],
  [
    '2 end to end from a slot',
    '<= 1.0x each run',
    `--no-sync ${c.receivewalSeconds.toFixed(2)} s`,
    `${e2e.toFixed(2)} s`,
    `${(e2e / c.receivewalSeconds).toFixed(2)}x`,
    c.ptrackdRuns.every((r, i) => r <= c.receivewalRuns[i]),
  ],
  [
    '3 TPS overhead',
    '<= 3%',
    `${avg(c.tpsWithout).toFixed(0)} TPS`,
    `${avg(c.tpsWith).toFixed(0)} TPS`,
    `${overhead.toFixed(1)}%`,
    overhead <= 3,
  ],
  ['3 lag p99', '< 100 ms', '-', `${c.lagP99Ms.toFixed(0)} ms`, '-', c.lagP99Ms < 100],
  [
    '4 pagemapset, PGDATA',
    '<= page-LSN scan',
    `scan ${q.scanSeconds.toFixed(2)} s`,
    `${pgdataAfter.pagemapsetSeconds.toFixed(3)} s`,
    `${(pgdataAfter.pagemapsetSeconds / q.scanSeconds).toFixed(3)}x`,
    pgdataAfter.pagemapsetSeconds <= q.scanSeconds,
  ],
  [
    '5 RSS in catch-up',
    '<= map + 150 MB',
    '64 + 150 MB',
    `${c.ptrackdMaxRssMb.get(2)!.toFixed(0)} MB`,
    '-',
    c.ptrackdMaxRssMb.get(2)! <= 214,
  ],
  [
    '5 1 GB map load',
    '< 1 s',
    `fresh 1 GB ${big.freshMemorySeconds.toFixed(2)} s`,
    `${big.loadSeconds.toFixed(2)} s`,
    `${(big.loadSeconds / big.freshMemorySeconds).toFixed(2)}x`,
    big.loadSeconds < 1,
  ],
];
log('\nIssue 8 targets');
log('target                     goal              yardstick                 ptrackd       ratio   met');
for (const [name, goal, yard, ours, ratio, met] of rows) {
  log(
    `${name.padEnd(26)} ${goal.padEnd(17)} ${yard.padEnd(25)} ${ours.padEnd(13)} ${ratio.padEnd(7)} ${met ? 'yes' : 'NO'}`,
  );
}
