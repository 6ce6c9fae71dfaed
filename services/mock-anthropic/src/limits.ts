import { TokenBucket } from './bucket.js';
import type { Limits } from './options.js';

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

/** The live limit state of one API key. */
export class KeyLimits {
  inFlight = 0;
  maxConcurrent = 0;
  /** Input + output tokens settled, for the spend cap. */
  spentTokens = 0;
  buckets: Partial<Record<LimitDimension, TokenBucket>> = {};
  countTokensBucket: TokenBucket | undefined;

  constructor(limits: Limits, nowMs: number) {
    this.configure(limits, nowMs);
  }

  /** Rebuilds the buckets (full) for new limits; in-flight counts carry over. */
  configure(limits: Limits, nowMs: number): void {
    const bucket = (perMinute: number | undefined, burst: number | undefined) =>
      perMinute === undefined ? undefined : new TokenBucket(burst ?? perMinute, perMinute / MS_PER_MINUTE, nowMs);
    this.buckets = {};
    const requests = bucket(limits.rpm, limits.burst.rpm);
    const inputTokens = bucket(limits.itpm, limits.burst.itpm);
    const outputTokens = bucket(limits.otpm, limits.burst.otpm);
    if (requests) this.buckets.requests = requests;
    if (inputTokens) this.buckets.input_tokens = inputTokens;
    if (outputTokens) this.buckets.output_tokens = outputTokens;
    this.countTokensBucket = bucket(limits.countTokensRpm, limits.burst.countTokensRpm);
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
export function admitMessage(key: KeyLimits, limits: Limits, cost: MessageCost, nowMs: number): Admission | Rejection {
  if (limits.spendCapTokens !== undefined && key.spentTokens >= limits.spendCapTokens) return { kind: 'spend' };
  if (limits.concurrency !== undefined && key.inFlight >= limits.concurrency) {
    return { kind: 'concurrency', retryAfterS: limits.concurrencyRetryAfterS };
  }
  const needs = admissionNeeds(limits, cost);
  for (const dimension of LIMIT_DIMENSIONS) {
    const bucket = key.buckets[dimension];
    if (bucket === undefined) continue;
    const deficit = bucket.deficit(nowMs, Math.min(needs[dimension], bucket.capacity));
    if (deficit > 0) return { kind: dimension, retryAfterS: bucket.retryAfterS(deficit) };
  }
  key.buckets.requests?.charge(nowMs, 1);
  key.buckets.input_tokens?.charge(nowMs, cost.inputTokens);
  const outputChargedTokens = limits.otpmMode === 'max_tokens' ? cost.maxTokens : 0;
  key.buckets.output_tokens?.charge(nowMs, outputChargedTokens);
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

const PER_MINUTE_LIMIT: Record<LimitDimension, (limits: Limits) => number | undefined> = {
  requests: (limits) => limits.rpm,
  input_tokens: (limits) => limits.itpm,
  output_tokens: (limits) => limits.otpm,
};

/**
 * The `anthropic-ratelimit-*` headers for a key's configured buckets: `remaining = floor(max(balance, 0))` (tokens
 * rounded to the nearest 1,000 unless `roundHeaders` is off, 0 on the exceeded dimension) and `reset` = time of full
 * replenishment. `tokens-*` sums the input and output buckets.
 */
export function rateLimitHeaders(
  key: KeyLimits,
  limits: Limits,
  nowMs: number,
  wallMs: number,
  exceeded?: RateLimitKind,
): Record<string, string> {
  const headers: Record<string, string> = {};
  let tokensLimit = 0;
  let tokensRemaining = 0;
  let tokensFullInMs = -1;
  for (const dimension of LIMIT_DIMENSIONS) {
    const bucket = key.buckets[dimension];
    const limit = PER_MINUTE_LIMIT[dimension](limits);
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
