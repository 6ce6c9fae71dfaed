/**
 * Issue 12 (cases 5, 10, 11, 12 and the `close()`/`timeoutMs` items) and issue 17: every acquire
 * settles, once, with a permit or a TollgateError, and leaves nothing behind in Redis.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { startRedis, uniqueName, type TestRedis } from '@tollgate/test-support';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  AcquireAbortedError,
  AcquireTimeoutError,
  CostExceedsCapacityError,
  InvalidArgumentError,
  LimiterClosedError,
  TollgateError,
  createLimiter,
  type Limiter,
  type LimiterOptions,
  type Permit,
} from '../src/index.js';
import { STUCK_MS, outcome, settledWithin, until } from './support.js';

let redis: TestRedis;
let admin: Redis;
const open: Limiter[] = [];

beforeAll(async () => {
  redis = await startRedis({ dedicated: true }); // FLUSHALL
  admin = new Redis(redis.url);
});

afterEach(async () => {
  await Promise.all(open.splice(0).map((limiter) => limiter.close()));
});

afterAll(async () => {
  admin.disconnect();
  await redis.close();
});

/** Long leases and heartbeats unless a test says otherwise: no heartbeat pumps or notices anything during a test. */
async function limiterFor(name: string, options: Partial<LimiterOptions> = {}): Promise<Limiter> {
  const limiter = createLimiter({ redis: redis.url, name, concurrency: 1, leaseTtlMs: 60_000, heartbeatMs: 30_000, ...options });
  limiter.on('redisError', () => {});
  open.push(limiter);
  await limiter.ready();
  return limiter;
}

describe('an abort during the acquire round trip (case 11)', () => {
  it('with a free slot: AcquireAbortedError, and no lease is left', async () => {
    const limiter = await limiterFor(uniqueName('abort-trip'));
    const controller = new AbortController();
    const acquiring = limiter.acquire({ signal: controller.signal });
    controller.abort(); // the acquire script is on its way
    await expect(acquiring).rejects.toBeInstanceOf(AcquireAbortedError);
    expect(await until(async () => (await limiter.snapshot()).inFlight === 0, STUCK_MS)).toBe(true);
    expect(limiter.heldCount).toBe(0);
  });

  it('when it is queued: AcquireAbortedError at once, and the queue entry is removed', async () => {
    const limiter = await limiterFor(uniqueName('abort-queued'));
    const held = await limiter.acquire();
    const controller = new AbortController();
    const acquiring = limiter.acquire({ signal: controller.signal });
    controller.abort();
    expect(await outcome(settledWithin(acquiring, STUCK_MS))).toBeInstanceOf(AcquireAbortedError);
    expect((await limiter.snapshot()).waiting).toBe(0);
    await held.release();
    expect((await limiter.snapshot()).inFlight).toBe(0);
  });
});

describe('close() during an in-flight acquire', () => {
  it('rejects it with LimiterClosedError and leaves no queue entry and no lease', async () => {
    const name = uniqueName('close-trip');
    const holder = await limiterFor(name);
    const closing = await limiterFor(name);
    const held = await holder.acquire();
    await admin.call('CLIENT', 'PAUSE', '5000', 'WRITE'); // holds the acquire script on its way
    let acquiring: Promise<Permit | unknown>;
    try {
      acquiring = outcome(closing.acquire()); // will be queued behind `held`
      await sleep(50);
      const closed = closing.close();
      await sleep(50);
      await admin.call('CLIENT', 'UNPAUSE');
      await closed;
    } finally {
      await admin.call('CLIENT', 'UNPAUSE');
    }
    expect(await settledWithin(acquiring, STUCK_MS)).toBeInstanceOf(LimiterClosedError);
    expect((await holder.snapshot()).waiting).toBe(0);
    await held.release();
    expect((await holder.snapshot()).inFlight).toBe(0);
  });
});

