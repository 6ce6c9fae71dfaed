/**
 * Pools (DESIGN §9, issue 13): one limiter, one concurrency limit shared by every pool, and per pool its
 * own buckets and its own lane of the queue. A waiter blocked on one pool's buckets or pause never delays
 * another pool's; within one pool the head of line still holds (G4); across pools, waiters that only wait
 * for a slot are served in (priority, arrival) order.
 */
import { uniqueName } from '@tollgate/test-support';
import { describe, expect, it } from 'vitest';
import { CostExceedsCapacityError, InvalidArgumentError, InvalidConfigError, createLimiter, type Limiter, type Permit } from '../src/index.js';
import { settledWithin, useDebugRedis } from './support.js';

const fixture = useDebugRedis();

/** Refills too slowly to matter within a test: 1,000 tokens a day. */
const DAY = 24 * 60 * 60 * 1000;
const slow = (limit: number) => ({ limit, intervalMs: DAY });

/** Resolves to 'pending' when the promise has not settled within `ms`. */
async function pendingAfter(promise: Promise<unknown>, ms = 300): Promise<unknown> {
  const result = await settledWithin(
    promise.then(
      () => 'granted',
      (error: unknown) => error,
    ),
    ms,
  );
  return result === 'stuck' ? 'pending' : result;
}

function twoPools(name: string, concurrency = 10): Promise<Limiter> {
  return fixture.limiter({ name, concurrency, pools: { sonnet: { requests: slow(1), tokens: slow(1_000) }, haiku: { requests: slow(1_000), tokens: slow(1_000) } } });
}

