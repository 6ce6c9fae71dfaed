import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import type Anthropic from '@anthropic-ai/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadCompose } from '../support/compose.js';
import { GATEWAY_TOKEN, MODEL, SETTLE_TIMEOUT_MS, eventually, startFleet, type Fleet } from '../support/fleet.js';
import { REPO_ROOT, stopAllServices } from '../support/processes.js';
import { prometheusInstalled, startPrometheus, type PrometheusProcess, type Sample } from '../support/prometheus.js';

const CONCURRENCY = 3;
const WORKERS = 2;
const QUEUE_JOBS = 40;
/** Jobs enqueued while paused for the autoscaling query; WORKER_SLOTS of them go active on each worker. */
const WAITING_JOBS = 50;
/** WORKER_CONCURRENCY of the fleet's workers (test/support/fleet.ts). */
const WORKER_SLOTS = 16;
const GATEWAY_REQUESTS = 10;
/** Jobs of the gateway's tenant enqueued (POST /v1/jobs) while the fleet is paused, for the tenant series. */
const GATEWAY_TENANT_JOBS = 3;
/** The 5th upstream call gets an injected 429 (a rate limit with retry-after): one retry, one 429 of kind "rate". */
const INJECTED_429_NTH = 5;
/** Scrapes of every target after the load's last completion was seen, before the queries run. */
const SCRAPES_AFTER_LOAD = 3;
/** The labels a Tollgate series may carry, and what each label's values look like: all from configuration or a fixed set. */
const LABEL_VALUES: Record<string, RegExp> = {
  __name__: /^tollgate_[a-z0-9_]+$/,
  instance: /^127\.0\.0\.1:\d+$/,
  job: /^tollgate-(worker|gateway)$/,
  account: /^fleet-[0-9a-f]+-limiter$/,
  pool: /^default$/,
  queue: /^fleet-[0-9a-f]+(@fleet-[0-9a-f]+-limiter)?$/, // the plain queue, and the account's own (`<queue>@<account>`)
  dimension: /^(requests|inputTokens|outputTokens|input|output|cache_creation_input|cache_read_input)$/,
  status: /^(\d{3}|connection)$/,
  kind: /^(concurrency|rate|other|rpm|itpm|otpm|budget)$/, // the account's 429 kinds, and a tenant's (what the 429 ran out of, or its budget)
  state: /^(waiting|prioritized|delayed|active|completed|failed|retried|handed_back)$/,
  route: /^(\/[a-z0-9/:_]*|unknown)$/,
  tenant: /^(fleet|-)$/, // the gateway's one configured tenant, and jobs without one
  le: /^([0-9.e+-]+|\+Inf)$/,
};
/** How long Prometheus may take to scrape what the load left behind; a deadline, not a measurement. */
const SCRAPED_WITHIN_MS = 60_000;
/** Series of all Tollgate metrics together, across 2 workers and the gateway: a bound that a label fed by job ids or models would break. */
const SERIES_MAX = 400;
/** The gateway's scraper token (GATEWAY_METRICS_TOKEN): its /metrics answers 401 without it. */
const METRICS_TOKEN = 'tollgate-prometheus-test-metrics-token';
const DASHBOARD_FILE = join(REPO_ROOT, 'deploy/grafana/tollgate.json');
/** Grafana's built-in variables, as Grafana would expand them for a short range. */
const GRAFANA_BUILTINS: Record<string, string> = { __rate_interval: '1m', __interval: '15s', __range: '5m' };

const installed = prometheusInstalled();
if (!installed) {
  console.warn('prometheus.test.ts: SKIPPED, `prometheus` is not installed (apt-get install prometheus; .ci/run installs it) or set PROMETHEUS_PATH');
}

let fleet: Fleet;
let prometheus: PrometheusProcess;
/** Tokens the answers reported, summed over every job of the load. */
const usage = { input: 0, output: 0 };

const hostPort = (url: string) => new URL(url).host;
const one = (samples: Sample[], expr: string): number => {
  if (samples.length !== 1) throw new Error(`${expr}: expected one sample, got ${JSON.stringify(samples)}`);
  return samples[0]!.value;
};