describe('timeoutMs beyond what a timer can wait', () => {
  it('is rejected naming the field; the largest allowed value is honoured, not fired at once', async () => {
    const limiter = await limiterFor(uniqueName('timeout-max'));
    const held = await limiter.acquire();
    const tooLong = await outcome(limiter.acquire({ timeoutMs: 2 ** 31 }));
    expect(tooLong).toBeInstanceOf(InvalidArgumentError);
    expect(String(tooLong)).toMatch(/timeoutMs.*2147483648/);
    const controller = new AbortController();
    const longest = limiter.acquire({ timeoutMs: 2 ** 31 - 1, signal: controller.signal });
    await sleep(200); // a timer given more than 2^31 − 1 ms fires after 1 ms
    controller.abort();
    expect(await outcome(longest)).toBeInstanceOf(AcquireAbortedError); // still waiting when aborted
    await held.release();
  });
});

describe('an acquire deadline is never early (checker seed 1938772118)', () => {
  it('AcquireTimeoutError comes no sooner than timeoutMs after the call, by performance.now()', async () => {
    const limiter = await limiterFor(uniqueName('timeout-early'));
    const held = await limiter.acquire();
    const early: string[] = [];
    // a Node timer fires up to ~2 ms early by performance.now() (libuv's coarse loop clock in whole ms);
    // so many deadlines, at sub-ms offsets, meet that often
    for (let attempt = 0; attempt < 40; attempt++) {
      const timeoutMs = 5 + attempt / 7;
      const calledAt = performance.now();
      const error = await outcome(limiter.acquire({ timeoutMs }));
      const took = performance.now() - calledAt;
      expect(error).toBeInstanceOf(AcquireTimeoutError);
      if (took < timeoutMs) early.push(`timeoutMs ${timeoutMs.toFixed(2)}: rejected after ${took.toFixed(2)} ms`);
    }
    expect(early).toEqual([]);
    await held.release();
  });
});

describe('one waiter queued twice (case 5)', () => {
  it('an acquire that notices the data loss is queued once, not once by the resync and once more by itself', async () => {
    const limiter = await limiterFor(uniqueName('resync-twice'));
    const held = await limiter.acquire();
    const first = limiter.acquire();
    expect(await until(async () => (await limiter.snapshot()).waiting === 1, STUCK_MS)).toBe(true);
    await admin.flushall(); // Redis loses its data; no heartbeat notices before the next acquire does
    const second = limiter.acquire(); // resync: re-registers `held`, submits the waiters again, then itself
    expect(await until(async () => (await limiter.snapshot()).waiting >= 2, STUCK_MS)).toBe(true);
    await sleep(300); // any resubmission still on its way lands
    expect((await limiter.snapshot()).waiting).toBe(2);
    void first.catch(() => {});
    void second.catch(() => {});
    await held.release();
  });
});

describe('one failed resubmission strands the rest (case 10)', () => {
  it('after the process was presumed dead, every waiter settles: one that fails is rejected, the others are granted', async () => {
    const name = uniqueName('resubmit');
    const prefix = `{tollgate:${name}}`;
    const limiter = await limiterFor(name, { rates: { tokens: { limit: 100, intervalMs: 1_000 } }, leaseTtlMs: 2_000, heartbeatMs: 200 });
    const held = await limiter.acquire({ cost: { tokens: 1 } });
    const big = outcome(limiter.acquire({ cost: { tokens: 50 } }));
    const small = [limiter.acquire({ cost: { tokens: 1 } }), limiter.acquire({ cost: { tokens: 1 } })];
    expect(await until(async () => (await limiter.snapshot()).waiting === 3, STUCK_MS)).toBe(true);
    // the process was presumed dead (its mark in the owners zset expired) and its waiters were dropped;
    // meanwhile the bucket's capacity was lowered below the first waiter's cost, so its resubmission fails
    await admin.zrem(`${prefix}:owners`, limiter.ownerId);
    await admin.del(`${prefix}:waiting`);
    await admin.hset(`${prefix}:config`, 'cap:tokens', 10);
    await admin.hincrby(`${prefix}:config`, 'version', 1);
    expect(await until(async () => (await limiter.snapshot()).waiting === 2, STUCK_MS)).toBe(true); // the next heartbeat resubmits
    expect(await settledWithin(big, STUCK_MS)).toBeInstanceOf(CostExceedsCapacityError);
    await held.release();
    for (const acquiring of small) {
      const permit = await settledWithin(acquiring, STUCK_MS);
      expect(permit).not.toBe('stuck');
      await (permit as Permit).release();
    }
  });
});

