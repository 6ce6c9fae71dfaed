import { startRedis, uniqueName, type TestRedis } from '@tollgate/test-support';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLimiter, limiterKeys, limiterOptionsFor, readFleetLimits, type Limiter, type LimiterOptions } from '../src/index.js';

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

async function started(options: LimiterOptions): Promise<Limiter> {
  const limiter = createLimiter(options);
  open.push(limiter);
  await limiter.ready();
  return limiter;
}

describe('readFleetLimits (for tools: reads, never joins or writes)', () => {
  it('reads the limits in force and the effective concurrency; a limiter built from them joins without a warning', async () => {
    const name = uniqueName('read-limits');
    const rates = { requests: { limit: 1_000, intervalMs: 60_000 }, inputTokens: { limit: 400_000, intervalMs: 60_000, burst: 300_000 } };
    const limiter = await started({ redis: redis.url, name, concurrency: 6, rates, reserve: [{ maxPriority: 1, concurrency: 2 }], leaseTtlMs: 9_000 });
    await limiter.setConcurrency(4);
    const reading = await readFleetLimits(client, name);
    expect(reading?.effectiveConcurrency).toBe(4);
    expect(reading?.limits).toEqual({
      schema: 1,
      concurrency: 6,
      rates: { inputTokens: { limit: 400_000, intervalMs: 60_000, burst: 300_000 }, requests: { limit: 1_000, intervalMs: 60_000, burst: null } },
      reserve: [{ maxPriority: 1, concurrency: 2 }],
      leaseTtlMs: 9_000,
    });
    const differ: unknown[] = [];
    const again = createLimiter(limiterOptionsFor(reading!.limits, client, name));
    again.on('limitsDiffer', (event) => differ.push(event));
    open.push(again);
    await again.ready();
    expect(differ).toEqual([]);
    expect(again.fleetLimits?.version).toBe(reading?.version);
    expect((await readFleetLimits(client, name))?.effectiveConcurrency).toBe(4); // joining kept the adaptive decrease
  });

  it('is undefined for a name no limiter has used, and writes nothing', async () => {
    const name = uniqueName('never');
    expect(await readFleetLimits(client, name)).toBeUndefined();
    expect(await client.exists(limiterKeys(name).config)).toBe(0);
  });
});

describe('resume', () => {
  it('ends a pause at once: a waiter held by the pause is granted before it would have ended', async () => {
    const limiter = await started({ redis: redis.url, name: uniqueName('resume'), concurrency: 2 });
    const { pausedUntilMs } = await limiter.pause(60_000, 'operator');
    const waiting = limiter.acquire({ timeoutMs: 30_000 });
    await expect.poll(async () => (await limiter.snapshot()).waiting).toBe(1);
    expect((await limiter.resume()).pausedUntilMs).toBe(pausedUntilMs);
    const permit = await waiting;
    expect(permit.grantedAtMs).toBeLessThan(pausedUntilMs);
    await permit.release();
    expect((await limiter.snapshot()).pausedUntilMs).toBe(0);
    expect((await limiter.resume()).pausedUntilMs).toBe(0); // not paused: nothing to end
  });
});
