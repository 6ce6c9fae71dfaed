import { rateLimitKind, sdkError, type Failure, type UpstreamRateLimitKind } from './classify.js';
import { StreamIdleTimeoutError } from './stream-idle.js';

/** Counters of one wrapped client (this process only). */
export interface LimitedAnthropicStats {
  /** Messages calls started (create and stream). */
  calls: number;
  /** Attempts made, each with its own permit. */
  attempts: number;
  /** 429s by kind: `concurrency`, `rate` (with retry-after), `other` (spend limit, no retry-after). */
  rateLimited: { concurrency: number; rate: number; other: number };
  /**
   * Other failed attempts, by status (`"500"`, `"529"`, `"stream"` for a mid-stream error, `"connection"`,
   * `"stream_idle"` for a stalled stream, `"stream_unread"` for one its caller did not start reading in time).
   */
  failures: Record<string, number>;
  /**
   * The same 429s by who and where: the tenant of the call (null: none), its pool (null: a limiter without pools) and
   * what the 429 ran out of ({@link UpstreamRateLimitKind}); one entry per combination seen, in the order first seen.
   */
  rateLimitedBy: TenantRateLimited[];
  /** Calls to `limiter.observe` (Redis round trips for rate-limit headers). */
  observes: number;
  concurrencyDecreases: number;
  concurrencyRaises: number;
}

/** 429s of one kind for one tenant in one pool ({@link LimitedAnthropicStats.rateLimitedBy}). */
export interface TenantRateLimited {
  tenant: string | null;
  pool: string | null;
  kind: UpstreamRateLimitKind;
  count: number;
}

/** Where a failed attempt was made: its permit's tenant and pool. */
export interface AttemptScope {
  tenant: string | undefined;
  pool: string | undefined;
}

/** The label a failed attempt is counted and logged under. */
export function failureLabel(error: unknown): string {
  if (error instanceof StreamIdleTimeoutError) return error.waitingFor === 'caller' ? 'stream_unread' : 'stream_idle';
  const sdk = sdkError(error);
  if (sdk === undefined || sdk.kind === 'connection') return 'connection';
  if (sdk.kind === 'abort') return 'abort';
  return sdk.status === undefined ? 'stream' : String(sdk.status);
}

/** One client's counters; the adaptive controller keeps its own and lends them to {@link CallStats.snapshot}. */
export class CallStats {
  readonly #stats: LimitedAnthropicStats = {
    calls: 0,
    attempts: 0,
    rateLimited: { concurrency: 0, rate: 0, other: 0 },
    rateLimitedBy: [],
    failures: {},
    observes: 0,
    concurrencyDecreases: 0,
    concurrencyRaises: 0,
  };
  /** The entries of `rateLimitedBy` by tenant, pool and kind (NUL-separated: no tenant or pool name has one). */
  readonly #rateLimitedBy = new Map<string, TenantRateLimited>();

  called(): void {
    this.#stats.calls += 1;
  }

  attempted(): void {
    this.#stats.attempts += 1;
  }

  observed(): void {
    this.#stats.observes += 1;
  }

  /** Counts a failed attempt under its 429 kind (and its tenant's and pool's) or its failure label. */
  failed(error: unknown, failure: Failure, scope: AttemptScope): void {
    const kind = rateLimitKind(error);
    if (kind !== undefined) this.#rateLimited(scope, kind);
    if (failure.kind === 'concurrency') this.#stats.rateLimited.concurrency += 1;
    else if (failure.kind === 'rate_limited') this.#stats.rateLimited.rate += 1;
    else if (sdkError(error)?.status === 429) this.#stats.rateLimited.other += 1;
    else {
      const label = failureLabel(error);
      this.#stats.failures[label] = (this.#stats.failures[label] ?? 0) + 1;
    }
  }

  #rateLimited(scope: AttemptScope, kind: UpstreamRateLimitKind): void {
    const key = `${scope.tenant ?? ''}\u0000${scope.pool ?? ''}\u0000${kind}`;
    let entry = this.#rateLimitedBy.get(key);
    if (entry === undefined) {
      entry = { tenant: scope.tenant ?? null, pool: scope.pool ?? null, kind, count: 0 };
      this.#rateLimitedBy.set(key, entry);
      this.#stats.rateLimitedBy.push(entry);
    }
    entry.count += 1;
  }

  snapshot(adaptive: { decreases: number; raises: number } | undefined): LimitedAnthropicStats {
    return { ...structuredClone(this.#stats), concurrencyDecreases: adaptive?.decreases ?? 0, concurrencyRaises: adaptive?.raises ?? 0 };
  }
}
