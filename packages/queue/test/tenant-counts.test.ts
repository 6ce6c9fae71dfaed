import { startMockAnthropic, type MockAnthropic } from '@tollgate/mock-anthropic';
import { startRedis, uniqueName, type TestRedis } from '@tollgate/test-support';
import { Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createProducer, createWorker, type Producer } from '../src/index.js';
import { queueKeys, readTenantCounts, sweepAllTenantJobs, sweepTenantJobs } from '../src/internal.js';
import { request, sdkClient } from './support.js';

let redis: TestRedis;
let mock: MockAnthropic;
let client: Redis;

beforeAll(async () => {
  redis = await startRedis();
  mock = await startMockAnthropic({});
  client = new Redis(redis.url);
});
afterAll(async () => {
  client.disconnect();
  await mock.close();
  await redis.close();
});

const byTenant = async (producer: Producer) => Object.fromEntries((await producer.tenantCounts()).map(({ tenant, inFlight, waiting }) => [tenant, { inFlight, waiting }]));

describe('the per-tenant view of a queue', () => {
  it('counts waiting jobs per tenant (none under "-"), in flight from the active list, and forgets finished jobs', async () => {
    const queue = uniqueName('tenants');
    const producer = createProducer({ redis: redis.url, queue });
    try {
      for (let i = 0; i < 5; i++) await producer.enqueue(request(`a${i}`), { tenant: 'alpha' });
      for (let i = 0; i < 2; i++) await producer.enqueue(request(`b${i}`), { tenant: 'beta' });
      const none = await producer.enqueue(request('none'));
      expect(await byTenant(producer)).toEqual({ alpha: { inFlight: 0, waiting: 5 }, beta: { inFlight: 0, waiting: 2 }, '-': { inFlight: 0, waiting: 1 } });
      expect(await producer.cancel(none)).toBe('cancelled');
      expect(await byTenant(producer)).not.toHaveProperty('-');

      // a bare BullMQ worker takes 3 jobs and holds them: they are in flight, the rest wait
      const keys = queueKeys(queue);
      const holding = new Redis(redis.url, { maxRetriesPerRequest: null });
      const holder = new Worker(queue, null, { connection: holding, prefix: keys.prefix, skipVersionCheck: true });
      const tokens = ['t1', 't2', 't3'];
      const held = [];
      for (const token of tokens) held.push(await holder.getNextJob(token));
      const heldTenants = held.map((job) => (job?.data as { tenant: string }).tenant);
      const counts = await byTenant(producer);
      expect(Object.values(counts).reduce((sum, count) => sum + count.inFlight, 0)).toBe(3);
      for (const tenant of ['alpha', 'beta']) {
        const inFlight = heldTenants.filter((name) => name === tenant).length;
        expect(counts[tenant] ?? { inFlight: 0, waiting: 0 }).toEqual({ inFlight, waiting: (tenant === 'alpha' ? 5 : 2) - inFlight });
      }

      // finished by a process that never prunes (as a worker killed right after finishing): the sweep forgets them
      for (const [i, job] of held.entries()) await job?.moveToCompleted('done', tokens[i] ?? '', false);
      const total = (await producer.tenantCounts()).reduce((sum, count) => sum + count.inFlight + count.waiting, 0);
      expect(total).toBe(7); // still counted: nobody pruned them yet
      let cursor = '0';
      do cursor = (await sweepTenantJobs(client, keys, cursor)).cursor;
      while (cursor !== '0');
      const after = await producer.tenantCounts();
      expect(after.reduce((sum, count) => sum + count.waiting, 0)).toBe(4);
      expect(after.every((count) => count.inFlight === 0)).toBe(true);
      await holder.close();
      holding.disconnect();
    } finally {
      await producer.close();
    }
  });

  it('a worker forgets each job as it finishes; the counts read back to nothing', async () => {
    const queue = uniqueName('tenants');
    const producer = createProducer({ redis: redis.url, queue });
    const worker = createWorker({ redis: redis.url, queue, client: sdkClient(mock.url), concurrency: 4 });
    try {
      const ids = await Promise.all(Array.from({ length: 12 }, (_, i) => producer.enqueue(request(i), { tenant: i % 3 === 0 ? 'gamma' : 'delta' })));
      await Promise.all(ids.map((id) => producer.wait(id)));
      await expect.poll(() => producer.tenantCounts(), { timeout: 5_000 }).toEqual([]);
      expect(await client.hlen(queueKeys(queue).tenantJobs)).toBe(0);
      expect(await client.exists(queueKeys(queue).tenantUnfinished)).toBe(0);
      expect(await readTenantCounts(client, queueKeys(queue))).toEqual([]);
    } finally {
      await worker.close({ drainTimeoutMs: 0 });
      await producer.close();
    }
  });

  it('jobs removed in bulk (BullMQ drain) stop counting after one sweep pass', async () => {
    const queue = uniqueName('tenants');
    const producer = createProducer({ redis: redis.url, queue });
    try {
      for (let i = 0; i < 7; i++) await producer.enqueue(request(i), { tenant: 'epsilon' });
      expect(await byTenant(producer)).toEqual({ epsilon: { inFlight: 0, waiting: 7 } });
      await producer.queue.drain();
      expect(await sweepAllTenantJobs(client, queueKeys(queue))).toBe(7);
      expect(await producer.tenantCounts()).toEqual([]);
    } finally {
      await producer.close();
    }
  });
});
