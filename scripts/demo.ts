import { execFileSync } from 'node:child_process';
import { PgCluster } from '../test/helpers/pg-cluster.ts';

/**
 * Starts a scratch PostgreSQL 15, runs a short pgbench, and shows which blocks its WAL says changed
 * since the LSN taken before the workload, using `ptrackd waldump`. Everything is removed at the end.
 * (When the daemon lands, this becomes: ptrackd following the server, then ptrack_get_pagemapset.)
 */
const cluster = await PgCluster.start({ settings: { wal_keep_size: "'1GB'" } });
try {
  const say = (s: string) => process.stdout.write(`${s}\n`);
  say(`scratch PostgreSQL on 127.0.0.1:${cluster.port}, data in ${cluster.dataDir}`);
  await cluster.client('pgbench', ['-i', '-q', '-s', '2']);
  const start = await cluster.sql('SELECT pg_current_wal_insert_lsn()');
  say(`LSN before the workload: ${start}; running pgbench for 5 seconds…`);
  await cluster.client('pgbench', ['-n', '-c', '2', '-T', '5']);
  await cluster.sql('CHECKPOINT');
  const end = await cluster.sql('SELECT pg_current_wal_flush_lsn()');
  const ptrackd = (args: string[]) =>
    execFileSync('bin/ptrackd', ['waldump', ...args, '--start', start, '--end', end, cluster.walDir], {
      encoding: 'utf8',
      maxBuffer: 1 << 30,
    });
  say(`\nWAL between ${start} and ${end}, per resource manager:`);
  say(
    ptrackd(['--stats'])
      .split('\n')
      .filter((l) => !/^\S+\s+0 \(/.test(l))
      .join('\n'),
  );
  const changed = new Map<string, Set<string>>();
  for (const line of ptrackd(['--blocks', '--implied']).trim().split('\n')) {
    const [, rel, fork, block] = line.split(' ');
    const key = `${rel} ${fork}`;
    if (!changed.has(key)) changed.set(key, new Set());
    changed.get(key)!.add(block);
  }
  say(`Changed blocks since ${start}, by relation fork (spc/db/rel fork: blocks):`);
  const rows = [...changed.entries()].sort((a, b) => b[1].size - a[1].size);
  for (const [key, blocks] of rows.slice(0, 10)) say(`  ${key.padEnd(24)} ${blocks.size}`);
  say(
    `  … ${rows.length} relation forks, ${rows.reduce((n, [, b]) => n + b.size, 0)} distinct blocks in all`,
  );
} finally {
  await cluster.destroy();
}
