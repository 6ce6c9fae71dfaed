/**
 * Issue 13, job queues per model pool (DESIGN §9, queue-names.ts): an account with several pools has a queue per pool,
 * `<queue>@<account>~<pool>` (a tenant's `…~<pool>#<tenant>`), so that one pool's backlog never holds the worker slots
 * another pool's jobs need; a capped tenant keeps one queue across its pools (its cap is that queue's global
 * concurrency); the pool-less names are still served (an older producer's jobs). With a real Redis and the mock.
 */
import type Anthropic from '@anthropic-ai/sdk';
import { storeLimitsDocument, validateLimitsDocument } from '@tollgate/config';
import { InvalidArgumentError } from '@tollgate/limiter';
import { startMockAnthropic, type MockAnthropic } from '@tollgate/mock-anthropic';
import { startRedis, uniqueName, type TestRedis } from '@tollgate/test-support';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  RequestBody,
  TenantQueueFullError,
  accountQueueName,
  accountQueueNames,
  createProducer,
  createWorker,
  isQueueName,
  parseQueueName,
  poolLessQueueName,
  poolQueueName,
  tenantQueueName,
  type MessagesClient,
  type Producer,
  type QueueWorker,
} from '../src/index.js';
import { queueKeys } from '../src/internal.js';
import { sdkClient, thrown } from './support.js';

const DOCUMENT_POLL_MS = 50;
const SONNET = 'claude-sonnet-4-5';
const HAIKU = 'claude-haiku-4-5';
const CAP = 2;

const document = validateLimitsDocument({
  accounts: {
    main: {
      apiKeyEnv: 'MAIN_KEY',
      concurrency: 50,
      pools: { sonnet: { models: ['claude-sonnet-4*'], rpm: 10_000 }, haiku: { models: ['claude-haiku-4*'], rpm: 10_000 } },
    },
    'org:solo': { apiKeyEnv: 'SOLO_KEY', pools: { all: { models: ['*'], rpm: 10_000 } } },
  },
  tenants: {
    search: { tokenEnv: 'SEARCH_TOKEN', account: 'main' },
    batch: { tokenEnv: 'BATCH_TOKEN', account: 'main', concurrency: CAP },
  },
});

let redis: TestRedis;
let mock: MockAnthropic;
let client: Redis;
const producers: Producer[] = [];
const workers: QueueWorker[] = [];
const producer = (options: { queue: string; account?: string; tenantQueuedMax?: number; tenantPolicy?: 'fleet' | 'none' }) => {
  const made = createProducer({ redis: redis.url, documentPollMs: DOCUMENT_POLL_MS, ...options });
  producers.push(made);
  return made;
};
const ask = (model: string, tag: string | number, maxTokens = 8): Anthropic.MessageCreateParamsNonStreaming => ({
  model,
  max_tokens: maxTokens,
  messages: [{ role: 'user', content: `question ${tag}` }],
});
/** Jobs on queue `name` (its own keys only), whatever their state. */
const jobsOn = async (name: string) => (await client.keys(`${queueKeys(name).jobPrefix}job_*`)).length;

beforeAll(async () => {
  redis = await startRedis();
  mock = await startMockAnthropic();
  client = new Redis(redis.url);
  await storeLimitsDocument(client, document);
});
afterAll(async () => {
  await Promise.all(workers.map((worker) => worker.close({ drainTimeoutMs: 0 })));
  await Promise.all(producers.map((made) => made.close()));
  client.disconnect();
  await mock.close();
  await redis.close();
});

