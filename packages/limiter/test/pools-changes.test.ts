/**
 * Pools under applies that change them while waiters are queued (issue 13 review, each case reproduced on 12edee0
 * first): a pool keeps its lane across applies (more than APPLY_SCAN_MAX waiters queued: none overtakes another of its
 * pool, none of another pool waits behind it); the waiter of a removed pool is refused naming the pool; a limiter that
 * gains or loses pools refuses a queued waiter by the pools in force (never as a cost above capacity 0); a
 * re-submission of a waiter granted in a lost reply gets its grant whatever the apply did; a removed pool's pause goes
 * with it; a stall while reading the changed pools is Redis being unavailable, not a bad argument.
 */
import { uniqueName } from '@tollgate/test-support';
import { describe, expect, it } from 'vitest';
import { limiterKeys } from '../src/index.js';
import { tollgateLibrary } from '../src/scripts/library.js';
import { settledWithin, useDebugRedis } from './support.js';

const fixture = useDebugRedis();
const DAY = 24 * 60 * 60 * 1000;
const slow = (limit: number) => ({ limit, intervalMs: DAY });
const outcome = (p: Promise<unknown>) =>
  p.then(
    () => 'granted',
    (e: Error) => `${e.name}: ${e.message}`,
  );

async function queue(name: string, lastCost: number) {
  const limiter = await fixture.limiter({ name, pools: { m: { tokens: slow(100) }, z: { tokens: slow(1_000) } } });
  const held = await limiter.acquire({ pool: 'm', cost: { tokens: 60 } }); // 40 left in m/tokens
  const waiters: Array<Promise<unknown>> = [];
  for (let i = 0; i < 1_000; i++) {
    waiters.push(limiter.acquire({ pool: 'm', cost: { tokens: 100 }, timeoutMs: 60_000 }).catch((e: unknown) => e));
  }
  const last = limiter.acquire({ pool: 'm', cost: { tokens: lastCost }, timeoutMs: 60_000 });
  last.catch(() => {});
  // every one queued, the small one last in m's lane
  const keys = limiterKeys(name);
  for (let i = 0; i < 100 && (await fixture.admin.zcard(keys.waiting)) < 1_001; i++) await new Promise((r) => setTimeout(r, 50));
  expect(await fixture.admin.zcard(keys.waiting)).toBe(1_001);
  const tail = await fixture.admin.zrange(keys.waiting, '-1', '-1');
  expect(tail[0]).toMatch(new RegExp(`@m m/tokens=${lastCost}$`));
  return { limiter, held, waiters, last, keys };
}

describe('pools changed under queued waiters: APPLY_SCAN_MAX and lanes that move', () => {
  it('G4 with more than 1000 waiters queued: an apply that adds a pool moves no lane, and the 1001st waiter of pool m (10 tokens) still waits behind the 1000 before it', async () => {
    const name = uniqueName('rv-scan-g4');
    const { limiter, last, keys } = await queue(name, 10);
    expect(await settledWithin(last, 300)).toBe('stuck'); // G4 holds before the apply
    await limiter.applyLimits({ pools: { a: { tokens: slow(1_000) }, m: { tokens: slow(100) }, z: { tokens: slow(1_000) } } });
    const got = await settledWithin(last, 2_000);
    expect(got).toBe('stuck'); // G4: it must wait behind the 1000 m waiters before it
    expect(await fixture.admin.hget(keys.config, 'lanes')).toBe('m,z,a'); // m and z kept their lanes, a took a new one
  }, 60_000);

  it('after that apply, a waiter of the new pool "a" is granted at once: no waiter of another pool sits in its lane', async () => {
    const name = uniqueName('rv-scan-hol');
    const { limiter } = await queue(name, 50);
    await limiter.applyLimits({ pools: { a: { tokens: slow(1_000) }, m: { tokens: slow(100) }, z: { tokens: slow(1_000) } } });
    const a = limiter.acquire({ pool: 'a', cost: { tokens: 1 }, timeoutMs: 10_000 });
    const got = await settledWithin(a, 2_000);
    expect(got).not.toBe('stuck');
  }, 60_000);
});

