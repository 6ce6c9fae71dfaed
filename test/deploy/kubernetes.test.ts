import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { ScaledObject } from '@kubernetes-models/keda/keda.sh/v1alpha1';
import { limitsFileSchema } from '@tollgate/cli';
import { parseWorkerEnv, workerEnvSchema, CLOSE_GRACE_MS } from '@tollgate/worker';
import { Deployment } from 'kubernetes-models/apps/v1';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { ConfigMap, Secret, Service } from 'kubernetes-models/v1';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments, parse } from 'yaml';
import { REPO_ROOT } from '../support/processes.js';

/**
 * deploy/kubernetes against the Kubernetes (1.27) and KEDA schemas, offline: kubernetes-models validates each object
 * with its bundled JSON schema. Then what a schema cannot see: selectors that match, probes on the worker's health
 * endpoints, a grace period above the drain, configuration the services accept, autoscaling aimed at the workers.
 */
const KUBERNETES_DIR = join(REPO_ROOT, 'deploy/kubernetes');

type Manifest = { apiVersion: string; kind: string; metadata: { name: string; labels?: Record<string, string> }; spec?: unknown; data?: Record<string, string> };

/** A model class per (apiVersion, kind) the manifests may use; anything else is an error. */
const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'apps/v1/Deployment': Deployment,
  'v1/Service': Service,
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'keda.sh/v1alpha1/ScaledObject': ScaledObject,
};

function validate(manifest: Manifest): void {
  const Model = MODELS[`${manifest.apiVersion}/${manifest.kind}`];
  if (Model === undefined) throw new Error(`no schema for ${manifest.apiVersion} ${manifest.kind}`);
  new Model(manifest as never).validate();
}

function documents(file: string): Manifest[] {
  return parseAllDocuments(readFileSync(file, 'utf8')).map((document) => {
    if (document.errors.length > 0) throw new Error(`${file}: ${document.errors[0]?.message}`);
    return document.toJS() as Manifest;
  });
}

/** What `kubectl apply -k DIR` would create: the kustomization's resources, recursively, with its image overrides checked. */
function kustomize(dir: string): Manifest[] {
  const kustomization = parse(readFileSync(join(dir, 'kustomization.yaml'), 'utf8')) as { resources: string[]; images?: Array<{ name: string }> };
  const manifests = kustomization.resources.flatMap((resource) => {
    const path = join(dir, resource);
    if (!existsSync(path)) throw new Error(`${relative(REPO_ROOT, dir)}/kustomization.yaml names ${resource}, which does not exist`);
    return existsSync(join(path, 'kustomization.yaml')) ? kustomize(path) : documents(path);
  });
  const images = new Set(manifests.flatMap((manifest) => (manifest.kind === 'Deployment' ? containersOf(manifest).map((container) => container.image) : [])));
  for (const image of kustomization.images ?? []) expect(images, `${relative(REPO_ROOT, dir)}: image override ${image.name}`).toContain(image.name);
  return manifests;
}

interface Container {
  name: string;
  image: string;
  ports?: Array<{ name: string; containerPort: number }>;
  env?: Array<{ name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }>;
  envFrom?: Array<{ configMapRef?: { name: string } }>;
  readinessProbe?: { httpGet?: { path: string; port: string } };
  livenessProbe?: { httpGet?: { path: string; port: string } };
}
interface PodTemplate {
  metadata: { labels: Record<string, string> };
  spec: { containers: Container[]; terminationGracePeriodSeconds?: number };
}
const templateOf = (manifest: Manifest) => (manifest.spec as { template: PodTemplate }).template;
const containersOf = (manifest: Manifest) => templateOf(manifest).spec.containers;
const find = (manifests: readonly Manifest[], kind: string, name: string) => {
  const found = manifests.find((manifest) => manifest.kind === kind && manifest.metadata.name === name);
  if (found === undefined) throw new Error(`no ${kind} ${name}`);
  return found;
};
const matches = (selector: Record<string, string>, labels: Record<string, string>) => Object.entries(selector).every(([key, value]) => labels[key] === value);

const yamlFiles = (dir: string): string[] =>
  readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? yamlFiles(join(dir, entry.name)) : entry.name.endsWith('.yaml') && entry.name !== 'kustomization.yaml' ? [join(dir, entry.name)] : [],
  );

