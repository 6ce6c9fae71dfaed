import type { BucketSnapshot, LimiterSnapshot } from '@tollgate/limiter';
import { Gauge, type Registry } from 'prom-client';
import type { QueueCounts } from './producer.js';
import type { TenantCount } from './tenant-counts.js';

/**
 * The pool of a limiter without pools (DESIGN §8): one limiter is one account with one pool, whose buckets are plain
 * dimensions (`requests`, `inputTokens`). Dashboards and alerts group by `pool` the same way with pools or without.
 */
export const DEFAULT_POOL = 'default';
/**
 * The `pool` label of what a limiter with pools (DESIGN §9) counts for the whole account, all its pools together
 * (permits in flight, the concurrency limit, jobs per tenant). Not a pool name: those are letters, digits and `._-`.
 */
export const ALL_POOLS = '*';

/** The pool and the dimension of a bucket of `limiter.snapshot().buckets`: `sonnet/inputTokens` is pool `sonnet`, a plain `inputTokens` is pool `default`. */
export function bucketPool(bucket: string): { pool: string; dimension: string } {
  const slash = bucket.indexOf('/');
  return slash < 0 ? { pool: DEFAULT_POOL, dimension: bucket } : { pool: bucket.slice(0, slash), dimension: bucket.slice(slash + 1) };
}

/** What one pool of a limiter's snapshot shows: its waiters, the pause that holds it, its buckets by dimension. */
export interface PoolView {
  pool: string;
  waiting: number;
  /** Redis time until which the pool grants nothing: its own pause or the account's, whichever ends later (0: not paused). */
  pausedUntilMs: number;
  buckets: Record<string, BucketSnapshot>;
}

/**
 * The pools of a snapshot, in its order: with pools, one per pool (its `<pool>/<dimension>` buckets by dimension);
 * without, the one pool {@link DEFAULT_POOL} with every bucket, the limiter's waiters and its pause.
 */
export function poolViews(snapshot: Pick<LimiterSnapshot, 'waiting' | 'pausedUntilMs' | 'buckets' | 'pools'>): PoolView[] {
  const pools = Object.entries(snapshot.pools);
  const views: PoolView[] =
    pools.length === 0
      ? [{ pool: DEFAULT_POOL, waiting: snapshot.waiting, pausedUntilMs: snapshot.pausedUntilMs, buckets: {} }]
      : pools.map(([pool, state]) => ({ pool, waiting: state.waiting, pausedUntilMs: Math.max(state.pausedUntilMs, snapshot.pausedUntilMs), buckets: {} }));
  const byName = new Map(views.map((view) => [view.pool, view]));
  for (const [name, bucket] of Object.entries(snapshot.buckets)) {
    const { pool, dimension } = bucketPool(name);
    const view = byName.get(pool);
    if (view !== undefined) view.buckets[dimension] = bucket;
  }
  return views;
}

/** The `pool` label of a limiter's account-wide metrics: {@link DEFAULT_POOL} without pools, {@link ALL_POOLS} with. */
export function accountPool(snapshot: Pick<LimiterSnapshot, 'pools'>): string {
  return Object.keys(snapshot.pools).length === 0 ? DEFAULT_POOL : ALL_POOLS;
}

/** Labels of every limiter metric: the account (the limiter's name) and its pool. Both come from configuration, never from a caller. */
export const ACCOUNT_LABELS = ['account', 'pool'] as const;

/**
 * Tenant label values one process exports at most; the rest are summed under {@link OTHER_TENANTS_LABEL}. Tenants
 * are configured (the gateway's tokens) or named by trusted code (a Node producer), and this bounds the series even so.
 */
export const TENANT_SERIES_MAX = 100;
/** The `tenant` label of the jobs of tenants beyond {@link TENANT_SERIES_MAX}. */
export const OTHER_TENANTS_LABEL = '_other';

/** What the fleet gauges describe: one limiter and one queue. */
export interface FleetMetricsScope {
  account: string;
  queue: string;
  /** Tenants known from configuration (the gateway's tokens): their series exist from the start, at 0. */
  tenants?: readonly string[];
}

