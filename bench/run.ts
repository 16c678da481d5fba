import { cpus } from 'node:os';
import { benchCrc32c } from './crc32c.ts';
import { benchDecode } from './decode.ts';
import { benchMarking } from './map.ts';
import { benchQueries } from './queries.ts';
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
    `\nDecode the ${kind} corpus: ${mb.toFixed(0)} MB of WAL, ${d.records} records, ${d.blockRefs} block refs (best of 5)`,
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

const m = benchMarking();
const waldumpBlockRate = d.blockRefs / d.waldumpSeconds;
log(`\nMarking ${m.blocks} blocks in a 64 MB map, 1 thread (yardstick: pg_waldump's block refs/s above)`);
log(
  `  marks that raise a slot:    ${(m.updatesPerSecond / 1e6).toFixed(2)} M blocks/s = ${(m.updatesPerSecond / waldumpBlockRate).toFixed(2)}x pg_waldump's ${(waldumpBlockRate / 1e6).toFixed(2)} M block refs/s`,
);
log(`  marks already covered:      ${(m.noOpsPerSecond / 1e6).toFixed(2)} M blocks/s`);

const scale = Number(process.env.PTRACKD_BENCH_SCALE ?? 130);
const q = await benchQueries(scale, log);
log(`\nQueries on a ${q.databaseMb} MB pgbench database (scale ${scale}), ${q.blocks} blocks in PGDATA`);
log(`yardstick: walking PGDATA's relation files ${q.walkSeconds.toFixed(3)} s`);
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