describe('queue names', () => {
  it('an account, pool and tenant each have a place in the name, read back one way only', () => {
    const account = accountQueueName('messages', 'org:main');
    expect(account).toBe('messages@org%3Amain');
    const pool = poolQueueName(account, 'sonnet-4.5');
    expect(pool).toBe('messages@org%3Amain~sonnet-4.5');
    expect(tenantQueueName(pool, 'search')).toBe('messages@org%3Amain~sonnet-4.5#search');
    expect(tenantQueueName(account, 'search')).toBe('messages@org%3Amain#search');
    expect(parseQueueName('messages')).toEqual({ queue: 'messages' });
    expect(parseQueueName(account)).toEqual({ queue: 'messages', account: 'org:main' });
    expect(parseQueueName(pool)).toEqual({ queue: 'messages', account: 'org:main', pool: 'sonnet-4.5' });
    expect(parseQueueName('messages@org%3Amain~sonnet-4.5#search')).toEqual({ queue: 'messages', account: 'org:main', pool: 'sonnet-4.5', tenant: 'search' });
    expect(parseQueueName('messages@main#search')).toEqual({ queue: 'messages', account: 'main', tenant: 'search' });
    // a pool queue shares its pool-less queue's hash tag (one Cluster slot with its tenant's queued-jobs set)
    expect(poolLessQueueName('messages@main~sonnet#search')).toBe('messages@main#search');
    expect(poolLessQueueName('messages@main~sonnet')).toBe('messages@main');
    expect(queueKeys('messages@main~sonnet#search').prefix).toBe('{tollgate-queue:messages@main#search}');
    expect(queueKeys('messages@main~sonnet#search').jobPrefix).toBe('{tollgate-queue:messages@main#search}:messages@main~sonnet#search:');
    expect(queueKeys('messages@main#search').prefix).toBe('{tollgate-queue:messages@main#search}');
  });

  it.each([
    ['a second pool', 'q@main~a~b'],
    ['a tenant before the pool', 'q@main#t~p'],
    ['a second tenant', 'q@main#t#u'],
    ['a second account', 'q@a@b'],
    ['an empty account', 'q@~p'],
    ['an empty pool', 'q@main~'],
    ['an empty tenant', 'q@main#'],
    ['a pool that begins with a dot', 'q@main~.p'],
    ['a pool on a plain queue', 'q~p'],
    ['a tenant on a plain queue', 'q#t'],
    ['a raw colon', 'q@org:main'],
    ['a lowercase escape', 'q@org%3amain'],
    ['another escape', 'q@org%41main'],
    ['a stray percent', 'q@main%'],
    ['a brace (a hash tag of its own)', 'q@{main}'],
    ['a space', 'q@main ~p'],
    ['a newline', 'q@main\n'],
    ['a pool of 65 characters', `q@main~${'p'.repeat(65)}`],
    ['an account of 201 characters', `q@${'a'.repeat(201)}`],
    ['an account of 201 characters, colons escaped', `q@${'%3A'.repeat(201)}`],
    ['nothing', ''],
  ])('refuses %s: %j', (_what, name) => {
    expect(isQueueName(name)).toBe(false);
    expect(parseQueueName(name)).toBeUndefined();
    expect(() => queueKeys(name)).toThrow(InvalidArgumentError);
  });

  it('the makers refuse what the parser would not read back', () => {
    expect(() => poolQueueName('q', 'p')).toThrow(InvalidArgumentError); // no account
    expect(() => poolQueueName('q@main~a', 'b')).toThrow(InvalidArgumentError);
    expect(() => poolQueueName('q@main#t', 'p')).toThrow(InvalidArgumentError);
    expect(() => poolQueueName('q@main', 'a~b')).toThrow(InvalidArgumentError);
    expect(() => poolQueueName('q@main', 'a#b')).toThrow(InvalidArgumentError);
    expect(() => tenantQueueName('q@main#t', 'u')).toThrow(InvalidArgumentError);
    expect(() => tenantQueueName('q@main', 'a~b')).toThrow(InvalidArgumentError);
    expect(accountQueueNames(document, 'q', 'main')).toEqual([
      'q@main',
      'q@main~sonnet',
      'q@main~haiku',
      'q@main#search',
      'q@main~sonnet#search',
      'q@main~haiku#search',
      'q@main#batch',
    ]);
    // an account with one pool keeps its one queue (and its tenants' one each)
    expect(accountQueueNames(document, 'q', 'org:solo')).toEqual(['q@org%3Asolo']);
  });
});

