/**
 * Group budgets (issue 15, DESIGN §9): a group's `buckets` are checked in the same decision as the concurrency slot and
 * the pool's buckets (G3), settled from real usage like them, and never make a call wait: a call they cannot cover
 * fails at once with BudgetExceededError, and so does a waiter whose budget its group's other calls spent.
 */
import { uniqueName } from '@tollgate/test-support';
import { describe, expect, it } from 'vitest';
import { BudgetExceededError, CostExceedsCapacityError, InvalidConfigError, isBudgetExceededError, type LimiterOptions } from '../src/index.js';
import { outcome, settledWithin, useDebugRedis } from './support.js';

const fixture = useDebugRedis();

const DAY_MS = 24 * 60 * 60 * 1000;
/** Group `a` may spend 5,000 output tokens a day; group `b` has no budget. */
const budgeted = (name: string, overrides: Partial<LimiterOptions> = {}): Omit<LimiterOptions, 'redis'> => ({
  name,
  concurrency: 4,
  rates: { outputTokens: { limit: 1_000_000, intervalMs: DAY_MS } }, // slow refill: a snapshot's figures move by tokens, not hundreds
  groups: { a: { weight: 1, buckets: { outputTokensPerDay: { dimension: 'outputTokens', limit: 5_000, intervalMs: DAY_MS } } }, b: { weight: 1 } },
  ...overrides,
});

