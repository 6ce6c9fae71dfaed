import { matchPool } from '@tollgate/config';
import { TokenBucket } from './bucket.js';
import { DEFAULT_POOL, type Limits, type PoolLimits } from './options.js';

const MS_PER_MINUTE = 60_000;
const MS_PER_SECOND = 1_000;
/** The real API rounds token `remaining` headers to the nearest 1,000 [DOC]. */
const HEADER_ROUNDING_TOKENS = 1_000;
/** In `actual` mode a request is admitted while at least this many output tokens are left. */
const OTPM_ACTUAL_NEED_TOKENS = 1;

/** The three Messages buckets, named as in the rate-limit headers and the stats. */
export type LimitDimension = 'requests' | 'input_tokens' | 'output_tokens';
export const LIMIT_DIMENSIONS: readonly LimitDimension[] = ['requests', 'input_tokens', 'output_tokens'];
/** Why a request got a 429. */
export type RateLimitKind = 'concurrency' | LimitDimension | 'spend' | 'injected' | 'count_tokens';

/** What a pool's buckets are built from: the top-level limits (pool `default`) or one entry of `limits.pools`. */
export type PoolSpec = Pick<PoolLimits, 'rpm' | 'itpm' | 'otpm'> & { burst: Pick<PoolLimits['burst'], 'rpm' | 'itpm' | 'otpm'> };

/** The three Messages buckets of one model pool of a key. */
export class PoolBuckets {
  readonly buckets: Partial<Record<LimitDimension, TokenBucket>> = {};

  constructor(
    readonly name: string,
    readonly spec: PoolSpec,
    nowMs: number,
  ) {
    const requests = bucket(spec.rpm, spec.burst.rpm, nowMs);
    const inputTokens = bucket(spec.itpm, spec.burst.itpm, nowMs);
    const outputTokens = bucket(spec.otpm, spec.burst.otpm, nowMs);
    if (requests) this.buckets.requests = requests;
    if (inputTokens) this.buckets.input_tokens = inputTokens;
    if (outputTokens) this.buckets.output_tokens = outputTokens;
  }

  /** The per-minute limit of a dimension, as the headers and the 429 message state it. */
  perMinute(dimension: LimitDimension): number | undefined {
    return dimension === 'requests' ? this.spec.rpm : dimension === 'input_tokens' ? this.spec.itpm : this.spec.otpm;
  }
}

function bucket(perMinute: number | undefined, burst: number | undefined, nowMs: number): TokenBucket | undefined {
  return perMinute === undefined ? undefined : new TokenBucket(burst ?? perMinute, perMinute / MS_PER_MINUTE, nowMs);
}

/** The live limit state of one API key: its concurrency and spend, one {@link PoolBuckets} per model pool, count_tokens. */
export class KeyLimits {
  inFlight = 0;
  maxConcurrent = 0;
  /** Input + output tokens settled, for the spend cap. */
  spentTokens = 0;
  limits!: Limits;
  pools = new Map<string, PoolBuckets>();
  countTokensBucket: TokenBucket | undefined;

  constructor(limits: Limits, nowMs: number) {
    this.configure(limits, nowMs);
  }

  /** Rebuilds the buckets (full) for new limits; in-flight counts carry over. */
  configure(limits: Limits, nowMs: number): void {
    this.limits = limits;
    this.pools = new Map([[DEFAULT_POOL, new PoolBuckets(DEFAULT_POOL, limits, nowMs)]]);
    for (const [name, pool] of Object.entries(limits.pools)) this.pools.set(name, new PoolBuckets(name, pool, nowMs));
    this.countTokensBucket = bucket(limits.countTokensRpm, limits.burst.countTokensRpm, nowMs);
  }

  /**
   * The pool `model` is metered in, by `@tollgate/config`'s rules (the most specific pattern wins); pool `default` when
   * no pattern matches. Throws InvalidConfigError when two pools match it equally (a mock configured ambiguously).
   */
  poolFor(model: string): PoolBuckets {
    const pool = this.pools.get(matchPool({ pools: this.limits.pools }, model)?.pool ?? DEFAULT_POOL);
    if (pool === undefined) throw new Error(`pool of ${model} missing`);
    return pool;
  }

  /** Pool `default`: its headers go on answers that come before the model is known. */
  defaultPool(): PoolBuckets {
    const pool = this.pools.get(DEFAULT_POOL);
    if (pool === undefined) throw new Error('pool default missing');
    return pool;
  }
}

/** What admission charges: the prompt estimate and the request's `max_tokens`. */
export interface MessageCost {
  inputTokens: number;
  maxTokens: number;
}

export interface Rejection {
  kind: RateLimitKind;
  /** Absent for the spend cap, which must not be retried. */
  retryAfterS?: number;
}

