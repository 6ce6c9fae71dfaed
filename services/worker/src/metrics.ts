import type { Limiter } from '@tollgate/limiter';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Upper bounds of the acquire-wait histogram, in seconds. */
const ACQUIRE_WAIT_BUCKETS_SECONDS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60];

/** The DESIGN §5 metrics of one process. Gauges of fleet state are read from `limiter.snapshot()` at each scrape. */
export class ServiceMetrics {
  readonly registry = new Registry();
  readonly permitsInFlight = new Gauge({ name: 'tollgate_permits_in_flight', help: 'Permits in flight fleet-wide (limiter snapshot)', registers: [this.registry] });
  readonly permitsHeld = new Gauge({ name: 'tollgate_permits_held', help: 'Permits held by this process', registers: [this.registry] });
  readonly concurrencyLimit = new Gauge({ name: 'tollgate_concurrency_limit', help: 'Effective fleet-wide concurrency limit', registers: [this.registry] });
  readonly waiting = new Gauge({ name: 'tollgate_waiting', help: 'Waiters for a permit, fleet-wide', registers: [this.registry] });
  readonly bucketTokens = new Gauge({ name: 'tollgate_bucket_tokens', help: 'Tokens in each bucket (negative: debt)', labelNames: ['dimension'], registers: [this.registry] });
  readonly acquireWait = new Histogram({ name: 'tollgate_acquire_wait_seconds', help: 'Wait for a permit', buckets: ACQUIRE_WAIT_BUCKETS_SECONDS, registers: [this.registry] });
  readonly upstreamRequests = new Counter({ name: 'tollgate_upstream_requests_total', help: 'Upstream answers by HTTP status ("connection": none)', labelNames: ['status'], registers: [this.registry] });
  readonly upstreamRateLimited = new Counter({ name: 'tollgate_upstream_rate_limited_total', help: 'Upstream 429s by kind', labelNames: ['kind'], registers: [this.registry] });
  readonly leaseLost = new Counter({ name: 'tollgate_lease_lost_total', help: 'Permits whose lease was lost', registers: [this.registry] });
  readonly jobs = new Counter({ name: 'tollgate_jobs_total', help: 'Jobs by outcome: completed, failed, retried, handed_back', labelNames: ['state'], registers: [this.registry] });
  readonly #limiter: Limiter;

  constructor(limiter: Limiter) {
    this.#limiter = limiter;
    limiter.on('granted', ({ waitedMs }) => this.acquireWait.observe(waitedMs / 1_000));
    limiter.on('leaseLost', () => this.leaseLost.inc());
  }

  /** Reads the limiter's fleet-wide state into the gauges, then renders every metric. */
  async render(): Promise<string> {
    this.permitsHeld.set(this.#limiter.heldCount);
    try {
      const snapshot = await this.#limiter.snapshot();
      this.permitsInFlight.set(snapshot.inFlight);
      this.concurrencyLimit.set(snapshot.concurrency ?? Number.NaN);
      this.waiting.set(snapshot.waiting);
      for (const [dimension, bucket] of Object.entries(snapshot.buckets)) this.bucketTokens.set({ dimension }, bucket.tokens);
    } catch {
      // Redis unreachable: the gauges keep their last values; the process metrics still render
    }
    return this.registry.metrics();
  }
}