describe('pools: one limiter, a lane per pool', () => {
  it("a waiter blocked on one pool's bucket never delays another pool's waiters", async () => {
    // the blocked pool is the first lane (names sort), so its waiter is the queue's first entry
    const limiter = await fixture.limiter({
      name: uniqueName('pools-hol'),
      concurrency: 10,
      pools: { alpha: { requests: slow(1) }, beta: { requests: slow(1_000), tokens: slow(1_000) } },
    });
    const first = await limiter.acquire({ pool: 'alpha' }); // alpha's only request of the day
    expect(first.cost).toEqual({ 'alpha/requests': 1 });
    const blocked = limiter.acquire({ pool: 'alpha', timeoutMs: 5_000 }); // queued: alpha/requests is empty
    expect(await pendingAfter(blocked)).toBe('pending');
    // beta comes after the queued alpha waiter, and is granted at once: no head-of-line across pools
    const beta = await settledWithin(limiter.acquire({ pool: 'beta', cost: { tokens: 10 } }), 1_000);
    expect(beta).not.toBe('stuck');
    expect((beta as Permit).cost).toEqual({ 'beta/requests': 1, 'beta/tokens': 10 });
    const snapshot = await limiter.snapshot();
    expect(snapshot.pools).toEqual({ alpha: { pausedUntilMs: 0, waiting: 1 }, beta: { pausedUntilMs: 0, waiting: 0 } });
    expect(snapshot.buckets['beta/tokens']?.tokens).toBeCloseTo(990, 0);
    await (beta as Permit).release({ used: { tokens: 4 } }); // the pool's dimensions by their plain names
    expect((await limiter.snapshot()).buckets['beta/tokens']?.tokens).toBeCloseTo(996, 0);
    // and beta's waiters queued behind a full slot are not held by alpha's head either
    const slots = await Promise.all(Array.from({ length: 9 }, () => limiter.acquire({ pool: 'beta' })));
    const queued = limiter.acquire({ pool: 'beta' }); // 10 in flight (alpha's first + 9): it waits for a slot
    expect(await pendingAfter(queued)).toBe('pending');
    await slots[0]?.release();
    expect(await settledWithin(queued, 1_000)).not.toBe('stuck');
    await Promise.all([first.release(), ...slots.slice(1).map((permit) => permit.release()), queued.then((permit) => permit.release())]);
    blocked.catch(() => {});
  });

  it('within a pool the head of line holds: a small request waits behind a large one of its pool', async () => {
    const limiter = await twoPools(uniqueName('pools-g4'));
    const held = await limiter.acquire({ pool: 'haiku', cost: { tokens: 900 } }); // 100 left
    const large = limiter.acquire({ pool: 'haiku', cost: { tokens: 500 }, timeoutMs: 5_000 });
    expect(await pendingAfter(large)).toBe('pending');
    const small = limiter.acquire({ pool: 'haiku', cost: { tokens: 10 }, timeoutMs: 5_000 }); // fits, but behind the large one
    expect(await pendingAfter(small)).toBe('pending');
    await held.release({ used: { tokens: 0 } }); // 1,000 back: the large one first, then the small one
    const [largePermit, smallPermit] = await Promise.all([large, small]);
    expect(largePermit.fence).toBeLessThan(smallPermit.fence);
    await Promise.all([largePermit.release(), smallPermit.release()]);
  });

  it('waiters of every pool that wait for a slot are served in priority, then arrival order', async () => {
    const limiter = await twoPools(uniqueName('pools-order'), 1);
    const held = await limiter.acquire({ pool: 'haiku' });
    const order: string[] = [];
    const waiting = [
      { pool: 'haiku', priority: 5, label: 'haiku-5' },
      { pool: 'sonnet', priority: 5, label: 'sonnet-5' },
      { pool: 'haiku', priority: 2, label: 'haiku-2' },
    ].map(async ({ pool, priority, label }, i) => {
      await new Promise((resolve) => setTimeout(resolve, 30 * i)); // arrival order
      const permit = await limiter.acquire({ pool, priority });
      order.push(label);
      await permit.release();
    });
    await new Promise((resolve) => setTimeout(resolve, 200));
    await held.release();
    await Promise.all(waiting);
    expect(order).toEqual(['haiku-2', 'haiku-5', 'sonnet-5']);
  });

  it("a pool's pause holds only that pool; resume of the pool ends it", async () => {
    const limiter = await twoPools(uniqueName('pools-pause'));
    // haiku is the first lane: its paused waiter is the queue's first entry
    const { pausedUntilMs } = await limiter.pause(60_000, 'haiku ITPM 429', { pool: 'haiku' });
    expect((await limiter.snapshot()).pools.haiku?.pausedUntilMs).toBe(pausedUntilMs);
    const haiku = limiter.acquire({ pool: 'haiku', timeoutMs: 10_000 });
    expect(await pendingAfter(haiku)).toBe('pending');
    const sonnet = await settledWithin(limiter.acquire({ pool: 'sonnet' }), 1_000);
    expect(sonnet).not.toBe('stuck');
    await (sonnet as Permit).release();
    await limiter.resume({ pool: 'haiku' });
    const granted = await settledWithin(haiku, 2_000);
    expect(granted).not.toBe('stuck');
    await (granted as Permit).release();
  });

  it("a grant to another process's waiter of a pool reaches it (its channel), in that pool", async () => {
    const name = uniqueName('pools-two-processes');
    const one = await twoPools(name, 1);
    const other = await twoPools(name, 1);
    const held = await one.acquire({ pool: 'sonnet' });
    const waiting = other.acquire({ pool: 'haiku', cost: { tokens: 5 } });
    expect(await pendingAfter(waiting)).toBe('pending');
    await held.release(); // one's release pumps: the grant goes to the other process
    const granted = await settledWithin(waiting, 2_000);
    expect(granted).not.toBe('stuck');
    expect((granted as Permit).cost).toEqual({ 'haiku/requests': 1, 'haiku/tokens': 5 });
    await (granted as Permit).release();
  });

  it('names the pool wrong: required with pools, refused without, unknown refused; a cost outside the pool is refused', async () => {
    const pooled = await twoPools(uniqueName('pools-args'));
    await expect(pooled.acquire({})).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(pooled.acquire({ pool: 'opus' })).rejects.toThrow(/one of the pools of limiter .*\(haiku, sonnet\)/);
    await expect(pooled.acquire({ pool: 'haiku', cost: { 'sonnet/tokens': 1 } })).rejects.toThrow(/not a configured rate of pool haiku/);
    await expect(pooled.pause(1_000, undefined, { pool: 'opus' })).rejects.toBeInstanceOf(InvalidArgumentError);
    const plain = await fixture.limiter({ name: uniqueName('pools-none'), concurrency: 2 });
    await expect(plain.acquire({ pool: 'haiku' })).rejects.toThrow(/has no pools/);
    expect(plain.pools).toBeUndefined();
    expect(pooled.pools).toEqual(['haiku', 'sonnet']);
    expect(pooled.poolDimensions('haiku')).toEqual(['requests', 'tokens']);
    expect(() => createLimiter({ redis: fixture.redis.url, name: 'x', rates: { tokens: slow(1) }, pools: { a: {} } })).toThrow(InvalidConfigError);
    expect(() => createLimiter({ redis: fixture.redis.url, name: 'x', pools: { 'a/b': { tokens: slow(1) } } })).toThrow(/pools\.a\/b/);
  });

  it('an apply that adds a pool keeps queued waiters in order in their pools; one that removes a pool rejects its waiters', async () => {
    const name = uniqueName('pools-apply');
    const limiter = await twoPools(name, 1);
    const held = await limiter.acquire({ pool: 'haiku' });
    const sonnet = limiter.acquire({ pool: 'sonnet', cost: { tokens: 5 } }); // waits for the slot
    const haiku = limiter.acquire({ pool: 'haiku', cost: { tokens: 5 } });
    expect(await pendingAfter(haiku)).toBe('pending');
    // 'opus' sorts between haiku and sonnet: sonnet's lane moves from 1 to 2, its waiter with it
    await limiter.applyLimits({ concurrency: 1, pools: { haiku: { requests: slow(1_000), tokens: slow(1_000) }, opus: {}, sonnet: { requests: slow(5), tokens: slow(1_000) } } });
    expect((await limiter.snapshot()).pools).toEqual({ haiku: { pausedUntilMs: 0, waiting: 1 }, opus: { pausedUntilMs: 0, waiting: 0 }, sonnet: { pausedUntilMs: 0, waiting: 1 } });
    expect(limiter.pools).toEqual(['haiku', 'opus', 'sonnet']);
    await held.release();
    const first = await sonnet; // it came first
    expect(await pendingAfter(haiku)).toBe('pending');
    await first.release();
    const second = await haiku;
    await second.release();

    const blocker = await limiter.acquire({ pool: 'haiku' });
    const orphan = limiter.acquire({ pool: 'opus' }); // a pool without buckets: only the slot limits it
    const sonnetLate = limiter.acquire({ pool: 'sonnet', cost: { tokens: 1_000 } });
    sonnetLate.catch(() => {}); // rejected while the orphan's refusal is on its way: asserted below
    expect(await pendingAfter(orphan)).toBe('pending');
    await limiter.applyLimits({ concurrency: 1, pools: { haiku: { requests: slow(1_000), tokens: slow(1_000) }, sonnet: { requests: slow(5), tokens: slow(10) } } });
    await expect(orphan).rejects.toThrow(/pool: expected one of the pools of limiter .* \(haiku, sonnet\) \(got "opus"\)/);
    await expect(sonnetLate).rejects.toBeInstanceOf(CostExceedsCapacityError); // 1,000 tokens no longer fit its pool's 10
    await blocker.release();
    expect((await limiter.snapshot()).waiting).toBe(0);
  });

  it("a process that has not heard of an apply changing the pools yet reads the fleet's limits again instead of refusing the call", async () => {
    const name = uniqueName('pools-stale');
    const one = await twoPools(name);
    const other = await twoPools(name); // its heartbeat (5 s) would bring the new limits much later than the calls below
    await one.applyLimits({ concurrency: 10, rates: { requests: slow(1_000) } }); // no pools any more
    expect(other.pools).toEqual(['haiku', 'sonnet']); // stale
    const plain = await settledWithin(other.acquire({}), 1_000);
    expect(plain).not.toBe('stuck');
    expect((plain as Permit).cost).toEqual({ requests: 1 });
    expect(other.pools).toBeUndefined();
    await (plain as Permit).release();
    await one.applyLimits({ concurrency: 10, pools: { opus: { requests: slow(1_000) } } }); // pools again, another one
    const pooled = await other.acquire({ pool: 'opus' });
    expect(pooled.cost).toEqual({ 'opus/requests': 1 });
    await pooled.release();
    await expect(other.acquire({ pool: 'haiku' })).rejects.toThrow(/one of the pools of limiter .* \(opus\)/); // read again, still refused
    // a pool this process still believes in, which Redis no longer has: Redis refuses it, the process reads the
    // limits and refuses the call naming the pools in force; a pool kept by the apply is granted
    await one.applyLimits({ concurrency: 10, pools: { opus: { requests: slow(1_000) }, sonnet: { requests: slow(1_000) } } });
    await other.acquire({ pool: 'sonnet' }).then((permit) => permit.release()); // other reads them (opus, sonnet)
    await one.applyLimits({ concurrency: 10, pools: { opus: { requests: slow(1_000) } } });
    expect(other.pools).toEqual(['opus', 'sonnet']); // stale again
    await expect(other.acquire({ pool: 'sonnet' })).rejects.toThrow(/pool: expected one of the pools of limiter .* \(opus\) \(got "sonnet"\)/);
    expect(other.pools).toEqual(['opus']);
  });
});