/**
 * The fleet-wide gauges that every process exporting metrics shows the same way (workers and the gateway): the
 * limiter's snapshot and the queue's counts, read at scrape time. Label values come from configuration (account,
 * the limits' pools and bucket dimensions, BullMQ's fixed job states), so the series count is bounded.
 *
 * Per pool (DESIGN §9): each bucket's gauges carry its pool and its dimension (`sonnet/inputTokens` is pool `sonnet`,
 * dimension `inputTokens`), and `tollgate_waiting` and `tollgate_pause_remaining_seconds` have one series per pool.
 * Without pools all of them carry pool `default`. What the account shares (permits in flight, concurrency, jobs per
 * tenant) carries pool `default` without pools and `*` (all pools) with pools.
 */
export class FleetGauges {
  readonly #account: string;
  /** The `pool` label of the account-wide gauges, from the last snapshot read. */
  #accountPool: string = DEFAULT_POOL;
  /** The `pool` label the tenant gauges' series were written with. */
  #tenantPool: string = DEFAULT_POOL;
  readonly #queue: string;
  readonly #inFlight: Gauge<'account' | 'pool'>;
  readonly #limit: Gauge<'account' | 'pool'>;
  readonly #configured: Gauge<'account' | 'pool'>;
  readonly #waiting: Gauge<'account' | 'pool'>;
  readonly #pause: Gauge<'account' | 'pool'>;
  readonly #bucketTokens: Gauge<'account' | 'pool' | 'dimension'>;
  readonly #bucketCapacity: Gauge<'account' | 'pool' | 'dimension'>;
  readonly #bucketRefill: Gauge<'account' | 'pool' | 'dimension'>;
  readonly #queueJobs: Gauge<'queue' | 'state'>;
  readonly #redisUp: Gauge;
  readonly #tenantInFlight: Gauge<'account' | 'pool' | 'tenant'>;
  readonly #tenantWaiting: Gauge<'account' | 'pool' | 'tenant'>;
  /** Tenant label values exported so far (a tenant whose jobs are all done shows 0, not a gap), at most TENANT_SERIES_MAX. */
  readonly #tenantsShown = new Set<string>();