describe('pools changed under queued waiters: pools <-> no pools under queued waiters', () => {
  it('a limiter that loses its pools (2 pools → 1, which apply.ts makes a limiter without pools) refuses a queued waiter of a pool by the limits in force', async () => {
    const limiter = await fixture.limiter({ name: uniqueName('rv-2to1'), concurrency: 1, pools: { sonnet: { inputTokens: slow(1_000) }, haiku: { inputTokens: slow(1_000) } } });
    const held = await limiter.acquire({ pool: 'sonnet', cost: { inputTokens: 1 } });
    const waiting = outcome(limiter.acquire({ pool: 'sonnet', cost: { inputTokens: 1 }, timeoutMs: 5_000 }));
    await new Promise((r) => setTimeout(r, 100));
    // the document now has only sonnet: accountLimiters() gives the limiter sonnet's buckets as its own, no pools
    await limiter.applyLimits({ concurrency: 1, rates: { inputTokens: slow(1_000) } });
    await held.release();
    const got = await waiting;
    // a caller of the limiter itself named a pool that the limits no longer have (the wrapper takes the model's pool again)
    expect(got).toMatch(/^InvalidArgumentError: pool: expected no pool \(limiter .* has no pools\)/);
  });

  it('a limiter that gains pools (1 → 2) refuses a queued waiter without a pool naming the pools, never as a cost above capacity 0', async () => {
    const limiter = await fixture.limiter({ name: uniqueName('rv-1to2'), concurrency: 1, rates: { inputTokens: slow(1_000) } });
    const held = await limiter.acquire({ cost: { inputTokens: 1 } });
    const waiting = outcome(limiter.acquire({ cost: { inputTokens: 1 }, timeoutMs: 5_000 }));
    await new Promise((r) => setTimeout(r, 100));
    await limiter.applyLimits({ concurrency: 1, pools: { sonnet: { inputTokens: slow(1_000) }, haiku: { inputTokens: slow(1_000) } } });
    await held.release();
    const got = await waiting;
    expect(got).toMatch(/^InvalidArgumentError: pool: expected one of the pools of limiter .* \(haiku, sonnet\) \(got undefined\)/);
  });
});

describe('pools changed under queued waiters: removing a pool that has buckets', () => {
  it("{a, b} → {a}: b's queued waiter (its cost in b/tokens) is refused naming the pools in force, not as CostExceedsCapacityError", async () => {
    const limiter = await fixture.limiter({ name: uniqueName('rv-rm'), concurrency: 1, pools: { a: { tokens: slow(1_000) }, b: { tokens: slow(1_000) } } });
    const held = await limiter.acquire({ pool: 'a' });
    const waiting = outcome(limiter.acquire({ pool: 'b', cost: { tokens: 5 }, timeoutMs: 5_000 }));
    await new Promise((r) => setTimeout(r, 100));
    await limiter.applyLimits({ concurrency: 1, pools: { a: { tokens: slow(1_000) } } });
    const got = await waiting;
    await held.release();
    expect(got).toMatch(/^InvalidArgumentError: pool: expected one of the pools of limiter .* \(a\) \(got "b"\)/);
  });
});

