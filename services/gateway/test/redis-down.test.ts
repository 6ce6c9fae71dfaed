import { performance } from 'node:perf_hooks';
import { startMockAnthropic, type MockAnthropic } from '@tollgate/mock-anthropic';
import { MESSAGES_JOB_NAME } from '@tollgate/queue';
import { parseJobData, queueKeys } from '@tollgate/queue/internal';
import { startRedis, uniqueName, type TestRedis } from '@tollgate/test-support';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WORKER_ENTRY, killAll, spawnGateway, spawnService, type ServiceProcess } from './processes.js';
import { TOKENS, TOKEN_A, request } from './support.js';

const API_KEY = 'sk-ant-redis-down-secret';
/** The bound for a 503 while Redis is down. */
const UNAVAILABLE_BOUND_MS = 1_000;
/** Requests sent while Redis is down, each timed. */
const REQUESTS_WHILE_DOWN = 5;
/** How long the test waits for work to resume after Redis returns (a deadline, not an assertion). */
const RESUME_DEADLINE_MS = 60_000;
const RESUME_POLL_MS = 250;

let redis: TestRedis;
let mock: MockAnthropic;
let queue: string;
let gatewayUrl: string;
const processes: ServiceProcess[] = [];

beforeAll(async () => {
  redis = await startRedis({ dedicated: true, appendonly: true });
  mock = await startMockAnthropic({ apiKeys: [API_KEY] });
  queue = uniqueName('down');
  const shared = { REDIS_URL: redis.url, TOLLGATE_QUEUE: queue, TOLLGATE_NAME: `${queue}-limiter`, TOLLGATE_CONCURRENCY: '4', LOG_LEVEL: 'warn' };
  const [worker, gateway] = await Promise.all([
    spawnService(WORKER_ENTRY, { ...shared, ANTHROPIC_API_KEY: API_KEY, ANTHROPIC_BASE_URL: mock.url, METRICS_PORT: '0', METRICS_HOST: '127.0.0.1' }),
    spawnGateway({ ...shared, GATEWAY_TOKENS: TOKENS }),
  ]);
  processes.push(worker, gateway);
  gatewayUrl = gateway.url;
});
afterAll(async () => {
  await killAll(processes);
  await mock?.close();
  await redis?.close();
});

async function timed(path: string, init?: RequestInit): Promise<{ status: number; ms: number; body: { type?: string; error?: { type: string } } }> {
  const started = performance.now();
  const response = await fetch(`${gatewayUrl}${path}`, init);
  const body = (await response.json()) as { type?: string; error?: { type: string } };
  return { status: response.status, ms: performance.now() - started, body }; // the whole HTTP round trip, body included
}

const post = (body: unknown): RequestInit => ({ method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN_A}` } });

describe('Redis down: the gateway fails fast and recovers by itself', () => {
  it('answers 503 within 1 s, enqueues nothing half-written, and serves again once Redis is back', async () => {
    let served = 0;
    expect((await timed('/v1/messages', post(request('before')))).status).toBe(200);
    served += 1;
    const pids = processes.map((child) => child.child.pid);

    await redis.stop();
    for (let i = 0; i < REQUESTS_WHILE_DOWN; i += 1) {
      const health = await timed('/health');
      expect(health.status).toBe(503);
      expect(health.ms).toBeLessThan(UNAVAILABLE_BOUND_MS);
      for (const body of [request(`down ${i}`), { ...request(`down stream ${i}`), stream: true }]) {
        const answer = await timed('/v1/messages', post(body));
        expect(answer.status).toBe(503);
        expect(answer.body).toMatchObject({ type: 'error', error: { type: 'api_error' } });
        expect(answer.ms).toBeLessThan(UNAVAILABLE_BOUND_MS);
      }
    }

    await redis.restart({ keepData: true });
    const deadline = performance.now() + RESUME_DEADLINE_MS;
    let resumed = false;
    while (!resumed && performance.now() < deadline) {
      const answer = await timed('/v1/messages', post(request(`after ${served}`)));
      if (answer.status === 200) {
        resumed = true;
        served += 1;
      } else {
        expect(answer.status).toBe(503); // while reconnecting, still a clean "unavailable"
        await new Promise((resolve) => setTimeout(resolve, RESUME_POLL_MS));
      }
    }
    expect(resumed).toBe(true);
    expect((await timed('/health')).status).toBe(200);
    const stream = await fetch(`${gatewayUrl}/v1/messages`, post({ ...request('after stream'), stream: true }));
    expect(stream.status).toBe(200);
    expect(await stream.text()).toContain('event: message_stop');
    served += 1;
    expect(processes.map((child) => child.child.pid)).toEqual(pids);
    for (const child of processes) expect(child.child.exitCode).toBeNull(); // nobody restarted

    // every job in Redis is whole, and only the requests that were answered 200 made one
    const connection = new Redis(redis.url, { maxRetriesPerRequest: null });
    const inspect = new Queue(queue, { connection, prefix: queueKeys(queue).prefix });
    try {
      const jobs = await inspect.getJobs(['waiting', 'prioritized', 'delayed', 'active', 'completed', 'failed']);
      expect(jobs).toHaveLength(served);
      for (const job of jobs) {
        expect(job.name).toBe(MESSAGES_JOB_NAME);
        expect(() => parseJobData(job.data)).not.toThrow();
        expect(await job.getState()).toBe('completed');
      }
    } finally {
      await inspect.close();
      connection.disconnect();
    }
  });
});
