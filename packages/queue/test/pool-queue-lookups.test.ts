/**
 * Job lookups across the queues of an account with pools (issue 13, found in review): an idempotent job is found on
 * whichever queue of its account holds it, also by a producer that did not enqueue it and has one lane so far, and a
 * wait finds a job on a registered pool queue the document no longer names; a plain-queue producer's tenant has one
 * tenantQueuedMax set for its jobs of every pool and of none. Real Redis, the mock Anthropic API; each
 * test in a Redis database of its own, so that each has its own fleet document.
 */
import type Anthropic from '@anthropic-ai/sdk';
import { storeLimitsDocument, validateLimitsDocument, type LimitsDocument } from '@tollgate/config';
import { startMockAnthropic, type MockAnthropic } from '@tollgate/mock-anthropic';
import { startRedis, uniqueName, type TestRedis } from '@tollgate/test-support';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IdempotencyConflictError, RequestBody, TenantQueueFullError, createProducer, createWorker, type MessagesClient, type Producer, type QueueWorker } from '../src/index.js';
import { queueKeys } from '../src/internal.js';
import { sdkClient, thrown } from './support.js';

const POLL_MS = 50;
const SONNET = 'claude-sonnet-4-5';
const HAIKU = 'claude-haiku-4-5';
const TWO_POOLS = { sonnet: { models: ['claude-sonnet-4*'], rpm: 10_000 }, haiku: { models: ['claude-haiku-4*'], rpm: 10_000 } };
const ONE_POOL = { all: { models: ['*'], rpm: 10_000 } };
const doc = (pools: object, tenants: object = {}): LimitsDocument => validateLimitsDocument({ accounts: { main: { apiKeyEnv: 'MAIN_KEY', concurrency: 50, pools } }, tenants });

let redis: TestRedis;
let mock: MockAnthropic;
const closers: Array<() => Promise<unknown> | void> = [];
let nextDb = 4;

/** A Redis database of the test's own: an admin client, and makers of producers and workers on it. */
function fleet() {
  const url = `${redis.url}/${nextDb++}`;
  const admin = new Redis(url);
  closers.push(() => admin.disconnect());
  return {
    url,
    admin,
    store: (document: LimitsDocument) => storeLimitsDocument(admin, document),
    producer: (options: { queue: string; account?: string; tenantQueuedMax?: number }): Producer => {
      const made = createProducer({ redis: url, documentPollMs: POLL_MS, ...options });
      closers.push(() => made.close());
      return made;
    },
    worker: (queue: string, client: MessagesClient | ((priority: number, tenant: string | null) => MessagesClient), concurrency = 4): QueueWorker => {
      const made = createWorker({ redis: url, queue, client, concurrency, account: 'main' });
      closers.push(() => made.close({ drainTimeoutMs: 0 }));
      return made;
    },
    /** Jobs with id `id` on any queue of this database. */
    copies: async (id: string) => (await admin.keys(`*:${id}`)).filter((key) => !key.includes(':tenant')).length,
  };
}
const ask = (model: string, tag: string | number): Anthropic.MessageCreateParamsNonStreaming => ({
  model,
  max_tokens: 8,
  messages: [{ role: 'user', content: `question ${tag}` }],
});

beforeAll(async () => {
  redis = await startRedis();
  mock = await startMockAnthropic();
});
afterAll(async () => {
  for (const close of closers.reverse()) await close();
  await mock.close();
  await redis.close();
});

describe('pool queues: a job found on whichever queue of its account holds it', () => {
  it('an idempotent retry after an apply left the account one pool is answered by the job already queued, not run twice', async () => {
    const f = fleet();
    const queue = uniqueName('idem');
    await f.store(doc(TWO_POOLS));
    const before = f.producer({ queue, account: 'main' });
    const id = await before.enqueue(ask(SONNET, 'once'), { idempotencyKey: 'order-42' });
    expect(await f.admin.exists(queueKeys(`${queue}@main~sonnet`).job(id))).toBe(1);
    await f.store(doc(ONE_POOL)); // an apply: main has one pool, one queue again
    // the caller retries through another gateway replica (or this one after a restart)
    const after = f.producer({ queue, account: 'main' });
    expect(await after.enqueue(ask(SONNET, 'once'), { idempotencyKey: 'order-42' })).toBe(id);
    // fails today: a second job with the same id on <queue>@main (a fresh producer looks elsewhere only when it has
    // another lane already), which a worker runs a second time
    expect(await f.admin.exists(queueKeys(`${queue}@main`).job(id))).toBe(0);
    expect(await f.copies(id)).toBe(1);
  });

  it('a producer that did not enqueue a job on a pool queue an apply removed waits for it (no JobLostError)', async () => {
    const f = fleet();
    const queue = uniqueName('wait');
    await f.store(doc(TWO_POOLS));
    const id = await f.producer({ queue, account: 'main' }).enqueue(ask(SONNET, 'wait'));
    await f.store(doc(ONE_POOL));
    const other = f.producer({ queue, account: 'main' });
    const worker = f.worker(`${queue}@main`, sdkClient(mock.url));
    await worker.ready();
    // fails today: waitForResult looks only on the document's queues, finds nothing, and says the job was lost
    expect((await other.waitForResult(id, { timeoutMs: 10_000 })).answer).toMatchObject({ type: 'message' });
  });

  it('an idempotency key reused for another request is refused by a fresh producer too (no second job with the same id on another queue)', async () => {
    const f = fleet();
    const queue = uniqueName('idem-conflict');
    await f.store(doc(TWO_POOLS));
    const id = await f.producer({ queue, account: 'main' }).enqueue(ask(SONNET, 'first'), { idempotencyKey: 'key-7' });
    // the same key on a count_tokens request (no pool: <queue>@main), through another replica; no apply in between
    const fresh = f.producer({ queue, account: 'main' });
    const reused = RequestBody.fromParams({ model: SONNET, messages: [{ role: 'user', content: 'other' }] }, 'count_tokens');
    // fails today: accepted, a second job with the same id on <queue>@main (the producer that enqueued the first refuses it)
    expect(await thrown(() => fresh.enqueue(reused, { idempotencyKey: 'key-7' }))).toBeInstanceOf(IdempotencyConflictError);
    expect(await f.copies(id)).toBe(1);
  });

  it('tenantQueuedMax holds on a plain-queue producer for its jobs of every pool and of none (count_tokens)', async () => {
    const f = fleet();
    const queue = uniqueName('plain-split');
    await f.store(doc(TWO_POOLS));
    const gateway = f.producer({ queue, tenantQueuedMax: 2 });
    await gateway.enqueue(ask(SONNET, 1), { tenant: 'free' }); // <queue>@main~sonnet
    await gateway.enqueue(ask(HAIKU, 2), { tenant: 'free' }); // <queue>@main~haiku
    const count = RequestBody.fromParams({ model: SONNET, messages: [{ role: 'user', content: 'count' }] }, 'count_tokens'); // <queue>@main
    // before: count_tokens went on the plain queue, which had a set of its own, and the tenant queued 2 more
    expect(await thrown(() => gateway.enqueue(count, { tenant: 'free' }))).toBeInstanceOf(TenantQueueFullError);
  });
});
