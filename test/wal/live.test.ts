import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../helpers/fixtures.ts';
import { PgCluster } from '../helpers/pg-cluster.ts';
import {
  DESCRIBED_EVENT_KINDS,
  eventsFromDescription,
  type WaldumpOutput,
  waldumpOf,
} from '../helpers/waldump-oracle.ts';
import { runWorkloadMix } from '../helpers/workload.ts';

const run = promisify(execFile);
const ptrackd = (args: string[]) =>
  run(join(REPO_ROOT, 'bin/ptrackd'), args, { maxBuffer: 1 << 30 }).then((r) =>
    r.stdout.split('\n').filter(Boolean),
  );

describe('live PostgreSQL 15: ptrackd waldump agrees with pg_waldump on a workload mix', () => {
  let cluster: PgCluster;
  let start: string;
  let end: string;
  let oracle: WaldumpOutput;

  beforeAll(async () => {
    cluster = await PgCluster.start({
      settings: { wal_keep_size: "'2GB'", wal_log_hints: 'on', autovacuum: 'off' },
    });
    start = await cluster.sql('SELECT pg_current_wal_insert_lsn()');
    await runWorkloadMix(cluster);
    end = await cluster.sql('SELECT pg_current_wal_flush_lsn()');
    oracle = await waldumpOf(cluster, start, end);
  }, 300_000);

  afterAll(async () => {
    await cluster?.destroy();
  });

  it('decodes the same records', async () => {
    const lines = await ptrackd([
      'waldump',
      '--format',
      'json',
      '--start',
      start,
      '--end',
      end,
      cluster.walDir,
    ]);
    const records = lines.map((l) => JSON.parse(l));
    expect(oracle.records.length).toBeGreaterThan(10_000);
    expect(records.map((r) => `${r.lsn} ${r.rmgr}/${r.type} ${r.totLen}`)).toEqual(
      oracle.records.map((r) => `${r.lsn} ${r.rmgr}/${r.type} ${r.totLen}`),
    );
  });

  it('--blocks lists exactly the block references pg_waldump lists', async () => {
    const blocks = await ptrackd(['waldump', '--blocks', '--start', start, '--end', end, cluster.walDir]);
    expect(blocks).toEqual(oracle.blocks);
    for (const fork of ['fsm', 'vm', 'init'])
      expect(
        blocks.some((b) => b.includes(` ${fork} `)),
        fork,
      ).toBe(true);
    expect(
      blocks.some((b) => !/ 1663\/| 1664\//.test(b)),
      'a non-default tablespace',
    ).toBe(true);
  });

  it('--events states the file changes pg_waldump describes, each workload step included', async () => {
    const events = await ptrackd(['waldump', '--events', '--start', start, '--end', end, cluster.walDir]);
    const expected = oracle.records.flatMap(eventsFromDescription);
    expect(events.filter((e) => DESCRIBED_EVENT_KINDS.has(e.split(' ')[1]))).toEqual(expected);
    for (const kind of [
      'create',
      'truncate',
      'drop',
      'dbcopy',
      'dbcreate',
      'dbdrop',
      'tblspc-create',
      'relmap',
    ]) {
      expect(
        events.some((e) => e.split(' ')[1] === kind),
        kind,
      ).toBe(true);
    }
  });
});
