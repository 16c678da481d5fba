import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PgCluster } from '../test/helpers/pg-cluster.ts';

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
 * About 1 GB of WAL from `pgbench -i -s 40` and `pgbench -T 40 -c 4` on a scratch PostgreSQL (the mix
 * wal-format.md §7.5 measured pg_waldump on: roughly half the bytes are full-page images). Built once
 * into bench/.data (git-ignored) and reused.
 */
export async function walCorpus(log: (s: string) => void): Promise<WalCorpus> {
  const dir = join(DATA, 'wal-1g');
  const metaFile = join(dir, 'corpus.json');
  if (existsSync(metaFile)) return JSON.parse(readFileSync(metaFile, 'utf8'));
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  log('building a ~1 GB WAL corpus with pgbench (once; kept in bench/.data)…');
  const cluster = await PgCluster.start({
    settings: {
      wal_keep_size: "'4GB'",
      max_wal_size: "'4GB'",
      checkpoint_timeout: "'10min'",
      autovacuum: 'off',
    },
  });
  try {
    const start = await cluster.sql('SELECT pg_current_wal_insert_lsn()');
    await cluster.client('pgbench', ['-i', '-q', '-s', '40']);
    await cluster.client('pgbench', ['-n', '-c', '4', '-j', '2', '-T', '60']);
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
