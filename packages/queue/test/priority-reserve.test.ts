import { limitAnthropic } from '@tollgate/anthropic';
import { storeLimitsDocument, validateLimitsDocument } from '@tollgate/config';
import { createLimiter } from '@tollgate/limiter';
import { startMockAnthropic, type MockAnthropic } from '@tollgate/mock-anthropic';
import { startRedis, uniqueName, type TestRedis } from '@tollgate/test-support';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createProducer, createWorker } from '../src/index.js';
import { request, sdkClient } from './support.js';

/**
 * Issue 15: "a tenant with maxPriority: 0 gets reserved slots". The limiter keeps one of its 2 slots for priority 0;
 * tenant batch (maxPriority 5) floods asking for 0 and is served at 5, so it never takes the reserved slot, and tenant
 * search (maxPriority 0) is granted it at once.
 */
const CALL_MS = 400;
const BATCH_JOBS = 6;
let redis: TestRedis;
let client: Redis;
let mock: MockAnthropic;

beforeAll(async () => {
  redis = await startRedis();
  client = new Redis(redis.url);
  mock = await startMockAnthropic({ latency: { timeToFirstTokenMs: CALL_MS } });
  await storeLimitsDocument(
    client,
    validateLimitsDocument(
      {
        accounts: { main: { apiKeyEnv: 'ANTHROPIC_API_KEY', concurrency: 2, pools: { all: { models: ['*'] } } } },
        tenants: { batch: { tokenEnv: 'TOKEN_BATCH', account: 'main', maxPriority: 5 }, search: { tokenEnv: 'TOKEN_SEARCH', account: 'main', maxPriority: 0 } },
      },
      'test',
    ),
  );
});
afterAll(async () => {
  await mock.close();
  client.disconnect();
  await redis.close();
});

describe('tenant priority policy and reserved slots', () => {
  it('a flood from a tenant with maxPriority 5 asking for 0 leaves the priority-0 reserve to a tenant with maxPriority 0', async () => {
    const queue = uniqueName('reserve');
    const limiter = createLimiter({ redis: redis.url, name: uniqueName('reserve-limiter'), concurrency: 2, reserve: [{ maxPriority: 0, concurrency: 1 }] });
    const limited = limitAnthropic(sdkClient(mock.url), limiter);
    const producer = createProducer({ redis: redis.url, queue });
    const worker = createWorker({ redis: redis.url, queue, client: (priority) => limited.withPriority(priority), concurrency: 8 });
    try {
      await limiter.ready();
      const batch = await Promise.all(Array.from({ length: BATCH_JOBS }, (_, i) => producer.enqueueJob(request(`batch ${i}`), { tenant: 'batch', priority: 0 })));
      expect(batch.map((job) => job.priority)).toEqual(Array(BATCH_JOBS).fill(5));
      await expect.poll(() => limiter.snapshot().then((snapshot) => snapshot.inFlight), { timeout: 10_000 }).toBe(1); // one batch call runs; the reserve stays free
      const search = await producer.enqueueJob(request('search'), { tenant: 'search', priority: 0 });
      expect(search.priority).toBe(0);
      const searchResult = await producer.waitForResult(search.id, { timeoutMs: 30_000 });
      const batchDone = (await Promise.all(batch.map((job) => producer.getJob(job.id)))).filter((job) => job?.state === 'completed').length;
      // granted in the reserved slot, not after the flood (the flood alone takes BATCH_JOBS × CALL_MS in its one slot)
      expect(searchResult.upstream.waitedMs).toBeLessThan(CALL_MS);
      expect(batchDone).toBeLessThanOrEqual(2); // most of the flood still waits for its one slot
      await Promise.all(batch.map((job) => producer.wait(job.id, { timeoutMs: 30_000 })));
      expect(mock.stats().maxConcurrent).toBeLessThanOrEqual(2);
    } finally {
      await worker.close({ drainTimeoutMs: 0 });
      await producer.close();
      await limiter.close();
    }
  });
});
