import { connect } from 'node:net';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ReplicationConnection } from '../../src/replication/index.ts';
import { parseLsn } from '../../src/wal/index.ts';
import { makeCertificates } from '../helpers/certificates.ts';
import { runPtrackd } from '../helpers/cli.ts';
import { DaemonProcess } from '../helpers/daemon.ts';
import { freePort, PgCluster } from '../helpers/pg-cluster.ts';
import { scratchDir } from '../helpers/scratch.ts';

/** A startup packet (protocol 3.0) for `params`. */
function startupPacket(params: Record<string, string>): Buffer {
  const body = Buffer.from(
    `${Object.entries(params)
      .map(([k, v]) => `${k}\0${v}\0`)
      .join('')}\0`,
  );
  const head = Buffer.alloc(8);
  head.writeInt32BE(8 + body.length, 0);
  head.writeInt32BE(196608, 4);
  return Buffer.concat([head, body]);
}

function queryMessage(sql: string): Buffer {
  const body = Buffer.from(`${sql}\0`);
  const head = Buffer.from([0x51, 0, 0, 0, 0]);
  head.writeInt32BE(4 + body.length, 1);
  return Buffer.concat([head, body]);
}

/** Sends `writes` (a function of what arrived so far, or bytes) and returns all the endpoint sent until it closed. */
function rawSession(
  port: number,
  send: (received: Buffer, socket: import('node:net').Socket) => void,
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let received = Buffer.alloc(0);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`the endpoint did not close the connection; it sent ${received.toString('latin1')}`));
    }, 60_000);
    socket.on('connect', () => send(received, socket));
    socket.on('data', (b) => {
      received = Buffer.concat([received, b]);
      send(received, socket);
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(received);
    });
  });
}

/** The types of message in a server's byte stream after its startup (type letters in order). */
function messageTypes(bytes: Buffer): string[] {
  const types: string[] = [];
  for (let at = 0; at + 5 <= bytes.length; at += 1 + bytes.readInt32BE(at + 1))
    types.push(String.fromCharCode(bytes[at]));
  return types;
}

