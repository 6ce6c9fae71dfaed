import { spawn } from 'node:child_process';
import { startMockAnthropic, type MockAnthropic } from '@tollgate/mock-anthropic';
import { createProducer, type Producer } from '@tollgate/queue';
import { queueKeys } from '@tollgate/queue/internal';
import { startRedis, uniqueName, type TestRedis } from '@tollgate/test-support';
import { QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { REPO_ROOT, WORKER_ENTRY, entryCommand, spawnService, type ServiceProcess } from './processes.js';

const API_KEY = 'sk-ant-worker-test-secret';
/** A word that appears in every prompt and must never appear in a log line. */
const PROMPT_MARKER = 'zebra-prompt-text';
const MODEL = 'claude-haiku-4-5';
const FLEET_CONCURRENCY = 4;
/** Short leases and locks so that a killed worker's permits and jobs come back within a few seconds. */
const LEASE_TTL_MS = 2_000;
const LOCK_DURATION_MS = 2_000;
const STALLED_INTERVAL_MS = 1_000;
/** Each call takes this long upstream, so that a kill or a SIGTERM lands while calls are in flight. */
const CALL_MS = 150;
const DRAIN_TIMEOUT_MS = 3_000;

let redis: TestRedis;
let mock: MockAnthropic;
let queue: string;
let producer: Producer;
let events: QueueEvents;
let eventsConnection: Redis;
/** Completions per job id, as BullMQ announced them fleet-wide. */
let completions: Map<string, number>;
const running: ServiceProcess[] = [];

function workerEnv(overrides: Record<string, string> = {}): Record<string, string> {
  return {
    REDIS_URL: redis.url,
    ANTHROPIC_API_KEY: API_KEY,
    ANTHROPIC_BASE_URL: mock.url,
    TOLLGATE_NAME: `${queue}-limiter`,
    TOLLGATE_QUEUE: queue,
    TOLLGATE_CONCURRENCY: String(FLEET_CONCURRENCY),
    TOLLGATE_RPM: '100000',
    TOLLGATE_LEASE_TTL_MS: String(LEASE_TTL_MS),
    WORKER_CONCURRENCY: '8',
    WORKER_LOCK_DURATION_MS: String(LOCK_DURATION_MS),
    WORKER_STALLED_INTERVAL_MS: String(STALLED_INTERVAL_MS),
    WORKER_DRAIN_TIMEOUT_MS: String(DRAIN_TIMEOUT_MS),
    METRICS_PORT: '0',
    METRICS_HOST: '127.0.0.1',
    ...overrides,
  };
}

async function startWorker(overrides: Record<string, string> = {}): Promise<ServiceProcess> {
  const worker = await spawnService(WORKER_ENTRY, workerEnv(overrides));
  running.push(worker);
  return worker;
}

function request(i: number) {
  return { model: MODEL, max_tokens: 16, messages: [{ role: 'user' as const, content: `${PROMPT_MARKER} ${i}` }] };
}

async function enqueueMany(count: number, tag: string): Promise<string[]> {
  return Promise.all(Array.from({ length: count }, (_, i) => producer.enqueue(request(i), { idempotencyKey: `${tag}-${i}` })));
}

async function waitAll(ids: readonly string[]): Promise<void> {
  await Promise.all(ids.map((id) => producer.wait(id, { timeoutMs: 90_000 })));
}

/** Resolves once `count` jobs have completed fleet-wide. */
function completedAtLeast(count: number): Promise<void> {
  return new Promise((resolve) => {
    const check = () => {
      if ([...completions.values()].reduce((sum, n) => sum + n, 0) >= count) {
        events.off('completed', check);
        resolve();
      }
    };
    events.on('completed', check);
    check();
  });
}

beforeAll(async () => {
  redis = await startRedis();
  mock = await startMockAnthropic({ limits: { concurrency: FLEET_CONCURRENCY }, latency: { timeToFirstTokenMs: CALL_MS }, apiKeys: [API_KEY] });
});
afterAll(async () => {
  await mock.close();
  await redis.close();
});
beforeEach(async () => {
  mock.reset();
  queue = uniqueName('wq');
  producer = createProducer({ redis: redis.url, queue });
  eventsConnection = new Redis(redis.url, { maxRetriesPerRequest: null });
  events = new QueueEvents(queue, { connection: eventsConnection, prefix: queueKeys(queue).prefix });
  await events.waitUntilReady();
  completions = new Map();
  events.on('completed', ({ jobId }) => completions.set(jobId, (completions.get(jobId) ?? 0) + 1));
});
afterEach(async () => {
  for (const worker of running.splice(0)) {
    worker.signal('SIGKILL');
    await worker.exited;
  }
  await events.close();
  eventsConnection.disconnect();
  await producer.close();
});

describe('services/worker as a process', () => {
  it('prints a ready line, serves the DESIGN §5 metrics, logs job ids and never the key or the prompt', async () => {
    const worker = await startWorker();
    expect(worker.ready).toMatchObject({ event: 'ready', service: 'tollgate-worker', metricsUrl: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/) });
    const ids = await enqueueMany(10, 'basic');
    await waitAll(ids);
    const metrics = await (await fetch(String(worker.ready.metricsUrl))).text();
    const account = `account="${queue}-limiter",pool="default"`;
    for (const name of [
      `tollgate_permits_in_flight{${account}}`,
      `tollgate_concurrency_limit{${account}} ${FLEET_CONCURRENCY}`,
      `tollgate_concurrency_configured{${account}} ${FLEET_CONCURRENCY}`,
      `tollgate_waiting{${account}}`,
      `tollgate_pause_remaining_seconds{${account}} 0`,
      `tollgate_acquire_wait_seconds_count{${account}} 10`,
      `tollgate_bucket_tokens{${account},dimension="requests"}`,
      `tollgate_bucket_capacity_tokens{${account},dimension="requests"} 100000`,
      `tollgate_upstream_requests_total{${account},status="200"} 10`,
      `tollgate_upstream_rate_limited_total{${account},kind="concurrency"} 0`,
      `tollgate_lease_lost_total{${account}} 0`,
      `tollgate_jobs_total{queue="${queue}",state="completed"} 10`,
      `tollgate_queue_jobs{queue="${queue}",state="completed"} 10`,
      'tollgate_redis_up 1',
    ]) {
      expect(metrics).toContain(name);
    }
    // every completed call's usage, by dimension: the mock answers with at least one output token per call
    const outputTokens = Number(/tollgate_upstream_tokens_total\{[^}]*dimension="output"\} (\d+)/.exec(metrics)?.[1]);
    expect(outputTokens).toBeGreaterThanOrEqual(10);
    expect(metrics).not.toMatch(/job_?id|claude-/i); // no job ids or model strings as label values
    const jobLines = worker.logs.filter((line) => line.msg === 'job completed');
    expect(jobLines).toHaveLength(10);
    for (const line of jobLines) expect(ids).toContain(line.jobId);
    const everything = JSON.stringify(worker.logs);
    expect(everything).not.toContain(API_KEY);
    expect(everything).not.toContain(PROMPT_MARKER);
  });

  it('a wrong variable stops the start with exit 1 and a message naming it', async () => {
    const { command, args } = entryCommand(WORKER_ENTRY);
    const child = spawn(command, args, {
      cwd: REPO_ROOT,
      env: { ...process.env, ...workerEnv({ WORKER_CONCURRENCY: 'many' }) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(code).toBe(1);
    expect(stderr).toMatch(/WORKER_CONCURRENCY="many" is invalid/);
    expect(stderr).not.toContain(API_KEY);
  });

  it('kill -9 of a worker mid-jobs: every job completes exactly once, none lost, none failed', async () => {
    const JOBS = 150;
    const [victim] = await Promise.all([startWorker(), startWorker(), startWorker()]);
    const ids = await enqueueMany(JOBS, 'kill');
    await completedAtLeast(JOBS / 5);
    const stalled: string[] = [];
    events.on('stalled', ({ jobId }) => stalled.push(jobId));
    victim!.signal('SIGKILL');
    expect((await victim!.exited).signal).toBe('SIGKILL');
    await waitAll(ids);
    expect(await producer.counts()).toMatchObject({ completed: JOBS, failed: 0, active: 0, waiting: 0, prioritized: 0, delayed: 0 });
    expect(completions.size).toBe(JOBS);
    expect([...completions.values()].every((count) => count === 1)).toBe(true);
    expect(stalled.length).toBeGreaterThan(0); // the victim died holding jobs, and stalled-job recovery brought them back
    expect(mock.stats().maxConcurrent).toBeLessThanOrEqual(FLEET_CONCURRENCY);
    expect(mock.stats().rateLimited.concurrency).toBe(0);
  });

  it('SIGTERM: the worker exits 0 after draining; what it did not finish is handed back and completed by another', async () => {
    const JOBS = 60;
    const worker = await startWorker({ WORKER_CONCURRENCY: '4' });
    const ids = await enqueueMany(JOBS, 'term');
    await completedAtLeast(4);
    worker.signal('SIGTERM');
    const exit = await worker.exited; // the helper's deadline is the test timeout; the worker's own is DRAIN + CLOSE_GRACE
    expect(exit).toEqual({ code: 0, signal: null });
    expect(worker.logs.some((line) => line.msg === 'closed')).toBe(true);
    const counts = await producer.counts();
    expect(counts.active).toBe(0); // nothing left locked by the dead process
    expect(counts.failed).toBe(0);
    await startWorker();
    await waitAll(ids);
    expect(await producer.counts()).toMatchObject({ completed: JOBS, failed: 0 });
    expect([...completions.values()].every((count) => count === 1)).toBe(true);
    expect(completions.size).toBe(JOBS);
  });

  it('SIGTERM with calls running past the drain timeout: they are aborted and handed back, exit is still 0', async () => {
    mock.setConfig({ latency: { timeToFirstTokenMs: 60_000 } }); // calls that would never finish in time
    const worker = await startWorker({ WORKER_CONCURRENCY: '2', WORKER_DRAIN_TIMEOUT_MS: '300' });
    const ids = await enqueueMany(4, 'stuck');
    await new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        if (mock.stats().inFlight === 2) {
          clearInterval(timer);
          resolve();
        }
      }, 10);
    });
    worker.signal('SIGTERM');
    expect(await worker.exited).toEqual({ code: 0, signal: null });
    expect(worker.logs.filter((line) => line.msg === 'job handed back on shutdown')).toHaveLength(2);
    const counts = await producer.counts();
    expect(counts).toMatchObject({ active: 0, failed: 0 });
    expect(counts.waiting + counts.prioritized).toBe(4);
    mock.setConfig({ latency: { timeToFirstTokenMs: 0 } });
    await startWorker();
    await waitAll(ids);
    expect((await producer.counts()).completed).toBe(4);
  });
});
