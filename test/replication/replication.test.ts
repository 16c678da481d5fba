import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ReplicationConnection, ReplicationError, type WalStream } from '../../src/replication/index.ts';
import { FORK_NAMES, formatLsn, type Lsn, parseLsn, WalStreamDecoder } from '../../src/wal/index.ts';
import { freePort, PgCluster } from '../helpers/pg-cluster.ts';
import { waldumpOf } from '../helpers/waldump-oracle.ts';

describe('physical replication client against PostgreSQL 15', () => {
  let cluster: PgCluster;
  let connection: ReplicationConnection;
  const connect = () =>
    ReplicationConnection.connect({ host: '127.0.0.1', port: cluster.port, user: 'postgres' });

  beforeAll(async () => {
    cluster = await PgCluster.start({ settings: { wal_keep_size: "'1GB'", wal_sender_timeout: "'2s'" } });
    connection = await connect();
  });

  afterAll(async () => {
    await connection?.close().catch(() => {});
    await cluster?.destroy();
  });

  it('identifies the server and reads the settings that shape its WAL', async () => {
    const info = await connection.serverInfo();
    const [sysid, version] = (
      await cluster.sql(
        `SELECT system_identifier, current_setting('server_version_num') FROM pg_control_system()`,
      )
    ).split('|');
    expect(info).toMatchObject({
      systemId: sysid,
      timeline: 1,
      versionNum: Number(version),
      major: 15,
      segmentSize: 16 << 20,
      walBlockSize: 8192,
      blockSize: 8192,
    });
    expect(info.xlogPos).toBeGreaterThan(0);
  });

  it('creates the physical slot once, reserving WAL', async () => {
    expect(await connection.createPhysicalSlot('ptrack')).toBe(true);
    expect(await connection.createPhysicalSlot('ptrack')).toBe(false);
    expect(
      await cluster.sql(
        `SELECT slot_type, restart_lsn IS NOT NULL FROM pg_replication_slots WHERE slot_name = 'ptrack'`,
      ),
    ).toBe('physical|t');
    expect(() =>
      connection.startReplication('Bad-Name', 0, 1, { onWal: () => {}, positions: () => 0 }),
    ).toThrow(/slot name/);
  });

  it('streams the slot’s WAL: decoded, its block references are exactly pg_waldump’s', async () => {
    const start = parseLsn(
      await cluster.sql(`SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = 'ptrack'`),
    );
    await cluster.client('pgbench', ['-i', '-q', '-s', '1']);
    await cluster.client('pgbench', ['-n', '-c', '2', '-t', '100']);
    await cluster.sql(
      'CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 1000); CHECKPOINT',
    );
    const end = parseLsn(await cluster.sql('SELECT pg_current_wal_flush_lsn()'));
    const decoder = new WalStreamDecoder({ startLsn: start, segmentSize: 16 << 20, major: 15 });
    const blocks: string[] = [];
    let stream: WalStream | undefined;
    let messages = 0;
    stream = connection.startReplication('ptrack', start, 1, {
      onWal: (bytes, walStart) => {
        messages++;
        decoder.feed(Uint8Array.from(bytes), walStart); // valid only during the call
        while (decoder.position < end) {
          const r = decoder.next();
          if (r === null) return;
          if (r.endLsn > end) break;
          for (const b of r.blocks)
            blocks.push(`${formatLsn(r.lsn)} ${b.spc}/${b.db}/${b.rel} ${FORK_NAMES[b.fork]} ${b.block}`);
        }
        stream?.stop();
      },
      positions: () => start,
    });
    expect(await stream.done).toEqual({ kind: 'stopped' });
    expect(messages).toBeGreaterThan(10);
    const oracle = await waldumpOf(cluster, formatLsn(start), formatLsn(end));
    expect(blocks.length).toBeGreaterThan(5000);
    expect(blocks).toEqual(oracle.blocks);
  });

  it('moves the slot’s restart_lsn to the flush position it reports, and answers keepalives', async () => {
    const slotLsn = async () =>
      parseLsn(await cluster.sql(`SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = 'ptrack'`));
    const from = await slotLsn();
    const target = parseLsn(await cluster.sql('SELECT pg_current_wal_flush_lsn()'));
    let reported: Lsn = from;
    const stream = connection.startReplication('ptrack', from, 1, {
      onWal: () => {},
      positions: () => reported,
    });
    reported = target;
    stream.sendStatus(target);
    await until(async () => (await slotLsn()) === target);
    // wal_sender_timeout is 2 s: idle for 5 s, the server asks for replies and must get them
    await new Promise((r) => setTimeout(r, 5000));
    expect(
      await cluster.sql(`SELECT count(*) FROM pg_stat_replication WHERE application_name = ''`),
    ).not.toBe('0');
    expect(await slotLsn()).toBe(target);
    stream.stop();
    expect(await stream.done).toEqual({ kind: 'stopped' });
  }, 30_000);

  it('reports the server’s refusals with their reason', async () => {
    const ahead = connection.startReplication('ptrack', parseLsn('10/0'), 1, {
      onWal: () => {},
      positions: () => 0,
    });
    await expect(ahead.done).rejects.toThrow(/ahead of the WAL flush position/);
    const other = await connect();
    const missing = other.startReplication('no_such_slot', 0x1000000, 1, {
      onWal: () => {},
      positions: () => 0,
    });
    await expect(missing.done).rejects.toThrow(ReplicationError);
    await other.close().catch(() => {});
  });

  it('a server that is not there is a clear error that does not show the password', async () => {
    const port = await freePort();
    const attempt = ReplicationConnection.connect({
      host: '127.0.0.1',
      port,
      user: 'postgres',
      password: 's3cret-pw',
    });
    await expect(attempt).rejects.toThrow(/could not connect for replication: .*ECONNREFUSED/);
    await expect(attempt).rejects.not.toThrow(/s3cret-pw/);
  });
});

async function until(check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 100));
  }
}