export interface Admission {
  /** Output tokens charged at admission (`max_tokens` mode), to be settled later. */
  outputChargedTokens: number;
}

/** What each bucket needs for admission; the cost is capped at the capacity so a request can always fit eventually [INF]. */
function admissionNeeds(limits: Limits, cost: MessageCost): Record<LimitDimension, number> {
  return {
    requests: 1,
    input_tokens: cost.inputTokens,
    output_tokens: limits.otpmMode === 'max_tokens' ? cost.maxTokens : OTPM_ACTUAL_NEED_TOKENS,
  };
}

/**
 * Admits a Messages request or says why not. Checks run in the documented order (concurrency, RPM, ITPM, OTPM) and
 * the first failure wins; a rejected request consumes nothing.
 */
export function admitMessage(key: KeyLimits, pool: PoolBuckets, cost: MessageCost, nowMs: number): Admission | Rejection {
  const limits = key.limits;
  if (limits.spendCapTokens !== undefined && key.spentTokens >= limits.spendCapTokens) return { kind: 'spend' };
  if (limits.concurrency !== undefined && key.inFlight >= limits.concurrency) {
    return { kind: 'concurrency', retryAfterS: limits.concurrencyRetryAfterS };
  }
  const needs = admissionNeeds(limits, cost);
  for (const dimension of LIMIT_DIMENSIONS) {
    const bucket = pool.buckets[dimension];
    if (bucket === undefined) continue;
    const deficit = bucket.deficit(nowMs, Math.min(needs[dimension], bucket.capacity));
    if (deficit > 0) return { kind: dimension, retryAfterS: bucket.retryAfterS(deficit) };
  }
  pool.buckets.requests?.charge(nowMs, 1);
  pool.buckets.input_tokens?.charge(nowMs, cost.inputTokens);
  const outputChargedTokens = limits.otpmMode === 'max_tokens' ? cost.maxTokens : 0;
  pool.buckets.output_tokens?.charge(nowMs, outputChargedTokens);
  return { outputChargedTokens };
}

export function isRejection(result: Admission | Rejection): result is Rejection {
  return 'kind' in result;
}

/** RFC 3339, UTC, whole seconds rounded up: `2026-02-25T20:02:32Z`. */
function resetTimestamp(wallMs: number): string {
  return new Date(Math.ceil(wallMs / MS_PER_SECOND) * MS_PER_SECOND).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** Header spelling of each dimension: `anthropic-ratelimit-input-tokens-remaining`. */
const HEADER_NAME: Record<LimitDimension, string> = { requests: 'requests', input_tokens: 'input-tokens', output_tokens: 'output-tokens' };

/**
 * The `anthropic-ratelimit-*` headers of one pool's configured buckets (the pool of the request's model): `remaining = floor(max(balance, 0))` (tokens
 * rounded to the nearest 1,000 unless `roundHeaders` is off, 0 on the exceeded dimension) and `reset` = time of full
 * replenishment. `tokens-*` sums the input and output buckets.
 */
export function rateLimitHeaders(pool: PoolBuckets, limits: Limits, nowMs: number, wallMs: number, exceeded?: RateLimitKind): Record<string, string> {
  const headers: Record<string, string> = {};
  let tokensLimit = 0;
  let tokensRemaining = 0;
  let tokensFullInMs = -1;
  for (const dimension of LIMIT_DIMENSIONS) {
    const bucket = pool.buckets[dimension];
    const limit = pool.perMinute(dimension);
    if (bucket === undefined || limit === undefined) continue;
    const balance = Math.floor(Math.max(0, bucket.balance(nowMs)));
    const rounded = dimension !== 'requests' && limits.roundHeaders ? Math.round(balance / HEADER_ROUNDING_TOKENS) * HEADER_ROUNDING_TOKENS : balance;
    const remaining = exceeded === dimension ? 0 : rounded;
    const fullInMs = bucket.msUntilFull(nowMs);
    const prefix = `anthropic-ratelimit-${HEADER_NAME[dimension]}`;
    headers[`${prefix}-limit`] = String(limit);
    headers[`${prefix}-remaining`] = String(remaining);
    headers[`${prefix}-reset`] = resetTimestamp(wallMs + fullInMs);
    if (dimension === 'requests') continue;
    tokensLimit += limit;
    tokensRemaining += remaining;
    tokensFullInMs = Math.max(tokensFullInMs, fullInMs);
  }
  if (tokensFullInMs >= 0) {
    headers['anthropic-ratelimit-tokens-limit'] = String(tokensLimit);
    headers['anthropic-ratelimit-tokens-remaining'] = String(tokensRemaining);
    headers['anthropic-ratelimit-tokens-reset'] = resetTimestamp(wallMs + tokensFullInMs);
  }
  return headers;
}
