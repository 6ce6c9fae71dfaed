import type Anthropic from '@anthropic-ai/sdk';
import { UPSTREAM_RATE_LIMIT_KINDS, countedInputTokens, type LimitedAnthropicStats, type TenantRateLimited } from '@tollgate/anthropic';
import type { Limiter } from '@tollgate/limiter';
import { type Producer } from '@tollgate/queue';
import { ACCOUNT_LABELS, ALL_POOLS, DEFAULT_POOL, FleetGauges, NO_TENANT_LABEL, mergeTenantCounts } from '@tollgate/queue/internal';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Upper bounds of the acquire-wait histogram, in seconds. */
const ACQUIRE_WAIT_BUCKETS_SECONDS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60];

/** The token counts of an answer's `usage`, each a `dimension` label of `tollgate_upstream_tokens_total`. */
const USAGE_DIMENSIONS = {
  input: 'input_tokens',
  output: 'output_tokens',
  cache_creation_input: 'cache_creation_input_tokens',
  cache_read_input: 'cache_read_input_tokens',
} as const satisfies Record<string, keyof Anthropic.Usage>;

/** The kinds of upstream 429 the limited client counts (`LimitedAnthropicStats.rateLimited`). */
const RATE_LIMITED_KINDS = ['concurrency', 'rate', 'other'] as const satisfies ReadonlyArray<keyof LimitedAnthropicStats['rateLimited']>;

/** Labels of the per-tenant counters: the account, the pool of the call's model (`default` without pools), the tenant. */
const TENANT_LABELS = [...ACCOUNT_LABELS, 'tenant'] as const;

/** The `dimension`s of `tollgate_tenant_granted_tokens_total`: the limiter's token buckets, settled from the answer's usage. */
export const TENANT_TOKEN_DIMENSIONS = ['inputTokens', 'outputTokens'] as const;

/**
 * The `kind`s of `tollgate_tenant_rate_limited_total`: an upstream 429 by what it ran out of (concurrency, rpm, itpm,
 * otpm, other). A refusal by Tollgate itself gets a kind of its own here (a tenant budget: `budget`), so that each of
 * a tenant's series exists, at 0, from its first call on.
 */
export const TENANT_RATE_LIMITED_KINDS: readonly string[] = [...UPSTREAM_RATE_LIMIT_KINDS, 'budget'];

/**
 * The metrics of one worker process (DESIGN §5), for every account it runs ({@link ServiceMetrics.addAccount}). Limiter
 * metrics carry `account` (the limiter name) and `pool` (this process's counters: `default` for a limiter without
 * pools, `*` for all the pools of one with pools; the fleet gauges: see {@link FleetGauges}); job metrics carry `queue`.
 * Fleet-wide gauges are read from each account's `limiter.snapshot()` and queue at each scrape. Every label value
 * comes from configuration or a fixed set (HTTP statuses, 429 kinds, job states, usage fields): never a job id or a
 * model string. Every `tenant` label is bounded (TENANT_SERIES_MAX per account; `-`: no tenant).
 */
