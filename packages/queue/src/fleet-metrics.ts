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

/**
 * The tenant label values of one account's metrics: each tenant keeps its name once given, up to
 * {@link TENANT_SERIES_MAX} of them; the tenants beyond are {@link OTHER_TENANTS_LABEL}.
 */
export class TenantLabels {
  readonly #shown = new Set<string>();

  constructor(known: readonly string[] = []) {
    for (const tenant of known.slice(0, TENANT_SERIES_MAX)) this.#shown.add(tenant);
  }

  /** The label `tenant`'s series carry: its name while there is room (or it has one already), else {@link OTHER_TENANTS_LABEL}. */
  label(tenant: string): string {
    if (!this.#shown.has(tenant) && this.#shown.size < TENANT_SERIES_MAX) this.#shown.add(tenant);
    return this.#shown.has(tenant) ? tenant : OTHER_TENANTS_LABEL;
  }

  /** The tenants named so far (a tenant whose jobs are all done still shows, at 0). */
  get shown(): ReadonlySet<string> {
    return this.#shown;
  }
}

/** What the fleet gauges describe: one limiter and one queue. */
export interface FleetMetricsScope {
  account: string;
  queue: string;
  /** Tenants known from configuration (the gateway's tokens): their series exist from the start, at 0. */
  tenants?: readonly string[];
}

/** A gauge of the registry, made on first use: every account's {@link FleetGauges} of one process writes the same gauges. */
function sharedGauge<Label extends string>(registry: Registry, name: string, help: string, labelNames: readonly Label[]): Gauge<Label> {
  const existing = registry.getSingleMetric(name);
  if (existing !== undefined) return existing as Gauge<Label>;
  return new Gauge({ name, help, labelNames: [...labelNames], registers: [registry] });
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
 *
 * Per account: a process serving several accounts makes one of these per account on one registry; each writes and
 * removes only its own series (an apply that drops a pool drops that account's series of it, not another's).
 */
export class FleetGauges {
  readonly #account: string;
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
  readonly #tenantBudget: Gauge<'account' | 'tenant' | 'dimension'>;
  /** The series this account's limiter gauges hold now, and its tenant gauges': removed before each rewrite. */
  #limiterSeries: Array<[Gauge<string>, Record<string, string>]> = [];
  #tenantSeries: Array<[Gauge<string>, Record<string, string>]> = [];
  /** The `pool` label of the account-wide gauges, from the last snapshot read. */
  #accountPool: string = DEFAULT_POOL;
  /** Tenant label values exported so far (a tenant whose jobs are all done shows 0, not a gap), at most TENANT_SERIES_MAX. */
  readonly tenantLabels: TenantLabels;

  constructor(registry: Registry, scope: FleetMetricsScope) {
    this.#account = scope.account;
    this.#queue = scope.queue;
    const gauge = <Label extends string>(name: string, help: string, labelNames: readonly Label[]) => sharedGauge(registry, name, help, labelNames);
    const bucketLabels = [...ACCOUNT_LABELS, 'dimension'] as const;
    const tenantLabels = [...ACCOUNT_LABELS, 'tenant'] as const;
    this.#inFlight = gauge('tollgate_permits_in_flight', 'Permits in flight fleet-wide (limiter snapshot)', ACCOUNT_LABELS);
    this.#limit = gauge('tollgate_concurrency_limit', 'Effective fleet-wide concurrency limit (adaptive control may hold it below the configured one)', ACCOUNT_LABELS);
    this.#configured = gauge('tollgate_concurrency_configured', 'Configured fleet-wide concurrency limit', ACCOUNT_LABELS);
    this.#waiting = gauge('tollgate_waiting', 'Waiters for a permit, fleet-wide, per pool', ACCOUNT_LABELS);
    this.#pause = gauge('tollgate_pause_remaining_seconds', "Seconds left of the pause that holds each pool (its own or the account's; 0: not paused)", ACCOUNT_LABELS);
    this.#bucketTokens = gauge('tollgate_bucket_tokens', 'Tokens in each bucket (negative: debt)', bucketLabels);
    this.#bucketCapacity = gauge('tollgate_bucket_capacity_tokens', 'Capacity of each bucket', bucketLabels);
    this.#bucketRefill = gauge('tollgate_bucket_refill_tokens_per_second', 'Refill rate of each bucket: the limit per second', bucketLabels);
    this.#queueJobs = gauge('tollgate_queue_jobs', 'Jobs in the queue by state (waiting + prioritized = waiting for a worker)', ['queue', 'state']);
    this.#tenantInFlight = gauge('tollgate_tenant_jobs_in_flight', 'Jobs of each tenant held by a worker now, fleet-wide ("-": no tenant)', tenantLabels);
    this.#tenantWaiting = gauge('tollgate_tenant_jobs_waiting', 'Unfinished jobs of each tenant not held by a worker (waiting, prioritized, delayed), fleet-wide', tenantLabels);
    // a tenant's budgets are its limiter group's buckets: named by the limits document (bounded like the tenants)
    this.#tenantBudget = gauge('tollgate_tenant_budget_remaining_tokens', "What is left of each tenant's budget now (negative: debt), by budget", [
      'account',
      'tenant',
      'dimension',
    ]);
    this.tenantLabels = new TenantLabels(scope.tenants);
    this.#updateTenants([]);
    this.#redisUp = gauge('tollgate_redis_up', '1 when this process reached Redis at the last scrape', []);
  }

