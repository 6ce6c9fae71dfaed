import type { Cluster, Redis } from 'ioredis';
import { InvalidArgumentError } from './errors.js';
import { LIMITER_NAME_PATTERN, limiterKeys } from './keys.js';
import { parseFleetLimits, type FleetLimits } from './limits.js';
import type { LimiterOptions } from './options.js';

/** The fleet's limits in force as Redis holds them, read without joining the fleet. */
export interface FleetLimitsReading {
  limits: FleetLimits;
  /** The revision: rises with every write of the limits. */
  version: string;
  /** The effective concurrency limit now (adaptive control may hold it below `limits.concurrency`); null: none. */
  effectiveConcurrency: number | null;
}

/**
 * Reads the limits of limiter `name` from Redis and writes nothing (a limiter's `ready()` would create them on a
 * first boot); undefined when no process of that name has started on this Redis. For tools such as the CLI.
 */
export async function readFleetLimits(redis: Redis | Cluster, name: string): Promise<FleetLimitsReading | undefined> {
  // a public entry point: the name has not been through the options' zod schema
  if (!LIMITER_NAME_PATTERN.test(name)) throw new InvalidArgumentError('name', name, 'a limiter name (letters, digits and :._-)');
  const [epoch, json, version, effective] = await redis.hmget(limiterKeys(name).config, 'epoch', 'limits', 'version', 'effective');
  if (!epoch || !json) return undefined; // no limiter of this name has started here
  const limits = parseFleetLimits(json, name);
  return { limits, version: version ?? '', effectiveConcurrency: limits.concurrency === null ? null : Number(effective ?? limits.concurrency) };
}

/** Limiter options that state exactly `limits` (so a limiter built from them joins the fleet without a warning). */
export function limiterOptionsFor(limits: FleetLimits, redis: Redis | Cluster, name: string): LimiterOptions {
  return { redis, name, ...limitsAsOptions(limits) };
}

/** `limits` in the shape of limiter options, without `redis` and `name` (what `applyLimits` takes, what `tollgate limits show` prints). */
export function limitsAsOptions(limits: FleetLimits): Omit<LimiterOptions, 'redis' | 'name'> {
  const rateOf = (rate: FleetLimits['rates'][string]) => ({ limit: rate.limit, intervalMs: rate.intervalMs, ...(rate.burst === null ? {} : { burst: rate.burst }) });
  const rates = Object.fromEntries(Object.entries(limits.rates).map(([dimension, rate]) => [dimension, rateOf(rate)]));
  // with pools, every rate is a pool's ('<pool>/<dimension>'): the options state them per pool
  const pools =
    limits.pools === undefined
      ? undefined
      : Object.fromEntries(
          limits.pools.map((pool) => [
            pool,
            Object.fromEntries(
              Object.entries(limits.rates)
                .filter(([dimension]) => dimension.startsWith(`${pool}/`))
                .map(([dimension, rate]) => [dimension.slice(pool.length + 1), rateOf(rate)]),
            ),
          ]),
        );
  return {
    ...(limits.concurrency === null ? {} : { concurrency: limits.concurrency }),
    ...(pools !== undefined ? { pools } : Object.keys(rates).length === 0 ? {} : { rates }),
    reserve: limits.reserve,
    leaseTtlMs: limits.leaseTtlMs,
    ...(limits.groups === undefined ? {} : { groups: limits.groups }),
  };
}
