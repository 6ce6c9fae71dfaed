import { setTimeout as sleep } from 'node:timers/promises';
import { startRedis, uniqueName, type TestRedis } from '@tollgate/test-support';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  AcquireAbortedError,
  AcquireTimeoutError,
  CostExceedsCapacityError,
  InvalidArgumentError,
  InvalidConfigError,
  InvalidCostError,
  LeaseLostError,
  createLimiter,
  type Limiter,
  type LimiterOptions,
  type Permit,
} from '../src/index.js';

let redis: TestRedis;
const open: Limiter[] = [];

beforeAll(async () => {
  redis = await startRedis();
});

afterAll(async () => {
  await Promise.all(open.map((limiter) => limiter.close()));
  await redis.close();
});

type Options = Omit<LimiterOptions, 'redis' | 'name'> & { name?: string };

async function limiterFor(options: Options): Promise<Limiter> {
  const limiter = createLimiter({ redis: redis.url, name: uniqueName('unit'), ...options });
  open.push(limiter);
  await limiter.ready();
  return limiter;
}

/** A second process's view of the same limits (another owner id, other connections). */
async function peerOf(limiter: Limiter, overrides: Partial<LimiterOptions> = {}): Promise<Limiter> {
  const { redis: _redis, ...options } = limiter.options;
  return limiterFor({ ...options, name: limiter.name, ...overrides } as Options);
}

/** Resolves with the order in which the given acquires are granted. */
function grantOrder(acquires: Array<Promise<Permit>>, labels: string[]): { order: string[]; all: Promise<Permit[]> } {
  const order: string[] = [];
  const all = Promise.all(
    acquires.map((acquire, index) =>
      acquire.then((permit) => {
        order.push(labels[index] ?? String(index));
        return permit;
      }),
    ),
  );
  return { order, all };
}

/** Waits until the limiter's fleet-wide queue holds `count` waiters (they are queued in Redis). */
async function untilWaiting(limiter: Limiter, count: number): Promise<void> {
  for (let attempt = 0; attempt < 200; attempt++) {
    if ((await limiter.snapshot()).waiting === count) return;
    await sleep(10);
  }
  throw new Error(`never saw ${count} waiters`);
}

describe('options', () => {
  it('rejects invalid options at creation, naming the field and the value', () => {
    expect(() => createLimiter({ redis: redis.url, name: 'x', concurrency: 0 })).toThrow(InvalidConfigError);
    expect(() => createLimiter({ redis: redis.url, name: 'x', concurrency: 0 })).toThrow(/concurrency: .*\(got 0\)/);
    expect(() => createLimiter({ redis: redis.url, name: 'bad{tag}', concurrency: 1 })).toThrow(/name: .*\(got "bad\{tag\}"\)/);
    expect(() => createLimiter({ redis: redis.url, name: 'x' })).toThrow(/set concurrency, rates \(or pools with rates\), or both/);
    expect(() => createLimiter({ redis: 'http://nope', name: 'x', concurrency: 1 })).toThrow(/redis: .*"http:\/\/nope"/);
    expect(() => createLimiter({ redis: redis.url, name: 'x', concurrency: 2, reserve: [{ maxPriority: 1, concurrency: 2 }] })).toThrow(/reserve: /);
    expect(() => createLimiter({ redis: redis.url, name: 'x', rates: { inputTokens: { limit: -5, intervalMs: 60_000 } } })).toThrow(/rates\.inputTokens\.limit: .*\(got -5\)/);
    expect(() => createLimiter({ redis: redis.url, name: 'x', concurrency: 1, leaseTtlMs: 1000, heartbeatMs: 900 })).toThrow(/heartbeatMs/);
  });

  it('rejects a cost naming a dimension that is not configured', async () => {
    const limiter = await limiterFor({ rates: { inputTokens: { limit: 100, intervalMs: 60_000 } } });
    await expect(limiter.acquire({ cost: { outputTokens: 5 } })).rejects.toThrow(InvalidCostError);
    await expect(limiter.acquire({ cost: { inputTokens: -1 } })).rejects.toThrow(InvalidCostError);
    await expect(limiter.acquire({ priority: 10 })).rejects.toThrow(InvalidArgumentError);
  });
});

describe('a Redis client passed in', () => {
  it('may still be connecting, even with the offline queue off: ready() waits for it', async () => {
    const connection = new Redis(redis.url, { enableOfflineQueue: false, maxRetriesPerRequest: 0 });
    const limiter = createLimiter({ redis: connection, name: uniqueName('connecting'), concurrency: 1 });
    await limiter.ready();
    await (await limiter.acquire()).release();
    await limiter.close();
    expect(connection.status).toBe('ready'); // not ours to close
    connection.disconnect();
  });
});

