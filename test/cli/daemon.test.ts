import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseLsn } from '../../src/wal/index.ts';
import { checkpointLsnIn } from '../helpers/catalog.ts';
import { runPtrackd } from '../helpers/cli.ts';
import { DaemonProcess } from '../helpers/daemon.ts';
import { REPO_ROOT } from '../helpers/fixtures.ts';
import { clusterPagesChangedSince, reportedBlocks } from '../helpers/oracle.ts';
import { PgCluster } from '../helpers/pg-cluster.ts';
import { runWorkloadMix } from '../helpers/workload.ts';

/** `ptrackd --slot ptrack` as a user runs it, against a live PostgreSQL 15. */
describe('ptrackd --slot: the daemon follows the server and never loses a change', () => {
  let cluster: PgCluster;
  let dataDir: string;
  let daemon: DaemonProcess | undefined;

  const startDaemon = async () => {
    daemon = await DaemonProcess.start(cluster, dataDir);
  };
  const checkpointLsn = () => checkpointLsnIn(dataDir);
  const slotLsn = async () =>
    parseLsn(await cluster.sql(`SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = 'ptrack'`));

  beforeAll(async () => {
    cluster = await PgCluster.start({ settings: { wal_keep_size: "'2GB'", autovacuum: 'off' } });
    dataDir = mkdtempSync(join(tmpdir(), 'ptrackd-daemon-'));
    await startDaemon();
  }, 60_000);

  afterAll(async () => {
    await daemon?.stop('SIGKILL');
    await cluster?.destroy();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('answers pagemapset(X) for a workload mix with every page whose LSN is >= X', async () => {
    const since = parseLsn(await cluster.sql('SELECT pg_current_wal_insert_lsn()'));
    await runWorkloadMix(cluster);
    const end = await cluster.sql('SELECT pg_current_wal_flush_lsn()');
    const [expected, reported] = [
      await clusterPagesChangedSince(cluster, since),
      await daemon!.changedBlocks(since, end),
    ];
    expect(expected.size).toBeGreaterThan(1000);
    expect([...expected].filter((p) => !reported.has(p))).toEqual([]);
    const metrics = await daemon!.http('GET', '/metrics');
    expect(metrics.text).toMatch(/^ptrackd_applied_lsn_bytes \d+$/m);
    expect((await daemon!.http('GET', '/healthz')).status).toBe(200);
  }, 120_000);

  it('serves a backup script: take the LSN, run pgbench, list changed blocks with ptrackd sql --format csv --wait-lsn', async () => {
    const script = `set -euo pipefail
      X=$(psql -XAtc 'SELECT pg_current_wal_insert_lsn()')
      pgbench -n -c 2 -t 200 >/dev/null 2>&1
      psql -Xqc CHECKPOINT
      Y=$(psql -XAtc 'SELECT pg_current_wal_flush_lsn()')
      echo "$X"
      ptrackd sql --listen 127.0.0.1:${daemon!.listen} --format csv --wait-lsn "$Y" "SELECT path, pagemap FROM ptrack_get_pagemapset('$X') ORDER BY 1"`;
    const env = {
      ...process.env,
      PATH: `${join(REPO_ROOT, 'bin')}:${cluster.bindir}:${process.env.PATH}`,
      PGHOST: '127.0.0.1',
      PGPORT: String(cluster.port),
      PGUSER: 'postgres',
      PGDATABASE: 'postgres',
    };
    const out = execFileSync('bash', ['-c', script], { env, encoding: 'utf8' });
    const [x, header, ...lines] = out.trimEnd().split(/\r?\n/);
    expect(header).toBe('path,pagemap');
    const reported = reportedBlocks(
      lines
        .map((l) => l.split(','))
        .map(([path, hex]) => ({ path, pagemap: Buffer.from(hex.slice(2), 'hex') })),
    );
    const expected = await clusterPagesChangedSince(cluster, parseLsn(x));
    expect(expected.size).toBeGreaterThan(100);
    expect([...expected].filter((p) => !reported.has(p))).toEqual([]);
  }, 120_000);

  it('ptrackd sql and status: clear errors and exit codes', async () => {
    const run = (args: string[]) => runPtrackd([...args, '--listen', `127.0.0.1:${daemon!.listen}`]);
    const status = await run(['status', '--format', 'json']);
    expect(status.code).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ streaming: true });
    const bad = await run(['sql', 'SELEC 1']);
    expect([bad.code, bad.stderr.trim().split('\n').length]).toEqual([1, 1]);
    expect(bad.stderr).toMatch(/syntax error/);
    const old = await run(['sql', "SELECT * FROM ptrack_get_change_stat('0/1')"]);
    expect(old.code).toBe(1);
    expect(old.stderr).toMatch(/older than init_lsn .* take a full backup/);
    expect((await run(['sql', '--wait-lsn', 'zz', 'SELECT 1'])).stderr).toMatch(/invalid LSN "zz"/);
    const text = await run(['status']);
    expect(text.stdout).toMatch(/^slot +ptrack, holding back \d+ bytes of WAL on the server$/m);
    // ptrack's guidance: 1/1024 of the cluster's size, at least 64 MB (a small cluster: the floor)
    expect(text.stdout).toMatch(/^map size +8 MB \(ptrack's guidance for this cluster: 64 MB\)$/m);
    expect(text.stdout).toMatch(/^last gap +none$/m);
    // An LSN the server has not reached is refused at once, not waited for (the timeout: daemon-network)
    const beyond = await run(['sql', '--wait-lsn', 'FFFF/0', '--timeout', '600', 'SELECT 1']);
    expect([beyond.code, beyond.stderr]).toEqual([
      1,
      expect.stringMatching(
        /^ptrackd: error: --wait-lsn FFFF\/0 is beyond the server's current WAL position [0-9A-F]+\/[0-9A-F]+\n$/,
      ),
    ]);
    const config = join(dataDir, '..', `ptrackd-config-${daemon!.listen}.json`);
    writeFileSync(config, JSON.stringify({ listen: `127.0.0.1:${daemon!.listen}` }));
    const viaConfig = await runPtrackd(['sql', '--config', config, '-t', '-c', 'SELECT ptrack_version()']);
    const viaEnv = await runPtrackd(['sql', '-t', '-c', 'SELECT ptrack_version()'], {
      env: { PTRACKD_LISTEN: `127.0.0.1:${daemon!.listen}` },
    });
    expect([viaConfig.stdout, viaEnv.stdout]).toEqual([' 2.4\n', ' 2.4\n']);
    rmSync(config);
    const script = join(dataDir, '..', `ptrackd-script-${daemon!.listen}.sql`);
    writeFileSync(script, "SELECT ptrack_version(); -- first\nSELECT 'a;b' AS s;\n");
    expect((await run(['sql', '-t', '--format', 'csv', '-f', script])).stdout).toBe('2.4\r\na;b\r\n');
    rmSync(script);
    const piped = await runPtrackd(
      ['sql', '-t', '--format', 'tsv', '--listen', `127.0.0.1:${daemon!.listen}`],
      { input: 'SELECT 1;\nSELECT 2;' },
    );
    expect(piped.stdout).toBe('1\n2\n');
    const table = await run(['sql', 'SELECT ptrack_version() AS version']);
    expect(table.stdout).toBe(' version\n---------\n 2.4\n(1 row)\n\n');
  });

  it("answers fresh right after the server restarts: the connection it asks the server's position on is made again", async () => {
    const run = (args: string[]) => runPtrackd([...args, '--listen', `127.0.0.1:${daemon!.listen}`]);
    // a first answer leaves the daemon's connection for the server's position open
    expect((await run(['sql', '-t', '-c', 'SELECT ptrack_version()'])).code).toBe(0);
    await cluster.stop();
    await cluster.startAgain();
    const x = await cluster.sql('SELECT pg_current_wal_insert_lsn()');
    await cluster.sql('CREATE TABLE after_restart AS SELECT g FROM generate_series(1, 1000) g');
    const file = await cluster.sql("SELECT pg_relation_filepath('after_restart')");
    const r = await run([
      'sql',
      '-t',
      '--format',
      'csv',
      '-c',
      `SELECT path FROM ptrack_get_pagemapset('${x}')`,
    ]);
    expect([r.code, r.stderr]).toEqual([0, '']);
    expect(r.stdout.split(/\r?\n/)).toContain(file);
  });

  it('runs queries in a worker thread: /status answers while a long query runs', async () => {
    const long = daemon!.http('POST', '/query', {
      sql: 'WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000000) SELECT count(*) FROM n',
      noWait: true,
    });
    let longDone = false;
    long.finally(() => (longDone = true));
    await new Promise((r) => setTimeout(r, 300));
    expect((await daemon!.http('GET', '/status')).status).toBe(200);
    expect(longDone).toBe(false);
    const answer = await long;
    expect([answer.status, JSON.parse(answer.text).rows]).toEqual([200, [[20000000]]]);
  }, 60_000);

  it('on SIGTERM writes a final checkpoint and exits 0', async () => {
    await cluster.sql(
      'CREATE TABLE after_term (i int); INSERT INTO after_term SELECT generate_series(1, 100)',
    );
    const end = await cluster.sql('SELECT pg_current_wal_flush_lsn()');
    await daemon!.changedBlocks(parseLsn(end), end); // caught up
    expect(await daemon!.stop('SIGTERM')).toBe(0);
    expect(checkpointLsn()).toBeGreaterThanOrEqual(parseLsn(end));
    expect(await slotLsn()).toBe(checkpointLsn());
    daemon = undefined;
  }, 60_000);
});

describe('ptrackd sql --offline and the interactive prompt (daemon stopped)', () => {
  let cluster: PgCluster;
  let dataDir: string;
  let home: string;
  /** What the daemon answered before it stopped: the files pgbench -i changed. */
  let online: string[] = [];
  const tmux = (...args: string[]) =>
    execFileSync('tmux', ['-L', 'ptrackd-test', ...args], { encoding: 'utf8' });

  beforeAll(async () => {
    cluster = await PgCluster.start({ settings: { wal_keep_size: "'1GB'" } });
    home = mkdtempSync(join(tmpdir(), 'ptrackd-home-'));
    dataDir = mkdtempSync(join(tmpdir(), 'ptrackd-offline-'));
    const daemon = await DaemonProcess.start(cluster, dataDir);
    await cluster.client('pgbench', ['-i', '-q', '-s', '1']);
    const noWait = await runPtrackd([
      'sql',
      '--no-wait',
      '--listen',
      `127.0.0.1:${daemon.listen}`,
      'SELECT 1 AS one',
    ]);
    expect(noWait.stderr).toMatch(
      /^NOTICE: {2}answered without waiting, at applied LSN [0-9A-F]+\/[0-9A-F]+$/m,
    );
    const answered = await daemon.query(
      "SELECT path FROM ptrack_get_pagemapset(ptrack_init_lsn()) WHERE path LIKE 'base/%'",
      await cluster.sql('SELECT pg_current_wal_flush_lsn()'),
    );
    online = answered.rows.map((r) => String(r[0]));
    expect(await daemon.stop('SIGTERM')).toBe(0);
  }, 60_000);

  afterAll(async () => {
    try {
      tmux('kill-server');
    } catch {
      // no tmux server left: the prompt quit
    }
    await cluster?.destroy();
    for (const d of [dataDir, home]) if (d) rmSync(d, { recursive: true, force: true });
  });

  /** `ptrackd sql --offline` on the stopped daemon's directory, rows as CSV. */
  const offlineCsv = (sql: string) =>
    runPtrackd([
      ...['sql', '--offline', '--data-dir', dataDir, '--pgdata', cluster.dataDir],
      ...['--format', 'csv', '-t', '-c', sql],
    ]);

  it('--offline answers from the last checkpoint and says up to which LSN', async () => {
    const r = await offlineCsv(
      "SELECT count(*) FROM ptrack_get_pagemapset(ptrack_init_lsn()) WHERE path LIKE 'base/%'; SELECT checkpoint_lsn FROM ptrack_status()",
    );
    expect(r.code, r.stderr).toBe(0);
    const [count, checkpoint] = r.stdout.trim().split(/\r?\n/);
    expect(Number(count)).toBeGreaterThan(10);
    // its last checkpoints appended changed lines to the log: replayed, every file answered is there
    const files = await offlineCsv(
      "SELECT path FROM ptrack_get_pagemapset(ptrack_init_lsn()) WHERE path LIKE 'base/%'",
    );
    const offline = new Set(files.stdout.trim().split(/\r?\n/));
    expect(online.length).toBeGreaterThan(10);
    expect(online.filter((f) => !offline.has(f))).toEqual([]);
    expect(r.stderr).toContain(
      `NOTICE:  offline: answers are valid up to the last checkpoint, ${checkpoint}`,
    );
  });

  it('--offline without a data directory is a clear error', async () => {
    const r = await runPtrackd(['sql', '--offline', '--data-dir', join(home, 'missing'), 'SELECT 1']);
    expect([r.code, r.stderr.trim()]).toEqual([
      1,
      `ptrackd: error: no ptrackd catalog at ${join(home, 'missing', 'catalog.db')}`,
    ]);
  });

  it('the interactive prompt: a query, an error, a statement over two lines, \\dt, history, \\q', async () => {
    tmux(
      'new-session',
      '-d',
      '-s',
      'p',
      '-x',
      '150',
      '-y',
      '60',
      '-e',
      `HOME=${home}`,
      `${join(REPO_ROOT, 'bin/ptrackd')} sql --offline --data-dir ${dataDir} 2>/dev/null`,
    );
    const screen = () => tmux('capture-pane', '-p', '-t', 'p');
    // typed literally; a trailing ';' would end a tmux command, so it goes as the key 0x3b
    const type = (line: string) => {
      const text = line.endsWith(';') ? line.slice(0, -1) : line;
      if (text) tmux('send-keys', '-t', 'p', '-l', text);
      if (line.endsWith(';')) tmux('send-keys', '-t', 'p', '-H', '3b');
      tmux('send-keys', '-t', 'p', 'Enter');
    };
    const waitFor = async (text: RegExp) => {
      for (let i = 0; i < 100 && !text.test(screen()); i++) await new Promise((r) => setTimeout(r, 100));
      expect(screen()).toMatch(text);
    };
    await waitFor(/^ptrackd=#\s*$/m);
    type('SELECT ptrack_version();');
    await waitFor(/ 2\.4\n\(1 row\)/);
    type('SELEC 1;');
    await waitFor(/ERROR: {2}near "SELEC": syntax error/);
    type('help');
    await waitFor(/You are using ptrackd sql/);
    type('SELECT 41 + 1');
    // as in psql, a backslash command mid-statement acts at once and is not part of the statement
    type('\\nosuch');
    await waitFor(/invalid command \\nosuch\nTry \\\? for help\./);
    type('AS answer;');
    await waitFor(/ptrackd-# AS answer;\n answer\n--------\n +42\n\(1 row\)/);
    type('\\dt');
    await waitFor(/ptrack_get_pagemapset\(start_lsn\)/);
    type('\\q');
    for (let i = 0; i < 50; i++) {
      try {
        tmux('has-session', '-t', 'p');
        await new Promise((r) => setTimeout(r, 100));
      } catch {
        break; // the session ended with the prompt
      }
    }
    expect(() => tmux('has-session', '-t', 'p')).toThrow();
    expect(readFileSync(join(home, '.ptrackd_history'), 'utf8')).toBe(
      'SELECT ptrack_version();\nSELEC 1;\nSELECT 41 + 1 AS answer;\n',
    );
  }, 60_000);
});