describe('an apply that is the first call after a freeze', () => {
  it('hears that the process was presumed dead: the waiters a pump dropped meanwhile are submitted again', async () => {
    const name = uniqueName('apply-after-freeze');
    const prefix = `{tollgate:${name}}`;
    const holder = await limiterFor(name);
    const waiter = await limiterFor(name); // heartbeats every 30 s: none during the test
    const held = await holder.acquire();
    const waiting = waiter.acquire(); // no deadline: only a grant ends it
    expect(await until(async () => (await holder.snapshot()).waiting === 1, STUCK_MS)).toBe(true);
    // as a freeze past the lease leaves it: the process's mark has passed and another process's pump dropped its waiter
    const [member] = await admin.zrange(`${prefix}:waiting`, '0', '0');
    await admin
      .multi()
      .zadd(`${prefix}:owners`, 0, waiter.ownerId)
      .zrem(`${prefix}:waiting`, member ?? '')
      .exec();
    // the first call after the freeze: configure marks the process alive again; before the fix it did not say it
    // had been presumed dead, every later heartbeat answered wasAlive 1, and the waiter waited for ever
    await waiter.applyLimits();
    expect(await until(async () => (await holder.snapshot()).waiting === 1, STUCK_MS)).toBe(true);
    await held.release();
    const permit = await settledWithin(waiting, STUCK_MS);
    expect(permit).not.toBe('stuck');
    await (permit as Permit).release();
  });
});

describe('earlier wake times (case 12)', () => {
  it("a refund by a process with no waiters wakes another process's waiter at the earlier time", async () => {
    const name = uniqueName('wake');
    // 0.01 tokens/ms: a waiter that needs 90 with 10 left fits after 8 s; with 80 left, after 1 s
    const rates = { tokens: { limit: 100, intervalMs: 10_000 } };
    const refunder = await limiterFor(name, { concurrency: 5, rates });
    const waiter = await limiterFor(name, { concurrency: 5, rates });
    const reserved = await refunder.acquire({ cost: { tokens: 90 } }); // 10 left
    const started = performance.now();
    const waiting = waiter.acquire({ cost: { tokens: 90 } }); // its own pump timer: in 8 s
    expect(await until(async () => (await waiter.snapshot()).waiting === 1, STUCK_MS)).toBe(true);
    await reserved.release({ used: { tokens: 20 } }); // 70 back: 80 left, the waiter fits in 1 s
    const permit = await waiting;
    // granted at the wake time only the refunder heard of (1 s), long before the 8 s the waiter's own
    // timer was set for, which is when it was granted before the fix (Redis computes that time exactly)
    expect(performance.now() - started).toBeLessThan(5_000);
    await permit.release();
  });
});

describe('internals are not reachable from outside (issue 17)', () => {
  it('a permit exposes no writable renewedUntil and no loseLease; the limiter no releasePermit', async () => {
    const limiter = await limiterFor(uniqueName('internals'));
    const permit = await limiter.acquire();
    expect('renewedUntil' in permit).toBe(false);
    expect('loseLease' in permit).toBe(false);
    expect('releasePermit' in limiter).toBe(false);
    expect(permit.leaseLost).toBe(false);
    await permit.release();
  });

  it('bad values passed to limiter methods throw InvalidArgumentError naming the field and the value, cut short', async () => {
    const limiter = await limiterFor(uniqueName('arguments'));
    const cases: Array<[string, () => Promise<unknown>]> = [
      ['priority', () => limiter.acquire({ priority: 1.5 })],
      ['timeoutMs', () => limiter.acquire({ timeoutMs: -1 })],
      ['timeoutMs', () => limiter.acquire({ timeoutMs: Number.NaN })],
      ['ms', () => limiter.pause(Number.POSITIVE_INFINITY)],
      ['concurrency', () => limiter.setConcurrency(2.5)],
      ['priority', () => limiter.acquire({ priority: 'x'.repeat(5_000) as unknown as number })],
    ];
    for (const [field, call] of cases) {
      const error = await call().catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(InvalidArgumentError);
      expect(error).toBeInstanceOf(TollgateError);
      expect(error).toMatchObject({ code: 'INVALID_ARGUMENT', field });
      expect((error as Error).message).toMatch(new RegExp(`^${field}: `));
      expect((error as Error).message.length).toBeLessThan(400);
    }
  });
});