describe('a producer on an account with two pools', () => {
  it("puts each job on its pool's queue; a capped tenant keeps one queue; jobs of no pool stay on the account's queue", async () => {
    const queue = uniqueName('routing');
    const main = producer({ queue, account: 'main' });
    const sonnet = await main.enqueue(ask(SONNET, 1));
    const haiku = await main.enqueue(ask(HAIKU, 2));
    const searchSonnet = await main.enqueue(ask(SONNET, 3), { tenant: 'search' });
    const searchHaiku = await main.enqueue(ask(HAIKU, 4), { tenant: 'search' });
    const batchSonnet = await main.enqueue(ask(SONNET, 5), { tenant: 'batch' });
    const batchHaiku = await main.enqueue(ask(HAIKU, 6), { tenant: 'batch' });
    const counted = await main.enqueue(RequestBody.fromParams({ model: SONNET, messages: [{ role: 'user', content: 'count me' }] }, 'count_tokens'));
    const on = Object.fromEntries(await Promise.all(accountQueueNames(document, queue, 'main').map(async (name) => [name, await jobsOn(name)])));
    expect(on).toEqual({
      [`${queue}@main`]: 1, // count_tokens: no pool
      [`${queue}@main~sonnet`]: 1,
      [`${queue}@main~haiku`]: 1,
      [`${queue}@main#search`]: 0,
      [`${queue}@main~sonnet#search`]: 1,
      [`${queue}@main~haiku#search`]: 1,
      [`${queue}@main#batch`]: 2, // its cap spans its pools
    });
    // every lookup finds each, with or without the tenant, also from a producer that did not enqueue them
    const other = producer({ queue, account: 'main' });
    for (const [id, tenant] of [
      [sonnet, null],
      [haiku, null],
      [searchSonnet, 'search'],
      [searchHaiku, 'search'],
      [batchSonnet, 'batch'],
      [batchHaiku, 'batch'],
      [counted, null],
    ] as const) {
      expect((await other.getJob(id, { tenant }))?.state, id).toBe('prioritized');
      expect((await other.getJob(id))?.id).toBe(id);
    }
    expect((await other.counts()).prioritized).toBe(7);
    expect(await other.cancel(searchHaiku, { tenant: 'search' })).toBe('cancelled');
    expect(await other.cancel(haiku)).toBe('cancelled');
    expect((await other.counts()).prioritized).toBe(5);
    // a model of no pool is refused at enqueue, as before
    expect(((await thrown(() => main.enqueue(ask('gpt-4o', 7)))) as Error).message).toMatch(/model: expected a model of a pool of account main/);
  });

  it("a producer without an account, on a document whose only account has several pools, uses that account's pool queues", async () => {
    const queue = uniqueName('plain');
    const only = validateLimitsDocument({ accounts: { main: document.accounts.main } });
    const solo = new Redis(redis.url);
    const isolated = `${queue}-doc`;
    // this producer reads the stored document: the shared one has two accounts, so store a one-account fleet in its own Redis database
    await solo.select(1);
    await storeLimitsDocument(solo, only);
    const plain = createProducer({ redis: `${redis.url}/1`, queue: isolated, documentPollMs: DOCUMENT_POLL_MS });
    producers.push(plain);
    try {
      const id = await plain.enqueue(ask(SONNET, 'plain'));
      expect((await solo.keys(`${queueKeys(`${isolated}@main~sonnet`).jobPrefix}job_*`)).length).toBe(1);
      expect((await solo.keys(`${queueKeys(isolated).jobPrefix}job_*`)).length).toBe(0);
      expect((await plain.getJob(id))?.state).toBe('prioritized');
      // count_tokens has no pool: the account's queue, with the pool queues (one tenantQueuedMax set for a tenant's jobs)
      await plain.enqueue(RequestBody.fromParams({ model: SONNET, messages: [{ role: 'user', content: 'count' }] }, 'count_tokens'));
      expect((await solo.keys(`${queueKeys(`${isolated}@main`).jobPrefix}job_*`)).length).toBe(1);
      expect((await solo.keys(`${queueKeys(isolated).jobPrefix}job_*`)).length).toBe(0);
      expect((await plain.counts()).prioritized).toBe(2);
    } finally {
      solo.disconnect();
    }
  });

  it("tenantQueuedMax counts a tenant's unfinished jobs on all its pool queues together", async () => {
    const queue = uniqueName('queued-max');
    const main = producer({ queue, account: 'main', tenantQueuedMax: 3 });
    const first = await main.enqueue(ask(SONNET, 1), { tenant: 'search' });
    await main.enqueue(ask(HAIKU, 2), { tenant: 'search' });
    await main.enqueue(ask(SONNET, 3), { tenant: 'search' });
    expect(await jobsOn(`${queue}@main~sonnet#search`)).toBe(2);
    expect(await jobsOn(`${queue}@main~haiku#search`)).toBe(1);
    for (const model of [SONNET, HAIKU]) expect(await thrown(() => main.enqueue(ask(model, 4), { tenant: 'search' }))).toBeInstanceOf(TenantQueueFullError);
    // one set per (account, tenant), on its pool-less queue
    expect(await client.zcard(queueKeys(`${queue}@main#search`).tenantOpen('search'))).toBe(3);
    // a cancelled job gives its place back, whichever pool it was on
    expect(await main.cancel(first, { tenant: 'search' })).toBe('cancelled');
    await main.enqueue(ask(HAIKU, 5), { tenant: 'search' });
    expect(await thrown(() => main.enqueue(ask(SONNET, 6), { tenant: 'search' }))).toBeInstanceOf(TenantQueueFullError);
    // another tenant is not counted with it
    await main.enqueue(ask(SONNET, 7), { tenant: 'batch' });
  });
});

