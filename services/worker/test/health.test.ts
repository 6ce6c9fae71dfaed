import { startMockAnthropic, type MockAnthropic } from '@tollgate/mock-anthropic';
import { createProducer } from '@tollgate/queue';
import { RedisServerProcess, freePort, uniqueName } from '@tollgate/test-support';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { WORKER_ENTRY, spawnService, type ServiceProcess } from './processes.js';

const API_KEY = 'sk-ant-health-test';
const DRAIN_TIMEOUT_MS = 3_000;
/** Polls a condition; a deadline, not a measurement. */
const EVENTUALLY_MS = 20_000;

let redis: RedisServerProcess;
let mock: MockAnthropic;
const running: ServiceProcess[] = [];

const workerEnv = (queue: string, redisUrl: string) => ({
  REDIS_URL: redisUrl,
  ANTHROPIC_API_KEY: API_KEY,
  ANTHROPIC_BASE_URL: mock.url,
  TOLLGATE_NAME: `${queue}-limiter`,
  TOLLGATE_QUEUE: queue,
  TOLLGATE_CONCURRENCY: '2',
  TOLLGATE_LEASE_TTL_MS: '2000',
  WORKER_CONCURRENCY: '2',
  WORKER_DRAIN_TIMEOUT_MS: String(DRAIN_TIMEOUT_MS),
  METRICS_PORT: '0',
  METRICS_HOST: '127.0.0.1',
  LOG_LEVEL: 'warn',
});

async function startWorker(queue: string): Promise<{ worker: ServiceProcess; base: string }> {
  const worker = await spawnService(WORKER_ENTRY, workerEnv(queue, redis.url));
  running.push(worker);
  return { worker, base: String(worker.ready.metricsUrl).replace(/\/metrics$/, '') };
}

async function probe(url: string): Promise<{ status: number; body: { status: string; reasons?: string[] } }> {
  const response = await fetch(url);
  return { status: response.status, body: (await response.json()) as { status: string; reasons?: string[] } };
}

async function eventually<T>(read: () => Promise<T>, done: (value: T) => boolean): Promise<T> {
  const deadline = performance.now() + EVENTUALLY_MS;
  let value = await read();
  while (!done(value) && performance.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    value = await read();
  }
  return value;
}

beforeAll(async () => {
  redis = await RedisServerProcess.start();
  mock = await startMockAnthropic({ limits: { concurrency: 2 }, apiKeys: [API_KEY] });
});
afterAll(async () => {
  await mock.close();
  await redis.close();
});
afterEach(async () => {
  for (const worker of running.splice(0)) {
    worker.signal('SIGKILL');
    await worker.exited;
  }
  if (!redis.running) await redis.start();
  mock.setConfig({ latency: { timeToFirstTokenMs: 0 } });
});

describe('worker health endpoints on the metrics port', () => {
  it('/healthz answers while the process lives; /readyz is 200, then 503 naming Redis while Redis is down, then 200 again', async () => {
    const { base } = await startWorker(uniqueName('health').replace(/:/g, '-'));
    expect(await probe(`${base}/healthz`)).toEqual({ status: 200, body: { status: 'alive' } });
    expect(await probe(`${base}/readyz`)).toEqual({ status: 200, body: { status: 'ready', reasons: [] } });

    await redis.kill();
    const down = await probe(`${base}/readyz`);
    expect(down.status).toBe(503);
    expect(down.body.status).toBe('not ready');
    expect(down.body.reasons?.some((reason) => /^(redis|limiter):/.test(reason))).toBe(true);
    expect((await probe(`${base}/healthz`)).status).toBe(200); // alive: restarting it would not bring Redis back

    await redis.start();
    const back = await eventually(
      () => probe(`${base}/readyz`),
      (answer) => answer.status === 200,
    );
    expect(back).toEqual({ status: 200, body: { status: 'ready', reasons: [] } });
  });

  it('/readyz answers 503 "draining" while a SIGTERM drain runs, /healthz stays 200, and the worker exits 0', async () => {
    const queue = uniqueName('drain').replace(/:/g, '-');
    const { worker, base } = await startWorker(queue);
    mock.setConfig({ latency: { timeToFirstTokenMs: 60_000 } }); // a call that outlasts the drain
    const producer = createProducer({ redis: redis.url, queue });
    try {
      await producer.enqueue({ model: 'claude-haiku-4-5', max_tokens: 8, messages: [{ role: 'user', content: 'hold' }] });
      await eventually(
        async () => mock.stats().inFlight,
        (inFlight) => inFlight === 1,
      );
      expect(mock.stats().inFlight).toBe(1);
      worker.signal('SIGTERM');
      const draining = await eventually(
        () => probe(`${base}/readyz`),
        (answer) => answer.status === 503,
      );
      expect(draining).toEqual({ status: 503, body: { status: 'not ready', reasons: ['draining'] } });
      expect((await probe(`${base}/healthz`)).status).toBe(200);
      expect(await worker.exited).toEqual({ code: 0, signal: null });
    } finally {
      await producer.close();
    }
  });

  it('a worker started while Redis is unreachable retries at start (warn logs, /readyz 503 "starting"), and is ready once Redis appears', async () => {
    const [redisPort, metricsPort] = [await freePort(), await freePort()];
    const base = `http://127.0.0.1:${metricsPort}`;
    const queue = uniqueName('late-redis').replace(/:/g, '-');
    const starting = spawnService(WORKER_ENTRY, { ...workerEnv(queue, `redis://127.0.0.1:${redisPort}`), METRICS_PORT: String(metricsPort), WORKER_START_TIMEOUT_MS: '60000' });
    const waiting = await eventually(
      () => probe(`${base}/readyz`).catch(() => ({ status: 0, body: { status: 'not listening', reasons: [] as string[] } })),
      (answer) => answer.status === 503,
    );
    expect(waiting.status).toBe(503);
    expect(waiting.body.reasons?.[0]).toMatch(/^starting: /);
    expect((await probe(`${base}/healthz`)).status).toBe(200);
    const late = await RedisServerProcess.start({ port: redisPort });
    try {
      const worker = await starting;
      running.push(worker);
      expect(await probe(`${base}/readyz`)).toEqual({ status: 200, body: { status: 'ready', reasons: [] } });
      expect(worker.logs.filter((line) => line.msg === 'start: the limiter is not ready yet; retrying' && line.level === 40).length).toBeGreaterThan(0);
      // and it runs jobs
      const producer = createProducer({ redis: late.url, queue });
      try {
        expect(
          (await producer.enqueueAndWait({ model: 'claude-haiku-4-5', max_tokens: 8, messages: [{ role: 'user', content: 'late' }] }, { timeoutMs: EVENTUALLY_MS })).type,
        ).toBe('message');
      } finally {
        await producer.close();
      }
    } finally {
      for (const worker of running.splice(0)) {
        worker.signal('SIGKILL');
        await worker.exited;
      }
      await late.close();
    }
  });

  it('gives up after WORKER_START_TIMEOUT_MS and exits 1 naming it', async () => {
    const queue = uniqueName('no-redis').replace(/:/g, '-');
    const failed = await spawnService(WORKER_ENTRY, { ...workerEnv(queue, `redis://127.0.0.1:${await freePort()}`), WORKER_START_TIMEOUT_MS: '1000' }).then(
      () => 'started',
      (error: unknown) => String(error),
    );
    expect(failed).toMatch(/exited \(1\) before ready: /);
    expect(failed).toMatch(/tollgate-worker: failed to start: gave up after \d+ attempts in WORKER_START_TIMEOUT_MS=1000/);
  });
});
