import type { Limiter, LimiterSnapshot } from '@tollgate/limiter';
import { type Producer, type QueueCounts } from '@tollgate/queue';
import { readFleetStats, withDeadline, type FleetStats, type TenantCount } from '@tollgate/queue/internal';
import type { Cluster, Redis } from 'ioredis';

/** The dashboard refreshes this often, in ms. */
export const FLEET_SAMPLE_INTERVAL_MS = 1_000;
/** Frames kept for a new page's charts: two minutes at one per second. */
export const FLEET_HISTORY_FRAMES = 120;

/** One sample of the fleet: what the dashboard draws. */
export interface FleetFrame {
  atMs: number;
  redis: 'up' | 'down';
  limiter: Pick<LimiterSnapshot, 'inFlight' | 'concurrency' | 'concurrencyConfigured' | 'waiting' | 'pausedUntilMs' | 'buckets' | 'nowMs' | 'pools' | 'budgets'> | null;
  queue: QueueCounts | null;
  /** Jobs per tenant, busiest first (tenants with nothing unfinished left out); null when Redis did not answer. */
  tenants: TenantCount[] | null;
  /** Fleet-wide counters the workers add to (completed, failed, rate_limited:<kind>, upstream:<status>). */
  totals: FleetStats;
  /** Jobs completed per second since the previous frame. */
  completedPerSecond: number;
  failedPerSecond: number;
  /** Upstream 429s since the previous frame. */
  rateLimitedDelta: number;
}

const sum429 = (totals: FleetStats) => Object.entries(totals).reduce((total, [field, count]) => (field.startsWith('rate_limited:') ? total + count : total), 0);

/** Samples the limiter, the queue and the fleet counters once a second while anyone is watching. */
export class FleetMonitor {
  readonly history: FleetFrame[] = [];
  readonly #limiter: Limiter;
  readonly #producer: Producer;
  readonly #redis: Redis | Cluster;
  readonly #statsKey: string;
  readonly #timeoutMs: number;
  readonly #listeners = new Set<(frame: FleetFrame) => void>();
  #timer: NodeJS.Timeout | undefined;
  #sampling = false;

  constructor(options: { limiter: Limiter; producer: Producer; redis: Redis | Cluster; statsKey: string; redisTimeoutMs: number }) {
    this.#limiter = options.limiter;
    this.#producer = options.producer;
    this.#redis = options.redis;
    this.#statsKey = options.statsKey;
    this.#timeoutMs = options.redisTimeoutMs;
  }

  /** Calls `listener` with every new frame; sampling runs only while someone listens. */
  subscribe(listener: (frame: FleetFrame) => void): () => void {
    this.#listeners.add(listener);
    if (this.#timer === undefined) {
      void this.#tick();
      this.#timer = setInterval(() => void this.#tick(), FLEET_SAMPLE_INTERVAL_MS);
    }
    return () => {
      this.#listeners.delete(listener);
      if (this.#listeners.size === 0) this.stop();
    };
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Takes one frame now (each part may fail alone: Redis down leaves nulls, never a stale number). */
  async sample(): Promise<FleetFrame> {
    const [snapshot, queue, totals, tenants] = await Promise.allSettled([
      withDeadline(this.#limiter.snapshot(), this.#timeoutMs, 'snapshot'),
      this.#producer.counts(),
      withDeadline(readFleetStats(this.#redis, this.#statsKey), this.#timeoutMs, 'fleet stats'),
      this.#producer.tenantCounts(),
    ]);
    const previous = this.history.at(-1);
    const atMs = Date.now();
    const currentTotals = totals.status === 'fulfilled' ? totals.value : (previous?.totals ?? {});
    const seconds = previous === undefined ? 0 : (atMs - previous.atMs) / 1_000;
    const rate = (field: string) => (previous === undefined || seconds <= 0 ? 0 : Math.max(0, ((currentTotals[field] ?? 0) - (previous.totals[field] ?? 0)) / seconds));
    const limiter = snapshot.status === 'fulfilled' ? snapshot.value : null;
    return {
      atMs,
      redis: limiter !== null && queue.status === 'fulfilled' ? 'up' : 'down',
      limiter:
        limiter === null
          ? null
          : {
              nowMs: limiter.nowMs,
              inFlight: limiter.inFlight,
              concurrency: limiter.concurrency,
              concurrencyConfigured: limiter.concurrencyConfigured,
              waiting: limiter.waiting,
              pausedUntilMs: limiter.pausedUntilMs,
              buckets: limiter.buckets,
              pools: limiter.pools,
              budgets: limiter.budgets,
            },
      queue: queue.status === 'fulfilled' ? queue.value : null,
      tenants: tenants.status === 'fulfilled' ? tenants.value : null,
      totals: currentTotals,
      completedPerSecond: rate('completed'),
      failedPerSecond: rate('failed'),
      rateLimitedDelta: previous === undefined ? 0 : Math.max(0, sum429(currentTotals) - sum429(previous.totals)),
    };
  }

  async #tick(): Promise<void> {
    if (this.#sampling) return; // a slow Redis must not stack samples
    this.#sampling = true;
    try {
      const frame = await this.sample();
      this.history.push(frame);
      if (this.history.length > FLEET_HISTORY_FRAMES) this.history.shift();
      for (const listener of this.#listeners) listener(frame);
    } finally {
      this.#sampling = false;
    }
  }
}
