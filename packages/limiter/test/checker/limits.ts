import { createLimiter, type LimiterOptions } from '../../src/index.js';
import type { CheckerLimits, CheckerTimings } from './protocol.js';

/** The checker's one rate dimension. */
export const TOKENS = 'tokens';

/** Limiter options for a checker client: its limits as a process would be started with them. */
export function limiterOptions(redis: string, name: string, limits: CheckerLimits, timings: CheckerTimings): LimiterOptions {
  return {
    redis,
    name,
    concurrency: limits.concurrency,
    rates: { [TOKENS]: { limit: limits.tokensLimit, intervalMs: limits.tokensIntervalMs } },
    leaseTtlMs: timings.leaseTtlMs,
    heartbeatMs: timings.heartbeatMs,
    redisTimeoutMs: timings.redisTimeoutMs,
  };
}

/**
 * Changes the fleet's limits. The one place the checker does so: this branch's limiter has no
 * explicit apply API, so a limiter started with the new limits writes them (its `ready()`), as a
 * redeployed process would, and closes again.
 */
export async function applyLimits(redis: string, name: string, limits: CheckerLimits, timings: CheckerTimings): Promise<void> {
  const limiter = createLimiter(limiterOptions(redis, name, limits, timings));
  limiter.on('redisError', () => {}); // faults are the point of the checker
  try {
    await limiter.ready();
  } finally {
    await limiter.close();
  }
}
