import { execFileSync } from 'node:child_process';
import { parseAllDocuments, parse as parseYaml } from 'yaml';

// biome-ignore lint/suspicious/noExplicitAny: rendered Kubernetes objects are checked field by field
export type K8sObject = Record<string, any>;

export interface Manifests {
  readonly objects: K8sObject[];
  readonly statefulSet: K8sObject;
  /** The ptrackd native sidecar (an init container with restartPolicy: Always). */
  readonly sidecar: K8sObject;
  readonly containers: K8sObject[];
  /** ptrackd's config file, as the ConfigMap holds it. */
  readonly ptrackdConfig: Record<string, unknown>;
  /** postgresql.conf from the ConfigMap, as name → value (quotes removed). */
  readonly postgresSettings: Record<string, string>;
  configMap(name: string): K8sObject;
}

/** `kubectl kustomize dir`, and the pieces tests look at. */
export function renderKustomization(dir: string): Manifests {
  const text = execFileSync('kubectl', ['kustomize', dir], { encoding: 'utf8' });
  const objects = parseAllDocuments(text).map((d) => d.toJS() as K8sObject);
  const configMap = (name: string) => {
    const found = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === name);
    if (!found) throw new Error(`no ConfigMap ${name} in ${dir}`);
    return found;
  };
  const statefulSet = objects.find((o) => o.kind === 'StatefulSet');
  if (!statefulSet) throw new Error(`no StatefulSet in ${dir}`);
  const pod = statefulSet.spec.template.spec;
  const sidecar = pod.initContainers.find((c: K8sObject) => c.name === 'ptrackd');
  const settings: Record<string, string> = {};
  for (const line of configMap('postgres-config').data['postgresql.conf'].split('\n')) {
    const m = /^\s*(\w+)\s*=\s*('?)(.*?)\2\s*(#.*)?$/.exec(line);
    if (m) settings[m[1]] = m[3];
  }
  return {
    objects,
    statefulSet,
    sidecar,
    containers: [...pod.initContainers, ...pod.containers],
    ptrackdConfig: parseYaml(configMap('ptrackd-config').data['ptrackd.yaml']),
    postgresSettings: settings,
    configMap,
  };
}