describe('group budgets', () => {
  it('are taken in the same decision as the slot and the pool bucket: a call the budget cannot cover fails at once and takes nothing', async () => {
    const limiter = await fixture.limiter(budgeted(uniqueName('budget-atomic')));
    const first = await limiter.acquire({ group: 'a', cost: { outputTokens: 3_000 } });
    const before = await limiter.snapshot();
    expect(before.budgets.a?.outputTokensPerDay?.tokens).toBeCloseTo(2_000, 0);
    const refused = await outcome(limiter.acquire({ group: 'a', cost: { outputTokens: 3_000 } }));
    expect(refused).toBeInstanceOf(BudgetExceededError);
    const error = refused as BudgetExceededError;
    expect(error.code).toBe('BUDGET_EXCEEDED');
    expect([error.group, error.dimension]).toEqual(['a', 'outputTokensPerDay']);
    // 1,000 tokens short at 5,000 a day: 1000 / (5000 / 86,400,000 ms) = 17,280,000 ms (less the refill since)
    console.log(`budget-atomic: retryAfterMs ${error.retryAfterMs} for 1,000 tokens short of a 5,000/day budget`);
    expect(error.retryAfterMs).toBeGreaterThan(17_280_000 - 60_000);
    expect(error.retryAfterMs).toBeLessThanOrEqual(17_280_000);
    expect(isBudgetExceededError(error)).toBe(true);
    expect(isBudgetExceededError(Object.assign(new Error('x'), { code: 'BUDGET_EXCEEDED', group: 'a', dimension: 'd', retryAfterMs: 1 }))).toBe(true); // by shape: another build's class
    const after = await limiter.snapshot();
    expect(after.inFlight).toBe(1); // no slot taken
    expect(after.waiting).toBe(0); // not queued
    expect(after.buckets.outputTokens?.tokens).toBeCloseTo(before.buckets.outputTokens?.tokens ?? 0, -2); // the pool's bucket untouched (only its refill)
    expect(after.budgets.a?.outputTokensPerDay?.tokens).toBeCloseTo(2_000, 0);
    // another group, and a call of `a` the budget still covers, go through
    await (await limiter.acquire({ group: 'b', cost: { outputTokens: 30_000 } })).release();
    await (await limiter.acquire({ group: 'a', cost: { outputTokens: 1_500 } })).release();
    await first.release();
  });

  it('settles from what was used, exactly once: a refund comes back, a second release gives nothing more', async () => {
    const limiter = await fixture.limiter(budgeted(uniqueName('budget-settle')));
    const permit = await limiter.acquire({ group: 'a', cost: { outputTokens: 4_000 } });
    expect(permit.cost['~a/outputTokensPerDay']).toBe(4_000);
    await permit.release({ used: { outputTokens: 250 } });
    await permit.release({ used: { outputTokens: 0 } }); // idempotent: settles nothing more
    const tokens = (await limiter.snapshot()).budgets.a?.outputTokensPerDay?.tokens ?? 0;
    console.log(`budget-settle: reserved 4,000, used 250: ${tokens.toFixed(1)} of 5,000 left`);
    expect(tokens).toBeCloseTo(4_750, 0);
    // more than reserved is a debt, paid before the group is granted again
    const over = await limiter.acquire({ group: 'a', cost: { outputTokens: 100 } });
    await over.release({ used: { outputTokens: 5_000 } });
    const debt = (await limiter.snapshot()).budgets.a?.outputTokensPerDay?.tokens ?? 0;
    expect(debt).toBeLessThan(0);
    expect(await outcome(limiter.acquire({ group: 'a', cost: { outputTokens: 0 } }))).toBeInstanceOf(BudgetExceededError);
  });

  it('a queued waiter whose budget its group spent meanwhile is rejected, not left waiting', async () => {
    const limiter = await fixture.limiter(budgeted(uniqueName('budget-queued'), { concurrency: 1 }));
    const blocker = await limiter.acquire({ group: 'b' });
    // both fit the budget when they queue (3,000 each of 5,000); the first one's grant leaves 2,000
    const first = limiter.acquire({ group: 'a', cost: { outputTokens: 3_000 }, timeoutMs: 60_000 });
    const second = outcome(limiter.acquire({ group: 'a', cost: { outputTokens: 3_000 }, timeoutMs: 60_000 }));
    await expect.poll(async () => (await limiter.snapshot()).waiting, { interval: 5, timeout: 5_000 }).toBe(2);
    await blocker.release();
    const granted = await first;
    // rejected while the first holds the only slot: it does not wait for that slot to learn it
    const rejected = await settledWithin(second);
    expect(rejected).toBeInstanceOf(BudgetExceededError);
    expect((rejected as BudgetExceededError).retryAfterMs).toBeGreaterThan(0);
    expect((await limiter.snapshot()).waiting).toBe(0);
    await granted.release();
  });

  it('a waiter of another process is rejected through its channel', async () => {
    const name = uniqueName('budget-channel');
    const one = await fixture.limiter(budgeted(name, { concurrency: 1 }));
    const two = await fixture.limiter(budgeted(name, { concurrency: 1 }));
    const blocker = await one.acquire({ group: 'b' });
    const first = one.acquire({ group: 'a', cost: { outputTokens: 4_000 }, timeoutMs: 60_000 });
    await expect.poll(async () => (await one.snapshot()).waiting, { interval: 5, timeout: 5_000 }).toBe(1);
    const second = outcome(two.acquire({ group: 'a', cost: { outputTokens: 4_000 }, timeoutMs: 60_000 }));
    await expect.poll(async () => (await one.snapshot()).waiting, { interval: 5, timeout: 5_000 }).toBe(2);
    await blocker.release(); // process one's release grants its own waiter and rejects process two's
    expect(await settledWithin(second)).toBeInstanceOf(BudgetExceededError);
    await (await first).release();
  });

  it('an apply that raises the budget lets calls through at once (what was spent stays spent); a cut rejects a waiter it no longer covers', async () => {
    const name = uniqueName('budget-apply');
    const limiter = await fixture.limiter(budgeted(name, { concurrency: 1 }));
    await (await limiter.acquire({ group: 'a', cost: { outputTokens: 4_500 } })).release();
    expect(await outcome(limiter.acquire({ group: 'a', cost: { outputTokens: 1_000 } }))).toBeInstanceOf(BudgetExceededError);
    const raise = (limit: number) =>
      limiter.applyLimits({
        ...budgeted(name, { concurrency: 1 }),
        groups: { a: { weight: 1, buckets: { outputTokensPerDay: { dimension: 'outputTokens', limit, intervalMs: DAY_MS } } } },
      });
    await raise(10_000);
    const tokens = (await limiter.snapshot()).budgets.a?.outputTokensPerDay?.tokens ?? 0;
    console.log(`budget-apply: 4,500 spent, budget raised 5,000 → 10,000: ${tokens.toFixed(1)} left`);
    expect(tokens).toBeCloseTo(5_500, 0);
    const blocker = await limiter.acquire({ group: 'a', cost: { outputTokens: 1_000 } });
    const queued = outcome(limiter.acquire({ group: 'a', cost: { outputTokens: 3_000 }, timeoutMs: 60_000 }));
    await expect.poll(async () => (await limiter.snapshot()).waiting, { interval: 5, timeout: 5_000 }).toBe(1);
    await raise(6_000); // 4,500 left less the 1,000 held: 500, less than the waiter's 3,000
    expect(await settledWithin(queued)).toBeInstanceOf(BudgetExceededError);
    await blocker.release();
  });

  it('a budget on requests counts calls; a cost above the whole budget can never fit', async () => {
    const limiter = await fixture.limiter({
      name: uniqueName('budget-requests'),
      concurrency: 4,
      groups: {
        a: {
          weight: 1,
          buckets: { requestsPerDay: { dimension: 'requests', limit: 2, intervalMs: DAY_MS }, tokens: { dimension: 'outputTokens', limit: 100, intervalMs: DAY_MS } },
        },
      },
    });
    expect(await outcome(limiter.acquire({ group: 'a', cost: { outputTokens: 101 } }))).toBeInstanceOf(CostExceedsCapacityError);
    await (await limiter.acquire({ group: 'a' })).release();
    await (await limiter.acquire({ group: 'a' })).release({ used: { outputTokens: 0 } });
    const third = await outcome(limiter.acquire({ group: 'a' }));
    expect((third as BudgetExceededError).dimension).toBe('requestsPerDay');
    await (await limiter.acquire({ group: 'other' })).release(); // a group without budgets
    await (await limiter.acquire()).release(); // no group
  });

  it('invalid budgets are refused by zod, naming the field and the value', async () => {
    const bad = (buckets: unknown) => () => fixture.limiter({ name: uniqueName('budget-bad'), concurrency: 1, groups: { a: { weight: 1, buckets } } as never });
    await expect(bad({ perDay: { dimension: 'outputTokens', limit: -5, intervalMs: DAY_MS } })).rejects.toThrow(/groups\.a\.buckets\.perDay\.limit: Too small.*\(got -5\)/);
    await expect(bad({ perDay: { dimension: 'output tokens', limit: 5, intervalMs: DAY_MS } })).rejects.toThrow(/groups\.a\.buckets\.perDay\.dimension: .*\(got "output tokens"\)/);
    await expect(bad({ perYear: { dimension: 'outputTokens', limit: 5, intervalMs: 400 * DAY_MS } })).rejects.toThrow(/groups\.a\.buckets\.perYear\.intervalMs: Too big/);
    await expect(bad({ perDay: { dimension: 'outputTokens', limit: 5, intervalMs: DAY_MS, window: 'calendar' } })).rejects.toThrow(InvalidConfigError);
  });
});