describe('concurrency', () => {
  it('G1: grants at once while a slot is free, and queues when full', async () => {
    const limiter = await limiterFor({ concurrency: 2 });
    const first = await limiter.acquire();
    const second = await limiter.acquire();
    expect(second.fence).toBeGreaterThan(first.fence);
    let third: Permit | undefined;
    const pending = limiter.acquire().then((permit) => (third = permit));
    await untilWaiting(limiter, 1);
    expect(third).toBeUndefined();
    expect((await limiter.snapshot()).inFlight).toBe(2);
    await first.release();
    await pending;
    expect(third).toBeDefined();
    await second.release();
    await third?.release();
    expect(await limiter.snapshot()).toMatchObject({ inFlight: 0, waiting: 0 });
  });

  it('G5: hands a released slot to a waiter of another process (through its grants list)', async () => {
    const limiter = await limiterFor({ concurrency: 1 });
    const peer = await peerOf(limiter);
    const held = await limiter.acquire();
    const pending = peer.acquire();
    await untilWaiting(limiter, 1);
    await held.release();
    const permit = await pending;
    expect(permit.id.startsWith(peer.ownerId)).toBe(true);
    await permit.release();
  });

  it('G4: serves waiters first come, first served within a priority, across processes', async () => {
    const limiter = await limiterFor({ concurrency: 1 });
    const peer = await peerOf(limiter);
    const held = await limiter.acquire();
    const labels: string[] = [];
    const acquires: Array<Promise<Permit>> = [];
    for (let index = 0; index < 6; index++) {
      const by = index % 2 === 0 ? limiter : peer;
      acquires.push(by.acquire());
      labels.push(String(index));
      await untilWaiting(limiter, index + 1); // fixes the arrival order
    }
    const { order, all } = grantOrder(
      acquires.map((acquire) => acquire.then(async (permit) => (await sleep(5), permit.release().then(() => permit)))),
      labels,
    );
    await held.release();
    await all;
    expect(order).toEqual(['0', '1', '2', '3', '4', '5']);
  });

  it('G4: serves a more urgent priority first', async () => {
    const limiter = await limiterFor({ concurrency: 1 });
    const held = await limiter.acquire();
    const priorities = [9, 5, 0, 5, 1];
    const acquires: Array<Promise<Permit>> = [];
    for (const [index, priority] of priorities.entries()) {
      acquires.push(limiter.acquire({ priority }));
      await untilWaiting(limiter, index + 1);
    }
    const { order, all } = grantOrder(
      acquires.map((acquire) => acquire.then(async (permit) => (await permit.release(), permit))),
      priorities.map((priority, index) => `p${priority}#${index}`),
    );
    await held.release();
    await all;
    expect(order).toEqual(['p0#2', 'p1#4', 'p5#1', 'p5#3', 'p9#0']);
  });

  it('keeps reserved slots for urgent work: batch stops at concurrency − reserve, urgent is granted at once', async () => {
    const limiter = await limiterFor({ concurrency: 6, reserve: [{ maxPriority: 1, concurrency: 2 }] });
    const batch: Permit[] = [];
    const batchWaits = Array.from({ length: 6 }, () => limiter.acquire({ priority: 9 }).then((permit) => batch.push(permit)));
    await untilWaiting(limiter, 2);
    await vi.waitFor(() => expect(batch).toHaveLength(4));
    const urgent = await limiter.acquire({ priority: 0 });
    const urgentToo = await limiter.acquire({ priority: 1 });
    expect((await limiter.snapshot()).inFlight).toBe(6);
    await urgent.release();
    await urgentToo.release();
    expect(batch).toHaveLength(4); // the freed reserved slots do not go to batch work
    await batch[0]?.release();
    await untilWaiting(limiter, 1);
    await vi.waitFor(() => expect(batch).toHaveLength(5));
    for (const permit of batch) await permit.release();
    await Promise.all(batchWaits);
    for (const permit of batch) await permit.release();
    expect(await limiter.snapshot()).toMatchObject({ inFlight: 0, waiting: 0 });
  });

  it('setConcurrency takes effect for waiters, both ways', async () => {
    const limiter = await limiterFor({ concurrency: 4 });
    expect(await limiter.setConcurrency(1)).toBe(1);
    const first = await limiter.acquire();
    let second: Permit | undefined;
    const pending = limiter.acquire().then((permit) => (second = permit));
    await untilWaiting(limiter, 1);
    expect(second).toBeUndefined();
    expect(await limiter.setConcurrency(2)).toBe(2); // the raise admits the waiter at once
    await pending;
    expect(await limiter.setConcurrency(99)).toBe(4); // never above the configured limit
    expect(await limiter.setConcurrency(0)).toBe(1); // never below 1
    await first.release();
    await second?.release();
  });
});

