import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runPtrackd } from '../helpers/cli.ts';
import { freePort, PgCluster } from '../helpers/pg-cluster.ts';

/** Bad input to the daemon: a clear error, an exit code, no secret in the output, nothing written. */
describe('ptrackd --slot refuses bad input cleanly', () => {
  let cluster: PgCluster;
  const scratch = mkdtempSync(join(tmpdir(), 'ptrackd-input-'));

  beforeAll(async () => {
    cluster = await PgCluster.start();
    // password authentication for one role, replication refused to another
    await cluster.sql("CREATE ROLE pwuser LOGIN REPLICATION PASSWORD 'right-pw'; CREATE ROLE plain LOGIN");
    const hba = join(cluster.dataDir, 'pg_hba.conf');
    writeFileSync(
      hba,
      `host all,replication pwuser 127.0.0.1/32 scram-sha-256\n${readFileSync(hba, 'utf8')}`,
    );
    await cluster.sql('SELECT pg_reload_conf()');
  });
  afterAll(async () => {
    await cluster?.destroy();
    rmSync(scratch, { recursive: true, force: true });
  });

  const daemon = async (name: string, args: string[], env: NodeJS.ProcessEnv = {}) => {
    const dataDir = join(scratch, name);
    const listen = await freePort();
    const r = await runPtrackd(
      ['--slot', 'ptrack', '--data-dir', dataDir, '--listen', `127.0.0.1:${listen}`, ...args],
      { env },
    );
    return { ...r, wrote: existsSync(dataDir) };
  };

  it.each([
    [
      'a malformed connection string',
      ['--dbname', 'postgresql://u:s3cret@127.0.0.1:1:x/db'],
      {},
      /connection string is neither/,
    ],
    [
      'an unreachable server',
      ['--host', '127.0.0.1', '--port', '1', '--username', 'postgres'],
      { PGPASSWORD: 's3cret' },
      /could not connect.*ECONNREFUSED/,
    ],
    [
      'a wrong password',
      ['--dbname', 'host=127.0.0.1 user=pwuser password=s3cret'],
      {},
      /password authentication failed for user "pwuser"/,
    ],
    [
      'a user without REPLICATION',
      ['--host', '127.0.0.1', '--username', 'plain'],
      {},
      /must be (superuser or )?replication role|permission denied to start WAL sender/,
    ],
  ])('%s', async (name, args, env, message) => {
    const port = name === 'a user without REPLICATION' ? ['--port', String(cluster.port)] : [];
    const fixed = args.map((a) => a.replace('host=127.0.0.1 ', `host=127.0.0.1 port=${cluster.port} `));
    const r = await daemon(name.replace(/ /g, '-'), [...fixed, ...port], env);
    expect(r.code).toBe(1);
    expect(r.stderr, r.stderr).toMatch(message);
    expect(r.stderr + r.stdout).not.toMatch(/s3cret/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.wrote).toBe(false);
  });

  it.each([
    [['--map-size', '0'], /--map-size is in MB/],
    [['--checkpoint-interval', '-1'], /--checkpoint-interval must be a positive number/],
    [['--listen', 'nowhere'], /--listen takes host:port/],
    [['--workers', 'four'], /^ptrackd: --workers expected a number\nTry "ptrackd --help"/],
    [['--bogus'], /^ptrackd: Unknown argument: bogus\n/],
    [[], /^ptrackd: missing required option: --data-dir\n/],
  ])('usage errors exit 2: %j', async (args, message) => {
    const r = await runPtrackd(
      args.length ? ['--slot', 'x', '--data-dir', join(scratch, 'usage'), ...args] : ['--slot', 'x'],
    );
    expect(r.code).toBe(2);
    expect(r.stderr, r.stderr).toMatch(message);
    expect(existsSync(join(scratch, 'usage'))).toBe(false);
  });

  it('a PTRACKD_* variable that is no setting is named as such, not as an argument nobody typed', async () => {
    const r = await runPtrackd(['--slot', 'x', '--data-dir', join(scratch, 'usage')], {
      env: { PTRACKD_SLOT_NAME: 'x' },
    });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /^ptrackd: the environment variable PTRACKD_SLOT_NAME is not a ptrackd setting \(every PTRACKD_\* variable is read as one\)\n/,
    );
    expect(existsSync(join(scratch, 'usage'))).toBe(false);
  });

  it('a server asking for a password that nobody gave: says where one is looked for, and exits at once', async () => {
    const started = Date.now();
    const r = await daemon(
      'no-password',
      ['--host', '127.0.0.1', '--port', String(cluster.port), '--username', 'pwuser', '-w'],
      { PGPASSWORD: undefined, PGPASSFILE: join(scratch, 'no-such-pgpass') },
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /^ptrackd: error: the server asked for a password for user "pwuser" and none was found: set PGPASSWORD, add a line to ~\/\.pgpass/,
    );
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.wrote).toBe(false);
    // The server would hold an abandoned authentication for authentication_timeout (60 s).
    expect(Date.now() - started).toBeLessThan(30_000);
  });

  it('the password file is read as libpq reads it', async () => {
    const pgpass = join(scratch, 'pgpass');
    writeFileSync(pgpass, `127.0.0.1:${cluster.port}:*:pwuser:right-pw\n`, { mode: 0o600 });
    const missing = join(scratch, 'never-made');
    const r = await runPtrackd(
      [
        'drop',
        '--slot',
        'nosuch',
        '--data-dir',
        missing,
        '--yes',
        '-h',
        '127.0.0.1',
        '-p',
        String(cluster.port),
        '-U',
        'pwuser',
      ],
      { env: { PGPASSWORD: undefined, PGPASSFILE: pgpass } },
    );
    expect([r.code, r.stderr]).toEqual([0, `slot nosuch did not exist\n${missing} did not exist\n`]);
  });

  it('with $USER unset, the user is the operating-system user, as libpq takes it', async () => {
    const r = await daemon('no-user', ['--host', '127.0.0.1', '--port', String(cluster.port)], {
      USER: undefined,
      PGUSER: undefined,
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`role "${userInfo().username}" does not exist`));
  });

  it('--listen on a port in use: one line naming the address and the option, nothing written', async () => {
    const busy = createServer();
    await new Promise<void>((done) => busy.listen(0, '127.0.0.1', done));
    const port = (busy.address() as AddressInfo).port;
    try {
      const dataDir = join(scratch, 'listen');
      const r = await runPtrackd([
        '--slot',
        'ptrack',
        '--data-dir',
        dataDir,
        '--listen',
        `127.0.0.1:${port}`,
        '--host',
        '127.0.0.1',
        '--port',
        String(cluster.port),
        '--username',
        'postgres',
      ]);
      expect([r.code, r.stderr]).toEqual([
        1,
        `ptrackd: error: cannot listen on 127.0.0.1:${port} (--listen): the address is already in use (another ptrackd?)\n`,
      ]);
      expect(existsSync(dataDir)).toBe(false);
    } finally {
      busy.close();
    }
  });

  it.each([['--version'], ['-V'], ['-?'], ['sql', '--help']])('%s answers and exits 0', async (...args) => {
    const r = await runPtrackd(args);
    expect([r.code, r.stderr]).toEqual([0, '']);
    expect(r.stdout).toMatch(
      args[0] === '--version' || args[0] === '-V' ? /^ptrackd \d+\.\d+\.\d+ / : /Options:/,
    );
  });
});