  constructor(registry: Registry, scope: FleetMetricsScope) {
    this.#account = scope.account;
    this.#queue = scope.queue;
    const registers = [registry];
    const labelNames = ACCOUNT_LABELS;
    const bucketLabels = [...ACCOUNT_LABELS, 'dimension'] as const;
    this.#inFlight = new Gauge({ name: 'tollgate_permits_in_flight', help: 'Permits in flight fleet-wide (limiter snapshot)', labelNames, registers });
    this.#limit = new Gauge({
      name: 'tollgate_concurrency_limit',
      help: 'Effective fleet-wide concurrency limit (adaptive control may hold it below the configured one)',
      labelNames,
      registers,
    });
    this.#configured = new Gauge({ name: 'tollgate_concurrency_configured', help: 'Configured fleet-wide concurrency limit', labelNames, registers });
    this.#waiting = new Gauge({ name: 'tollgate_waiting', help: 'Waiters for a permit, fleet-wide, per pool', labelNames, registers });
    this.#pause = new Gauge({
      name: 'tollgate_pause_remaining_seconds',
      help: "Seconds left of the pause that holds each pool (its own or the account's; 0: not paused)",
      labelNames,
      registers,
    });
    this.#bucketTokens = new Gauge({ name: 'tollgate_bucket_tokens', help: 'Tokens in each bucket (negative: debt)', labelNames: bucketLabels, registers });
    this.#bucketCapacity = new Gauge({ name: 'tollgate_bucket_capacity_tokens', help: 'Capacity of each bucket', labelNames: bucketLabels, registers });
    this.#bucketRefill = new Gauge({
      name: 'tollgate_bucket_refill_tokens_per_second',
      help: 'Refill rate of each bucket: the limit per second',
      labelNames: bucketLabels,
      registers,
    });
    this.#queueJobs = new Gauge({
      name: 'tollgate_queue_jobs',
      help: 'Jobs in the queue by state (waiting + prioritized = waiting for a worker)',
      labelNames: ['queue', 'state'],
      registers,
    });
    const tenantLabels = [...ACCOUNT_LABELS, 'tenant'] as const;
    this.#tenantInFlight = new Gauge({
      name: 'tollgate_tenant_jobs_in_flight',
      help: 'Jobs of each tenant held by a worker now, fleet-wide ("-": no tenant)',
      labelNames: tenantLabels,
      registers,
    });
    this.#tenantWaiting = new Gauge({
      name: 'tollgate_tenant_jobs_waiting',
      help: 'Unfinished jobs of each tenant not held by a worker (waiting, prioritized, delayed), fleet-wide',
      labelNames: tenantLabels,
      registers,
    });
    for (const tenant of (scope.tenants ?? []).slice(0, TENANT_SERIES_MAX)) this.#tenantsShown.add(tenant);
    this.#updateTenants([]);
    this.#redisUp = new Gauge({ name: 'tollgate_redis_up', help: '1 when this process reached Redis at the last scrape', registers });
  }

  /** Sets the gauges from what a scrape read; a part that could not be read (null) leaves its gauges as they were, and `tollgate_redis_up` 0 says so. */
  update(snapshot: Omit<LimiterSnapshot, 'leases'> | null, counts: QueueCounts | null, tenants: readonly TenantCount[] | null = null): void {
    this.#redisUp.set(snapshot !== null && counts !== null ? 1 : 0);
    if (snapshot !== null) this.#updateLimiter(snapshot);
    for (const [state, count] of Object.entries(counts ?? {})) this.#queueJobs.set({ queue: this.#queue, state }, count);
    if (tenants !== null) this.#updateTenants(tenants);
  }

  #updateLimiter(snapshot: Omit<LimiterSnapshot, 'leases'>): void {
    const account = this.#account;
    const pool = accountPool(snapshot);
    // an apply may add or remove pools (and dimensions): the series of those gone go with them
    if (pool !== this.#accountPool) for (const gauge of [this.#inFlight, this.#limit, this.#configured]) gauge.reset();
    this.#accountPool = pool;
    for (const gauge of [this.#waiting, this.#pause, this.#bucketTokens, this.#bucketCapacity, this.#bucketRefill]) gauge.reset();
    const labels = { account, pool };
    this.#inFlight.set(labels, snapshot.inFlight);
    this.#limit.set(labels, snapshot.concurrency ?? Number.NaN);
    this.#configured.set(labels, snapshot.concurrencyConfigured ?? Number.NaN);
    for (const view of poolViews(snapshot)) {
      const poolLabels = { account, pool: view.pool };
      this.#waiting.set(poolLabels, view.waiting);
      this.#pause.set(poolLabels, Math.max(0, view.pausedUntilMs - snapshot.nowMs) / 1_000);
      for (const [dimension, bucket] of Object.entries(view.buckets)) {
        this.#bucketTokens.set({ ...poolLabels, dimension }, bucket.tokens);
        this.#bucketCapacity.set({ ...poolLabels, dimension }, bucket.capacity);
        this.#bucketRefill.set({ ...poolLabels, dimension }, bucket.refillPerSecond);
      }
    }
  }

  #updateTenants(tenants: readonly TenantCount[]): void {
    const totals = new Map<string, { inFlight: number; waiting: number }>();
    for (const shown of this.#tenantsShown) totals.set(shown, { inFlight: 0, waiting: 0 });
    for (const { tenant, inFlight, waiting } of tenants) {
      if (!this.#tenantsShown.has(tenant) && this.#tenantsShown.size < TENANT_SERIES_MAX) this.#tenantsShown.add(tenant);
      const label = this.#tenantsShown.has(tenant) ? tenant : OTHER_TENANTS_LABEL;
      const total = totals.get(label) ?? { inFlight: 0, waiting: 0 };
      totals.set(label, { inFlight: total.inFlight + inFlight, waiting: total.waiting + waiting });
    }
    if (this.#tenantPool !== this.#accountPool) for (const gauge of [this.#tenantInFlight, this.#tenantWaiting]) gauge.reset();
    this.#tenantPool = this.#accountPool;
    const labels = { account: this.#account, pool: this.#accountPool };
    for (const [tenant, total] of totals) {
      this.#tenantInFlight.set({ ...labels, tenant }, total.inFlight);
      this.#tenantWaiting.set({ ...labels, tenant }, total.waiting);
    }
  }
}
