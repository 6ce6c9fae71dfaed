import { spawnSync } from 'node:child_process';
import type { MockStats } from '@tollgate/mock-anthropic';
import { createProducer, type Producer } from '@tollgate/queue';
import { RedisServerProcess, uniqueName } from '@tollgate/test-support';
import { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { API_KEY, HEARTBEAT_MS, LEASE_TTL_MS, MODEL, settle } from '../support/fleet.js';
import { MOCK_ENTRY, WORKER_ENTRY, entryCommand, spawnService, stopAllServices, type ServiceProcess } from '../support/processes.js';

/** DESIGN §5: Redis Cluster. Three primaries from the local redis-server binary, limiter + queue + 2 workers on it. */
const PRIMARIES = 3;
const WORKERS = 2;
const CONCURRENCY = 3;
const JOBS = 120;
const CLUSTER_READY_ATTEMPTS = 100;
const CLUSTER_READY_POLL_MS = 100;

let servers: RedisServerProcess[] = [];
let cluster: Cluster;
let producer: Producer;
let mock: ServiceProcess;
const workers: ServiceProcess[] = [];

beforeAll(async () => {
  servers = await Promise.all(Array.from({ length: PRIMARIES }, () => RedisServerProcess.start({ args: ['--cluster-enabled', 'yes', '--cluster-node-timeout', '2000'] })));
  const nodes = servers.map((server) => `127.0.0.1:${server.port}`);
  const created = spawnSync('redis-cli', ['--cluster', 'create', ...nodes, '--cluster-replicas', '0', '--cluster-yes'], { encoding: 'utf8' });
  if (created.status !== 0) throw new Error(`redis-cli --cluster create failed: ${created.stderr || created.stdout}`);
  cluster = new Cluster(
    servers.map((server) => ({ host: '127.0.0.1', port: server.port })),
    { redisOptions: { maxRetriesPerRequest: null } },
  );
  for (let attempt = 0; attempt < CLUSTER_READY_ATTEMPTS; attempt++) {
    if (String(await cluster.cluster('INFO').catch(() => '')).includes('cluster_state:ok')) break;
    await new Promise((resolve) => setTimeout(resolve, CLUSTER_READY_POLL_MS));
  }
  const queue = uniqueName('cluster').replace(/:/g, '-');
  const { command, args } = entryCommand(MOCK_ENTRY);
  mock = await spawnService({ name: 'mock-anthropic', command, args, env: { PORT: '0', MOCK_CONCURRENCY: String(CONCURRENCY), MOCK_LATENCY_MS: '20', LOG_LEVEL: 'warn' } });
  const worker = entryCommand(WORKER_ENTRY);
  const env = {
    REDIS_CLUSTER_NODES: nodes.join(','),
    TOLLGATE_NAME: `${queue}-limiter`,
    TOLLGATE_QUEUE: queue,
    TOLLGATE_CONCURRENCY: String(CONCURRENCY),
    TOLLGATE_LEASE_TTL_MS: String(LEASE_TTL_MS),
    TOLLGATE_HEARTBEAT_MS: String(HEARTBEAT_MS),
    ANTHROPIC_API_KEY: API_KEY,
    ANTHROPIC_BASE_URL: mock.ready.url ?? '',
    WORKER_CONCURRENCY: '8',
    METRICS_PORT: '0',
    METRICS_HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
  };
  for (let index = 0; index < WORKERS; index++) workers.push(await spawnService({ name: `worker-${index + 1}`, command: worker.command, args: worker.args, env }));
  producer = createProducer({ redis: cluster, queue });
  await producer.ready();
}, 120_000);

afterAll(async () => {
  await stopAllServices();
  await producer?.close().catch(() => undefined);
  cluster?.disconnect();
  await Promise.all(servers.map((server) => server.close()));
});

describe('Redis Cluster (3 primaries)', () => {
  it(`runs the limiter and the queue across slots: ${JOBS} jobs from 2 workers complete, never above the limit`, async () => {
    const ids: string[] = [];
    for (let index = 0; index < JOBS; index++) {
      ids.push(await producer.enqueue({ model: MODEL, max_tokens: 32, messages: [{ role: 'user', content: `cluster job ${index}` }] }, { priority: index % 10 }));
    }
    const outcomes = await settle(producer, ids);
    const stats = (await (await fetch(`${mock.ready.url}/_mock/stats`)).json()) as MockStats;
    console.log(`cluster: ${outcomes.completed.length}/${JOBS} completed, mock max concurrent ${stats.maxConcurrent} of ${CONCURRENCY}, 429s ${stats.byStatus['429'] ?? 0}`);
    expect(outcomes.completed).toHaveLength(JOBS);
    expect(outcomes.failed.size).toBe(0);
    expect(outcomes.lost).toEqual([]);
    expect(stats.maxConcurrent).toBeLessThanOrEqual(CONCURRENCY);
    expect(stats.byStatus['429'] ?? 0).toBe(0);
    expect(stats.requests).toBe(JOBS);
  });

  it("the per-tenant view's scripts run on a Cluster too (a queue no worker serves: its jobs stay waiting)", async () => {
    const idle = createProducer({ redis: cluster, queue: uniqueName('cluster-idle').replace(/:/g, '-') });
    try {
      const ids = [];
      for (let index = 0; index < 3; index++)
        ids.push(await idle.enqueue({ model: MODEL, max_tokens: 8, messages: [{ role: 'user', content: `idle ${index}` }] }, { tenant: 'cluster-tenant' }));
      expect(await idle.tenantCounts()).toEqual([{ tenant: 'cluster-tenant', inFlight: 0, waiting: 3 }]);
      expect(await idle.cancel(ids[0] ?? '')).toBe('cancelled');
      expect(await idle.tenantCounts()).toEqual([{ tenant: 'cluster-tenant', inFlight: 0, waiting: 2 }]);
    } finally {
      await idle.close();
    }
  });
});
