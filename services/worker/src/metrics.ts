import type Anthropic from '@anthropic-ai/sdk';
import type { LimitedAnthropicStats } from '@tollgate/anthropic';
import type { Limiter } from '@tollgate/limiter';
import { type Producer } from '@tollgate/queue';
import { ACCOUNT_LABELS, ALL_POOLS, DEFAULT_POOL, FleetGauges } from '@tollgate/queue/internal';
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

/**
 * The metrics of one worker process (DESIGN §5), for every account it runs ({@link ServiceMetrics.addAccount}). Limiter
 * metrics carry `account` (the limiter name) and `pool` (this process's counters: `default` for a limiter without
 * pools, `*` for all the pools of one with pools; the fleet gauges: see {@link FleetGauges}); job metrics carry `queue`.
 * Fleet-wide gauges are read from each account's `limiter.snapshot()` and queue at each scrape. Every label value
 * comes from configuration or a fixed set (HTTP statuses, 429 kinds, job states, usage fields): never a job id or a
 * model string. The fleet gauges' `tenant` label is bounded (TENANT_SERIES_MAX).
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
  readonly #leaseLost = new Counter({ name: 'tollgate_lease_lost_total', help: 'Permits whose lease was lost', labelNames: ACCOUNT_LABELS, registers: [this.registry] });
  readonly #jobs = new Counter({
    name: 'tollgate_jobs_total',
    help: 'Jobs by outcome: completed, failed, retried, handed_back',
    labelNames: ['queue', 'state'],
    registers: [this.registry],
  });

  /**
   * Adds an account this process runs: its limiter's events and counters, and its fleet gauges (the limiter's state
   * and the queue `producer` counts).
   */
  addAccount(limiter: Limiter, producer: Producer): AccountMetrics {
    const labels = { account: limiter.name, pool: limiter.options.pools === undefined ? DEFAULT_POOL : ALL_POOLS };
    const account = new AccountMetrics(labels, limiter, producer, new FleetGauges(this.registry, { account: limiter.name, queue: producer.name }), {
      upstreamRequests: this.#upstreamRequests,
      upstreamRateLimited: this.#upstreamRateLimited,
      upstreamTokens: this.#upstreamTokens,
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
    for (const account of this.#accounts) this.#permitsHeld.set(account.labels, account.limiter.heldCount);
    const up = await Promise.all(this.#accounts.map((account) => account.updateFleet()));
    // Redis unreachable: the gauges keep their last values, tollgate_redis_up says 0; the process metrics still render
    this.#accounts[0]?.fleet.setRedisUp(up.every(Boolean));
    return this.registry.metrics();
  }
}

/** The counters of one account of a worker process ({@link ServiceMetrics.addAccount}). */
export class AccountMetrics {
  constructor(
    readonly labels: { account: string; pool: string },
    readonly limiter: Limiter,
    readonly producer: Producer,
    readonly fleet: FleetGauges,
    readonly counters: {
      upstreamRequests: Counter<'account' | 'pool' | 'status'>;
      upstreamRateLimited: Counter<'account' | 'pool' | 'kind'>;
      upstreamTokens: Counter<'account' | 'pool' | 'dimension'>;
      jobs: Counter<'queue' | 'state'>;
    },
  ) {}

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

  /** Reads the limiter's and the queue's fleet-wide state into the gauges; whether Redis answered. */
  async updateFleet(): Promise<boolean> {
    const [snapshot, counts, tenants] = await Promise.allSettled([this.limiter.snapshot(), this.producer.counts(), this.producer.tenantCounts()]);
    const value = <T>(result: PromiseSettledResult<T>) => (result.status === 'fulfilled' ? result.value : null);
    return this.fleet.update(value(snapshot), value(counts), value(tenants));
  }
}