describe('a worker of an account with two pools', () => {
  /** A client whose calls are counted in flight per tenant (the worker asks it for each job's view). */
  function countingClient(sdk: Anthropic, inFlight: Map<string, { now: number; max: number }>): (priority: number, tenant: string | null) => MessagesClient {
    return (_priority, tenant) => ({
      messages: {
        create: ((params: never, options: never) => {
          const key = tenant ?? '';
          const seen = inFlight.get(key) ?? { now: 0, max: 0 };
          inFlight.set(key, seen);
          seen.now += 1;
          seen.max = Math.max(seen.max, seen.now);
          const call = sdk.messages.create(params, options);
          void call.then(
            () => (seen.now -= 1),
            () => (seen.now -= 1),
          );
          return call;
        }) as unknown as Anthropic['messages']['create'],
        stream: sdk.messages.stream.bind(sdk.messages),
        countTokens: sdk.messages.countTokens.bind(sdk.messages),
      },
    });
  }

  it("runs every pool's and tenant's queue, and still the pool-less ones an older producer wrote to (a rolling upgrade)", async () => {
    const queue = uniqueName('serve');
    const account = accountQueueName(queue, 'main');
    // an older producer: no pools, no tenant queues (what `tenantPolicy: 'none'` does is what it did)
    const old = producer({ queue, account: 'main', tenantPolicy: 'none' });
    const oldJob = await old.enqueue(ask(SONNET, 'old'));
    expect(await jobsOn(account)).toBe(1);
    const fresh = producer({ queue, account: 'main' });
    const ids = [
      await fresh.enqueue(ask(SONNET, 1)),
      await fresh.enqueue(ask(HAIKU, 2)),
      await fresh.enqueue(ask(HAIKU, 3), { tenant: 'search' }),
      await fresh.enqueue(ask(HAIKU, 4), { tenant: 'batch' }),
    ];
    const before = await connectionsNamed();
    const worker = createWorker({ redis: redis.url, queue: account, client: sdkClient(mock.url), concurrency: 4, account: 'main' });
    workers.push(worker);
    await worker.ready();
    expect(worker.tenantQueues.sort()).toEqual(accountQueueNames(document, queue, 'main').slice(1).sort());
    // per queue, the blocking connection each BullMQ Worker makes (a duplicate); the commands connection (BullMQ's
    // commands with it) and the abort subscriber are shared by all of them (they were 3 more per queue)
    expect((await connectionsNamed()) - before).toBe(accountQueueNames(document, queue, 'main').length + 2);
    for (const id of [oldJob, ...ids]) expect((await fresh.waitForResult(id, { timeoutMs: 10_000 })).answer).toMatchObject({ type: 'message' });
    // a producer that did not enqueue them waits on the queue that holds each
    const other = producer({ queue, account: 'main' });
    for (const id of ids) expect((await other.waitForResult(id, { timeoutMs: 10_000 })).answer).toMatchObject({ type: 'message' });
    // an abort still reaches the worker of a pool queue (its abort channel on the shared subscriber)
    mock.setConfig({ latency: { timeToFirstTokenMs: 20_000, perTokenMs: 0 } });
    try {
      const slow = await fresh.enqueue(ask(HAIKU, 'slow'));
      await expect.poll(async () => (await fresh.getJob(slow))?.state, { timeout: 5_000 }).toBe('active');
      expect(await fresh.abandon(slow, { abortRunning: true })).toBe('aborting');
      await expect.poll(async () => (await fresh.getJob(slow))?.state, { timeout: 5_000 }).toBe('failed');
    } finally {
      mock.setConfig({ latency: { timeToFirstTokenMs: 0, perTokenMs: 0 } });
    }
  });

  it('a pool queue that an apply removed from the document is still served by a worker started after it (producers register each pool queue they use)', async () => {
    const queue = uniqueName('removed-pool');
    const db = `${redis.url}/2`;
    const admin = new Redis(db);
    try {
      await storeLimitsDocument(admin, validateLimitsDocument({ accounts: { main: document.accounts.main } }));
      const stale = createProducer({ redis: db, queue, account: 'main', documentPollMs: DOCUMENT_POLL_MS });
      producers.push(stale);
      const id = await stale.enqueue(ask(SONNET, 'before the apply'));
      expect(await admin.smembers(queueKeys(`${queue}@main`).poolQueues)).toEqual([`${queue}@main~sonnet`]);
      // an apply leaves main one pool: its jobs go on its one queue from now on; a foreign member of the set is no queue of it
      await storeLimitsDocument(admin, validateLimitsDocument({ accounts: { main: { ...document.accounts.main, pools: { all: { models: ['*'], rpm: 10_000 } } } } }));
      await admin.sadd(queueKeys(`${queue}@main`).poolQueues, `${queue}@other~sonnet`, 'not a queue');
      // a producer that never used that queue finds the job by its id there
      const fresh = createProducer({ redis: db, queue, account: 'main', documentPollMs: DOCUMENT_POLL_MS });
      producers.push(fresh);
      expect((await fresh.counts()).prioritized).toBe(1); // counted too (the metrics, the dashboard)
      expect((await fresh.getJob(id))?.state).toBe('prioritized');
      const worker = createWorker({ redis: db, queue: `${queue}@main`, client: sdkClient(mock.url), concurrency: 2, account: 'main' });
      workers.push(worker);
      await worker.ready();
      expect(worker.tenantQueues).toEqual([`${queue}@main~sonnet`]);
      expect((await stale.waitForResult(id, { timeoutMs: 10_000 })).answer).toMatchObject({ type: 'message' });
    } finally {
      admin.disconnect();
    }
  });

  it('a worker of 3 pools and 4 tenants (20 queues) opens 22 connections, and no listener warning', async () => {
    const queue = uniqueName('many');
    const db = `${redis.url}/3`;
    const admin = new Redis(db);
    const warnings: string[] = [];
    const onWarning = (warning: Error) => warnings.push(`${warning.name}: ${warning.message}`);
    process.on('warning', onWarning);
    try {
      const pools = Object.fromEntries(['a', 'b', 'c'].map((pool) => [pool, { models: [`claude-${pool}-*`], rpm: 1_000 }]));
      const tenants = Object.fromEntries(['t1', 't2', 't3', 't4'].map((tenant) => [tenant, { tokenEnv: `${tenant.toUpperCase()}_TOKEN`, account: 'main' }]));
      const many = validateLimitsDocument({ accounts: { main: { apiKeyEnv: 'MAIN_KEY', pools } }, tenants });
      await storeLimitsDocument(admin, many);
      const names = accountQueueNames(many, queue, 'main');
      expect(names).toHaveLength(20);
      const before = Number(/connected_clients:(\d+)/.exec(await admin.info('clients'))?.[1]);
      const worker = createWorker({ redis: db, queue: `${queue}@main`, client: sdkClient(mock.url), concurrency: 2, account: 'main' });
      workers.push(worker);
      await worker.ready();
      expect(worker.tenantQueues).toHaveLength(19);
      const after = Number(/connected_clients:(\d+)/.exec(await admin.info('clients'))?.[1]);
      expect(after - before).toBe(names.length + 2);
      await new Promise((resolve) => setImmediate(resolve)); // warnings are emitted on the next tick
      expect(warnings).toEqual([]);
    } finally {
      process.off('warning', onWarning);
      admin.disconnect();
    }
  });

  it(`a capped tenant's jobs of both pools share its cap of ${CAP} across two workers`, async () => {
    const queue = uniqueName('capped');
    const account = accountQueueName(queue, 'main');
    const sdk = sdkClient(mock.url);
    const inFlight = new Map<string, { now: number; max: number }>();
    mock.setConfig({ latency: { timeToFirstTokenMs: 60, perTokenMs: 0 } });
    try {
      for (let i = 0; i < 2; i += 1) {
        const worker = createWorker({ redis: redis.url, queue: account, client: countingClient(sdk, inFlight), concurrency: 8, account: 'main' });
        workers.push(worker);
        await worker.ready();
      }
      const main = producer({ queue, account: 'main' });
      const ids = await Promise.all(Array.from({ length: 16 }, (_, i) => main.enqueue(ask(i % 2 === 0 ? SONNET : HAIKU, i), { tenant: 'batch' })));
      const searchIds = await Promise.all(Array.from({ length: 8 }, (_, i) => main.enqueue(ask(i % 2 === 0 ? SONNET : HAIKU, i), { tenant: 'search' })));
      for (const id of [...ids, ...searchIds]) await main.waitForResult(id, { timeoutMs: 20_000 });
      expect(inFlight.get('batch')?.max).toBe(CAP);
      // the uncapped tenant's pools are not held to it
      expect(inFlight.get('search')?.max ?? 0).toBeGreaterThan(CAP);
    } finally {
      mock.setConfig({ latency: { timeToFirstTokenMs: 0, perTokenMs: 0 } });
    }
  });
});

/** Connections to the test's Redis now. */
async function connectionsNamed(): Promise<number> {
  const list = (await client.client('LIST')) as string;
  return list.trim().split('\n').length;
}
