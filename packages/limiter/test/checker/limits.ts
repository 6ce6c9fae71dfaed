import { createLimiter, type Limiter, type LimiterOptions } from '../../src/index.js';
import type { CheckerLimits, CheckerTimings } from './protocol.js';

/** The checker's one rate dimension (in each pool, with pools). */
export const TOKENS = 'tokens';

/** The pools of limits with `count` pools: 'p0', 'p1', … */
export function poolNames(count: number): string[] {
  return Array.from({ length: count }, (_, i) => `p${i}`);
}

/**
 * Group g2's budget (issue 15): capacity 12 tokens (the largest cost), refilled at 0.12 tokens/ms (no slower than any
 * token bucket an apply leaves, so the drain's wait for a debt covers the budget's too); it binds when g2's calls bunch.
 */
export const CHECKER_BUDGET = { group: 'g2', bucket: 'tokensBudget', capacity: 12, intervalMs: 100 } as const;

/** The groups' weights of a limiter with groups, and g2's budget; an acquire names `g<op % 3>` (g0 is not listed: weight 1). */
export const CHECKER_GROUPS = {
  g1: { weight: 3 },
  [CHECKER_BUDGET.group]: {
    weight: 0.5,
    buckets: { [CHECKER_BUDGET.bucket]: { dimension: TOKENS, limit: CHECKER_BUDGET.capacity, intervalMs: CHECKER_BUDGET.intervalMs } },
  },
};

/** The group an acquire names: drawn from its op number (no schedule draws it, so seeds keep their schedules). */
export const groupOf = (op: number): string => `g${op % 3}`;

/** Limiter options for a checker client: its limits as a process would be started with them. */
export function limiterOptions(redis: string, name: string, limits: CheckerLimits, timings: CheckerTimings): LimiterOptions {
  const rates = { [TOKENS]: { limit: limits.tokensLimit, intervalMs: limits.tokensIntervalMs } };
  return {
    redis,
    name,
    concurrency: limits.concurrency,
    ...(limits.pools === 0 ? { rates } : { pools: Object.fromEntries(poolNames(limits.pools).map((pool) => [pool, rates])) }),
    ...(limits.groups ? { groups: CHECKER_GROUPS } : {}),
    leaseTtlMs: timings.leaseTtlMs,
    heartbeatMs: timings.heartbeatMs,
    redisTimeoutMs: timings.redisTimeoutMs,
  };
}

/** The explicit apply of DESIGN §8 (`limiter.applyLimits(limits)`), on a branch that has it. */
type ApplyLimits = (limits: Omit<LimiterOptions, 'redis' | 'name'>) => Promise<unknown>;

/**
 * Changes the fleet's limits: the one place the checker does so. With the explicit apply API of
 * DESIGN §8 it calls `limiter.applyLimits`; a limiter without one (main before issue 12) has its
 * limits written by whichever process starts last, so there a limiter started with the new limits
 * writes them (its `ready()`), as a redeployed process would, and closes again.
 */
export async function applyLimits(limiter: Limiter, limits: CheckerLimits, timings: CheckerTimings): Promise<void> {
  const { redis, name, ...rest } = limiterOptions(String(limiter.options.redis), limiter.name, limits, timings);
  const explicit = (limiter as unknown as { applyLimits?: ApplyLimits }).applyLimits;
  if (typeof explicit === 'function') {
    await explicit.call(limiter, rest);
    return;
  }
  const writer = createLimiter({ redis, name, ...rest });
  writer.on('redisError', () => {}); // faults are the point of the checker
  try {
    await writer.ready();
  } finally {
    await writer.close();
  }
}
