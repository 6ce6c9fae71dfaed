import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '@tollgate/test-support';
import { stringify } from 'yaml';

/** Debian's `prometheus` package (`.ci/run` installs it); PROMETHEUS_PATH overrides. */
export const PROMETHEUS_BIN = process.env.PROMETHEUS_PATH ?? 'prometheus';
/** Scrapes this often in tests, so that a load is seen within seconds. */
export const SCRAPE_INTERVAL = '1s';
/** Starting Prometheus (it replays an empty WAL) takes a moment on a busy machine; a deadline, not a measurement. */
const READY_TIMEOUT_MS = 60_000;

/** Whether the binary runs here at all. */
export function prometheusInstalled(): boolean {
  return spawnSync(PROMETHEUS_BIN, ['--version'], { stdio: 'ignore' }).status === 0;
}

export interface ScrapeJob {
  name: string;
  /** `host:port` targets. */
  targets: string[];
  metricsPath?: string;
  /** A bearer token Prometheus sends (`authorization.credentials`). */
  bearerToken?: string;
}

/** One instant-vector sample of a query's answer. */
export interface Sample {
  metric: Record<string, string>;
  value: number;
}

export interface PrometheusProcess {
  url: string;
  /** Runs a PromQL query now; rejects with Prometheus' own error text when it refuses the query. */
  query(expr: string): Promise<Sample[]>;
  /** Every metric name Prometheus has stored (`/api/v1/label/__name__/values`). */
  metricNames(): Promise<string[]>;
  /** `/api/v1/targets`: each active target's job and health. */
  targets(): Promise<Array<{ job: string; health: string; lastError: string }>>;
  close(): Promise<void>;
}

/** Prometheus' scrape configuration for `jobs`, as YAML. */
export function scrapeConfig(jobs: readonly ScrapeJob[]): string {
  return stringify({
    global: { scrape_interval: SCRAPE_INTERVAL, evaluation_interval: SCRAPE_INTERVAL },
    scrape_configs: jobs.map((job) => ({
      job_name: job.name,
      metrics_path: job.metricsPath ?? '/metrics',
      static_configs: [{ targets: job.targets }],
      ...(job.bearerToken === undefined ? {} : { authorization: { type: 'Bearer', credentials: job.bearerToken } }),
    })),
  });
}

async function api<T>(url: string): Promise<T> {
  const response = await fetch(url);
  const body = (await response.json()) as { status: string; data: T; error?: string; errorType?: string };
  if (body.status !== 'success') throw new Error(`Prometheus: ${body.errorType ?? response.status}: ${body.error ?? 'no error text'} (${url})`);
  return body.data;
}

/** Starts a real `prometheus` on a free port with a temporary storage directory, scraping `jobs`. */
export async function startPrometheus(jobs: readonly ScrapeJob[]): Promise<PrometheusProcess> {
  const dir = await mkdtemp(join(tmpdir(), 'tollgate-prometheus-'));
  const configFile = join(dir, 'prometheus.yml');
  await writeFile(configFile, scrapeConfig(jobs));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child: ChildProcess = spawn(
    PROMETHEUS_BIN,
    [`--config.file=${configFile}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn', '--storage.tsdb.retention.time=1h'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const close = async () => {
    child.kill('SIGTERM');
    await exited;
    await rm(dir, { recursive: true, force: true });
  };
  const deadline = performance.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`prometheus exited at start: ${stderr}`);
    const ready = await fetch(`${url}/-/ready`).then(
      (response) => response.ok,
      () => false,
    );
    if (ready) break;
    if (performance.now() > deadline) {
      await close();
      throw new Error(`prometheus was not ready within ${READY_TIMEOUT_MS} ms: ${stderr}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    url,
    query: async (expr) => {
      const data = await api<{ resultType: string; result: Array<{ metric: Record<string, string>; value: [number, string] }> }>(
        `${url}/api/v1/query?query=${encodeURIComponent(expr)}`,
      );
      if (data.resultType !== 'vector') throw new Error(`expected an instant vector from ${expr}, got ${data.resultType}`);
      return data.result.map((entry) => ({ metric: entry.metric, value: Number(entry.value[1]) }));
    },
    metricNames: () => api<string[]>(`${url}/api/v1/label/__name__/values`),
    targets: async () => {
      const data = await api<{ activeTargets: Array<{ labels: { job: string }; health: string; lastError: string }> }>(`${url}/api/v1/targets?state=active`);
      return data.activeTargets.map((target) => ({ job: target.labels.job, health: target.health, lastError: target.lastError }));
    },
    close,
  };
}
