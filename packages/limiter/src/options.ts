import { Cluster, Redis } from 'ioredis';
import { z } from 'zod';
import { InvalidConfigError } from './errors.js';
import { LIMITER_NAME_PATTERN } from './keys.js';

export const CONCURRENCY_MAX = 100_000;
export const PRIORITY_MIN = 0;
export const PRIORITY_MAX = 9;
export const PRIORITY_DEFAULT = 5;
export const LEASE_TTL_MS_MIN = 500;
export const LEASE_TTL_MS_MAX = 10 * 60 * 1000;
export const LEASE_TTL_MS_DEFAULT = 15_000;
export const HEARTBEAT_MS_DEFAULT = 5_000;
export const REDIS_TIMEOUT_MS_DEFAULT = 1_000;
export const REDIS_TIMEOUT_MS_MAX = 60_000;
export const INTERVAL_MS_MAX = 24 * 60 * 60 * 1000;
/** A dimension name goes into Redis keys and the config hash: keep it plain. */
export const DIMENSION_PATTERN = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;
/** The dimension that gets an implicit cost of 1 per acquire, when it is configured (in a pool: that pool's). */
export const REQUESTS_DIMENSION = 'requests';
/**
 * A pool's name (DESIGN §9): one queue lane and one set of buckets of the limiter, whose bucket
 * dimensions are named `<pool>/<dimension>` in Redis. No `:`, `/`, `=`, braces or spaces.
 */
export const POOL_NAME_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;
/** Pools one limiter may have: each is a lane of the queue's scores (prelude.lua LANES_MAX). */
export const POOLS_MAX = 32;
/** A group (a tenant) as `acquire({ group })` names it: letters, digits and ._-, 1 to 64 characters. */
export const GROUP_NAME_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;
/** Group weights: a share is weight / (sum of the weights of the groups that wait). */
export const GROUP_WEIGHT_MIN = 0.001;
export const GROUP_WEIGHT_MAX = 1_000;
/** Groups one limiter's limits may name. */
export const GROUPS_MAX = 10_000;
/** Budgets (buckets) one group may have: a call of the group checks each of them. */
export const GROUP_BUCKETS_MAX = 8;
/** The longest refill interval of a group's budget (a year); a month's budget is 30 days. */
export const GROUP_BUCKET_INTERVAL_MS_MAX = 366 * 24 * 60 * 60 * 1000;
/** The first character of a group budget's dimension as Redis names it (`~<group>/<bucket>`): never a pool's. */
export const GROUP_BUCKET_PREFIX = '~';
/** A group's budget as Redis names it: `~<group>/<bucket>`. */
export function groupBucketDimension(group: string, bucket: string): string {
  return `${GROUP_BUCKET_PREFIX}${group}/${bucket}`;
}
/** The group and budget name of a dimension `~<group>/<bucket>`; undefined for any other dimension. */
export function splitGroupBucketDimension(dimension: string): { group: string; bucket: string } | undefined {
  const slash = dimension.indexOf('/');
  if (!dimension.startsWith(GROUP_BUCKET_PREFIX) || slash < 0) return undefined;
  return { group: dimension.slice(GROUP_BUCKET_PREFIX.length, slash), bucket: dimension.slice(slash + 1) };
}

/**
 * A group's budget (DESIGN §9): a token bucket of capacity `limit`, refilled continuously at `limit` per `intervalMs`
 * (not a calendar window: no day boundary at which twice the budget could go through), charged the cost's `dimension`
 * (in any pool: `outputTokens` charges each pool's output tokens; `requests` charges 1 per call). It is checked in the
 * same decision as the concurrency slot and the pool's buckets, and a call it cannot cover fails at once with
 * {@link BudgetExceededError}; it never queues.
 */
export const groupBucketSchema = z.strictObject({
  dimension: z.string().regex(DIMENSION_PATTERN, 'a dimension name is a letter then letters, digits or _'),
  limit: z.number().positive().finite(),
  intervalMs: z.number().int().min(1).max(GROUP_BUCKET_INTERVAL_MS_MAX),
});

