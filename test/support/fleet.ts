import type { MockStats } from '@tollgate/mock-anthropic';
import { createLimiter, type Limiter } from '@tollgate/limiter';
import { createProducer, UpstreamError, type Producer } from '@tollgate/queue';
import { RedisServerProcess, uniqueName } from '@tollgate/test-support';
import { Job } from 'bullmq';
import { GATEWAY_ENTRY, MOCK_ENTRY, WORKER_ENTRY, entryCommand, spawnService, type ServiceProcess } from './processes.js';

export const MODEL = 'claude-haiku-4-5';
export const GATEWAY_TOKEN = 'tollgate-fleet-test-token';
const GATEWAY_TENANT = 'fleet';
export const API_KEY = 'sk-ant-fleet-test';
/** Small leases and locks so that a dead worker's permits and jobs come back within seconds. */
export const LEASE_TTL_MS = 3_000;
export const HEARTBEAT_MS = 1_000;
const LOCK_DURATION_MS = 3_000;
const STALLED_INTERVAL_MS = 1_000;
const DRAIN_TIMEOUT_MS = 3_000;
/** A whole load must finish within this; a deadline, not a measurement. */
export const SETTLE_TIMEOUT_MS = 150_000;

export interface FleetOptions {
  workers?: number;
  /** The account's concurrency limit, given to both the mock and the fleet. */
  concurrency: number;
  /** Requests per minute (mock and fleet), off when omitted. */
  rpm?: number;
  /** Extra mock variables (latency, faults). */
  mockEnv?: Record<string, string>;
  /** Extra worker variables. */
  workerEnv?: Record<string, string>;
  gateway?: boolean;
  /** Extra gateway variables (they win over the defaults, `GATEWAY_TOKENS` included). */
  gatewayEnv?: Record<string, string>;
  /** Redis with an append-only file (fsync always), so that a restart keeps the data. */
  appendonly?: boolean;
}

/** Redis, the mock upstream (a process), optionally the gateway, and N worker processes, all sharing one queue. */
export interface Fleet {
  redis: RedisServerProcess;
  queue: string;
  limiterName: string;
  mock: ServiceProcess;
  mockUrl: string;
  gateway: ServiceProcess | undefined;
  gatewayUrl: string;
  workers: ServiceProcess[];
  producer: Producer;
  /** A limiter of the same name in the test process, for `snapshot()` only. */
  observer: Limiter;
  workerEnv: Record<string, string>;
  startWorker(): Promise<ServiceProcess>;
  mockStats(): Promise<MockStats>;
  /** `POST /_mock/config` (replaces whole sections) or `/_mock/reset`. */
  mockAdmin(path: 'config' | 'reset', body?: unknown): Promise<void>;
  close(): Promise<void>;
}

/** A service from source, with exactly `env`. */
export async function startWithEnv(name: string, entry: string, env: Record<string, string>): Promise<ServiceProcess> {
  const { command, args } = entryCommand(entry);
  return spawnService({ name, command, args, env });
}

