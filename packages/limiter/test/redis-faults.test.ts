import { setTimeout as sleep } from 'node:timers/promises';
import { startRedis, uniqueName, type TestRedis } from '@tollgate/test-support';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LimiterUnavailableError, createLimiter, type Limiter, type LimiterOptions } from '../src/index.js';

const REDIS_TIMEOUT_MS = 300;
/** Slack for the event loop and the process scheduler on a busy 2-core machine. */
const SCHEDULING_SLACK_MS = 700;

let redis: TestRedis;
let open: Limiter[] = [];

beforeEach(async () => {
  redis = await startRedis({ dedicated: true, appendonly: true }); // a crash keeps the data, unless a test wipes it
});

afterEach(async () => {
  await Promise.all(open.map((limiter) => limiter.close()));
  open = [];
  await redis.close();
});

async function limiterFor(name: string, options: Partial<LimiterOptions> = {}): Promise<Limiter> {
  const limiter = createLimiter({ redis: redis.url, name, concurrency: 3, redisTimeoutMs: REDIS_TIMEOUT_MS, leaseTtlMs: 3_000, heartbeatMs: 500, ...options });
  limiter.on('redisError', () => {}); // expected while Redis is down
  open.push(limiter);
  await limiter.ready();
  return limiter;
}

async function eventually<T>(attempt: () => Promise<T>, deadlineMs: number): Promise<T> {
  const deadline = performance.now() + deadlineMs;
  for (;;) {
    try {
      return await attempt();
    } catch (error) {
      if (performance.now() > deadline) throw error;
      await sleep(100);
    }
  }
}

describe('fail closed', () => {
  it('G8: rejects acquire with LimiterUnavailableError while Redis is down, and works again once it is back', async () => {
    const limiter = await limiterFor(uniqueName('down'));
    await (await limiter.acquire()).release();
    await redis.stop();
    const started = performance.now();
    const error = await limiter.acquire().catch((caught: unknown) => caught);
    const elapsedMs = performance.now() - started;
    expect(error).toBeInstanceOf(LimiterUnavailableError);
    expect(elapsedMs).toBeLessThan(REDIS_TIMEOUT_MS + SCHEDULING_SLACK_MS);

    await redis.restart({ keepData: true });
    const permit = await eventually(() => limiter.acquire(), 10_000); // same process, no restart
    await permit.release();
  });

  it('G8: rejects within redisTimeoutMs when Redis is frozen (connected, but answering nothing)', async () => {
    const limiter = await limiterFor(uniqueName('frozen'));
    await redis.pause();
    try {
      const started = performance.now();
      await expect(limiter.acquire()).rejects.toBeInstanceOf(LimiterUnavailableError);
      expect(performance.now() - started).toBeLessThan(REDIS_TIMEOUT_MS + SCHEDULING_SLACK_MS);
    } finally {
      await redis.resume();
    }
    const permit = await eventually(() => limiter.acquire(), 10_000);
    await permit.release();
    // the acquire that timed out may have run late: it was cancelled, so nothing leaked
    await eventually(async () => expect((await limiter.snapshot()).inFlight).toBe(0), 5_000);
  });
});

describe('a release that Redis missed', () => {
  it('is sent again when Redis is back, so the slot returns before its lease would have expired', async () => {
    const limiter = await limiterFor(uniqueName('unsent'), { leaseTtlMs: 10_000, heartbeatMs: 2_000 });
    const permit = await limiter.acquire();
    const [lease] = (await limiter.snapshot()).leases;
    await redis.stop();
    await expect(permit.release()).rejects.toBeInstanceOf(LimiterUnavailableError);
    await redis.restart({ keepData: true });
    const snapshot = await eventually(async () => {
      const current = await limiter.snapshot();
      expect(current.inFlight).toBe(0);
      return current;
    }, 8_000);
    expect(snapshot.nowMs).toBeLessThan(lease?.expiresAtMs ?? 0); // released, not expired
  });
});

describe('Redis lost its data', () => {
  it('G1: processes re-register the leases they hold, so the limit still holds after a restart without persistence', async () => {
    const name = uniqueName('lost');
    const holder = await limiterFor(name);
    const other = await limiterFor(name);
    const held = [await holder.acquire(), await holder.acquire()];
    await redis.restart({ keepData: false }); // an empty dataset: no epoch, no leases
    // the holder notices at its next heartbeat (or on reconnect) and re-registers its 2 leases
    const granted = [await eventually(() => other.acquire({ timeoutMs: 5_000 }), 10_000)];
    const third = other.acquire({ timeoutMs: 2_000 }).then(
      (permit) => granted.push(permit),
      () => undefined,
    );
    await third;
    const snapshot = await other.snapshot();
    expect(snapshot.inFlight).toBeLessThanOrEqual(3);
    expect(snapshot.leases.map((lease) => lease.id)).toEqual(expect.arrayContaining(held.map((permit) => permit.id)));
    expect(granted).toHaveLength(1); // 2 re-registered + 1 new = the limit of 3
    for (const permit of [...held, ...granted]) await permit.release();
  });
});