/** One group of the limits: its weight (fair share) and its budgets. */
export const groupSchema = z.strictObject({
  weight: z.number().min(GROUP_WEIGHT_MIN).max(GROUP_WEIGHT_MAX),
  /** Its budgets by name (e.g. `outputTokensPerDay`); absent: none. */
  buckets: z
    .record(z.string().regex(DIMENSION_PATTERN, 'a budget name is a letter then letters, digits or _'), groupBucketSchema)
    .refine((buckets) => Object.keys(buckets).length <= GROUP_BUCKETS_MAX, `at most ${GROUP_BUCKETS_MAX} budgets per group`)
    .optional(),
});
export type GroupLimits = z.infer<typeof groupSchema>;
/** A bucket's dimension as Redis names it: `<pool>/<dimension>` in a pool, else the dimension. */
export function poolDimension(pool: string | undefined, dimension: string): string {
  return pool === undefined ? dimension : `${pool}/${dimension}`;
}

/**
 * How a process treats the fleet's limits at start (DESIGN §8): 'if-absent' writes its own limits only
 * when Redis has none (first boot), else runs with the fleet's; 'force' writes its own.
 */
export const APPLY_LIMITS_MODES = ['if-absent', 'force'] as const;

const rateSchema = z.strictObject({
  /** Tokens granted per `intervalMs`, refilled continuously. */
  limit: z.number().positive().finite(),
  intervalMs: z.number().int().min(1).max(INTERVAL_MS_MAX),
  /** Bucket capacity (the largest burst); the limit itself when omitted. */
  burst: z.number().positive().finite().optional(),
});

const ratesSchema = z.record(z.string().regex(DIMENSION_PATTERN, 'a dimension name is a letter then letters, digits or _'), rateSchema);