describe('deploy/kubernetes', () => {
  const base = kustomize(join(KUBERNETES_DIR, 'base'));
  const withKeda = kustomize(join(KUBERNETES_DIR, 'keda'));
  const withHpa = kustomize(join(KUBERNETES_DIR, 'hpa'));

  it('every object in every file validates against the Kubernetes and KEDA schemas', () => {
    const files = yamlFiles(KUBERNETES_DIR);
    expect(files.length).toBeGreaterThanOrEqual(8);
    const failures: string[] = [];
    for (const file of files) {
      for (const manifest of documents(file)) {
        try {
          validate(manifest);
        } catch (error) {
          failures.push(`${relative(REPO_ROOT, file)} ${manifest.kind}/${manifest.metadata?.name}: ${error instanceof Error ? error.message : String(error)}`);
        }
      }
    }
    expect(failures).toEqual([]);
  });

  it('the validator really validates: a wrong type or a missing required field is refused', () => {
    const worker = structuredClone(find(base, 'Deployment', 'tollgate-worker'));
    (worker.spec as { replicas: unknown }).replicas = 'two';
    expect(() => validate(worker)).toThrow(/replicas must be integer/);
    const scaled = structuredClone(find(withKeda, 'ScaledObject', 'tollgate-worker'));
    delete (scaled.spec as { scaleTargetRef?: unknown }).scaleTargetRef;
    expect(() => validate(scaled)).toThrow(/scaleTargetRef/);
  });

  it('the worker: readiness on /readyz and liveness on /healthz of its metrics port, a grace period above the drain, a PodDisruptionBudget', () => {
    const worker = find(base, 'Deployment', 'tollgate-worker');
    const [container] = containersOf(worker);
    const config = find(base, 'ConfigMap', 'tollgate-config').data ?? {};
    expect(container?.ports).toContainEqual({ name: 'metrics', containerPort: Number(config.METRICS_PORT) });
    expect(container?.readinessProbe?.httpGet).toEqual({ path: '/readyz', port: 'metrics' });
    expect(container?.livenessProbe?.httpGet).toEqual({ path: '/healthz', port: 'metrics' });
    const graceMs = (templateOf(worker).spec.terminationGracePeriodSeconds ?? 30) * 1_000;
    expect(graceMs).toBeGreaterThan(Number(config.WORKER_DRAIN_TIMEOUT_MS) + CLOSE_GRACE_MS);
    const selector = (worker.spec as { selector: { matchLabels: Record<string, string> } }).selector.matchLabels;
    expect(matches(selector, templateOf(worker).metadata.labels)).toBe(true);
    const budget = find(base, 'PodDisruptionBudget', 'tollgate-worker');
    expect(matches((budget.spec as { selector: { matchLabels: Record<string, string> } }).selector.matchLabels, templateOf(worker).metadata.labels)).toBe(true);
  });

  it('configuration: the ConfigMap is an environment the worker accepts, with nothing it does not know; the API key comes from the Secret', () => {
    const config = find(base, 'ConfigMap', 'tollgate-config').data ?? {};
    const known = new Set(Object.keys(workerEnvSchema.shape));
    expect(Object.keys(config).filter((name) => !known.has(name))).toEqual([]);
    const worker = containersOf(find(base, 'Deployment', 'tollgate-worker'))[0];
    expect(worker?.envFrom).toEqual([{ configMapRef: { name: 'tollgate-config' } }]);
    const key = worker?.env?.find((variable) => variable.name === 'ANTHROPIC_API_KEY');
    expect(key?.valueFrom?.secretKeyRef).toEqual({ name: 'tollgate-secrets', key: 'anthropic-api-key' });
    expect(key?.value).toBeUndefined();
    expect(() => parseWorkerEnv({ ...config, ANTHROPIC_API_KEY: 'from-the-secret' })).not.toThrow();
    // every key the manifests read from the Secret is in the example
    const example = documents(join(KUBERNETES_DIR, 'secret.example.yaml'))[0] as Manifest & { stringData: Record<string, string> };
    const keys = base
      .flatMap((manifest) => (manifest.kind === 'Deployment' ? containersOf(manifest) : []))
      .flatMap((container) => container.env ?? [])
      .flatMap((variable) => (variable.valueFrom?.secretKeyRef ? [variable.valueFrom.secretKeyRef] : []));
    for (const ref of keys) {
      expect(ref.name).toBe(example.metadata.name);
      expect(Object.keys(example.stringData)).toContain(ref.key);
    }
  });

  it('the limits ConfigMap is a file `tollgate limits apply` accepts, with the same limits as the environment', () => {
    const config = find(base, 'ConfigMap', 'tollgate-config').data ?? {};
    const file = limitsFileSchema.parse(parse(find(base, 'ConfigMap', 'tollgate-limits').data?.['limits.yaml'] ?? ''));
    expect(file).toEqual({
      concurrency: Number(config.TOLLGATE_CONCURRENCY),
      rates: {
        requests: { limit: Number(config.TOLLGATE_RPM), intervalMs: 60_000 },
        inputTokens: { limit: Number(config.TOLLGATE_ITPM), intervalMs: 60_000 },
        outputTokens: { limit: Number(config.TOLLGATE_OTPM), intervalMs: 60_000 },
      },
      reserve: [],
      leaseTtlMs: Number(config.TOLLGATE_LEASE_TTL_MS),
    });
  });

  it('the gateway: a Service that selects its pods, the API port and the tokenless metrics port, tokens from the Secret', () => {
    const gateway = find(base, 'Deployment', 'tollgate-gateway');
    const service = find(base, 'Service', 'tollgate-gateway');
    expect(matches((service.spec as { selector: Record<string, string> }).selector, templateOf(gateway).metadata.labels)).toBe(true);
    const container = containersOf(gateway)[0];
    const env = Object.fromEntries((container?.env ?? []).map((variable) => [variable.name, variable]));
    expect(env.GATEWAY_TOKENS?.valueFrom?.secretKeyRef?.name).toBe('tollgate-secrets');
    const ports = (service.spec as { ports: Array<{ name: string; targetPort: string }> }).ports;
    expect(ports.map((port) => port.targetPort).sort()).toEqual(['http', 'metrics']);
    for (const port of ports) expect(container?.ports?.map((containerPort) => containerPort.name)).toContain(port.targetPort);
    expect(container?.ports).toContainEqual({ name: 'metrics', containerPort: Number(env.METRICS_PORT?.value) });
  });

  it("autoscaling: the KEDA ScaledObject and the HPA both scale the worker Deployment on the queue's waiting jobs", () => {
    const scaled = find(withKeda, 'ScaledObject', 'tollgate-worker').spec as {
      scaleTargetRef: { name: string };
      minReplicaCount: number;
      maxReplicaCount: number;
      triggers: Array<{ type: string; metadata: { query: string; threshold: string } }>;
    };
    expect(scaled.scaleTargetRef.name).toBe('tollgate-worker');
    expect(scaled.minReplicaCount).toBeGreaterThanOrEqual(1);
    expect(scaled.maxReplicaCount).toBeGreaterThan(scaled.minReplicaCount);
    const [trigger] = scaled.triggers;
    expect(trigger?.type).toBe('prometheus');
    expect(trigger?.metadata.query).toContain('tollgate_queue_jobs');
    expect(trigger?.metadata.query).toContain(`queue="${find(base, 'ConfigMap', 'tollgate-config').data?.TOLLGATE_QUEUE}"`);
    expect(Number(trigger?.metadata.threshold)).toBeGreaterThan(0);
    const hpa = find(withHpa, 'HorizontalPodAutoscaler', 'tollgate-worker').spec as { scaleTargetRef: { kind: string; name: string }; metrics: Array<{ type: string }> };
    expect(hpa.scaleTargetRef).toMatchObject({ kind: 'Deployment', name: 'tollgate-worker' });
    expect(hpa.metrics[0]?.type).toBe('External');
    expect(withKeda.some((manifest) => manifest.kind === 'HorizontalPodAutoscaler')).toBe(false); // KEDA makes its own
    expect(base.some((manifest) => manifest.kind === 'ScaledObject' || manifest.kind === 'HorizontalPodAutoscaler')).toBe(false);
  });
});