describe.skipIf(!installed)('a real Prometheus scrapes the workers and the gateway', () => {
  let account: string;

  beforeAll(async () => {
    fleet = await startFleet({
      workers: WORKERS,
      concurrency: CONCURRENCY,
      rpm: 100_000,
      gateway: true,
      gatewayEnv: { GATEWAY_METRICS_TOKEN: METRICS_TOKEN },
      mockEnv: { MOCK_LATENCY_MS: '100' },
    });
    account = fleet.limiterName;
    prometheus = await startPrometheus([
      { name: 'tollgate-worker', targets: fleet.workers.map((worker) => hostPort(worker.ready.url ?? '')) },
      { name: 'tollgate-gateway', targets: [hostPort(fleet.gatewayUrl)], bearerToken: METRICS_TOKEN },
    ]);
    // every target scraped before the load starts, so that no series of the load is Prometheus' first sample
    const scraped = await eventually(async () => (await prometheus.query('sum(up)'))[0]?.value === WORKERS + 1, SCRAPED_WITHIN_MS, 100);
    if (!scraped) throw new Error(`Prometheus did not scrape every target: ${JSON.stringify(await prometheus.targets())}`);
    await fleet.mockAdmin('config', { faults: { schedule: [{ nth: INJECTED_429_NTH, fault: '429' }], retryAfterS: 1 } });
    await fleet.mockAdmin('reset');
    const queued = Array.from({ length: QUEUE_JOBS }, (_, i) =>
      fleet.producer.enqueueAndWait(
        { model: MODEL, max_tokens: 8 + (i % 4) * 8, messages: [{ role: 'user', content: `prometheus job ${i}` }] },
        { priority: i % 10, timeoutMs: SETTLE_TIMEOUT_MS },
      ),
    );
    const viaGateway = Array.from({ length: GATEWAY_REQUESTS }, async (_, i) => {
      const response = await fetch(`${fleet.gatewayUrl}/v1/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${GATEWAY_TOKEN}` },
        body: JSON.stringify({ model: MODEL, max_tokens: 16, messages: [{ role: 'user', content: `gateway ${i}` }] }),
      });
      if (response.status !== 200) throw new Error(`gateway answered ${response.status}: ${await response.text()}`);
      return (await response.json()) as Anthropic.Message;
    });
    for (const message of await Promise.all([...queued, ...viaGateway])) {
      usage.input += message.usage.input_tokens;
      usage.output += message.usage.output_tokens;
    }
    // the last scrape after the load: every completion counted by the workers is in Prometheus
    const seen = await eventually(
      async () => (await prometheus.query(`sum(tollgate_jobs_total{state="completed"})`))[0]?.value === QUEUE_JOBS + GATEWAY_REQUESTS,
      SCRAPED_WITHIN_MS,
      250,
    );
    if (!seen) throw new Error(`Prometheus never saw the load: ${JSON.stringify(await prometheus.targets())}`);
    await eventually(async () => (await prometheus.query(`max(tollgate_queue_jobs{state="completed"})`))[0]?.value === QUEUE_JOBS + GATEWAY_REQUESTS, SCRAPED_WITHIN_MS, 250);
    // a few more scrapes of every target, so that rate() over the dashboard's window has points after the load too
    const scrapes = async () => (await prometheus.query('min(count_over_time(up[10m]))'))[0]?.value ?? 0;
    const after = await scrapes();
    await eventually(async () => (await scrapes()) >= after + SCRAPES_AFTER_LOAD, SCRAPED_WITHIN_MS, 250);
  }, SETTLE_TIMEOUT_MS + 120_000);

  afterAll(async () => {
    await prometheus?.close();
    await fleet?.close();
    await stopAllServices();
  });

  it('scrapes every worker and the gateway (with its metrics token: without it the gateway answers 401)', async () => {
    expect((await fetch(`${fleet.gatewayUrl}/metrics`)).status).toBe(401);
    const targets = await prometheus.targets();
    expect(targets.filter((target) => target.job === 'tollgate-worker')).toHaveLength(WORKERS);
    expect(targets.filter((target) => target.job === 'tollgate-gateway')).toHaveLength(1);
    for (const target of targets) expect(target, JSON.stringify(target)).toMatchObject({ health: 'up', lastError: '' });
  });

  it('requests by status: every call answered 200 once, and the one injected 429 counted as a 429 of kind "rate"', async () => {
    const byStatus = await prometheus.query(`sum by (status) (tollgate_upstream_requests_total{account="${account}", pool="default"})`);
    const counts = Object.fromEntries(byStatus.map((sample) => [sample.metric.status, sample.value]));
    expect(counts).toEqual({ '200': QUEUE_JOBS + GATEWAY_REQUESTS, '429': 1 });
    const byKind = await prometheus.query(`sum by (kind) (tollgate_upstream_rate_limited_total{account="${account}"})`);
    expect(Object.fromEntries(byKind.map((sample) => [sample.metric.kind, sample.value]))).toEqual({ concurrency: 0, rate: 1, other: 0 });
    const gateway = await prometheus.query(`sum(tollgate_gateway_requests_total{route="/v1/messages", status="200"})`);
    expect(one(gateway, 'gateway')).toBe(GATEWAY_REQUESTS);
  });

  it("tokens by dimension and pool: the sums of the answers' usage", async () => {
    const byDimension = await prometheus.query(`sum by (pool, dimension) (tollgate_upstream_tokens_total{account="${account}"})`);
    const tokens = Object.fromEntries(byDimension.map((sample) => [`${sample.metric.pool}/${sample.metric.dimension}`, sample.value]));
    expect(tokens['default/input']).toBe(usage.input);
    expect(tokens['default/output']).toBe(usage.output);
    expect(usage.output).toBeGreaterThan(0);
  });

  it("per tenant: the settled tokens add up to the answers' usage, and the injected 429 is an RPM 429 of one tenant", async () => {
    const byDimension = await prometheus.query(`sum by (dimension) (tollgate_tenant_granted_tokens_total{account="${account}", pool="default"})`);
    const tokens = Object.fromEntries(byDimension.map((sample) => [sample.metric.dimension, sample.value]));
    expect(tokens).toEqual({ inputTokens: usage.input, outputTokens: usage.output }); // the mock writes no cache: input is input_tokens
    const byTenant = await prometheus.query(`sum by (tenant) (tollgate_tenant_granted_tokens_total{account="${account}", dimension="outputTokens"})`);
    expect(byTenant.map((sample) => sample.metric.tenant).sort()).toEqual(['-', 'fleet']); // Node jobs without a tenant; the gateway's tenant
    const byKind = await prometheus.query(`sum by (kind) (tollgate_tenant_rate_limited_total{account="${account}", pool="default"})`);
    expect(Object.fromEntries(byKind.map((sample) => [sample.metric.kind, sample.value]))).toEqual({ concurrency: 0, rpm: 1, itpm: 0, otpm: 0, other: 0, budget: 0 });
  });

  it('wait histogram: one observation per grant (each attempt, the retry too), and quantiles PromQL can compute', async () => {
    const grants = await prometheus.query(`sum(tollgate_acquire_wait_seconds_count{account="${account}"})`);
    expect(one(grants, 'grants')).toBe(QUEUE_JOBS + GATEWAY_REQUESTS + 1);
    const infinite = await prometheus.query(`sum(tollgate_acquire_wait_seconds_bucket{account="${account}", le="+Inf"})`);
    expect(one(infinite, '+Inf bucket')).toBe(QUEUE_JOBS + GATEWAY_REQUESTS + 1);
    const p99 = one(await prometheus.query(`histogram_quantile(0.99, sum by (le) (tollgate_acquire_wait_seconds_bucket{account="${account}"}))`), 'p99');
    expect(Number.isFinite(p99)).toBe(true);
    expect(p99).toBeGreaterThanOrEqual(0);
  });

  it('in flight never above the limit in any scrape, and the gauges carry account and pool on every exporter', async () => {
    const excess = await prometheus.query(`max_over_time((max(tollgate_permits_in_flight{account="${account}"}) - max(tollgate_concurrency_limit{account="${account}"}))[10m:1s])`);
    expect(one(excess, 'excess')).toBeLessThanOrEqual(0);
    const limit = await prometheus.query(`max(tollgate_concurrency_limit{account="${account}", pool="default"})`);
    expect(one(limit, 'limit')).toBe(CONCURRENCY);
    const exporters = await prometheus.query(`count(tollgate_permits_in_flight{account="${account}", pool="default"})`);
    expect(one(exporters, 'exporters')).toBe(WORKERS + 1);
    const waiting = await prometheus.query(`max(tollgate_queue_jobs{queue="${fleet.queue}", state=~"waiting|prioritized"})`);
    expect(one(waiting, 'waiting')).toBe(0);
  });

  it('bounded cardinality: every label is one of a fixed set with configured or fixed values (no job id or model; tenants only as configured), few series in all', async () => {
    const response = await fetch(`${prometheus.url}/api/v1/series?${new URLSearchParams({ 'match[]': '{__name__=~"tollgate_.+"}' })}`);
    const { data: series } = (await response.json()) as { data: Array<Record<string, string>> };
    expect(series.length).toBeGreaterThan(0);
    expect(series.length).toBeLessThanOrEqual(SERIES_MAX);
    const strays = series.flatMap((labels) =>
      Object.entries(labels)
        .filter(([name, value]) => !(LABEL_VALUES[name]?.test(value) ?? false))
        .map(([name, value]) => `${labels.__name__}{${name}="${value}"}`),
    );
    expect(strays).toEqual([]);
  });

  describe('the Grafana dashboard (deploy/grafana/tollgate.json)', () => {
    interface Panel {
      title?: string;
      type?: string;
      targets?: Array<{ expr?: string }>;
      panels?: Panel[];
    }
    const dashboard = JSON.parse(readFileSync(DASHBOARD_FILE, 'utf8')) as { panels: Panel[]; templating: { list: Array<{ name: string; type: string; query?: unknown }> } };
    const allPanels = (panels: readonly Panel[]): Panel[] => panels.flatMap((panel) => [panel, ...allPanels(panel.panels ?? [])]);
    const queries = allPanels(dashboard.panels).flatMap((panel) => (panel.targets ?? []).map((target) => ({ title: panel.title ?? '(untitled)', expr: target.expr ?? '' })));

    /** Expands `$name`, `${name}` and `[[name]]` the way Grafana does, with this run's account, pool and queue. */
    const expand = (expr: string) => {
      const values: Record<string, string> = { account, pool: 'default', queue: fleet.queue, ...GRAFANA_BUILTINS };
      return expr.replace(/\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]/g, (match, a?: string, b?: string, c?: string) => values[a ?? b ?? c ?? ''] ?? match);
    };

    it('has the panels an operator needs', () => {
      const titles = allPanels(dashboard.panels).map((panel) => panel.title ?? '');
      for (const wanted of [
        /in flight vs limit/i,
        /wait/i,
        /429s by kind/i,
        /tokens .*dimension and pool/i,
        /queue depth/i,
        /lease losses/i,
        /in flight per tenant/i,
        /waiting per tenant/i,
        /tokens per second per tenant/i,
        /429s per tenant/i,
      ]) {
        expect(
          titles.some((title) => wanted.test(title)),
          String(wanted),
        ).toBe(true);
      }
      expect(queries.length).toBeGreaterThanOrEqual(15);
    });

    it('every panel query runs against this Prometheus without error, returns series, and names only metrics that exist', async () => {
      const names = new Set(await prometheus.metricNames());
      const variableQueries = dashboard.templating.list
        .filter((variable) => variable.type === 'query')
        .map((variable) => ({
          title: `variable ${variable.name}`,
          expr: typeof variable.query === 'string' ? variable.query : String((variable.query as { query?: string }).query ?? ''),
        }));
      const problems: string[] = [];
      for (const { title, expr } of [...queries, ...variableQueries]) {
        const expanded = expand(expr);
        if (expanded.includes('$')) problems.push(`${title}: an unknown variable in ${expanded}`);
        for (const [metric] of expanded.matchAll(/\btollgate_[a-z0-9_]+\b/g)) {
          if (!names.has(metric)) problems.push(`${title}: ${metric} does not exist (${expanded})`);
        }
        if (title.startsWith('variable ')) continue; // label_values() is Grafana's, not PromQL; its metric is checked above
        try {
          const samples = await prometheus.query(expanded);
          if (samples.length === 0) problems.push(`${title}: no series from ${expanded}`);
        } catch (error) {
          problems.push(`${title}: ${error instanceof Error ? error.message : String(error)}`);
        }
      }
      expect(problems).toEqual([]);
    });
  });

  it("the KEDA trigger's query (deploy/kubernetes/keda) reads the jobs waiting for a worker, as BullMQ counts them; the tenant series split them per tenant", async () => {
    const scaled = parse(readFileSync(join(REPO_ROOT, 'deploy/kubernetes/keda/scaledobject.yaml'), 'utf8')) as { spec: { triggers: Array<{ metadata: { query: string } }> } };
    const query = scaled.spec.triggers[0]?.metadata.query.replace('queue="messages"', `queue="${fleet.queue}"`) ?? '';
    expect(query).toContain(fleet.queue);
    // paused, the workers hold what they took (16 each) and the rest waits in the queue: a count that stands still
    await fleet.observer.pause(120_000, 'keda query test');
    const ids = await Promise.all(
      Array.from({ length: WAITING_JOBS }, (_, i) => fleet.producer.enqueue({ model: MODEL, max_tokens: 8, messages: [{ role: 'user', content: `wait ${i}` }] })),
    );
    let counts = await fleet.producer.counts();
    await eventually(
      async () => {
        counts = await fleet.producer.counts();
        return counts.active === WORKERS * WORKER_SLOTS;
      },
      SCRAPED_WITHIN_MS,
      100,
    );
    const waiting = counts.waiting + counts.prioritized;
    expect(waiting).toBe(WAITING_JOBS - WORKERS * WORKER_SLOTS);
    const scrapedValue = await eventually(async () => (await prometheus.query(query))[0]?.value === waiting, SCRAPED_WITHIN_MS, 250);
    expect(scrapedValue).toBe(true);
    expect(await prometheus.query(query)).toEqual([{ metric: {}, value: waiting }]);

    // the same jobs per tenant: the producer's have none ("-"); 3 more through the gateway are tenant "fleet"'s
    const gatewayIds: string[] = [];
    for (let i = 0; i < GATEWAY_TENANT_JOBS; i++) {
      const response = await fetch(`${fleet.gatewayUrl}/v1/jobs`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${GATEWAY_TOKEN}` },
        body: JSON.stringify({ model: MODEL, max_tokens: 8, messages: [{ role: 'user', content: `tenant ${i}` }] }),
      });
      gatewayIds.push(((await response.json()) as { id: string }).id);
    }
    const tenants = async () => {
      const [inFlight, waitingByTenant] = await Promise.all(
        ['in_flight', 'waiting'].map(async (kind) =>
          Object.fromEntries(
            (await prometheus.query(`max by (tenant) (tollgate_tenant_jobs_${kind}{account="${account}", pool="default"})`)).map((sample) => [sample.metric.tenant, sample.value]),
          ),
        ),
      );
      return { inFlight, waiting: waitingByTenant };
    };
    const expected = { inFlight: { '-': WORKERS * WORKER_SLOTS, fleet: 0 }, waiting: { '-': waiting, fleet: GATEWAY_TENANT_JOBS } };
    await eventually(async () => isDeepStrictEqual(await tenants(), expected), SCRAPED_WITHIN_MS, 250);
    expect(await tenants()).toEqual(expected);
    await fleet.observer.resume();
    await Promise.all([...ids, ...gatewayIds].map((id) => fleet.producer.wait(id, { timeoutMs: SETTLE_TIMEOUT_MS })));
  });
});

describe('the compose observability profile', () => {
  const services = loadCompose({}, undefined, ['observability']);

  it('adds Prometheus and Grafana only with --profile observability, with their files in deploy/', () => {
    expect(loadCompose().has('prometheus')).toBe(false);
    const prometheusService = services.get('prometheus');
    const grafana = services.get('grafana');
    expect(prometheusService?.spec.profiles).toEqual(['observability']);
    expect(grafana?.spec.profiles).toEqual(['observability']);
    const mounts = [prometheusService, grafana].flatMap((service) => ((service?.spec as { volumes?: string[] }).volumes ?? []).filter((volume) => volume.startsWith('./')));
    expect(mounts.length).toBeGreaterThanOrEqual(3);
    for (const mount of mounts) expect(existsSync(join(REPO_ROOT, mount.split(':')[0] ?? '')), mount).toBe(true);
    const provisioning = parse(readFileSync(join(REPO_ROOT, 'deploy/grafana/provisioning/dashboards/tollgate.yml'), 'utf8')) as { providers: Array<{ options: { path: string } }> };
    expect(mounts).toContain(`./deploy/grafana/tollgate.json:${provisioning.providers[0]?.options.path}/tollgate.json:ro`);
  });

  it.skipIf(!installed)('its Prometheus config is valid (promtool check config) and scrapes the worker replicas and the gateway', () => {
    const file = join(REPO_ROOT, 'deploy/prometheus/prometheus.yml');
    const check = spawnSync('promtool', ['check', 'config', file], { encoding: 'utf8' });
    expect(check.status, check.stdout + check.stderr).toBe(0);
    const config = parse(readFileSync(file, 'utf8')) as { scrape_configs: Array<{ job_name: string }> };
    expect(config.scrape_configs.map((job) => job.job_name)).toEqual(['tollgate-worker', 'tollgate-gateway']);
  });
});