/** psql and node-postgres against ptrackd's PostgreSQL port: ptrack's answers, and a session otherwise untouched. */
describe('the PostgreSQL-protocol endpoint (--pg-listen)', () => {
  let cluster: PgCluster;
  let daemon: DaemonProcess;
  let pgPort: number;
  let initLsn: string;
  const clients: pg.Client[] = [];
  const certs = scratchDir('ptrackd-pgwire-certs-');

  const client = async (options: pg.ClientConfig = {}) => {
    const c = new pg.Client({
      host: '127.0.0.1',
      port: pgPort,
      user: 'postgres',
      database: 'postgres',
      ...options,
    });
    c.on('error', () => {});
    await c.connect();
    clients.push(c);
    return c;
  };
  const psql = (args: string[], input?: string) =>
    cluster.client('psql', ['-X', '-h', '127.0.0.1', '-p', String(pgPort), ...args], { input });

  beforeAll(async () => {
    cluster = await PgCluster.start({ settings: { wal_keep_size: "'1GB'" } });
    await cluster.sql("CREATE ROLE pwuser LOGIN PASSWORD 'right-pw'");
    const hba = join(cluster.dataDir, 'pg_hba.conf');
    const { readFileSync, writeFileSync } = await import('node:fs');
    writeFileSync(hba, `host all pwuser 127.0.0.1/32 scram-sha-256\n${readFileSync(hba, 'utf8')}`);
    await cluster.sql('SELECT pg_reload_conf()');
    makeCertificates(certs, 'endpoint-ca', '127.0.0.1');
    pgPort = await freePort();
    daemon = await DaemonProcess.start(cluster, join(scratchDir('ptrackd-pgwire-'), 'data'), [
      '--pg-listen',
      `127.0.0.1:${pgPort}`,
      '--pg-ssl-cert',
      join(certs, 'server.crt'),
      '--pg-ssl-key',
      join(certs, 'server.key'),
    ]);
    initLsn = String((await daemon.query('SELECT ptrack_init_lsn()')).rows[0][0]);
    await cluster.client('pgbench', ['-i', '-q', '-s', '1']);
    await cluster.client('pgbench', ['-n', '-t', '200']);
  }, 60_000);

  afterAll(async () => {
    for (const c of clients) await c.end().catch(() => {});
    await daemon?.stop('SIGKILL');
    await cluster?.destroy();
  });

  it('answers what pg_probackup asks, as ptrack does, in simple and extended protocol', async () => {
    const c = await client();
    await c.query("SELECT pg_catalog.set_config('search_path', '', false)");
    const extension = await c.query(
      "SELECT extnamespace::regnamespace, extversion FROM pg_catalog.pg_extension WHERE extname = 'ptrack'::name",
    );
    expect(extension.rows).toEqual([{ extnamespace: 'ptrack', extversion: '2.4' }]);
    expect(extension.fields.map((f) => [f.dataTypeID, f.tableID, f.columnID])).toEqual([
      [4089, 0, 0],
      [25, 3079, 6],
    ]);
    const mapSize = await c.query('SHOW ptrack.map_size');
    expect([mapSize.rows, mapSize.command]).toEqual([[{ 'ptrack.map_size': '8MB' }], 'SHOW']);
    const init = await c.query('SELECT ptrack.ptrack_init_lsn()');
    expect([init.rows[0].ptrack_init_lsn, init.fields[0].dataTypeID]).toEqual([initLsn, 3220]);
    expect((await c.query('SELECT ptrack.ptrack_version()')).rows).toEqual([{ ptrack_version: '2.4' }]);
    // extended protocol, one untyped text parameter, as PQexecParams sends it
    const map = await c.query('SELECT path, pagemap FROM ptrack.ptrack_get_pagemapset($1) ORDER BY 1', [
      initLsn,
    ]);
    expect(map.fields.map((f) => f.dataTypeID)).toEqual([25, 17]);
    expect(map.command).toBe('SELECT');
    const expected = await daemon.query(
      `SELECT path, pagemap FROM ptrack_get_pagemapset('${initLsn}') ORDER BY 1`,
    );
    expect(map.rows.map((r) => [r.path, `\\x${(r.pagemap as Buffer).toString('hex')}`])).toEqual(
      expected.rows,
    );
    expect(map.rowCount).toBeGreaterThan(10);
    // a statement that also reads a real table is the server's: here it fails there, as it would without ptrackd
    await expect(
      c.query('SELECT count(*) FROM ptrack.ptrack_get_pagemapset($1) JOIN pg_catalog.pg_class ON true', [
        initLsn,
      ]),
    ).rejects.toMatchObject({ code: '3F000' }); // schema "ptrack" does not exist, said by the server
  });

  it('psql gets ptrack’s column names and types, and the same rows as ptrackd sql', async () => {
    const stat = await psql(['--csv', '-c', `SELECT * FROM ptrack.ptrack_get_change_stat('${initLsn}')`]);
    const [header, row] = stat.trim().split('\n');
    expect(header).toBe('files,pages,"size, MB"');
    const cli = await runPtrackd([
      'sql',
      '--format',
      'csv',
      '-t',
      '--listen',
      `127.0.0.1:${daemon.listen}`,
      `SELECT * FROM ptrack_get_change_stat('${initLsn}')`,
    ]);
    const [files, pages, size] = row.split(',');
    expect(size).toMatch(/^\d+\.\d{16}$/); // numeric, as ptrack prints it
    expect([Number(files), Number(pages), Number(size)]).toEqual(cli.stdout.trim().split(',').map(Number));
    const c = await client();
    const types = await c.query(`SELECT * FROM ptrack.ptrack_get_change_stat('${initLsn}')`);
    expect(types.fields.map((f) => [f.name, f.dataTypeID])).toEqual([
      ['files', 20],
      ['pages', 1700],
      ['size, MB', 1700],
    ]);
    const limited = await psql([
      '-At',
      '-c',
      `SELECT path, pagecount FROM ptrack.ptrack_get_pagemapset('${initLsn}') ORDER BY pagecount DESC, 1 LIMIT 2`,
    ]);
    const direct = await daemon.query(
      `SELECT path, pagecount FROM ptrack_get_pagemapset('${initLsn}') ORDER BY pagecount DESC, 1 LIMIT 2`,
    );
    expect(limited.trim()).toBe(direct.rows.map((r) => r.join('|')).join('\n'));
  });

  it('an LSN older than init_lsn or not an LSN is an error with an SQLSTATE, and the session goes on', async () => {
    const c = await client();
    await expect(c.query("SELECT * FROM ptrack.ptrack_get_change_stat('0/1')")).rejects.toMatchObject({
      code: '22023',
      message: expect.stringMatching(/older than init_lsn/),
    });
    await expect(c.query('SELECT * FROM ptrack.ptrack_get_pagemapset($1)', ['zz'])).rejects.toMatchObject({
      code: '22P02',
      message: 'invalid input syntax for type pg_lsn: "zz"',
    });
    expect((await c.query('SELECT 41 + 1 AS n')).rows).toEqual([{ n: 42 }]);
  });

  it('ordinary sessions work exactly as against the server: queries, transactions, COPY, prepared statements', async () => {
    const c = await client();
    await c.query('CREATE TABLE relayed (i int)');
    await c.query('BEGIN');
    await c.query('INSERT INTO relayed VALUES (1)');
    // ptrack's answer inside a transaction, then a failed transaction: refused as the server refuses
    expect((await c.query('SELECT ptrack.ptrack_version()')).rows).toEqual([{ ptrack_version: '2.4' }]);
    await expect(c.query('SELECT 1/0')).rejects.toMatchObject({ code: '22012' });
    await expect(c.query('SELECT ptrack.ptrack_version()')).rejects.toMatchObject({ code: '25P02' });
    await c.query('ROLLBACK');
    expect((await c.query('SELECT count(*)::int AS n FROM relayed')).rows).toEqual([{ n: 0 }]);
    await psql(['-c', 'COPY relayed FROM STDIN'], '1\n2\n3\n\\.\n');
    expect(await psql(['-At', '-c', 'COPY relayed TO STDOUT'])).toBe('1\n2\n3\n');
    await c.query('PREPARE plus(int) AS SELECT $1 + 1 AS n');
    expect((await c.query('EXECUTE plus(41)')).rows).toEqual([{ n: 42 }]);
    for (const v of [1, 2]) {
      const named = await c.query({ name: 'named', text: 'SELECT $1::int * 10 AS n', values: [v] });
      expect(named.rows).toEqual([{ n: v * 10 }]);
    }
  });

  it('a query is cancelled from another session, and by a CancelRequest through the port (psql’s Ctrl-C)', async () => {
    const a = await client({ application_name: 'sleeper-a' });
    const sleepA = a.query('SELECT pg_sleep(60)');
    sleepA.catch(() => {}); // asserted below
    await waitForActivity(cluster, 'sleeper-a');
    await cluster.sql(
      "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'sleeper-a'",
    );
    await expect(sleepA).rejects.toMatchObject({ code: '57014' });
    const b = await client({ application_name: 'sleeper-b' });
    const sleepB = b.query('SELECT pg_sleep(60)');
    sleepB.catch(() => {}); // asserted below
    await waitForActivity(cluster, 'sleeper-b');
    const { processID, secretKey } = b as unknown as { processID: number; secretKey: number };
    const cancel = Buffer.alloc(16);
    cancel.writeInt32BE(16, 0);
    cancel.writeInt32BE(80877102, 4);
    cancel.writeInt32BE(processID, 8);
    cancel.writeInt32BE(secretKey, 12);
    await rawSession(pgPort, (received, socket) => {
      if (received.length === 0) socket.end(cancel);
    });
    await expect(sleepB).rejects.toMatchObject({ code: '57014' });
  });

  /**
   * pg_probackup --stream's WAL receiver checks for the stop LSN only when a message arrives (or every
   * 10 s): on a quiet server every backup waited for nothing. With the server's own keepalives off
   * (wal_sender_timeout 0), every keepalive a stream through the port receives is ptrackd's.
   */
  it('after a session’s pg_backup_stop, WAL streams through the port get keepalives carrying the server’s walEnd', async () => {
    await cluster.sql(
      "ALTER SYSTEM SET wal_sender_timeout = 0; SELECT pg_reload_conf(); SELECT pg_create_physical_replication_slot('nudged', true)",
    );
    const stream = await ReplicationConnection.connect({ host: '127.0.0.1', port: pgPort, user: 'postgres' });
    try {
      const start = parseLsn(
        await cluster.sql("SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = 'nudged'"),
      );
      let received = 0;
      const keepalives: number[] = [];
      const wal = stream.startReplication('nudged', start, 1, {
        onWal: (bytes, walStart) => (received = walStart + bytes.length),
        positions: () => 0,
        onKeepalive: (walEnd) => keepalives.push(walEnd),
      });
      const flushed = parseLsn(await cluster.sql('SELECT pg_current_wal_flush_lsn()'));
      await daemon.until(async () => received >= flushed, 'see the stream reach the server’s position');
      const session = await client();
      await session.query("SELECT pg_backup_start('nudge test', true)");
      await session.query('SELECT lsn FROM pg_backup_stop(false)');
      await daemon.until(async () => keepalives.length >= 3, 'see keepalives on the stream', 20_000);
      // the walEnd the server last sent, not a position of ptrackd's making
      expect(Math.min(...keepalives)).toBeGreaterThanOrEqual(flushed);
      expect(Math.max(...keepalives)).toBeLessThanOrEqual(
        parseLsn(await cluster.sql('SELECT pg_current_wal_flush_lsn()')),
      );
      wal.stop();
      await wal.done;
    } finally {
      await stream.close();
      await cluster.sql(
        "ALTER SYSTEM RESET wal_sender_timeout; SELECT pg_reload_conf(); SELECT pg_drop_replication_slot('nudged')",
      );
    }
  }, 60_000);

  it('TLS: a client that asks for it gets it from ptrackd (--pg-ssl-cert)', async () => {
    const out = await cluster.client('psql', [
      '-X',
      `host=127.0.0.1 port=${pgPort} user=postgres dbname=postgres sslmode=verify-full sslrootcert=${join(certs, 'endpoint-ca.pem')}`,
      '-c',
      '\\conninfo',
      '-c',
      'SELECT ptrack.ptrack_version()',
    ]);
    expect(out).toMatch(/SSL connection \(protocol: TLSv1\.[23]/);
    expect(out).toMatch(/ 2\.4\n/);
  });

  it('answers nothing before the server has authenticated the session', async () => {
    const received = await rawSession(pgPort, (bytes, socket) => {
      // a client that skips the password and asks at once
      if (bytes.length === 0)
        socket.write(
          Buffer.concat([
            startupPacket({ user: 'pwuser', database: 'postgres' }),
            queryMessage('SELECT ptrack.ptrack_version()'),
          ]),
        );
    });
    expect(received[0]).toBe(0x52); // the server's authentication request, SASL
    expect(received.readInt32BE(5)).toBe(10);
    expect(messageTypes(received)).not.toContain('D');
    expect(received.includes('2.4')).toBe(false);
  });

  it('bad input closes that connection with a log line; the daemon and other sessions are unaffected', async () => {
    const bystander = await client();
    const oneGb = Buffer.alloc(8);
    oneGb.writeInt32BE(1 << 30, 0);
    oneGb.writeInt32BE(196608, 4);
    const truncated = Buffer.alloc(10);
    truncated.writeInt32BE(100, 0);
    const cases: [string, (received: Buffer, socket: import('node:net').Socket) => void][] = [
      ['garbage', (r, s) => r.length === 0 && s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')],
      ['a truncated startup packet', (r, s) => r.length === 0 && s.end(truncated)],
      ['a 1 GB startup length', (r, s) => r.length === 0 && s.write(oneGb)],
      [
        'a 1 GB message after authentication',
        (r, s) => {
          if (r.length === 0) s.write(startupPacket({ user: 'postgres', database: 'postgres' }));
          else if (messageTypes(r).includes('Z') && !s.writableEnded) {
            const huge = Buffer.from([0x51, 0x40, 0, 0, 0]);
            s.end(Buffer.concat([huge, Buffer.alloc(1000)]));
          }
        },
      ],
    ];
    for (const [name, send] of cases) {
      const before = daemon.output.length;
      await rawSession(pgPort, send);
      await waitFor(() => /pg endpoint: /.test(daemon.output.slice(before)), `a log line for ${name}`);
    }
    // a client that vanishes in the middle of a query
    const vanishing = await client();
    void vanishing.query('SELECT pg_sleep(2)').catch(() => {});
    (vanishing as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
    expect((await bystander.query('SELECT ptrack.ptrack_version()')).rows).toEqual([
      { ptrack_version: '2.4' },
    ]);
    expect((await daemon.http('GET', '/readyz')).status).toBe(200);
  });
});

async function waitFor(done: () => boolean, what: string): Promise<void> {
  for (const deadline = Date.now() + 30_000; !done(); await new Promise((r) => setTimeout(r, 50))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
  }
}

async function waitForActivity(cluster: PgCluster, applicationName: string): Promise<void> {
  for (const deadline = Date.now() + 30_000; ; await new Promise((r) => setTimeout(r, 50))) {
    const state = await cluster.sql(
      `SELECT state FROM pg_stat_activity WHERE application_name = '${applicationName}'`,
    );
    if (state === 'active') return;
    if (Date.now() > deadline) throw new Error(`${applicationName} never became active`);
  }
}