export async function startFleet(options: FleetOptions): Promise<Fleet> {
  const redis = await RedisServerProcess.start({ appendonly: options.appendonly ?? false });
  const queue = uniqueName('fleet').replace(/:/g, '-');
  const limiterName = `${queue}-limiter`;
  const limits = { TOLLGATE_CONCURRENCY: String(options.concurrency), ...(options.rpm === undefined ? {} : { TOLLGATE_RPM: String(options.rpm) }) };
  const common = {
    REDIS_URL: redis.url,
    TOLLGATE_NAME: limiterName,
    TOLLGATE_QUEUE: queue,
    LOG_LEVEL: 'warn',
    TOLLGATE_LEASE_TTL_MS: String(LEASE_TTL_MS),
    TOLLGATE_HEARTBEAT_MS: String(HEARTBEAT_MS),
    ...limits,
  };
  const mock = await startWithEnv('mock-anthropic', MOCK_ENTRY, {
    PORT: '0',
    MOCK_CONCURRENCY: String(options.concurrency),
    ...(options.rpm === undefined ? {} : { MOCK_RPM: String(options.rpm) }),
    LOG_LEVEL: 'warn',
    ...options.mockEnv,
  });
  const mockUrl = mock.ready.url ?? '';
  const workerEnv = {
    ...common,
    ANTHROPIC_API_KEY: API_KEY,
    ANTHROPIC_BASE_URL: mockUrl,
    WORKER_CONCURRENCY: '16',
    WORKER_LOCK_DURATION_MS: String(LOCK_DURATION_MS),
    WORKER_STALLED_INTERVAL_MS: String(STALLED_INTERVAL_MS),
    WORKER_DRAIN_TIMEOUT_MS: String(DRAIN_TIMEOUT_MS),
    METRICS_PORT: '0',
    METRICS_HOST: '127.0.0.1',
    ...options.workerEnv,
  };
  const workers: ServiceProcess[] = [];
  const startWorker = async () => {
    const worker = await startWithEnv(`worker-${workers.length + 1}`, WORKER_ENTRY, workerEnv);
    workers.push(worker);
    return worker;
  };
  const [gateway] = await Promise.all([
    options.gateway
      ? startWithEnv('gateway', GATEWAY_ENTRY, { ...common, PORT: '0', HOST: '127.0.0.1', GATEWAY_TOKENS: `${GATEWAY_TENANT}:${GATEWAY_TOKEN}`, ...options.gatewayEnv })
      : undefined,
    ...Array.from({ length: options.workers ?? 4 }, () => startWorker()),
  ]);
  const producer = createProducer({ redis: redis.url, queue });
  const observer = createLimiter({
    redis: redis.url,
    name: limiterName,
    concurrency: options.concurrency,
    leaseTtlMs: LEASE_TTL_MS,
    heartbeatMs: HEARTBEAT_MS,
    ...(options.rpm === undefined ? {} : { rates: { requests: { limit: options.rpm, intervalMs: 60_000 } } }),
  });
  await observer.ready();
  return {
    redis,
    queue,
    limiterName,
    mock,
    mockUrl,
    gateway,
    gatewayUrl: gateway?.ready.url ?? '',
    workers,
    producer,
    observer,
    workerEnv,
    startWorker,
    mockStats: async () => (await (await fetch(`${mockUrl}/_mock/stats`)).json()) as MockStats,
    mockAdmin: async (path, body) => {
      const response = await fetch(`${mockUrl}/_mock/${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body ?? {}) });
      if (!response.ok) throw new Error(`mock ${path}: ${response.status} ${await response.text()}`);
    },
    close: async () => {
      await Promise.all([...workers, gateway, mock].map((service) => service?.stop()));
      await observer.close().catch(() => undefined); // Redis may be gone in a fault test
      await producer.close().catch(() => undefined);
      await redis.close();
    },
  };
}

/** A Messages request of a given size. */
export function messagesRequest(i: number, options: { maxTokens?: number; stream?: boolean } = {}) {
  return {
    model: MODEL,
    max_tokens: options.maxTokens ?? 32,
    ...(options.stream ? { stream: true } : {}),
    messages: [{ role: 'user' as const, content: `fleet job ${i} ${'context '.repeat(i % 40)}` }],
  };
}

/** How each job ended. */
export interface Outcomes {
  completed: string[];
  /** Job id → the upstream error it failed with. */
  failed: Map<string, UpstreamError>;
  /** Neither completed nor failed within the deadline, or failed with something other than an upstream error. */
  lost: string[];
}

/** Waits for every job and sorts them by how they ended. */
export async function settle(producer: Producer, ids: readonly string[], timeoutMs = SETTLE_TIMEOUT_MS): Promise<Outcomes> {
  const outcomes: Outcomes = { completed: [], failed: new Map(), lost: [] };
  await Promise.all(
    ids.map(async (id) => {
      try {
        await producer.wait(id, { timeoutMs });
        outcomes.completed.push(id);
      } catch (error) {
        if (error instanceof UpstreamError) outcomes.failed.set(id, error);
        else outcomes.lost.push(id);
      }
    }),
  );
  return outcomes;
}

/** BullMQ's own timing and attempt count of a finished job (one this producer enqueued). */
export async function jobRecord(
  producer: Producer,
  id: string,
): Promise<{ createdAtMs: number; processedAtMs: number; finishedAtMs: number; attemptsMade: number; stalledCount: number }> {
  const job = await Job.fromId(producer.queueOfJob(id), id); // the queue it went on: its pool's, its tenant's or the producer's
  if (job === undefined) throw new Error(`job ${id} is gone`);
  return {
    createdAtMs: job.timestamp,
    processedAtMs: job.processedOn ?? Number.NaN,
    finishedAtMs: job.finishedOn ?? Number.NaN,
    attemptsMade: job.attemptsMade,
    stalledCount: job.stalledCounter,
  };
}

/** Reads a metric of a Prometheus text exposition: the sum of its series (`name{labels} value`), 0 when absent. */
export async function metric(service: ServiceProcess, name: string): Promise<number> {
  const text = await (await fetch(service.ready.url ?? '')).text();
  const series = text.split('\n').filter((line) => line.startsWith(`${name} `) || line.startsWith(`${name}{`));
  return series.reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(' ') + 1)), 0);
}

export { eventually } from '@tollgate/test-support';
