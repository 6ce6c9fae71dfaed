import { MODEL_PATTERN_PATTERN, POOL_NAME_PATTERN, patternConflicts } from '@tollgate/config';
import { z } from 'zod';

/** The real API's request body limit (anthropic-api.md §1.1): larger bodies get a 413. */
export const BODY_LIMIT_BYTES_DEFAULT = 32 * 1024 * 1024;
/** Upper bound for every configured delay, so a typo cannot park a request for hours. */
export const DELAY_MS_MAX = 10 * 60 * 1000;
/** Upper bound for a `retry-after` the mock is told to send. */
export const RETRY_AFTER_S_MAX = 3_600;
/** A concurrency 429 carries this short `retry-after` unless configured otherwise [INF]. */
export const CONCURRENCY_RETRY_AFTER_S_DEFAULT = 1;
/** `retry-after` on injected 429 and ramp faults. */
export const INJECTED_RETRY_AFTER_S_DEFAULT = 1;
/** How long the `slow_headers` fault holds the response headers back. */
export const SLOW_HEADERS_MS_DEFAULT = 3_000;
/** How long the `stall` fault keeps a stream silent before giving up and closing it. */
export const STALL_MS_DEFAULT = 60_000;
/** Width of one window of the per-window token series in the stats. */
export const STATS_WINDOW_MS_DEFAULT = 60_000;
/** Default length of a generated answer, before `max_tokens` caps it. */
export const OUTPUT_TOKENS_MIN_DEFAULT = 8;
export const OUTPUT_TOKENS_MAX_DEFAULT = 64;
/** Largest value the rate-limit options accept. */
export const LIMIT_PER_MINUTE_MAX = 1_000_000_000;

const perMinute = z.number().int().min(1).max(LIMIT_PER_MINUTE_MAX);
const delayMs = z.number().min(0).max(DELAY_MS_MAX);
const rate = z.number().min(0).max(1);
const retryAfterS = z.number().int().min(1).max(RETRY_AFTER_S_MAX);

/** The pool of every model that matches no configured pool: the top-level `rpm`, `itpm`, `otpm` and `burst` are its limits. */
export const DEFAULT_POOL = 'default';

const burstSchema = z.strictObject({ rpm: perMinute.optional(), itpm: perMinute.optional(), otpm: perMinute.optional() });

/**
 * One model pool of a key: its own RPM, ITPM and OTPM buckets, as Anthropic meters them (anthropic-api.md §3). Models
 * map to pools by `@tollgate/config`'s rules (glob patterns, the most specific pattern wins).
 */
export const poolLimitsSchema = z.strictObject({
  models: z.array(z.string().regex(MODEL_PATTERN_PATTERN, 'letters, digits, ._:@/- and * (any run of characters)')).min(1),
  rpm: perMinute.optional(),
  itpm: perMinute.optional(),
  otpm: perMinute.optional(),
  /** Bucket capacities; each defaults to its per-minute limit. */
  burst: burstSchema.prefault({}),
});

/**
 * Per-key limits, each off when absent. Buckets refill continuously at `limit / 60_000` per ms and hold at most
 * their burst capacity (default: the per-minute limit).
 */
export const limitsSchema = z
  .strictObject({
    /** Most in-flight Messages requests per key, open streams included. */
    concurrency: perMinute.optional(),
    /** Messages requests per minute. */
    rpm: perMinute.optional(),
    /** Input tokens per minute: `input_tokens + cache_creation_input_tokens` (plus cache reads on flagged models). */
    itpm: perMinute.optional(),
    /** Output tokens per minute. */
    otpm: perMinute.optional(),
    /** count_tokens requests per minute (its own limit; it uses none of the Messages limits). */
    countTokensRpm: perMinute.optional(),
    /** Bucket capacities; each defaults to its per-minute limit. */
    burst: burstSchema.extend({ countTokensRpm: perMinute.optional() }).prefault({}),
    /**
     * `max_tokens`: admission needs a balance of `max_tokens` (capped at the capacity), charges it, then refunds the unused part.
     * `actual`: admission needs a balance of 1 token; every generated token is charged as it is produced.
     */
    otpmMode: z.enum(['actual', 'max_tokens']).default('max_tokens'),
    /** Round the token `remaining` headers to the nearest 1,000 like the real API. */
    roundHeaders: z.boolean().default(true),
    /** `retry-after` sent with a concurrency 429. */
    concurrencyRetryAfterS: retryAfterS.default(CONCURRENCY_RETRY_AFTER_S_DEFAULT),
    /** Settled input + output tokens per key after which every Messages request gets the spend-cap 429. */
    spendCapTokens: z.number().int().min(1).optional(),
    /**
     * Model pools, each with its own RPM/ITPM/OTPM buckets; `concurrency`, `countTokensRpm` and the spend cap stay per key.
     * A model that matches no pool is in pool `default`, whose limits are the top-level `rpm`, `itpm`, `otpm`.
     */
    pools: z
      .record(
        z
          .string()
          .regex(POOL_NAME_PATTERN)
          .refine((name) => name !== DEFAULT_POOL),
        poolLimitsSchema,
        {
          error: (issue) => (issue.code === 'invalid_key' ? `a pool name is letters, digits and ._-, and not "${DEFAULT_POOL}" (the pool of unmatched models)` : undefined),
        },
      )
      .default({}),
  })
  .superRefine((limits, context) => {
    for (const conflict of patternConflicts(limits.pools)) {
      context.addIssue({ code: 'custom', path: ['pools', conflict.pool, 'models', conflict.index], message: `also a pattern of pool ${conflict.firstPool}` });
    }
  });

