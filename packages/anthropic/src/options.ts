import type { Logger } from 'pino';
import { z } from 'zod';
import type Anthropic from '@anthropic-ai/sdk';
import type { Limiter } from '@tollgate/limiter';

/** Attempts per call (the first one included) unless configured. */
export const MAX_ATTEMPTS_DEFAULT = 4;
export const MAX_ATTEMPTS_MAX = 20;
/** Total time a call may spend waiting between attempts, in ms, unless configured. */
export const MAX_RETRY_MS_DEFAULT = 60_000;
export const MAX_RETRY_MS_MAX = 60 * 60 * 1000;
/** First backoff step: attempt n waits a random time in [0, min(base·2^(n−1), max)] (full jitter). */
export const BACKOFF_BASE_MS_DEFAULT = 250;
export const BACKOFF_MAX_MS_DEFAULT = 8_000;
/** Adaptive concurrency: multiply the effective limit by this on a concurrency 429 (floor 1). */
export const DECREASE_FACTOR_DEFAULT = 0.75;
/** Adaptive concurrency: clean calls made while this process had waiters before the limit is raised by one. */
export const RAISE_AFTER_CLEAN_CALLS_DEFAULT = 50;
/**
 * Rate-limit headers of a successful answer reach `limiter.observe` at most once per this many ms per process
 * (a 429's headers always do): under normal operation the server's figure is above the limiter's, so every
 * observe would be a Redis round trip that changes nothing.
 */
export const OBSERVE_INTERVAL_MS_DEFAULT = 1_000;
/**
 * A stream with no event for this long, in ms, is aborted and its permit released (the SDK's `timeout` covers only
 * the wait for the headers). The API sends `ping`s in quiet stretches, but the SDK drops them before we see them, so
 * this is well above any pause between real events.
 */
export const STREAM_IDLE_TIMEOUT_MS_DEFAULT = 60_000;
/** Longest wait for a count_tokens permit unless configured: the estimate is worth less than the call's time. */
export const COUNT_TOKENS_WAIT_MS_DEFAULT = 2_000;
/** Local estimate: tokens counted for one image block (a 1092×1092 image is about 1,600 tokens). */
export const IMAGE_TOKENS_DEFAULT = 1_600;
/** Local estimate: tokens counted for one document block whose text we cannot see (base64 PDF, URL). */
export const DOCUMENT_TOKENS_DEFAULT = 3_000;

/** The request a cost estimate is made for. */
export type EstimateParams = Anthropic.MessageCreateParams;
/** A caller's input-token estimate for one request. */
export type EstimateInputTokens = (params: EstimateParams) => number | Promise<number>;

const estimateSchema = z.union([
  z.literal('local'),
  z.literal('count_tokens'),
  z.custom<EstimateInputTokens>((value) => typeof value === 'function', 'expected "local", "count_tokens" or a function'),
]);

const loggerSchema = z.custom<Logger>(
  (value) => value !== null && typeof value === 'object' && typeof (value as { child?: unknown }).child === 'function',
  'expected a pino logger',
);

export const limitAnthropicOptionsSchema = z.strictObject({
  /** How `inputTokens` is reserved: the local estimate, the count_tokens endpoint, or a function. */
  estimate: estimateSchema.default('local'),
  /**
   * With `estimate: 'count_tokens'`: the limiter of the account's count_tokens rate (its own RPM, apart from the
   * Messages limits; e.g. the document's `<account>:count-tokens` limiter). Each count_tokens call takes a permit
   * from it first; without a permit in time (or Redis away) the local estimate stands in, and count_tokens is not called.
   */
  countTokensLimiter: z
    .custom<Limiter>(
      (value) => value !== null && typeof value === 'object' && typeof (value as { acquire?: unknown }).acquire === 'function',
      'expected a @tollgate/limiter Limiter',
    )
    .optional(),
  /** Longest wait for a count_tokens permit, in ms, before the local estimate stands in. */
  countTokensWaitMs: z.number().int().min(0).max(MAX_RETRY_MS_MAX).default(COUNT_TOKENS_WAIT_MS_DEFAULT),
  imageTokens: z.number().int().min(0).max(1_000_000).default(IMAGE_TOKENS_DEFAULT),
  documentTokens: z.number().int().min(0).max(1_000_000).default(DOCUMENT_TOKENS_DEFAULT),
  maxAttempts: z.number().int().min(1).max(MAX_ATTEMPTS_MAX).default(MAX_ATTEMPTS_DEFAULT),
  /** Longest total wait between attempts of one call, in ms (backoffs and pauses, not the calls themselves). */
  maxRetryMs: z.number().int().min(0).max(MAX_RETRY_MS_MAX).default(MAX_RETRY_MS_DEFAULT),
  backoffBaseMs: z.number().int().min(1).max(MAX_RETRY_MS_MAX).default(BACKOFF_BASE_MS_DEFAULT),
  backoffMaxMs: z.number().int().min(1).max(MAX_RETRY_MS_MAX).default(BACKOFF_MAX_MS_DEFAULT),
  /** Longest wait for one permit, in ms; none when omitted. */
  acquireTimeoutMs: z.number().int().min(0).max(MAX_RETRY_MS_MAX).optional(),
  /** Priority of every permit taken by this client: 0 = first … 9 = last. */
  priority: z.number().int().min(0).max(9).optional(),
  /**
   * The tenant every permit of this client is for: the limiter's group (fair share between tenants, DESIGN §9); see
   * `withTenant` for one view per tenant.
   */
  tenant: z
    .string()
    .regex(/^[A-Za-z0-9._-]{1,64}$/, 'a tenant name: letters, digits and ._-, 1 to 64 characters')
    .optional(),
  /** Adaptive concurrency (only when the limiter has a concurrency limit); `false` turns it off. */
  adaptiveConcurrency: z
    .union([
      z.literal(false),
      z.strictObject({
        decreaseFactor: z.number().gt(0).lt(1).default(DECREASE_FACTOR_DEFAULT),
        raiseAfterCleanCalls: z.number().int().min(1).max(1_000_000).default(RAISE_AFTER_CLEAN_CALLS_DEFAULT),
      }),
    ])
    .prefault({}),
  observeIntervalMs: z.number().int().min(0).max(MAX_RETRY_MS_MAX).default(OBSERVE_INTERVAL_MS_DEFAULT),
  /** Longest wait for a stream's next event, in ms; then the attempt fails with `StreamIdleTimeoutError`. */
  streamIdleTimeoutMs: z.number().int().min(1).max(MAX_RETRY_MS_MAX).default(STREAM_IDLE_TIMEOUT_MS_DEFAULT),
  /**
   * For a limiter with pools (DESIGN §9): the pool a request's model takes its permit from (e.g. the limits
   * document's `resolvePool`). Required with such a limiter; a 429 of one pool's rate limit then pauses that pool only.
   */
  poolFor: z.custom<(model: string) => string>((value) => typeof value === 'function', 'expected a function (model) => pool').optional(),
  /** pino logger; API keys, auth headers and prompt text are never logged. */
  logger: loggerSchema.optional(),
});

/** What callers pass to `limitAnthropic`. */
export type LimitAnthropicOptions = z.input<typeof limitAnthropicOptionsSchema>;
/** After defaults. */
export type ResolvedLimitAnthropicOptions = z.output<typeof limitAnthropicOptionsSchema>;