describe('pools changed under queued waiters: re-submission after an apply removed the pool', () => {
  it('a re-submission of a waiter granted in a lost reply gets its grant again after an apply removed its pool (no lease left to nobody)', async () => {
    const name = uniqueName('rv-resubmit');
    const limiter = await fixture.limiter({ name, concurrency: 1, pools: { a: { tokens: slow(100) }, b: { tokens: slow(100) } } });
    const keys = limiterKeys(name);
    const fn = (s: 'acquire' | 'release') => tollgateLibrary().functionName(s);
    const epoch = (await fixture.admin.hget(keys.config, 'epoch')) as string;
    const call = (s: 'acquire' | 'release', args: Array<string | number>) =>
      fixture.admin.call('FCALL', fn(s), keys.functionKeys.length, ...keys.functionKeys, ...args.map(String));
    // process "ghost": its first permit takes the one slot, its second waiter queues in pool b
    const queued = (await call('acquire', [epoch, 'ghost', 'ghost:2', 5, 0, '', 'b', '', 0, 1, 'b/tokens', 1])) as unknown[];
    const member = queued[4] as string;
    // ghost releases ghost:1: its own pump grants ghost:2 in this reply (not kept in <p>:granted) -- and the reply is lost
    // an apply removes pool b
    await limiter.applyLimits({ concurrency: 1, pools: { a: { tokens: slow(100) } } });
    // ghost reconnects and re-submits ghost:2 with its member, as resubmitAll does
    const again = await call('acquire', [epoch, 'ghost', 'ghost:2', 5, 0, member, 'b', '', 0, 1, 'b/tokens', 1]);
    // the lease holds the account's only slot: pool a is blocked until the lease expires
    const a = await limiter.acquire({ pool: 'a', timeoutMs: 500 }).then(
      () => 'granted',
      (e: Error) => e.name,
    );
    expect(again).toEqual([1, expect.any(Number), expect.any(Number), expect.any(Number)]); // the grant, answered again
    expect(a).toBe('AcquireTimeoutError'); // (its lease holds the one slot until ghost releases it)
    await call('release', [epoch, 'ghost', 'ghost:2', '1', 0]);
  });
});

describe('pools changed under queued waiters: pause of a removed pool', () => {
  it('goes with the pool: resume has nothing left to end, and the pool added back starts unpaused', async () => {
    const name = uniqueName('rv-pause');
    const two = { a: { tokens: slow(1_000) }, b: { tokens: slow(1_000) } };
    const limiter = await fixture.limiter({ name, concurrency: 5, pools: two });
    await limiter.pause(60_000, '429 in b', { pool: 'b' });
    await limiter.applyLimits({ concurrency: 5, pools: { a: { tokens: slow(1_000) } } }); // b removed
    await limiter.applyLimits({ concurrency: 5, pools: two }); // b back
    const got = await settledWithin(limiter.acquire({ pool: 'b', timeoutMs: 5_000 }), 1_000);
    expect(got).not.toBe('stuck');
  });
});

describe('pools changed under queued waiters: #poolInForce under a stall', () => {
  it('a stall while the changed pools are read is LimiterUnavailableError, not an invalid argument', async () => {
    const name = uniqueName('rv-stall');
    const two = { a: { tokens: slow(1_000) }, b: { tokens: slow(1_000) } };
    const one = await fixture.limiter({ name, concurrency: 5, pools: two, redisTimeoutMs: 300 });
    const other = await fixture.limiter({ name, concurrency: 5, pools: two, redisTimeoutMs: 300 });
    await one.applyLimits({ concurrency: 5, pools: { ...two, c: { tokens: slow(1_000) } } });
    const { woken } = await fixture.redis.stall(1);
    const got = await other.acquire({ pool: 'c', timeoutMs: 5_000 }).then(
      () => 'granted',
      (e: Error) => `${e.name}: ${e.message}`,
    );
    await woken;
    expect(got).toMatch(/^LimiterUnavailableError/);
  });
});
describe('pools changed under queued waiters: deadlines', () => {
  it("a waiter queued again because an apply removed a dimension of its pool keeps its deadline, counted from the call (found by the checker's invariant 2)", async () => {
    const name = uniqueName('rv-deadline');
    const limiter = await fixture.limiter({ name, concurrency: 1, pools: { a: { requests: slow(1_000), tokens: slow(1_000) }, b: { tokens: slow(1_000) } } });
    const held = await limiter.acquire({ pool: 'b' });
    const calledAt = performance.now();
    const waiting = limiter.acquire({ pool: 'a', cost: { tokens: 5 }, timeoutMs: 1_000 });
    const settled = waiting.then(
      () => 'granted',
      (e: Error) => e.name,
    );
    await new Promise((resolve) => setTimeout(resolve, 600));
    // a/tokens goes: the queued waiter's cost names a dimension the fleet no longer has; it is queued again without it
    await limiter.applyLimits({ concurrency: 1, pools: { a: { requests: slow(1_000) }, b: { tokens: slow(1_000) } } });
    expect(await settled).toBe('AcquireTimeoutError');
    expect(performance.now() - calledAt).toBeLessThan(1_000 + 400); // not 600 + another 1,000
    await held.release();
  });
});