/** A delay in milliseconds, fixed or drawn from the seeded random sequence. */
export const delaySchema = z.union([
  delayMs,
  z.discriminatedUnion('kind', [
    z.strictObject({ kind: z.literal('fixed'), ms: delayMs }),
    z.strictObject({ kind: z.literal('uniform'), minMs: delayMs, maxMs: delayMs }).refine((d) => d.minMs <= d.maxMs, {
      message: 'minMs must not exceed maxMs',
    }),
    z.strictObject({
      kind: z.literal('lognormal'),
      medianMs: z.number().positive().max(DELAY_MS_MAX),
      sigma: z.number().positive().max(4),
      maxMs: delayMs.default(DELAY_MS_MAX),
    }),
  ]),
]);

export const latencySchema = z.strictObject({
  /** Time from admission to the response headers (and, for streams, the first event). */
  timeToFirstTokenMs: delaySchema.default(0),
  /** Time per generated output token; a delta of n tokens waits n times this. */
  perTokenMs: delaySchema.default(0),
});

/** Every fault the mock can inject, by rate, by schedule or with the `x-mock-fault` request header. */
export const faultKindSchema = z.enum([
  '403',
  '408',
  '409',
  '429',
  '529',
  '500',
  '504',
  'mid_stream_error',
  'reset',
  'reset_mid_stream',
  'slow_headers',
  'stall',
  'spend_cap',
  'ramp',
]);

export const faultsSchema = z
  .strictObject({
    rate429: rate.default(0),
    rate529: rate.default(0),
    rate500: rate.default(0),
    rate504: rate.default(0),
    /** Streams get an `event: error` halfway; non-streaming requests get a 529. */
    rateMidStreamError: rate.default(0),
    /** The socket is destroyed before the headers. */
    rateReset: rate.default(0),
    /** Streams lose their socket halfway; non-streaming requests lose it before the headers. */
    rateResetMidStream: rate.default(0),
    rateSlowHeaders: rate.default(0),
    /** Deterministic faults: the `nth` Messages request that passes validation and the limits (1-based, since reset). */
    schedule: z.array(z.strictObject({ nth: z.number().int().min(1), fault: faultKindSchema })).default([]),
    /** `retry-after` on injected 429s and ramp 429s. */
    retryAfterS: retryAfterS.default(INJECTED_RETRY_AFTER_S_DEFAULT),
    /** When set, injected 529s carry this `retry-after` (the real ones usually carry none). */
    overloadedRetryAfterS: retryAfterS.optional(),
    slowHeadersMs: delayMs.default(SLOW_HEADERS_MS_DEFAULT),
    stallMs: delayMs.default(STALL_MS_DEFAULT),
  })
  .refine((f) => f.rate429 + f.rate529 + f.rate500 + f.rate504 + f.rateMidStreamError + f.rateReset + f.rateResetMidStream + f.rateSlowHeaders <= 1, {
    message: 'fault rates must add up to at most 1',
  });

export const modelSchema = z.strictObject({
  maxOutputTokens: z.number().int().min(1),
  contextWindowTokens: z.number().int().min(1),
  /** Older models (e.g. Haiku 3.5) count cache reads against ITPM. */
  cacheReadsCountForItpm: z.boolean().default(false),
  /** Some models reject `temperature` even on 2023-06-01. */
  rejectsTemperature: z.boolean().default(false),
});

