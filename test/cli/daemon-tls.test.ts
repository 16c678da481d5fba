import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeCertificates } from '../helpers/certificates.ts';
import { runPtrackd } from '../helpers/cli.ts';
import { DaemonProcess } from '../helpers/daemon.ts';
import { freePort, PgCluster } from '../helpers/pg-cluster.ts';

/** Replication over TLS, the way libpq's sslmode/sslrootcert ask for it; plain text refused by the server. */
describe('ptrackd --slot over TLS', () => {
  let cluster: PgCluster;
  const scratch = mkdtempSync(join(tmpdir(), 'ptrackd-tls-'));

  beforeAll(async () => {
    makeCertificates(scratch, 'ca', '127.0.0.1');
    makeCertificates(scratch, 'other-ca');
    cluster = await PgCluster.start();
    for (const f of ['server.crt', 'server.key']) copyFileSync(join(scratch, f), join(cluster.dataDir, f));
    execFileSync('chmod', ['600', join(cluster.dataDir, 'server.key')]);
    if (process.getuid?.() === 0) {
      execFileSync('chown', [
        'postgres:postgres',
        ...['server.crt', 'server.key'].map((f) => join(cluster.dataDir, f)),
      ]);
    }
    const hba = join(cluster.dataDir, 'pg_hba.conf');
    writeFileSync(
      hba,
      `hostnossl replication all 127.0.0.1/32 reject\nhostssl replication all 127.0.0.1/32 trust\n${readFileSync(hba, 'utf8')}`,
    );
    await cluster.sql('ALTER SYSTEM SET ssl = on; SELECT pg_reload_conf()');
  }, 60_000);

  afterAll(async () => {
    await cluster?.destroy();
    rmSync(scratch, { recursive: true, force: true });
  });

  const dbname = (extra: string) => `host=127.0.0.1 port=${cluster.port} user=postgres ${extra}`;

  it('streams with sslmode=verify-full and the right root certificate', async () => {
    const root = join(scratch, 'ca.pem');
    const daemon = await DaemonProcess.start(cluster, join(scratch, 'verified'), [
      '--dbname',
      dbname(`sslmode=verify-full sslrootcert=${root}`),
    ]);
    try {
      expect(
        await cluster.sql(
          "SELECT count(*) || ' ' || bool_and(ssl) FROM pg_stat_replication JOIN pg_stat_ssl USING (pid)",
        ),
      ).toBe('1 true');
    } finally {
      await daemon.stop('SIGKILL');
    }
  }, 60_000);

  it.each([
    ['plain text', '', /no encryption|pg_hba\.conf rejects/],
    ['a certificate from another CA', `sslmode=verify-full sslrootcert=${'OTHER'}`, /certificate/],
    [
      'verify-full without a root certificate',
      'sslmode=verify-full',
      /sslmode=verify-full needs sslrootcert/,
    ],
  ])(
    'refuses %s with a clear error, writing nothing',
    async (name, extra, why) => {
      const dataDir = join(scratch, name.replace(/\W+/g, '-'));
      const args = ['--slot', 'ptrack', '--data-dir', dataDir, '--listen', `127.0.0.1:${await freePort()}`];
      const conn = dbname(extra.replace('OTHER', join(scratch, 'other-ca.pem')));
      const r = await runPtrackd([...args, '--dbname', conn]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(why);
      expect(existsSync(dataDir)).toBe(false);
    },
    60_000,
  );
});