  /**
   * Sets the gauges from what a scrape read; a part that could not be read (null) leaves its gauges as they were, and
   * `tollgate_redis_up` 0 says so. Returns whether Redis answered (a process with several accounts sets
   * `tollgate_redis_up` from all of them with {@link FleetGauges.setRedisUp}).
   */
  update(snapshot: Omit<LimiterSnapshot, 'leases'> | null, counts: QueueCounts | null, tenants: readonly TenantCount[] | null = null): boolean {
    const up = snapshot !== null && counts !== null;
    this.setRedisUp(up);
    if (snapshot !== null) this.#updateLimiter(snapshot);
    if (counts !== null) this.queueCounts(this.#queue, counts);
    if (tenants !== null) this.#updateTenants(tenants);
    return up;
  }

  /**
   * Sets `tollgate_queue_jobs` of one queue of the account: the scope's (by {@link FleetGauges.update}), or another it
   * also serves (a worker's default account runs the plain queue beside its own).
   */
  queueCounts(queue: string, counts: QueueCounts): void {
    for (const [state, count] of Object.entries(counts)) this.#queueJobs.set({ queue, state }, count);
  }

  setRedisUp(up: boolean): void {
    this.#redisUp.set(up ? 1 : 0);
  }

  #updateLimiter(snapshot: Omit<LimiterSnapshot, 'leases'>): void {
    // an apply may add or remove pools (and dimensions): the series of those gone go with them
    const series = rewrite(this.#limiterSeries);
    const account = this.#account;
    const pool = accountPool(snapshot);
    this.#accountPool = pool;
    const labels = { account, pool };
    series.set(this.#inFlight, labels, snapshot.inFlight);
    series.set(this.#limit, labels, snapshot.concurrency ?? Number.NaN);
    series.set(this.#configured, labels, snapshot.concurrencyConfigured ?? Number.NaN);
    for (const view of poolViews(snapshot)) {
      const poolLabels = { account, pool: view.pool };
      series.set(this.#waiting, poolLabels, view.waiting);
      series.set(this.#pause, poolLabels, Math.max(0, view.pausedUntilMs - snapshot.nowMs) / 1_000);
      for (const [dimension, bucket] of Object.entries(view.buckets)) {
        series.set(this.#bucketTokens, { ...poolLabels, dimension }, bucket.tokens);
        series.set(this.#bucketCapacity, { ...poolLabels, dimension }, bucket.capacity);
        series.set(this.#bucketRefill, { ...poolLabels, dimension }, bucket.refillPerSecond);
      }
    }
    for (const [tenant, budgets] of Object.entries(snapshot.budgets).slice(0, TENANT_SERIES_MAX)) {
      for (const [dimension, bucket] of Object.entries(budgets)) series.set(this.#tenantBudget, { account, tenant, dimension }, bucket.tokens);
    }
    this.#limiterSeries = series.written;
  }

  #updateTenants(tenants: readonly TenantCount[]): void {
    const totals = new Map<string, { inFlight: number; waiting: number }>();
    for (const shown of this.tenantLabels.shown) totals.set(shown, { inFlight: 0, waiting: 0 });
    for (const { tenant, inFlight, waiting } of tenants) {
      const label = this.tenantLabels.label(tenant);
      const total = totals.get(label) ?? { inFlight: 0, waiting: 0 };
      totals.set(label, { inFlight: total.inFlight + inFlight, waiting: total.waiting + waiting });
    }
    const series = rewrite(this.#tenantSeries);
    const labels = { account: this.#account, pool: this.#accountPool };
    for (const [tenant, total] of totals) {
      series.set(this.#tenantInFlight, { ...labels, tenant }, total.inFlight);
      series.set(this.#tenantWaiting, { ...labels, tenant }, total.waiting);
    }
    this.#tenantSeries = series.written;
  }
}

/** Removes the series written last time, then records the ones written now (synchronously: no scrape sees the gap). */
function rewrite(previous: ReadonlyArray<[Gauge<string>, Record<string, string>]>) {
  for (const [gauge, labels] of previous) gauge.remove(labels);
  const written: Array<[Gauge<string>, Record<string, string>]> = [];
  return {
    written,
    set<Label extends string>(gauge: Gauge<Label>, labels: Record<Label, string>, value: number): void {
      gauge.set(labels, value);
      written.push([gauge as unknown as Gauge<string>, labels]);
    },
  };
}
