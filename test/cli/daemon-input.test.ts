import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
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
    [[], /Missing required argument: slot/],
  ])('usage errors exit 2: %j', async (args, message) => {
    const r = await runPtrackd(
      args.length
        ? ['--slot', 'x', '--data-dir', join(scratch, 'usage'), ...args]
        : ['--data-dir', join(scratch, 'usage')],
    );
    expect(r.code).toBe(2);
    expect(r.stderr, r.stderr).toMatch(message);
    expect(existsSync(join(scratch, 'usage'))).toBe(false);
  });
});
