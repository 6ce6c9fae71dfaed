import type { Cluster, Redis } from 'ioredis';
import { limiterKeys } from './keys.js';
import type { LimiterOptions, RateOptions } from './options.js';

/** The interval rates are shown in: per minute, as Anthropic states its limits. */
const SHOWN_INTERVAL_MS = 60_000;
/** Significant digits kept when a refill per ms is turned back into a limit per minute (undoes float noise). */
const SHOWN_DIGITS = 12;

/** The limits a fleet runs with, as the last `ready()` (configure) wrote them to Redis. */
export interface FleetLimits {
  concurrency?: number;
  /** The effective concurrency limit now (adaptive control may hold it below `concurrency`). */
  effectiveConcurrency?: number;
  rates?: Record<string, RateOptions>;
  reserve: Array<{ maxPriority: number; concurrency: number }>;
  leaseTtlMs: number;
}

/**
 * Reads the limits of limiter `name` from Redis without writing anything; undefined when no limiter of that name
 * has ever started there. The options it returns (`limiterOptions`) rebuild the same limits.
 */
export async function readFleetLimits(redis: Redis | Cluster, name: string): Promise<FleetLimits | undefined> {
  const raw = await redis.hgetall(limiterKeys(name).config);
  if (raw.epoch === undefined || raw.leaseTtlMs === undefined) return undefined;
  const concurrency = Number(raw.concurrency ?? '0');
  const rates: Record<string, RateOptions> = {};
  for (const dimension of (raw.dims ?? '').split(',').filter((dim) => dim !== '')) {
    const capacity = Number(raw[`cap:${dimension}`]);
    const limit = Number((Number(raw[`rate:${dimension}`]) * SHOWN_INTERVAL_MS).toPrecision(SHOWN_DIGITS));
    rates[dimension] = capacity === limit ? { limit, intervalMs: SHOWN_INTERVAL_MS } : { limit, intervalMs: SHOWN_INTERVAL_MS, burst: capacity };
  }
  const reserve = [...(raw.reserve ?? '').matchAll(/(\d+):(\d+)/g)].map(([, maxPriority, slots]) => ({ maxPriority: Number(maxPriority), concurrency: Number(slots) }));
  return {
    ...(concurrency > 0 ? { concurrency, effectiveConcurrency: Number(raw.effective ?? concurrency) } : {}),
    ...(Object.keys(rates).length > 0 ? { rates } : {}),
    reserve,
    leaseTtlMs: Number(raw.leaseTtlMs),
  };
}

/** Limiter options that write `limits` again (same concurrency, buckets, reserve and lease length). */
export function limiterOptionsFor(limits: FleetLimits, redis: Redis | Cluster, name: string): LimiterOptions {
  return {
    redis,
    name,
    ...(limits.concurrency === undefined ? {} : { concurrency: limits.concurrency }),
    ...(limits.rates === undefined ? {} : { rates: limits.rates }),
    reserve: limits.reserve,
    leaseTtlMs: limits.leaseTtlMs,
  };
}
