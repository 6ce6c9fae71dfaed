import Anthropic from '@anthropic-ai/sdk';
import { storeLimitsDocument, validateLimitsDocument } from '@tollgate/config';
import { startMockAnthropic, type MockAnthropic } from '@tollgate/mock-anthropic';
import { createLimiter } from '@tollgate/limiter';
import { limitAnthropic } from '@tollgate/anthropic';
import { createProducer, createWorker, type Producer } from '@tollgate/queue';
import { bullmqPriority } from '@tollgate/queue/internal';
import { startRedis, uniqueName, type TestRedis } from '@tollgate/test-support';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gateway } from '../src/index.js';
import { TOKEN_A, TOKEN_B, request, startGateway } from './support.js';

/** Issue 15, priority policy: a tenant's requested priority is clamped to its `maxPriority` (the fleet's document), the same from the gateway and from Node. */
const API_KEY = 'sk-ant-priority-policy';
let redis: TestRedis;
let client: Redis;
let mock: MockAnthropic;
let gateway: Gateway;
let url: string;
let producer: Producer;
let queue: string;

const documentWith = (teamAMaxPriority: number, models: string[] = ['*']) =>
  validateLimitsDocument(
    {
      accounts: { main: { apiKeyEnv: 'ANTHROPIC_API_KEY', concurrency: 4, pools: { all: { models, rpm: 100_000 } } } },
      tenants: {
        'team-a': { tokenEnv: 'TOKEN_TEAM_A', account: 'main', maxPriority: teamAMaxPriority },
        'team-b': { tokenEnv: 'TOKEN_TEAM_B', account: 'main' }, // maxPriority 0: may ask for any priority
      },
    },
    'test',
  );

beforeAll(async () => {
  redis = await startRedis();
  client = new Redis(redis.url);
  mock = await startMockAnthropic({ apiKeys: [API_KEY] });
  await storeLimitsDocument(client, documentWith(5));
  queue = uniqueName('policy');
  ({ gateway, url } = await startGateway({ REDIS_URL: redis.url, TOLLGATE_QUEUE: queue, TOLLGATE_NAME: uniqueName('policy-limiter') }));
  producer = createProducer({ redis: redis.url, queue, documentPollMs: 50 });
});
afterAll(async () => {
  await producer.close();
  await gateway.close();
  await mock.close();
  client.disconnect();
  await redis.close();
});