const redisSchema = z.union([
  z.string().regex(/^rediss?:\/\//, 'expected a redis:// or rediss:// URL'),
  z.custom<Redis | Cluster>((value) => value instanceof Redis || value instanceof Cluster, 'expected an ioredis Redis or Cluster instance'),
]);

const reserveSchema = z.strictObject({
  /** Only waiters of this priority or more urgent (a lower number) may use these slots. */
  maxPriority: z.number().int().min(PRIORITY_MIN).max(PRIORITY_MAX),
  concurrency: z.number().int().min(1).max(CONCURRENCY_MAX),
});

export const limiterOptionsSchema = z
  .strictObject({
    redis: redisSchema,
    /** One name = one shared set of limits, fleet-wide. */
    name: z.string().regex(LIMITER_NAME_PATTERN, 'letters, digits and :._- only, 1 to 200 characters'),
    concurrency: z.number().int().min(1).max(CONCURRENCY_MAX).optional(),
    rates: ratesSchema.optional(),
    /**
     * Model pools (DESIGN §9), instead of `rates`: each pool has its own buckets and its own lane of
     * the queue, so a waiter blocked on one pool's buckets never delays another pool's; the
     * concurrency limit is shared by all. `acquire({ pool })` names the pool.
     */
    pools: z
      .record(z.string().regex(POOL_NAME_PATTERN, "letters, digits and ._- (no ':' or '/'), 1 to 64 characters"), ratesSchema)
      .refine((pools) => Object.keys(pools).length >= 1, 'at least one pool')
      .refine((pools) => Object.keys(pools).length <= POOLS_MAX, `at most ${POOLS_MAX} pools`)
      .optional(),
    /**
     * Fair share between groups (tenants, DESIGN §9): with `groups` (even `{}`), waiters of one pool and priority are
     * served by start-time fair queuing across the groups `acquire({ group })` names, each in proportion to its weight
     * (a group not listed here has weight 1; an acquire without a group is group `*`); without, in arrival order.
     * A group's `buckets` are its budgets ({@link groupBucketSchema}).
     */
    groups: z
      .record(z.string().regex(GROUP_NAME_PATTERN, 'letters, digits and ._-, 1 to 64 characters'), groupSchema)
      .refine((groups) => Object.keys(groups).length <= GROUPS_MAX, `at most ${GROUPS_MAX} groups`)
      .optional(),
    reserve: z
      .array(reserveSchema)
      .max(PRIORITY_MAX + 1)
      .default([]),
    leaseTtlMs: z.number().int().min(LEASE_TTL_MS_MIN).max(LEASE_TTL_MS_MAX).default(LEASE_TTL_MS_DEFAULT),
    /** How often one process renews all of its leases; at most a third of `leaseTtlMs` by default. */
    heartbeatMs: z.number().int().min(50).max(LEASE_TTL_MS_MAX).optional(),
    redisTimeoutMs: z.number().int().min(10).max(REDIS_TIMEOUT_MS_MAX).default(REDIS_TIMEOUT_MS_DEFAULT),
    /** 'if-absent' (default): the fleet's limits win; 'force': this process's limits replace them at start. */
    applyLimits: z.enum(APPLY_LIMITS_MODES).default('if-absent'),
  })
  .superRefine((options, context) => {
    const limited = Object.keys(options.rates ?? {}).length > 0 || Object.values(options.pools ?? {}).some((rates) => Object.keys(rates).length > 0);
    if (options.concurrency === undefined && !limited) {
      context.addIssue({ code: 'custom', path: ['concurrency'], message: 'set concurrency, rates (or pools with rates), or both' });
    }
    if (options.pools !== undefined && options.rates !== undefined && Object.keys(options.rates).length > 0) {
      context.addIssue({ code: 'custom', path: ['rates'], message: "a limiter with pools has each pool's rates instead" });
    }
    if (options.heartbeatMs !== undefined && options.heartbeatMs * 2 > options.leaseTtlMs) {
      context.addIssue({ code: 'custom', path: ['heartbeatMs'], message: `must be at most half of leaseTtlMs (${options.leaseTtlMs})` });
    }
    const reserved = options.reserve.reduce((sum, channel) => sum + channel.concurrency, 0);
    if (options.reserve.length > 0 && options.concurrency === undefined) {
      context.addIssue({ code: 'custom', path: ['reserve'], message: 'a reserve needs concurrency' });
    } else if (options.concurrency !== undefined && reserved >= options.concurrency) {
      context.addIssue({ code: 'custom', path: ['reserve'], message: `reserves ${reserved} of ${options.concurrency} slots; leave at least one for every priority` });
    }
  })
  .transform((options) => ({
    ...options,
    heartbeatMs: options.heartbeatMs ?? Math.min(HEARTBEAT_MS_DEFAULT, Math.floor(options.leaseTtlMs / 3)),
  }));

/** What callers pass to `createLimiter`. */
export type LimiterOptions = z.input<typeof limiterOptionsSchema>;
/** After defaults. */
export type ResolvedLimiterOptions = z.output<typeof limiterOptionsSchema>;
export type RateOptions = z.infer<typeof rateSchema>;

/** One bucket as the scripts see it. */
export interface BucketSpec {
  dimension: string;
  capacityTokens: number;
  refillPerMs: number;
}

export function bucketSpecs(rates: ResolvedLimiterOptions['rates']): BucketSpec[] {
  return Object.entries(rates ?? {}).map(([dimension, rate]) => ({
    dimension,
    capacityTokens: rate.burst ?? rate.limit,
    refillPerMs: rate.limit / rate.intervalMs,
  }));
}

/**
 * Formats a zod error as one line per problem, naming the field and the value it had, e.g.
 * `concurrency: Too small: expected number to be >=1 (got 0)`.
 */
export function describeZodError(error: z.ZodError, input: unknown): string {
  const shown = error.issues.slice(0, ISSUES_SHOWN_MAX).map((issue) => {
    const path = cutText(issue.path.map(String).join('.') || '(root)');
    return `${path}: ${cutText(issue.message)} (got ${formatValue(offendingValue(issue, input))})`;
  });
  const more = error.issues.length - shown.length;
  return shown.join('; ') + (more > 0 ? `; and ${more} more problems` : '');
}

/** Problems named in one message; the rest are counted. */
const ISSUES_SHOWN_MAX = 10;

/** What an issue is about: an unknown key's issue sits at its parent, so it shows the unknown keys' values only (never the whole parent, e.g. the caller's whole body). */
function offendingValue(issue: z.core.$ZodIssue, input: unknown): unknown {
  const value = valueAt(input, issue.path);
  if (issue.code !== 'unrecognized_keys' || value === null || typeof value !== 'object') return value;
  const keys = issue.keys.slice(0, ISSUES_SHOWN_MAX);
  if (keys.length === 1) return (value as Record<string, unknown>)[keys[0] ?? ''];
  return Object.fromEntries(keys.map((key) => [key, (value as Record<string, unknown>)[key]]));
}

function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let value = input;
  for (const key of path) {
    if (value === null || typeof value !== 'object') return undefined;
    value = (value as Record<PropertyKey, unknown>)[key];
  }
  return value;
}

