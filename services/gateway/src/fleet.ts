import type { Limiter, LimiterSnapshot } from '@tollgate/limiter';
import { type Producer, type QueueCounts } from '@tollgate/queue';
import { readFleetStats, withDeadline, type FleetStats, type TenantCount } from '@tollgate/queue/internal';
import type { Cluster, Redis } from 'ioredis';

/** The dashboard refreshes this often, in ms. */
export const FLEET_SAMPLE_INTERVAL_MS = 1_000;
/** Frames kept for a new page's charts: two minutes at one per second. */
export const FLEET_HISTORY_FRAMES = 120;

/** What the dashboard draws of one account's limiter (its snapshot, without the leases). */
export type LimiterView = Pick<LimiterSnapshot, 'inFlight' | 'concurrency' | 'concurrencyConfigured' | 'waiting' | 'pausedUntilMs' | 'buckets' | 'nowMs' | 'pools' | 'budgets'>;

/** One account the gateway serves, as the monitor reads it: its limiter, the producer of its queue, its fleet stats. */
export interface MonitoredAccount {
  account: string;
  limiter: Limiter;
  producer: Producer;
  statsKey: string;
}

/** One account of a frame (each part null when Redis did not answer it). */
export interface AccountFrame {
  account: string;
  /** The BullMQ queue of the account's jobs (its tenants' queues are counted with it). */
  queueName: string;
  limiter: LimiterView | null;
  queue: QueueCounts | null;
  /** Jobs per tenant of this account, busiest first (tenants with nothing unfinished left out). */
  tenants: TenantCount[] | null;
  /** Fleet-wide counters the workers add to for this account (completed, failed, rate_limited:<kind>, upstream:<status>). */
  totals: FleetStats;
}

/** One sample of the fleet: what the dashboard draws. */
export interface FleetFrame {
  atMs: number;
  redis: 'up' | 'down';
  /** The first account's limiter (the gateway's own account, named in the page's header). */
  limiter: LimiterView | null;
  /** Every account's queue together. */
  queue: QueueCounts | null;
  /** Jobs per tenant of every account, each row naming its account, busiest first; null when Redis did not answer. */
  tenants: Array<TenantCount & { account: string }> | null;
  /** Every account's fleet-wide counters together. */
  totals: FleetStats;
  /** Each account the gateway serves, its own account first (DESIGN §9: per account, everywhere). */
  accounts: AccountFrame[];
  /** Jobs completed per second since the previous frame. */
  completedPerSecond: number;
  failedPerSecond: number;
  /** Upstream 429s since the previous frame. */
  rateLimitedDelta: number;
}

const sum429 = (totals: FleetStats) => Object.entries(totals).reduce((total, [field, count]) => (field.startsWith('rate_limited:') ? total + count : total), 0);

/** The sum of several fleet stats, field by field. */
function addTotals(all: readonly FleetStats[]): FleetStats {
  const sum: FleetStats = {};
  for (const totals of all) for (const [field, count] of Object.entries(totals)) sum[field] = (sum[field] ?? 0) + count;
  return sum;
}

/** The sum of several queues' counts; null when any could not be read (a partial sum would be a wrong number). */
function addCounts(all: ReadonlyArray<QueueCounts | null>): QueueCounts | null {
  if (all.some((counts) => counts === null)) return null;
  const sum: QueueCounts = { waiting: 0, prioritized: 0, delayed: 0, active: 0, completed: 0, failed: 0 };
  for (const counts of all) for (const state of Object.keys(sum) as Array<keyof QueueCounts>) sum[state] += counts?.[state] ?? 0;
  return sum;
}

/** Samples every account's limiter, queue and fleet counters once a second while anyone is watching. */
export class FleetMonitor {
  readonly history: FleetFrame[] = [];
  readonly #accounts: () => readonly MonitoredAccount[];
  readonly #redis: Redis | Cluster;
  readonly #timeoutMs: number;
  readonly #listeners = new Set<(frame: FleetFrame) => void>();
  #timer: NodeJS.Timeout | undefined;
  #sampling = false;

  /** `accounts` is read at each sample: an account a later apply gives a tenant shows from then on. */
  constructor(options: { accounts: () => readonly MonitoredAccount[]; redis: Redis | Cluster; redisTimeoutMs: number }) {
    this.#accounts = options.accounts;
    this.#redis = options.redis;
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
    const previous = this.history.at(-1);
    const accounts = await Promise.all(this.#accounts().map((account) => this.#sampleAccount(account, previous)));
    const atMs = Date.now();
    const currentTotals = addTotals(accounts.map((account) => account.frame.totals));
    const seconds = previous === undefined ? 0 : (atMs - previous.atMs) / 1_000;
    const rate = (field: string) => (previous === undefined || seconds <= 0 ? 0 : Math.max(0, ((currentTotals[field] ?? 0) - (previous.totals[field] ?? 0)) / seconds));
    const frames = accounts.map((account) => account.frame);
    const tenants = frames.some((frame) => frame.tenants === null)
      ? null
      : frames
          .flatMap((frame) => (frame.tenants ?? []).map((row) => ({ ...row, account: frame.account })))
          .sort((a, b) => b.inFlight + b.waiting - (a.inFlight + a.waiting) || a.account.localeCompare(b.account) || a.tenant.localeCompare(b.tenant));
    return {
      atMs,
      redis: accounts.length > 0 && accounts.every((account) => account.up) ? 'up' : 'down',
      limiter: frames[0]?.limiter ?? null,
      queue: addCounts(frames.map((frame) => frame.queue)),
      tenants,
      totals: currentTotals,
      accounts: frames,
      completedPerSecond: rate('completed'),
      failedPerSecond: rate('failed'),
      rateLimitedDelta: previous === undefined ? 0 : Math.max(0, sum429(currentTotals) - sum429(previous.totals)),
    };
  }

  async #sampleAccount(monitored: MonitoredAccount, previous: FleetFrame | undefined): Promise<{ frame: AccountFrame; up: boolean }> {
    const [snapshot, queue, totals, tenants] = await Promise.allSettled([
      withDeadline(monitored.limiter.snapshot(), this.#timeoutMs, 'snapshot'),
      monitored.producer.counts(),
      withDeadline(readFleetStats(this.#redis, monitored.statsKey), this.#timeoutMs, 'fleet stats'),
      monitored.producer.tenantCounts(),
    ]);
    const limiter = snapshot.status === 'fulfilled' ? snapshot.value : null;
    const before = previous?.accounts.find((frame) => frame.account === monitored.account);
    return {
      up: limiter !== null && queue.status === 'fulfilled',
      frame: {
        account: monitored.account,
        queueName: monitored.producer.name,
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
        totals: totals.status === 'fulfilled' ? totals.value : (before?.totals ?? {}),
      },
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
