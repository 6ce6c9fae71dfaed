import type { Cluster, Redis } from 'ioredis';

/**
 * Fleet-wide counters in one Redis hash, added to by every worker and read by the dashboard:
 * `completed`, `failed`, `retried`, `rate_limited:<kind>` (upstream 429s by kind), `upstream:<status>`.
 */
export type FleetStats = Record<string, number>;

/** Adds `deltas` (only the non-zero ones, in one round trip); nothing is sent when all are zero. */
export async function addFleetStats(redis: Redis | Cluster, key: string, deltas: FleetStats): Promise<void> {
  const changed = Object.entries(deltas).filter(([, delta]) => delta !== 0);
  if (changed.length === 0) return;
  const pipeline = redis.pipeline();
  for (const [field, delta] of changed) pipeline.hincrby(key, field, delta);
  await pipeline.exec();
}

/** Reads every counter. */
export async function readFleetStats(redis: Redis | Cluster, key: string): Promise<FleetStats> {
  const raw = await redis.hgetall(key);
  return Object.fromEntries(Object.entries(raw).map(([field, value]) => [field, Number(value)]));
}

/** Tracks running totals and hands out what changed since the last call. */
export class DeltaTracker {
  readonly #last = new Map<string, number>();

  /** The change of each total since the previous call (totals only grow). */
  deltas(totals: FleetStats): FleetStats {
    const deltas: FleetStats = {};
    for (const [field, total] of Object.entries(totals)) {
      deltas[field] = total - (this.#last.get(field) ?? 0);
      this.#last.set(field, total);
    }
    return deltas;
  }
}