/** Longest piece of a caller's value that an error message echoes, in characters. */
export const ECHO_CHARS_MAX = 200;

/** `text` cut to `max` characters, saying how much was left out: an error never grows with the input. */
export function cutText(text: string, max: number = ECHO_CHARS_MAX): string {
  return text.length <= max ? text : `${text.slice(0, max)}… (${text.length - max} more characters)`;
}

/**
 * A value as an error message shows it: JSON, passwords in URLs masked, cut to {@link ECHO_CHARS_MAX} characters.
 * Objects are written only up to that length (a 30 MiB body is never serialized whole for an error message).
 */
export function formatValue(value: unknown): string {
  if (value instanceof Redis || value instanceof Cluster) return 'an ioredis client';
  if (typeof value === 'string') return cutText(JSON.stringify(maskPassword(value)));
  if (value === undefined || typeof value === 'number' || typeof value === 'boolean' || value === null) return String(value);
  if (typeof value !== 'object') return typeof value;
  return boundedJson(value, ECHO_CHARS_MAX);
}

/** Nesting shown in an echoed value; deeper parts print as `…`. */
const ECHO_DEPTH_MAX = 8;

const maskPassword = (text: string) => text.replace(/\/\/[^@/]*@/, '//***@'); // no passwords in messages

/** JSON of `value`, written piece by piece and stopped once `budget` characters are out. */
function boundedJson(value: object, budget: number): string {
  const parts: string[] = [];
  let length = 0;
  const push = (part: string) => {
    parts.push(part);
    length += part.length;
  };
  const walk = (item: unknown, depth: number): void => {
    if (length > budget) return;
    if (typeof item === 'string') return push(JSON.stringify(maskPassword(item.length > budget ? item.slice(0, budget) : item)));
    if (item === null || typeof item !== 'object') return push(JSON.stringify(item) ?? 'null');
    if (depth >= ECHO_DEPTH_MAX) return push('…');
    if (Array.isArray(item)) {
      push('[');
      for (let i = 0; i < item.length && length <= budget; i += 1) {
        if (i > 0) push(',');
        walk(item[i], depth + 1);
      }
      return push(']');
    }
    push('{');
    let first = true;
    for (const key in item) {
      if (length > budget) break;
      if (!Object.hasOwn(item, key)) continue;
      if (!first) push(',');
      first = false;
      push(`${JSON.stringify(key.length > budget ? key.slice(0, budget) : key)}:`);
      walk((item as Record<string, unknown>)[key], depth + 1);
    }
    push('}');
  };
  walk(value, 0);
  const text = parts.join('');
  return text.length <= budget ? text : `${text.slice(0, budget)}… (cut)`;
}

/**
 * The heartbeat period this process uses under the fleet's `leaseTtlMs`: its own when the lease TTLs
 * agree, else no more than a third of the fleet's (Redis enforces the fleet's TTL, not this process's).
 */
export function heartbeatMsFor(options: ResolvedLimiterOptions, fleetLeaseTtlMs: number): number {
  if (fleetLeaseTtlMs === options.leaseTtlMs) return options.heartbeatMs;
  return Math.max(1, Math.min(options.heartbeatMs, Math.floor(fleetLeaseTtlMs / 3)));
}

/** Parses limiter options, throwing {@link InvalidConfigError} that names each bad field and its value. */
export function parseLimiterOptions(input: unknown): ResolvedLimiterOptions {
  const result = limiterOptionsSchema.safeParse(input);
  if (!result.success) throw new InvalidConfigError(`invalid limiter options: ${describeZodError(result.error, input)}`, { cause: result.error });
  return result.data;
}