async function postJob(token: string, priority: string): Promise<{ id: string; served: string | null }> {
  const response = await fetch(`${url}/v1/jobs`, {
    method: 'POST',
    body: JSON.stringify(request(`p${priority}`)),
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}`, 'tollgate-priority': priority },
  });
  expect(response.status).toBe(202);
  const body = (await response.json()) as { id: string };
  return { id: body.id, served: response.headers.get('tollgate-priority') };
}

const storedPriority = async (id: string) => (await producer.getJob(id))?.priority;

describe('priority policy (DESIGN §9)', () => {
  it('the gateway serves a tenant with maxPriority 5 that asks for 0 as 5, says so in tollgate-priority, and leaves other tenants as asked', async () => {
    const clamped = await postJob(TOKEN_A, '0');
    expect(clamped.served).toBe('5');
    expect(await storedPriority(clamped.id)).toBe(5);
    const lower = await postJob(TOKEN_A, '7'); // less urgent than its maximum: as asked
    expect(lower.served).toBe('7');
    const other = await postJob(TOKEN_B, '0'); // maxPriority 0: the reserved, most urgent priority is its to ask for
    expect(other.served).toBe('0');
    expect(await storedPriority(other.id)).toBe(0);
  });

  it('a job enqueued from Node gets the same policy as one from the gateway', async () => {
    const job = await producer.enqueueJob(request('node'), { tenant: 'team-a', priority: 0 });
    expect(job.priority).toBe(5);
    expect(await storedPriority(job.id)).toBe(5);
    const raw = await producer.queueOfJob(job.id).getJob(job.id); // the tenant's own queue (DESIGN §9)
    expect(raw?.opts.priority).toBe(bullmqPriority(5)); // its place in the queue too, not only its label
    expect(await storedPriority(await producer.enqueue(request('node-untenanted'), { priority: 0 }))).toBe(0); // no tenant, no policy
    const unmanaged = createProducer({ redis: redis.url, queue, tenantPolicy: 'none' });
    try {
      expect((await unmanaged.enqueueJob(request('unmanaged'), { tenant: 'team-a', priority: 0 })).priority).toBe(0);
    } finally {
      await unmanaged.close();
    }
  });

  it('the clamped priority decides the order: team-a asking for 0 is served after team-b asking for 3', async () => {
    const ordered = uniqueName('policy-order');
    const orderProducer = createProducer({ redis: redis.url, queue: ordered });
    // each tenant's jobs have a queue of their own (DESIGN §9): across tenants the fleet's limiter orders the calls,
    // by served priority first; its one slot is held until both wait for it
    const limiter = createLimiter({ redis: redis.url, name: uniqueName('policy-order-limiter'), concurrency: 1 });
    const limited = limitAnthropic(new Anthropic({ baseURL: mock.url, apiKey: API_KEY, maxRetries: 0 }), limiter);
    const finished: string[] = [];
    try {
      const held = await limiter.acquire();
      const a = await orderProducer.enqueue(request('order-a'), { tenant: 'team-a', priority: 0 });
      const b = await orderProducer.enqueue(request('order-b'), { tenant: 'team-b', priority: 3 });
      const worker = createWorker({ redis: redis.url, queue: ordered, client: (priority, tenant) => limited.withPriority(priority).withTenant(tenant), concurrency: 1 });
      try {
        await worker.ready();
        await expect.poll(async () => (await limiter.snapshot()).waiting, { timeout: 10_000 }).toBe(2);
        const before = mock.requests().at(-1)?.seq ?? 0;
        await held.release();
        await Promise.all([a, b].map((id) => orderProducer.wait(id)));
        // the order the calls reached the upstream (the two jobs' ends are read from two queues' event streams)
        for (const logged of mock.requests().filter((entry) => entry.seq > before)) {
          const text = logged.body ?? '';
          if (text.includes('order-a')) finished.push('team-a');
          if (text.includes('order-b')) finished.push('team-b');
        }
      } finally {
        await worker.close({ drainTimeoutMs: 0 });
      }
      expect(finished).toEqual(['team-b', 'team-a']);
    } finally {
      await orderProducer.close();
      await limiter.close();
    }
  });

  it("a tenant with maxPriority 0 gets the reserved slots: team-a, clamped to 5, never takes them, and team-b's priority 0 job is granted at once behind team-a's backlog", async () => {
    const reserved = uniqueName('policy-reserve');
    const slow = await startMockAnthropic({ apiKeys: [API_KEY], latency: { timeToFirstTokenMs: 400 } });
    const reserveProducer = createProducer({ redis: redis.url, queue: reserved });
    // 3 slots, 1 of them reserved for priority 0 (DESIGN §4): what team-a may ask for is clamped to 5, so it holds 2 at most
    const limiter = createLimiter({ redis: redis.url, name: uniqueName('policy-reserve-limiter'), concurrency: 3, reserve: [{ maxPriority: 0, concurrency: 1 }] });
    const limited = limitAnthropic(new Anthropic({ baseURL: slow.url, apiKey: API_KEY, maxRetries: 0 }), limiter);
    const worker = createWorker({ redis: redis.url, queue: reserved, client: (priority, tenant) => limited.withPriority(priority).withTenant(tenant), concurrency: 8 });
    let teamAMax = 0;
    const sampler = setInterval(() => void limiter.snapshot().then((snapshot) => (teamAMax = Math.max(teamAMax, snapshot.inFlight))), 10);
    try {
      await worker.ready();
      const flood = await Promise.all(Array.from({ length: 6 }, (_, i) => reserveProducer.enqueue(request(`reserve-a${i}`), { tenant: 'team-a', priority: 0 })));
      await expect.poll(async () => (await limiter.snapshot()).waiting, { timeout: 10_000 }).toBeGreaterThan(0); // team-a has a backlog
      clearInterval(sampler);
      expect(teamAMax).toBeLessThanOrEqual(2);
      const urgent = await reserveProducer.enqueue(request('reserve-b'), { tenant: 'team-b', priority: 0 });
      const result = await reserveProducer.waitForResult(urgent, { timeoutMs: 10_000 });
      console.log(
        `priority policy: team-a (clamped to 5) held at most ${teamAMax} of 3 slots; team-b's priority 0 job waited ${Math.round(result.upstream.waitedMs)} ms for its permit`,
      );
      expect(result.upstream.waitedMs).toBeLessThan(200); // the reserved slot, not behind team-a's 400 ms calls
      await Promise.all(flood.map((id) => reserveProducer.wait(id, { timeoutMs: 20_000 })));
    } finally {
      clearInterval(sampler);
      await worker.close({ drainTimeoutMs: 0 });
      await reserveProducer.close();
      await limiter.close();
      await slow.close();
    }
  }, 30_000);

  it('a model that no pool of the account takes is refused at enqueue (400 naming the model and the patterns), from the gateway and from Node, and nothing is queued', async () => {
    await storeLimitsDocument(client, documentWith(3, ['claude-haiku-*']));
    try {
      await expect
        .poll(
          () =>
            producer.enqueue({ ...request('opus'), model: 'claude-opus-4-8' }).then(
              () => 'accepted',
              (error: unknown) => error,
            ),
          { timeout: 5_000 },
        )
        .toMatchObject({
          name: 'InvalidRequestError',
          message: expect.stringMatching(/^model: expected a model of a pool of account main \(claude-haiku-\*\) or a defaultPool \(got "claude-opus-4-8"\)/),
        });
      // the gateway's producer follows the document within its poll interval (1 s): its clamp says when it has this one
      await expect.poll(async () => (await postJob(TOKEN_A, '0')).served, { timeout: 5_000, interval: 100 }).toBe('3');
      const before = Object.values(await producer.counts()).reduce((sum, count) => sum + count, 0);
      const opusJob = () =>
        fetch(`${url}/v1/jobs`, {
          method: 'POST',
          body: JSON.stringify({ ...request('opus'), model: 'claude-opus-4-8' }),
          headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN_B}` },
        });
      const response = await opusJob();
      expect(response.status).toBe(400);
      expect(await response.json()).toMatchObject({ type: 'error', error: { type: 'invalid_request_error', message: expect.stringContaining('claude-opus-4-8') } });
      expect(Object.values(await producer.counts()).reduce((sum, count) => sum + count, 0)).toBe(before);
      expect((await postJob(TOKEN_B, '3')).served).toBe('3'); // a Haiku model (the test request's) still goes through
    } finally {
      await storeLimitsDocument(client, documentWith(5));
    }
  });

  it('a newly applied document is followed live, without a restart; an idempotent enqueue repeated after it answers the priority its job is served with', async () => {
    await expect.poll(() => producer.servedPriority('team-a', 0), { timeout: 5_000 }).toBe(5); // the last test's document is back
    const first = await producer.enqueueJob(request('idempotent'), { tenant: 'team-a', priority: 0, idempotencyKey: 'same-job' });
    expect(first.priority).toBe(5);
    await storeLimitsDocument(client, documentWith(2));
    await expect.poll(async () => (await postJob(TOKEN_A, '0')).served, { timeout: 5_000, interval: 100 }).toBe('2');
    await expect.poll(async () => (await producer.enqueueJob(request('live'), { tenant: 'team-a', priority: 0 })).priority, { timeout: 5_000, interval: 100 }).toBe(2);
    expect(await producer.enqueueJob(request('idempotent'), { tenant: 'team-a', priority: 0, idempotencyKey: 'same-job' })).toEqual(first); // the job, as stored
    await storeLimitsDocument(client, documentWith(5));
  });
});
