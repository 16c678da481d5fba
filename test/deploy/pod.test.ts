import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { REPO_ROOT } from '../helpers/fixtures.ts';
import { type K8sObject, renderKustomization } from '../helpers/manifests.ts';
import { freePort, PgCluster } from '../helpers/pg-cluster.ts';

const m = renderKustomization(join(REPO_ROOT, 'deploy/k8s/base'));
const PASSWORD = 'pod-simulation-secret';

/**
 * The pod, simulated: a local PostgreSQL 15 set up as the manifests set it up (postgresql.conf and
 * pg_hba.conf from the ConfigMap, initdb arguments and the role script from the StatefulSet), and
 * ptrackd started exactly as the sidecar is (its args, its env, its config file), with only paths and
 * ports moved to this machine. Then the probes are asked what the kubelet would ask.
 */
describe('a pod simulation: the manifests’ settings, command, args and env, against PostgreSQL 15', () => {
  let cluster: PgCluster;
  const scratch = mkdtempSync(join(tmpdir(), 'ptrackd-pod-'));
  let listen: number;
  let daemon: ChildProcess | undefined;
  let output = '';

  const postgres = m.statefulSet.spec.template.spec.containers.find(
    (c: { name: string }) => c.name === 'postgres',
  );
  /** A container's environment, with every secretKeyRef resolved to the test's password. */
  const envOf = (c: K8sObject): Record<string, string> =>
    Object.fromEntries(
      (c.env as { name: string; value?: string; valueFrom?: unknown }[]).map((e) => [
        e.name,
        e.valueFrom ? PASSWORD : (e.value ?? ''),
      ]),
    );

  beforeAll(async () => {
    // The server here listens on 127.0.0.1 with this test's pg_hba.conf (written below).
    const { listen_addresses: _listen, hba_file: _hba, ...settings } = m.postgresSettings;
    cluster = await PgCluster.start({
      settings,
      initdbArgs: envOf(postgres).POSTGRES_INITDB_ARGS.split(' '),
    });
    const script = join(scratch, 'create-ptrackd-role.sh');
    writeFileSync(script, m.configMap('postgres-config').data['create-ptrackd-role.sh']);
    execFileSync('bash', [script], {
      env: {
        ...process.env,
        PATH: `${cluster.bindir}:${process.env.PATH}`,
        PGHOST: '127.0.0.1',
        PGPORT: String(cluster.port),
        PGUSER: 'postgres',
        PTRACKD_PASSWORD: PASSWORD,
      },
    });
    // The manifest's pg_hba.conf, after one line for this test's own superuser connections.
    const hba = `host all postgres 127.0.0.1/32 trust\n${m.configMap('postgres-config').data['pg_hba.conf']}`;
    writeFileSync(join(cluster.dataDir, 'pg_hba.conf'), hba);
    await cluster.sql('SELECT pg_reload_conf()');
    listen = await freePort();
    const config = {
      ...m.ptrackdConfig,
      'data-dir': join(scratch, 'ptrackd-data'),
      pgdata: cluster.dataDir,
      listen: `127.0.0.1:${listen}`,
      'pg-listen': `127.0.0.1:${await freePort()}`,
    };
    writeFileSync(join(scratch, 'ptrackd.yaml'), stringify(config));
  }, 60_000);

  afterAll(async () => {
    daemon?.kill('SIGKILL');
    await cluster?.destroy();
    rmSync(scratch, { recursive: true, force: true });
  });

  /** The sidecar's command line and environment, with the config file's path moved here. */
  function startSidecar(): Promise<number | null> {
    const args = (m.sidecar.args as string[]).map((a) =>
      a === '/etc/ptrackd/ptrackd.yaml' ? join(scratch, 'ptrackd.yaml') : a,
    );
    const env = { ...process.env, ...envOf(m.sidecar), PGPORT: String(cluster.port) };
    daemon = spawn(join(REPO_ROOT, 'bin/ptrackd'), args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    daemon.stdout!.on('data', (b) => (output += b));
    daemon.stderr!.on('data', (b) => (output += b));
    return new Promise((r) => daemon!.once('exit', (code) => r(code)));
  }
  const probe = async (path: string) => {
    const res = await fetch(`http://127.0.0.1:${listen}${path}`).catch(() => null);
    return { status: res?.status ?? 0, body: res ? await res.text() : '' };
  };
  /** Polls the kubelet's probes until ready; every liveness answer on the way is kept. */
  async function untilReady(): Promise<{ live: number[]; ready: { status: number; lagBytes?: number }[] }> {
    const live: number[] = [];
    const ready: { status: number; lagBytes?: number }[] = [];
    for (const deadline = Date.now() + 60_000; Date.now() < deadline; ) {
      live.push((await probe(m.sidecar.livenessProbe.httpGet.path)).status);
      const r = await probe(m.sidecar.readinessProbe.httpGet.path);
      ready.push({ status: r.status, lagBytes: r.body ? JSON.parse(r.body).lagBytes : undefined });
      if (r.status === 200) return { live, ready };
      await new Promise((res) => setTimeout(res, 20));
    }
    throw new Error(`never ready:\n${output}`);
  }

  it('starts before PostgreSQL (as a native sidecar does): alive at once, ready once the server is up', async () => {
    await cluster.stop();
    const exited = startSidecar();
    for (const deadline = Date.now() + 30_000; (await probe('/healthz')).status !== 200; ) {
      if (Date.now() > deadline) throw new Error(`never alive:\n${output}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    expect((await probe(m.sidecar.startupProbe.httpGet.path)).status).toBe(200);
    expect((await probe(m.sidecar.readinessProbe.httpGet.path)).status).toBe(503);
    await cluster.startAgain();
    const { live } = await untilReady();
    expect(live.every((s) => s === 200)).toBe(true);
    expect(output).toMatch(/the server is not available yet/);
    daemon!.kill('SIGTERM');
    expect(await exited).toBe(0);
  }, 90_000);

  it('is not ready while it catches up on a backlog, and alive throughout', async () => {
    await cluster.client('pgbench', ['-i', '-q', '-s', '10']);
    const exited = startSidecar();
    const { live, ready } = await untilReady();
    expect(live.filter((s) => s !== 0).every((s) => s === 200)).toBe(true);
    const maxLag = Number(m.ptrackdConfig['ready-max-lag']);
    expect(ready.some((r) => r.status === 503 && (r.lagBytes ?? 0) > maxLag)).toBe(true);
    daemon!.kill('SIGTERM');
    expect(await exited).toBe(0);
  }, 90_000);

  it('exports every metric the PrometheusRule alerts on', async () => {
    const exited = startSidecar();
    await untilReady();
    const metrics = (await probe('/metrics')).body;
    const rule = m.objects.find((o) => o.kind === 'PrometheusRule')!;
    const used = new Set(JSON.stringify(rule.spec).match(/ptrackd_\w+/g));
    expect(used.size).toBeGreaterThanOrEqual(4);
    for (const name of used) expect(metrics).toMatch(new RegExp(`^${name} `, 'm'));
    daemon!.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(readFileSync(join(scratch, 'ptrackd.yaml'), 'utf8')).toMatch(/wait-for-server/);
  }, 90_000);

  it('exports every metric the Grafana dashboard (the ConfigMap Grafana’s sidecar picks up) draws', async () => {
    const exited = startSidecar();
    await untilReady();
    const carrier = m.objects.find(
      (o) => o.kind === 'ConfigMap' && o.metadata.labels?.grafana_dashboard === '1',
    )!;
    const dashboard = JSON.parse(carrier.data['ptrackd-dashboard.json']);
    const queries = [
      ...dashboard.panels.flatMap((p: { targets: { expr: string }[] }) => p.targets.map((t) => t.expr)),
      ...dashboard.templating.list.map((v: { definition?: string }) => v.definition ?? ''),
    ].join('\n');
    // one statement answered, so that the latency histogram has samples
    const answered = await fetch(`http://127.0.0.1:${listen}/query`, {
      method: 'POST',
      body: JSON.stringify({ sql: 'SELECT ptrack_version()' }),
    });
    expect(answered.status).toBe(200);
    const metrics = (await probe('/metrics')).body;
    const used = new Set(queries.match(/ptrackd_\w+/g));
    expect(used.size).toBeGreaterThanOrEqual(12);
    for (const name of used) expect(metrics).toMatch(new RegExp(`^${name}[ {]`, 'm'));
    daemon!.kill('SIGTERM');
    expect(await exited).toBe(0);
  }, 90_000);
});
