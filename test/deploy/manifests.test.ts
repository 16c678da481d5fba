import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PrometheusRule } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule';
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Service } from 'kubernetes-models/v1/Service';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/cli/config.ts';
import { REPO_ROOT } from '../helpers/fixtures.ts';
import { type Manifests, renderKustomization } from '../helpers/manifests.ts';

const MODELS: Record<string, { new (data: never): { validate(): void } }> = {
  'apps/v1 StatefulSet': StatefulSet,
  'v1 ConfigMap': ConfigMap,
  'v1 Service': Service,
  'networking.k8s.io/v1 NetworkPolicy': NetworkPolicy,
  'monitoring.coreos.com/v1 PrometheusRule': PrometheusRule,
};

describe.each([
  ['base', 'deploy/k8s/base'],
  ['example overlay', 'deploy/k8s/overlays/example'],
])('the Kubernetes manifests (%s)', (_name, dir) => {
  const m: Manifests = renderKustomization(join(REPO_ROOT, dir));

  it('render with kubectl kustomize and every object is valid against the Kubernetes API schemas', () => {
    expect(m.objects.length).toBeGreaterThanOrEqual(6);
    for (const o of m.objects) {
      const Model = MODELS[`${o.apiVersion} ${o.kind}`];
      expect(Model, `${o.apiVersion} ${o.kind}`).toBeDefined();
      expect(() => new Model(o as never).validate()).not.toThrow();
    }
  });

  it('run ptrackd as a native sidecar that mounts PGDATA read-only and keeps its own volume', () => {
    const ptrackd = m.sidecar;
    expect(ptrackd.restartPolicy).toBe('Always');
    const config = m.ptrackdConfig;
    const mountOf = (path: string) =>
      ptrackd.volumeMounts.find((v: { mountPath: string }) => path.startsWith(`${v.mountPath}/`));
    expect(mountOf(config.pgdata as string)).toMatchObject({ name: 'pgdata', readOnly: true });
    expect(mountOf(`${config['data-dir']}/x`)).toMatchObject({ name: 'ptrackd-data' });
    expect(mountOf(`${config['data-dir']}/x`).readOnly).toBeFalsy();
    const claims = m.statefulSet.spec.volumeClaimTemplates.map(
      (c: { metadata: { name: string } }) => c.metadata.name,
    );
    expect(claims).toEqual(expect.arrayContaining(['pgdata', 'ptrackd-data']));
  });

  it('probe the endpoints ptrackd serves, on the port it listens on', () => {
    const ptrackd = m.sidecar;
    const port = ptrackd.ports.find((p: { name: string }) => p.name === ptrackd.livenessProbe.httpGet.port);
    expect(`0.0.0.0:${port.containerPort}`).toBe(m.ptrackdConfig.listen);
    expect(ptrackd.startupProbe.httpGet.path).toBe('/healthz');
    expect(ptrackd.livenessProbe.httpGet.path).toBe('/healthz');
    expect(ptrackd.readinessProbe.httpGet.path).toBe('/readyz');
  });

  it('reference the credentials in Secrets, never inline them', () => {
    expect(m.objects.filter((o) => o.kind === 'Secret')).toEqual([]);
    const env = m.containers.flatMap((c) => c.env ?? []);
    const secrets = env.filter((e: { name: string }) => /PASSWORD/.test(e.name));
    expect(secrets.length).toBeGreaterThanOrEqual(2);
    for (const e of secrets) expect(e.valueFrom?.secretKeyRef?.name).toMatch(/\S/);
    expect(env.filter((e: { name: string }) => /PASSWORD|SECRET|TOKEN/.test(e.name) && 'value' in e)).toEqual(
      [],
    );
    for (const c of m.containers) expect((c.args ?? []).join(' ')).not.toMatch(/password\s*=/i);
  });

  it('run every container as non-root, without privilege escalation or capabilities', () => {
    expect(m.statefulSet.spec.template.spec.securityContext.runAsNonRoot).toBe(true);
    for (const c of m.containers) {
      expect(c.securityContext.runAsUser, c.name).toBeGreaterThan(0);
      expect(c.securityContext.allowPrivilegeEscalation, c.name).toBe(false);
      expect(c.securityContext.capabilities.drop, c.name).toEqual(['ALL']);
    }
    expect(m.sidecar.securityContext.readOnlyRootFilesystem).toBe(true);
    const dockerUser = /^USER (\d+):(\d+)$/m.exec(
      readFileSync(join(REPO_ROOT, 'deploy/docker/Dockerfile'), 'utf8'),
    );
    expect(Number(dockerUser?.[1])).toBe(m.sidecar.securityContext.runAsUser);
  });

  it('give ptrackd a configuration its own schema accepts, and the server the settings it needs', () => {
    expect(() => parseConfig('ptrackd.yaml', m.ptrackdConfig)).not.toThrow();
    const pg = m.postgresSettings;
    expect(pg.wal_level).toBe('replica');
    expect(Number(pg.max_wal_senders)).toBeGreaterThan(1);
    expect(Number(pg.max_replication_slots)).toBeGreaterThan(0);
    expect(pg.max_slot_wal_keep_size).toMatch(/^\d+(MB|GB|TB)$/);
    expect(m.configMap('postgres-config').data['pg_hba.conf']).toMatch(
      /^host\s+replication\s+ptrackd\s+127\.0\.0\.1\/32/m,
    );
  });
});