/** The models the mock knows by default; any other id gets a 404. Caps of the 4.6 models are [INF]. */
export const DEFAULT_MODELS = {
  'claude-opus-4-6': { maxOutputTokens: 64_000, contextWindowTokens: 200_000 },
  'claude-sonnet-4-6': { maxOutputTokens: 64_000, contextWindowTokens: 200_000 },
  'claude-opus-4-5': { maxOutputTokens: 64_000, contextWindowTokens: 200_000 },
  'claude-opus-4-1': { maxOutputTokens: 32_000, contextWindowTokens: 200_000 },
  'claude-sonnet-4-5': { maxOutputTokens: 64_000, contextWindowTokens: 200_000 },
  'claude-haiku-4-5': { maxOutputTokens: 64_000, contextWindowTokens: 200_000 },
  'claude-3-5-haiku-20241022': { maxOutputTokens: 8_192, contextWindowTokens: 200_000, cacheReadsCountForItpm: true },
} as const satisfies Record<string, z.input<typeof modelSchema>>;

export const outputSchema = z
  .strictObject({
    /** Generated answers have between `tokensMin` and `tokensMax` tokens unless `x-mock-output-tokens` says otherwise. */
    tokensMin: z.number().int().min(0).default(OUTPUT_TOKENS_MIN_DEFAULT),
    tokensMax: z.number().int().min(0).default(OUTPUT_TOKENS_MAX_DEFAULT),
  })
  .refine((o) => o.tokensMin <= o.tokensMax, { message: 'tokensMin must not exceed tokensMax' });

/** Requests kept for `GET /_mock/requests`, and the most body bytes kept of each. */
export const REQUEST_LOG_SIZE_DEFAULT = 100;
export const REQUEST_LOG_BODY_BYTES_MAX_DEFAULT = 1024 * 1024;

export const requestLogSchema = z.strictObject({
  /** Entries kept, oldest dropped first; 0 turns the log off. */
  size: z.number().int().min(0).max(10_000).default(REQUEST_LOG_SIZE_DEFAULT),
  /** Body bytes kept per entry; a longer body is cut and marked `bodyTruncated`. */
  bodyBytesMax: z.number().int().min(0).max(BODY_LIMIT_BYTES_DEFAULT).default(REQUEST_LOG_BODY_BYTES_MAX_DEFAULT),
});

/** Everything that `setConfig` may change at run time. Each section given to `setConfig` replaces that section. */
export const mockConfigSchema = z.strictObject({
  /** Seeds generated text, latency draws and rate-based faults. */
  seed: z
    .number()
    .int()
    .min(0)
    .max(2 ** 32 - 1)
    .default(0),
  /** Accepted API keys; absent means any non-empty key. */
  apiKeys: z.array(z.string().min(1)).min(1).optional(),
  limits: limitsSchema.prefault({}),
  /** Keys with limits of their own (another account); every other key gets `limits`. Keys are never logged or listed in the stats. */
  keyLimits: z.record(z.string().min(1), limitsSchema).default({}),
  latency: latencySchema.prefault({}),
  faults: faultsSchema.prefault({}),
  models: z.record(z.string().min(1), modelSchema).prefault(DEFAULT_MODELS),
  output: outputSchema.prefault({}),
  statsWindowMs: z.number().int().min(1).max(DELAY_MS_MAX).default(STATS_WINDOW_MS_DEFAULT),
  requestLog: requestLogSchema.prefault({}),
});

/** Options of {@link startMockAnthropic}: the run-time config plus what is fixed at start. */
export const mockOptionsSchema = z.strictObject({
  ...mockConfigSchema.shape,
  /** 0 picks a free port. */
  port: z.number().int().min(0).max(65_535).default(0),
  host: z.string().min(1).default('127.0.0.1'),
  bodyLimitBytes: z.number().int().min(1).default(BODY_LIMIT_BYTES_DEFAULT),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('silent'),
});

export type MockConfigInput = z.input<typeof mockConfigSchema>;
export type MockConfig = z.infer<typeof mockConfigSchema>;
/** What `setConfig` accepts: any top-level sections of the config; each replaces the current one. */
export type MockConfigPatch = Partial<MockConfigInput>;
export type MockOptions = z.input<typeof mockOptionsSchema>;
export type ResolvedMockOptions = z.infer<typeof mockOptionsSchema>;
export type Limits = z.infer<typeof limitsSchema>;
export type PoolLimits = z.infer<typeof poolLimitsSchema>;
export type Delay = z.infer<typeof delaySchema>;
export type FaultKind = z.infer<typeof faultKindSchema>;
export type Faults = z.infer<typeof faultsSchema>;
export type ModelSpec = z.infer<typeof modelSchema>;