export class ServiceMetrics {
  readonly registry = new Registry();
  readonly #accounts: AccountMetrics[] = [];
  readonly #permitsHeld = new Gauge({ name: 'tollgate_permits_held', help: 'Permits held by this process', labelNames: ACCOUNT_LABELS, registers: [this.registry] });
  readonly #acquireWait = new Histogram({
    name: 'tollgate_acquire_wait_seconds',
    help: 'Wait for a permit',
    labelNames: ACCOUNT_LABELS,
    buckets: ACQUIRE_WAIT_BUCKETS_SECONDS,
    registers: [this.registry],
  });
  readonly #upstreamRequests = new Counter({
    name: 'tollgate_upstream_requests_total',
    help: 'Upstream answers by HTTP status ("connection": none)',
    labelNames: [...ACCOUNT_LABELS, 'status'],
    registers: [this.registry],
  });
  readonly #upstreamRateLimited = new Counter({
    name: 'tollgate_upstream_rate_limited_total',
    help: 'Upstream 429s by kind (concurrency, rate, other)',
    labelNames: [...ACCOUNT_LABELS, 'kind'],
    registers: [this.registry],
  });
  readonly #upstreamTokens = new Counter({
    name: 'tollgate_upstream_tokens_total',
    help: 'Tokens of completed calls, from their usage, by dimension',
    labelNames: [...ACCOUNT_LABELS, 'dimension'],
    registers: [this.registry],
  });
  readonly #tenantTokens = new Counter({
    name: 'tollgate_tenant_granted_tokens_total',
    help: "Tokens of each tenant's completed calls, settled from their usage (inputTokens: input + cache writes, as the buckets count them), by pool",
    labelNames: [...TENANT_LABELS, 'dimension'],
    registers: [this.registry],
  });
  readonly #tenantRateLimited = new Counter({
    name: 'tollgate_tenant_rate_limited_total',
    help: "429s of each tenant's calls by kind (upstream: concurrency, rpm, itpm, otpm, other), by pool",
    labelNames: [...TENANT_LABELS, 'kind'],
    registers: [this.registry],
  });
  readonly #leaseLost = new Counter({ name: 'tollgate_lease_lost_total', help: 'Permits whose lease was lost', labelNames: ACCOUNT_LABELS, registers: [this.registry] });
  readonly #jobs = new Counter({
    name: 'tollgate_jobs_total',
    help: 'Jobs by outcome: completed, failed, retried, handed_back',
    labelNames: ['queue', 'state'],
    registers: [this.registry],
  });

  /**
   * Adds an account this process runs: its limiter's events and counters, and its fleet gauges (the limiter's state
   * and the counts of each of its queues: `producers[0]`'s queue with its tenants' queues, then any other it runs,
   * such as the plain queue of the default account, each its own `tollgate_queue_jobs` series).
   */
  addAccount(limiter: Limiter, producers: readonly [Producer, ...Producer[]]): AccountMetrics {
    const labels = { account: limiter.name, pool: limiter.options.pools === undefined ? DEFAULT_POOL : ALL_POOLS };
    const account = new AccountMetrics(labels, limiter, producers, new FleetGauges(this.registry, { account: limiter.name, queue: producers[0].name }), {
      upstreamRequests: this.#upstreamRequests,
      upstreamRateLimited: this.#upstreamRateLimited,
      upstreamTokens: this.#upstreamTokens,
      tenantTokens: this.#tenantTokens,
      tenantRateLimited: this.#tenantRateLimited,
      jobs: this.#jobs,
    });
    limiter.on('granted', ({ waitedMs }) => this.#acquireWait.observe(labels, waitedMs / 1_000));
    limiter.on('leaseLost', () => this.#leaseLost.inc(labels));
    // zero series from the start, so that rate() and increase() see the first event
    this.#leaseLost.inc(labels, 0);
    for (const dimension of Object.keys(USAGE_DIMENSIONS)) this.#upstreamTokens.inc({ ...labels, dimension }, 0);
    for (const kind of RATE_LIMITED_KINDS) this.#upstreamRateLimited.inc({ ...labels, kind }, 0);
    this.#accounts.push(account);
    return account;
  }

  /** Reads every account's fleet-wide state into the gauges, then renders every metric. */
  async render(): Promise<string> {
    for (const account of this.#accounts) {
      this.#permitsHeld.set(account.labels, account.limiter.heldCount);
      account.readRateLimited();
    }
    const up = await Promise.all(this.#accounts.map((account) => account.updateFleet()));
    // Redis unreachable: the gauges keep their last values, tollgate_redis_up says 0; the process metrics still render
    this.#accounts[0]?.fleet.setRedisUp(up.every(Boolean));
    return this.registry.metrics();
  }
}

/** The counters of one account of a worker process ({@link ServiceMetrics.addAccount}). */
export class AccountMetrics {
  /** The account's limited client's 429s by tenant, pool and kind, once it runs ({@link AccountMetrics.follow}). */
  #rateLimitedBy: (() => readonly TenantRateLimited[]) | undefined;
  /** What of `rateLimitedBy` is counted already, by tenant label, pool and kind. */
  readonly #rateLimitedCounted = new Map<string, number>();
  /** Tenant label and pool pairs whose series exist (made at 0 on first sight). */
  readonly #tenantSeries = new Set<string>();

  constructor(
    readonly labels: { account: string; pool: string },
    readonly limiter: Limiter,
    readonly producers: readonly [Producer, ...Producer[]],
    readonly fleet: FleetGauges,
    readonly counters: {
      upstreamRequests: Counter<'account' | 'pool' | 'status'>;
      upstreamRateLimited: Counter<'account' | 'pool' | 'kind'>;
      upstreamTokens: Counter<'account' | 'pool' | 'dimension'>;
      tenantTokens: Counter<'account' | 'pool' | 'tenant' | 'dimension'>;
      tenantRateLimited: Counter<'account' | 'pool' | 'tenant' | 'kind'>;
      jobs: Counter<'queue' | 'state'>;
    },
  ) {}

  /** Counts the 429s of the account's limited client per tenant from now on (read at each scrape). */
  follow(stats: () => Pick<LimitedAnthropicStats, 'rateLimitedBy'>): void {
    this.#rateLimitedBy = () => stats().rateLimitedBy;
  }

  /** Adds what the limited client counted since the last scrape to `tollgate_tenant_rate_limited_total`. */
  readRateLimited(): void {
    // the tenants beyond the bound add up under one label: totals per series first, then what is new of each
    const totals = new Map<string, { labels: { account: string; pool: string; tenant: string }; kind: string; count: number }>();
    for (const { tenant, pool, kind, count } of this.#rateLimitedBy?.() ?? []) {
      const labels = this.#tenantLabels(tenant, pool ?? DEFAULT_POOL);
      const key = `${labels.tenant}\u0000${labels.pool}\u0000${kind}`;
      totals.set(key, { labels, kind, count: (totals.get(key)?.count ?? 0) + count });
    }
    for (const [key, { labels, kind, count }] of totals) {
      const counted = this.#rateLimitedCounted.get(key) ?? 0;
      this.#rateLimitedCounted.set(key, count);
      if (count > counted) this.counters.tenantRateLimited.inc({ ...labels, kind }, count - counted);
    }
  }

  /** A tenant's call in `pool` refused by its budget (Tollgate's own 429, `tenant_budget_exceeded`): nothing reached the API. */
  tenantBudgetRefused(tenant: string | null, pool: string): void {
    this.counters.tenantRateLimited.inc({ ...this.#tenantLabels(tenant, pool), kind: 'budget' });
  }

  /** A tenant's completed call in `pool`: its settled tokens (what the limiter's buckets were charged). */
  tenantCompleted(tenant: string | null, pool: string, usage: Anthropic.Usage): void {
    const labels = this.#tenantLabels(tenant, pool);
    const settled = { inputTokens: countedInputTokens(usage), outputTokens: usage.output_tokens };
    for (const dimension of TENANT_TOKEN_DIMENSIONS) {
      const tokens = settled[dimension];
      if (typeof tokens === 'number' && tokens > 0) this.counters.tenantTokens.inc({ ...labels, dimension }, tokens);
    }
  }

  /** The labels of a tenant's series in `pool` (bounded, `-` for none); the first time, each of them made at 0. */
  #tenantLabels(tenant: string | null, pool: string): { account: string; pool: string; tenant: string } {
    const labels = { account: this.labels.account, pool, tenant: this.fleet.tenantLabels.label(tenant ?? NO_TENANT_LABEL) };
    const key = `${labels.tenant}\u0000${pool}`;
    if (!this.#tenantSeries.has(key)) {
      this.#tenantSeries.add(key);
      for (const dimension of TENANT_TOKEN_DIMENSIONS) this.counters.tenantTokens.inc({ ...labels, dimension }, 0);
      for (const kind of TENANT_RATE_LIMITED_KINDS) this.counters.tenantRateLimited.inc({ ...labels, kind }, 0);
    }
    return labels;
  }

  upstreamAnswered(status: string): void {
    this.counters.upstreamRequests.inc({ ...this.labels, status });
  }

  rateLimited(kind: string, count: number): void {
    this.counters.upstreamRateLimited.inc({ ...this.labels, kind }, count);
  }

  /** A job of `queue` (one of the account's queues) ended an attempt as `state`. */
  job(queue: string, state: string): void {
    this.counters.jobs.inc({ queue, state });
  }

  completed(usage: Anthropic.Usage): void {
    for (const [dimension, field] of Object.entries(USAGE_DIMENSIONS)) {
      const tokens = usage[field];
      if (typeof tokens === 'number' && tokens > 0) this.counters.upstreamTokens.inc({ ...this.labels, dimension }, tokens);
    }
  }

  /** Reads the limiter's and the queues' fleet-wide state into the gauges; whether Redis answered. */
  async updateFleet(): Promise<boolean> {
    const [snapshot, counts, tenants] = await Promise.allSettled([
      this.limiter.snapshot(),
      Promise.all(this.producers.map((producer) => producer.counts())),
      Promise.all(this.producers.map((producer) => producer.tenantCounts())),
    ]);
    const value = <T>(result: PromiseSettledResult<T>) => (result.status === 'fulfilled' ? result.value : null);
    const queues = value(counts);
    const up = this.fleet.update(value(snapshot), queues?.[0] ?? null, tenants.status === 'fulfilled' ? mergeTenantCounts(tenants.value) : null);
    this.producers.slice(1).forEach((producer, i) => {
      const other = queues?.[i + 1];
      if (other !== undefined) this.fleet.queueCounts(producer.name, other);
    });
    return up;
  }
}
