import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PgCluster, pgBinDir } from '../test/helpers/pg-cluster.ts';

/** A WAL corpus for benchmarks: segment files plus the LSN range that holds complete records. */
export interface WalCorpus {
  readonly dir: string;
  readonly start: string;
  readonly end: string;
  readonly firstSegment: string;
  readonly lastSegment: string;
  readonly bytes: number;
}

const DATA = join(import.meta.dirname, '.data');

/**
 * The WAL benchmarks run on, built once into bench/.data (git-ignored) and reused:
 * - `pgbench`: `pgbench -i -s 40` then `pgbench -T 40 -c 4` with durable commits, the workload of
 *   wal-format.md §7.5's pg_waldump yardstick (about 1 GB, roughly half of it full-page images);
 * - `small-records`: the same with fsync off, so pgbench commits far more often and the WAL is dominated
 *   by small records — the hardest case for per-record costs.
 */
export type CorpusKind = 'pgbench' | 'small-records';

export async function walCorpus(log: (s: string) => void, kind: CorpusKind = 'pgbench'): Promise<WalCorpus> {
  const dir = join(DATA, `wal-${kind}`);
  const metaFile = join(dir, 'corpus.json');
  if (existsSync(metaFile)) return JSON.parse(readFileSync(metaFile, 'utf8'));
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  log(`building the ${kind} WAL corpus with pgbench (once; kept in bench/.data)…`);
  // Default checkpointing (max_wal_size 1GB), so pages get full-page images as on a real server.
  const cluster = await PgCluster.start({
    settings: { wal_keep_size: "'4GB'", autovacuum: 'off', fsync: kind === 'pgbench' ? 'on' : 'off' },
  });
  try {
    const start = await cluster.sql('SELECT pg_current_wal_insert_lsn()');
    await cluster.client('pgbench', ['-i', '-q', '-s', '40']);
    await cluster.client('pgbench', ['-n', '-c', '4', '-j', '2', '-T', '40']);
    await cluster.sql('CHECKPOINT');
    const end = await cluster.sql('SELECT pg_current_wal_flush_lsn()');
    const [firstSegment, lastSegment] = (
      await cluster.sql(`SELECT pg_walfile_name('${start}'), pg_walfile_name('${end}')`)
    ).split('|');
    await cluster.stop();
    let bytes = 0;
    for (let seg = BigInt(`0x${firstSegment.slice(8)}`); ; seg++) {
      const name =
        firstSegment.slice(0, 8) +
        (seg >> 8n).toString(16).toUpperCase().padStart(8, '0') +
        (seg & 0xffn).toString(16).toUpperCase().padStart(8, '0');
      cpSync(join(cluster.walDir, name), join(dir, name));
      bytes += 16 << 20;
      if (name === lastSegment) break;
    }
    const corpus: WalCorpus = { dir, start, end, firstSegment, lastSegment, bytes };
    writeFileSync(metaFile, JSON.stringify(corpus, null, 2));
    return corpus;
  } finally {
    await cluster.destroy();
  }
}

/** The yardstick's command line: `pg_waldump --stats=record` over the corpus from its start to `end`. */
export function pgWaldumpStats(corpus: WalCorpus, end = corpus.end): string[] {
  return [join(pgBinDir(), 'pg_waldump'), '--stats=record', '-p', corpus.dir, '-s', corpus.start, '-e', end];
}