describe('token buckets', () => {
  it('rejects at once a cost larger than a bucket can ever hold', async () => {
    const limiter = await limiterFor({ rates: { inputTokens: { limit: 1_000, intervalMs: 60_000 } } });
    const error = await limiter.acquire({ cost: { inputTokens: 1_001 } }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(CostExceedsCapacityError);
    expect(error).toMatchObject({ code: 'COST_EXCEEDS_CAPACITY', dimension: 'inputTokens', capacity: 1_000 });
  });

  it('G2: refills continuously: at 60 per minute the 61st request is granted about a second later, not next minute', async () => {
    const limiter = await limiterFor({ rates: { requests: { limit: 60, intervalMs: 60_000 } } });
    const emptyingFrom = performance.now();
    for (let index = 0; index < 60; index++) await (await limiter.acquire()).release();
    const emptyingMs = performance.now() - emptyingFrom; // a token refills each second meanwhile too (long on a loaded machine)
    const permit = await limiter.acquire({ timeoutMs: 10_000 });
    expect(permit.waitedMs + emptyingMs).toBeGreaterThan(900); // it had to wait for a refill…
    expect(permit.waitedMs).toBeLessThan(10_000); // …of one token, not of the minute
    await permit.release();
  });

  it('G2: settles actual usage: refunds what was not used, and a debt blocks everyone until repaid', async () => {
    const limiter = await limiterFor({ rates: { outputTokens: { limit: 60_000, intervalMs: 60_000 } } }); // 1,000 per second
    const reserved = await limiter.acquire({ cost: { outputTokens: 10_000 } });
    await reserved.release({ used: { outputTokens: 2_000 } }); // 8,000 come back
    let tokens = (await limiter.snapshot()).buckets.outputTokens?.tokens ?? 0;
    expect(tokens).toBeGreaterThan(57_900);
    expect(tokens).toBeLessThanOrEqual(60_000);

    const overrun = await limiter.acquire({ cost: { outputTokens: 59_000 } });
    await overrun.release({ used: { outputTokens: 59_000 + 1_100 } }); // 1,100 more than reserved: a debt
    tokens = (await limiter.snapshot()).buckets.outputTokens?.tokens ?? 0;
    expect(tokens).toBeLessThan(0);
    const waiter = await limiter.acquire({ cost: { outputTokens: 0 }, timeoutMs: 10_000 });
    expect((await limiter.snapshot()).buckets.outputTokens?.tokens).toBeGreaterThanOrEqual(0); // paid back first
    expect(waiter.waitedMs).toBeGreaterThan(0);
    await waiter.release();
  });

  it('G4: does not let small requests starve a large one at the head of the queue', async () => {
    const limiter = await limiterFor({ rates: { inputTokens: { limit: 60_000, intervalMs: 60_000 } } }); // 1 per ms
    await (await limiter.acquire({ cost: { inputTokens: 59_800 } })).release();
    const order: string[] = [];
    const large = limiter.acquire({ cost: { inputTokens: 500 } }).then((permit) => (order.push('large'), permit));
    await untilWaiting(limiter, 1);
    const small = limiter.acquire({ cost: { inputTokens: 10 } }).then((permit) => (order.push('small'), permit));
    await Promise.all([large, small]);
    expect(order).toEqual(['large', 'small']);
  });

  it('observe lowers a bucket to what the upstream reports, and never raises it', async () => {
    const limiter = await limiterFor({ rates: { inputTokens: { limit: 100_000, intervalMs: 60_000 } } });
    await limiter.observe({ inputTokens: { remaining: 31_000, resetMs: 4_000 } });
    const lowered = (await limiter.snapshot()).buckets.inputTokens?.tokens ?? 0;
    expect(lowered).toBeGreaterThanOrEqual(31_000);
    expect(lowered).toBeLessThan(32_000);
    await limiter.observe({ inputTokens: { remaining: 90_000 } });
    const after = (await limiter.snapshot()).buckets.inputTokens?.tokens ?? 0;
    expect(after).toBeLessThan(32_000);
  });
});

describe('pause', () => {
  it('holds every process until it ends, and extends but never shortens', async () => {
    const limiter = await limiterFor({ concurrency: 5 });
    const peer = await peerOf(limiter);
    const { pausedUntilMs } = await limiter.pause(600, 'upstream 429');
    expect((await limiter.pause(10)).pausedUntilMs).toBe(pausedUntilMs);
    const [mine, theirs] = await Promise.all([limiter.acquire(), peer.acquire()]);
    expect(mine.grantedAtMs).toBeGreaterThanOrEqual(pausedUntilMs);
    expect(theirs.grantedAtMs).toBeGreaterThanOrEqual(pausedUntilMs);
    await mine.release();
    await theirs.release();
  });
});

describe('leaving the queue', () => {
  it('abort and timeout remove the waiter and leak nothing', async () => {
    const limiter = await limiterFor({ concurrency: 1, rates: { requests: { limit: 100, intervalMs: 60_000 } } });
    const held = await limiter.acquire();
    const controller = new AbortController();
    const aborted = limiter.acquire({ signal: controller.signal });
    const timedOut = limiter.acquire({ timeoutMs: 150 });
    await untilWaiting(limiter, 2);
    controller.abort();
    await expect(aborted).rejects.toBeInstanceOf(AcquireAbortedError);
    await expect(timedOut).rejects.toBeInstanceOf(AcquireTimeoutError);
    await held.release();
    const snapshot = await limiter.snapshot();
    expect(snapshot).toMatchObject({ inFlight: 0, waiting: 0 });
    expect(snapshot.buckets.requests?.tokens).toBeGreaterThan(98); // the cancelled waiters took nothing
    await expect(limiter.acquire({ signal: AbortSignal.abort() })).rejects.toBeInstanceOf(AcquireAbortedError);
  });

  it('a double release is harmless', async () => {
    const limiter = await limiterFor({ concurrency: 1 });
    const permit = await limiter.acquire();
    const first = await permit.release();
    const second = await permit.release();
    expect(first).toEqual({ leaseLost: false });
    expect(second).toBe(first);
    expect((await limiter.snapshot()).inFlight).toBe(0);
  });

  it('run() releases the permit whatever the work does', async () => {
    const limiter = await limiterFor({ concurrency: 1 });
    await expect(limiter.run({}, () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(await limiter.run({}, async (permit) => permit.fence)).toBeGreaterThan(0);
    expect((await limiter.snapshot()).inFlight).toBe(0);
  });
});

describe('leases', () => {
  it('G6, G7: reclaims the lease of a process that stops heartbeating, grants the next waiter, and aborts the lost work', async () => {
    const options = { concurrency: 1, leaseTtlMs: 900, heartbeatMs: 300 };
    const connection = new Redis(redis.url, { maxRetriesPerRequest: 0, enableOfflineQueue: false });
    connection.on('error', () => {});
    const name = uniqueName('lease');
    const frozen = createLimiter({ redis: connection, name, ...options });
    open.push(frozen);
    const survivor = await limiterFor({ ...options, name });
    const held = await frozen.acquire();
    const lost = new Promise<unknown>((resolve) => held.signal.addEventListener('abort', () => resolve(held.signal.reason)));
    const next = survivor.acquire({ timeoutMs: 10_000 });
    await untilWaiting(survivor, 1);
    connection.disconnect(); // the holder is cut off: no more heartbeats, no release
    const permit = await next;
    expect(permit.id.startsWith(survivor.ownerId)).toBe(true);
    expect(await lost).toBeInstanceOf(LeaseLostError);
    await permit.release();
    await frozen.close();
  });

  it('G9: a process clock shifted by an hour changes nothing: only Redis TIME decides', async () => {
    const realNow = Date.now;
    const spy = vi.spyOn(Date, 'now').mockImplementation(() => realNow() + 3_600_000);
    try {
      const limiter = await limiterFor({ concurrency: 1, rates: { requests: { limit: 600, intervalMs: 60_000 } }, leaseTtlMs: 2_000 });
      const held = await limiter.acquire();
      const waiting = limiter.acquire({ timeoutMs: 5_000 });
      await untilWaiting(limiter, 1);
      await held.release();
      const permit = await waiting;
      const snapshot = await limiter.snapshot();
      expect(snapshot.leases[0]?.expiresAtMs).toBeLessThanOrEqual(snapshot.nowMs + 2_000);
      expect(Math.abs(permit.grantedAtMs - snapshot.nowMs)).toBeLessThan(5_000);
      await permit.release();
    } finally {
      spy.mockRestore();
    }
  });
});
