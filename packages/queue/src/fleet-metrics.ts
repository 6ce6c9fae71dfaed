import type { LimiterSnapshot } from '@tollgate/limiter';
import { Gauge, type Registry } from 'prom-client';
import type { QueueCounts } from './producer.js';
import type { TenantCount } from './tenant-counts.js';

/**
 * The pool every metric names until model pools exist (DESIGN §8): one limiter is one account with one pool.
 * Dashboards and alerts already group by `pool`, so adding pools later changes no query.
 */
export const DEFAULT_POOL = 'default';

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
  pool?: string;
  queue: string;
  /** Tenants known from configuration (the gateway's tokens): their series exist from the start, at 0. */
  tenants?: readonly string[];
}

/**
 * The fleet-wide gauges that every process exporting metrics shows the same way (workers and the gateway): the
 * limiter's snapshot and the queue's counts, read at scrape time. Label values come from configuration (account,
 * pool, bucket dimensions, BullMQ's fixed job states), so the series count is bounded.
 */
export class FleetGauges {
  readonly #labels: { account: string; pool: string };
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
    this.#labels = { account: scope.account, pool: scope.pool ?? DEFAULT_POOL };
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
    this.#waiting = new Gauge({ name: 'tollgate_waiting', help: 'Waiters for a permit, fleet-wide', labelNames, registers });
    this.#pause = new Gauge({ name: 'tollgate_pause_remaining_seconds', help: 'Seconds left of a fleet-wide pause (0: not paused)', labelNames, registers });
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
    if (snapshot !== null) {
      const labels = this.#labels;
      this.#inFlight.set(labels, snapshot.inFlight);
      this.#limit.set(labels, snapshot.concurrency ?? Number.NaN);
      this.#configured.set(labels, snapshot.concurrencyConfigured ?? Number.NaN);
      this.#waiting.set(labels, snapshot.waiting);
      this.#pause.set(labels, Math.max(0, snapshot.pausedUntilMs - snapshot.nowMs) / 1_000);
      for (const [dimension, bucket] of Object.entries(snapshot.buckets)) {
        this.#bucketTokens.set({ ...labels, dimension }, bucket.tokens);
        this.#bucketCapacity.set({ ...labels, dimension }, bucket.capacity);
        this.#bucketRefill.set({ ...labels, dimension }, bucket.refillPerSecond);
      }
    }
    for (const [state, count] of Object.entries(counts ?? {})) this.#queueJobs.set({ queue: this.#queue, state }, count);
    if (tenants !== null) this.#updateTenants(tenants);
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
    for (const [tenant, total] of totals) {
      this.#tenantInFlight.set({ ...this.#labels, tenant }, total.inFlight);
      this.#tenantWaiting.set({ ...this.#labels, tenant }, total.waiting);
    }
  }
}
