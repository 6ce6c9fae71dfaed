import { createLimiter, type Limiter } from '@tollgate/limiter';
import { createProducer, type Producer } from '@tollgate/queue';
import { queueKeys, sweepAllTenantJobs } from '@tollgate/queue/internal';
import { startRedis, uniqueName, type TestRedis } from '@tollgate/test-support';
import { UnrecoverableError, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jsonOf, runTollgate } from '../support/cli.js';

/** The per-tenant view through the `tollgate` process, on a Redis no worker serves (jobs are moved by hand). */
let redis: TestRedis;
let client: Redis;
let limiter: Limiter;
let producer: Producer;
let env: Record<string, string>;
let queue: string;

const request = (tag: string) => ({ model: 'claude-sonnet-4-5', max_tokens: 8, messages: [{ role: 'user' as const, content: `tenant view ${tag}` }] });
const rows = async () => jsonOf<{ tenants: { rows: Array<{ tenant: string; inFlight: number; waiting: number }> } }>(await runTollgate(['status', '--json'], env)).tenants.rows;

beforeAll(async () => {
  redis = await startRedis();
  client = new Redis(redis.url);
  const name = uniqueName('tenant-view').replace(/:/g, '-');
  queue = name;
  limiter = createLimiter({ redis: redis.url, name, concurrency: 4 });
  await limiter.ready();
  producer = createProducer({ redis: redis.url, queue });
  env = { REDIS_URL: redis.url, TOLLGATE_NAME: name, TOLLGATE_QUEUE: queue };
});

afterAll(async () => {
  await producer?.close();
  await limiter?.close();
  client?.disconnect();
  await redis?.close();
});

describe('the per-tenant view, through tollgate', () => {
  it('jobs `queue retry-failed` brings back count as waiting at once, before a worker starts them', async () => {
    for (let i = 0; i < 3; i++) await producer.enqueue(request(`failing ${i}`), { tenant: 'alpha' });
    // a bare BullMQ worker fails all three for good: the view forgets them
    const keys = queueKeys(queue);
    const holding = new Redis(redis.url, { maxRetriesPerRequest: null });
    const holder = new Worker(queue, null, { connection: holding, prefix: keys.prefix, skipVersionCheck: true });
    try {
      for (let i = 0; i < 3; i++) {
        const token = `t${i}`;
        const job = await holder.getNextJob(token);
        await job?.moveToFailed(new UnrecoverableError('failed by the test'), token, false);
      }
    } finally {
      await holder.close();
      holding.disconnect();
    }
    await sweepAllTenantJobs(client, keys);
    expect(await rows()).toEqual([]);
    expect((await producer.counts()).failed).toBe(3);

    const retried = await runTollgate(['queue', 'retry-failed', '--json'], env);
    expect(jsonOf(retried)).toMatchObject({ retried: 3, failed: 0 });
    expect((await producer.counts()).waiting).toBe(3);
    expect(await rows()).toEqual([{ tenant: 'alpha', inFlight: 0, waiting: 3 }]);
  });

  it('a tenant name in Redis that no tollgate process writes (a foreign or tampered Redis) reaches the terminal quoted, never as control characters', async () => {
    const keys = queueKeys(queue);
    const hostile = '\u001b]0;owned\u0007\u001b[2J\nforged row';
    await client.hset(keys.tenantUnfinished, hostile, '2');
    try {
      const text = await runTollgate(['status'], env);
      expect(text.code).toBe(0);
      expect(text.stdout).toContain(JSON.stringify(hostile));
      const controls = [...text.stdout].filter((char) => char !== '\n' && (char < ' ' || char === '\u007f'));
      expect(controls).toEqual([]); // no control character but the line breaks
      expect(text.stdout).not.toContain('\nforged row');
      expect(await rows()).toContainEqual({ tenant: hostile, inFlight: 0, waiting: 2 }); // JSON keeps the name as it is
    } finally {
      await client.hdel(keys.tenantUnfinished, hostile);
    }
  });
});
