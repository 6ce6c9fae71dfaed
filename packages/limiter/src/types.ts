import type { FleetLimits } from './limits.js';
import type { Cost } from './permit.js';

export interface AcquireOptions {
  /**
   * The pool to take from, for a limiter with pools (required there; refused without pools). The cost
   * then names that pool's dimensions (`{ inputTokens: 1_200 }` takes from `<pool>/inputTokens`).
   */
  pool?: string;
  /**
   * The group (tenant) the call is for, in a limiter with `groups`: waiters of one pool and priority are shared
   * between groups by their weights (start-time fair queuing). Without `groups` it changes nothing.
   */
  group?: string;
  /**
   * Tokens to take from each bucket. `requests: 1` is implied when a `requests` rate is configured (in a pool: the pool's).
   * The group's budgets are charged the same dimensions (a budget on `requests`, 1); a dimension only a budget of the
   * group counts (e.g. `outputTokens` in a pool without an output-token rate) is accepted for it.
   */
  cost?: Cost;
  /** 0 = first … 9 = last. Default 5. */
  priority?: number;
  /** Aborting it removes the waiter from the fleet-wide queue. */
  signal?: AbortSignal;
  /** Longest wait in the queue, in ms; then {@link AcquireTimeoutError}. No deadline when omitted. */
  timeoutMs?: number;
}

export interface BucketSnapshot {
  tokens: number;
  capacity: number;
  refillPerSecond: number;
}

export interface LimiterSnapshot {
  /** Redis time of the snapshot. */
  nowMs: number;
  inFlight: number;
  /** The effective concurrency limit (adaptive control may hold it below the configured one); null: none. */
  concurrency: number | null;
  concurrencyConfigured: number | null;
  waiting: number;
  buckets: Record<string, BucketSnapshot>;
  /** Redis time until which grants are paused; 0 when not paused. */
  pausedUntilMs: number;
  leases: Array<{ id: string; expiresAtMs: number }>;
  /** Per pool (none without pools): Redis time until which that pool is paused (0: not), and its waiters. */
  pools: Record<string, { pausedUntilMs: number; waiting: number }>;
  /** Per group with budgets, each budget's bucket by its name (e.g. `outputTokensPerDay`); tokens may be negative (a debt). */
  budgets: Record<string, Record<string, BucketSnapshot>>;
}

/** Typed events: listen with `limiter.on('granted', (event) => …)`. */
export interface LimiterEvents {
  /** `grantedAtMs`: Redis time of the grant. */
  granted: [{ permitId: string; waitedMs: number; fence: number; grantedAtMs: number }];
  released: [{ permitId: string; leaseLost: boolean }];
  leaseLost: [{ permitId: string }];
  /** `atMs`: Redis time at which the pause took effect (no grant after it until `pausedUntilMs`). */
  paused: [{ pausedUntilMs: number; atMs: number; reason: string | undefined }];
  /** This process runs with the fleet's limits, which differ from its own options (one line per field). */
  limitsDiffer: [{ differences: string[]; version: string }];
  /** The fleet's limits changed (an apply by any process); this process now runs with them. */
  limitsChanged: [{ limits: FleetLimits; version: string }];
  redisError: [Error];
}
