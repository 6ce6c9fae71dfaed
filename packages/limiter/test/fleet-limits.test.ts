import { startRedis, uniqueName, type TestRedis } from '@tollgate/test-support';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLimiter, limiterOptionsFor, readFleetLimits, type Limiter } from '../src/index.js';

let redis: TestRedis;
let client: Redis;
const open: Limiter[] = [];

beforeAll(async () => {
  redis = await startRedis();
  client = new Redis(redis.url);
});

afterAll(async () => {
  await Promise.all(open.map((limiter) => limiter.close()));
  client.disconnect();
  await redis.close();
});

async function started(name: string, options: Partial<Parameters<typeof createLimiter>[0]> = {}): Promise<Limiter> {
  const limiter = createLimiter({ redis: redis.url, name, concurrency: 6, ...options });
  open.push(limiter);
  await limiter.ready();
  return limiter;
}

describe('readFleetLimits', () => {
  it('reads back what ready() wrote, and its options write the same limits again', async () => {
    const name = uniqueName('read-limits');
    const rates = { requests: { limit: 1_000, intervalMs: 60_000 }, inputTokens: { limit: 400_000, intervalMs: 60_000, burst: 300_000 }, perSecond: { limit: 7, intervalMs: 1_000 } };
    const limiter = await started(name, { rates, reserve: [{ maxPriority: 1, concurrency: 2 }], leaseTtlMs: 9_000 });
    await limiter.setConcurrency(4);
    const limits = await readFleetLimits(client, name);
    expect(limits).toEqual({
      concurrency: 6,
      effectiveConcurrency: 4,
      rates: { requests: { limit: 1_000, intervalMs: 60_000 }, inputTokens: { limit: 400_000, intervalMs: 60_000, burst: 300_000 }, perSecond: { limit: 420, intervalMs: 60_000, burst: 7 } },
      reserve: [{ maxPriority: 1, concurrency: 2 }],
      leaseTtlMs: 9_000,
    });
    const before = await client.hgetall(`{tollgate:${name}}:config`);
    const again = createLimiter(limiterOptionsFor(limits!, client, name));
    open.push(again);
    await again.ready();
    const after = await client.hgetall(`{tollgate:${name}}:config`);
    const { version: _v1, ...beforeFields } = before;
    const { version: _v2, ...afterFields } = after;
    expect(afterFields).toEqual(beforeFields); // the same limits, the adaptive decrease kept
  });

  it('is undefined for a name no limiter has used, and writes nothing', async () => {
    const name = uniqueName('never');
    expect(await readFleetLimits(client, name)).toBeUndefined();
    expect(await client.exists(`{tollgate:${name}}:config`)).toBe(0);
  });
});

describe('resume', () => {
  it('ends a pause at once: a waiter held by the pause is granted before it would have ended', async () => {
    const limiter = await started(uniqueName('resume'));
    const { pausedUntilMs } = await limiter.pause(60_000, 'operator');
    const waiting = limiter.acquire({ timeoutMs: 30_000 });
    expect((await limiter.snapshot()).waiting).toBe(1);
    expect((await limiter.resume()).pausedUntilMs).toBe(pausedUntilMs);
    const permit = await waiting;
    expect(permit.grantedAtMs).toBeLessThan(pausedUntilMs);
    await permit.release();
    expect((await limiter.snapshot()).pausedUntilMs).toBe(0);
    expect((await limiter.resume()).pausedUntilMs).toBe(0); // not paused: nothing to end
  });
});
