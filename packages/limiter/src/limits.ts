import { createHash } from 'node:crypto';
import { z } from 'zod';
import { InvalidConfigError } from './errors.js';
import {
  CONCURRENCY_MAX,
  DIMENSION_PATTERN,
  INTERVAL_MS_MAX,
  LEASE_TTL_MS_MAX,
  LEASE_TTL_MS_MIN,
  PRIORITY_MAX,
  PRIORITY_MIN,
  POOL_NAME_PATTERN,
  POOLS_MAX,
  GROUP_NAME_PATTERN,
  bucketSpecs,
  groupBucketDimension,
  groupSchema,
  poolDimension,
  describeZodError,
  type BucketSpec,
  type GroupLimits,
  type ResolvedLimiterOptions,
} from './options.js';

/**
 * The fleet's limits (DESIGN §8): what every process of one limiter name runs with, kept in Redis
 * (the config hash's `limits` field, canonical JSON, with `limitsHash` and a rising `version`, the
 * revision). Only an explicit apply writes them; a process whose own options differ warns and runs
 * with these. `schema` leaves room for the accounts/pools document of a later release.
 */
export const fleetLimitsSchema = z
  .strictObject({
    schema: z.literal(1),
    /** null: no concurrency limit. */
    concurrency: z.number().int().min(1).max(CONCURRENCY_MAX).nullable(),
    /** Buckets by dimension; with pools, every dimension is a pool's: `<pool>/<dimension>`. */
    rates: z.record(
      z.string().refine((name) => isRateName(name), 'a dimension, or <pool>/<dimension>'),
      z.strictObject({ limit: z.number().positive().finite(), intervalMs: z.number().int().min(1).max(INTERVAL_MS_MAX), burst: z.number().positive().finite().nullable() }),
    ),
    reserve: z.array(z.strictObject({ maxPriority: z.number().int().min(PRIORITY_MIN).max(PRIORITY_MAX), concurrency: z.number().int().min(1).max(CONCURRENCY_MAX) })),
    /** Enforced by Redis (lease expiry, owner liveness); every process times its heartbeats by it. */
    leaseTtlMs: z.number().int().min(LEASE_TTL_MS_MIN).max(LEASE_TTL_MS_MAX),
    /** The pools, sorted (their order is the queue's lanes); absent: no pools, one queue. */
    pools: z.array(z.string().regex(POOL_NAME_PATTERN)).min(1).max(POOLS_MAX).optional(),
    /** Fair share between groups (their weights), and their budgets; absent: waiters in arrival order. */
    groups: z.record(z.string().regex(GROUP_NAME_PATTERN), groupSchema).optional(),
  })
  .superRefine((limits, context) => {
    const pools = new Set(limits.pools ?? []);
    if (limits.pools !== undefined && pools.size !== limits.pools.length) context.addIssue({ code: 'custom', path: ['pools'], message: 'a pool is named twice' });
    for (const name of Object.keys(limits.rates)) {
      const pool = name.includes('/') ? name.slice(0, name.indexOf('/')) : undefined;
      if (limits.pools === undefined ? pool !== undefined : pool === undefined || !pools.has(pool)) {
        context.addIssue({
          code: 'custom',
          path: ['rates', name],
          message: limits.pools === undefined ? 'a pool dimension without pools' : "with pools, every rate is one of the pools' (<pool>/<dimension>)",
        });
      }
    }
  });

function isRateName(name: string): boolean {
  const slash = name.indexOf('/');
  if (slash < 0) return DIMENSION_PATTERN.test(name);
  return POOL_NAME_PATTERN.test(name.slice(0, slash)) && DIMENSION_PATTERN.test(name.slice(slash + 1));
}

export type FleetLimits = z.infer<typeof fleetLimitsSchema>;

/** The fleet's limits in force, as this process knows them. */
export interface FleetLimitsState {
  limits: FleetLimits;
  /** The revision: rises with every write of the limits. */
  version: string;
  hash: string;
}

const LIMITS_HASH_CHARS = 16;

/** A process's own limits (from its options) as a fleet limits document. */
export function limitsFromOptions(options: ResolvedLimiterOptions): FleetLimits {
  const rates: FleetLimits['rates'] = {};
  const add = (pool: string | undefined, own: ResolvedLimiterOptions['rates']) => {
    for (const dimension of Object.keys(own ?? {}).sort()) {
      const rate = own?.[dimension];
      if (rate) rates[poolDimension(pool, dimension)] = { limit: rate.limit, intervalMs: rate.intervalMs, burst: rate.burst ?? null };
    }
  };
  const pools = options.pools === undefined ? undefined : Object.keys(options.pools).sort();
  if (pools === undefined) add(undefined, options.rates);
  else for (const pool of pools) add(pool, options.pools?.[pool]);
  return {
    ...(pools === undefined ? {} : { pools }),
    ...(options.groups === undefined ? {} : { groups: sortedGroups(options.groups) }),
    schema: 1,
    concurrency: options.concurrency ?? null,
    rates,
    reserve: [...options.reserve].sort((a, b) => a.maxPriority - b.maxPriority).map((channel) => ({ maxPriority: channel.maxPriority, concurrency: channel.concurrency })),
    leaseTtlMs: options.leaseTtlMs,
  };
}

/** Canonical JSON (fixed key order, rates sorted by name) and its hash: equal limits, equal text. */
export function canonicalLimits(limits: FleetLimits): { json: string; hash: string } {
  const rates = Object.fromEntries(
    Object.keys(limits.rates)
      .sort()
      .map((dimension) => {
        const rate = limits.rates[dimension];
        return [dimension, { limit: rate?.limit, intervalMs: rate?.intervalMs, burst: rate?.burst ?? null }];
      }),
  );
  const json = JSON.stringify({
    schema: limits.schema,
    concurrency: limits.concurrency,
    rates,
    reserve: limits.reserve.map((channel) => ({ maxPriority: channel.maxPriority, concurrency: channel.concurrency })),
    leaseTtlMs: limits.leaseTtlMs,
    ...(limits.pools === undefined ? {} : { pools: [...limits.pools].sort() }), // absent without pools: the hash of limits without pools is what it was
    ...(limits.groups === undefined ? {} : { groups: sortedGroups(limits.groups) }), // the same without groups
  });
  return { json, hash: createHash('sha256').update(json).digest('hex').slice(0, LIMITS_HASH_CHARS) };
}

/** Groups sorted by name, each with its budgets sorted by name (absent when it has none: the JSON of groups without budgets is what it was). */
function sortedGroups(groups: Readonly<Record<string, GroupLimits>>): Record<string, GroupLimits> {
  return Object.fromEntries(
    Object.keys(groups)
      .sort()
      .map((name) => {
        const group = groups[name];
        const buckets = group?.buckets;
        const sorted =
          buckets === undefined || Object.keys(buckets).length === 0
            ? undefined
            : Object.fromEntries(
                Object.keys(buckets)
                  .sort()
                  .map((bucket) => {
                    const spec = buckets[bucket];
                    return [bucket, { dimension: spec?.dimension ?? '', limit: spec?.limit ?? 0, intervalMs: spec?.intervalMs ?? 0 }];
                  }),
              );
        return [name, { weight: group?.weight ?? 1, ...(sorted === undefined ? {} : { buckets: sorted }) }];
      }),
  );
}

/** One budget of a group as the scripts and the limiter see it. */
export interface GroupBucketSpec extends BucketSpec {
  group: string;
  /** Its name in the group's `buckets`. */
  bucket: string;
  /** The cost dimension it is charged (`requests`: 1 per call). */
  source: string;
}

/** The groups' budgets of a limits document, by their dimension in Redis (`~<group>/<bucket>`). */
export function limitsGroupBuckets(limits: FleetLimits): GroupBucketSpec[] {
  const specs: GroupBucketSpec[] = [];
  for (const [group, { buckets }] of Object.entries(sortedGroups(limits.groups ?? {}))) {
    for (const [bucket, spec] of Object.entries(buckets ?? {})) {
      specs.push({ group, bucket, source: spec.dimension, dimension: groupBucketDimension(group, bucket), capacityTokens: spec.limit, refillPerMs: spec.limit / spec.intervalMs });
    }
  }
  return specs;
}

/** Parses the fleet's limits as Redis holds them; a document that does not parse is an InvalidConfigError. */
export function parseFleetLimits(json: string, limiterName: string): FleetLimits {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch (cause) {
    throw new InvalidConfigError(`limiter ${limiterName}: the fleet limits in Redis are not JSON`, { cause });
  }
  const result = fleetLimitsSchema.safeParse(value);
  if (!result.success) throw new InvalidConfigError(`limiter ${limiterName}: invalid fleet limits in Redis: ${describeZodError(result.error, value)}`, { cause: result.error });
  return result.data;
}

/** The buckets a limits document defines, as the scripts see them. */
export function limitsBuckets(limits: FleetLimits): BucketSpec[] {
  return bucketSpecs(
    Object.fromEntries(Object.entries(limits.rates).map(([dimension, rate]) => [dimension, { limit: rate.limit, intervalMs: rate.intervalMs, burst: rate.burst ?? undefined }])),
  );
}

/** One line per field where `own` differs from `fleet`, e.g. `concurrency: 4 here, 8 in the fleet`. */
export function limitsDifferences(own: FleetLimits, fleet: FleetLimits): string[] {
  const differences: string[] = [];
  const show = (value: unknown) => (value === null || value === undefined ? 'none' : JSON.stringify(value));
  if (own.concurrency !== fleet.concurrency) differences.push(`concurrency: ${show(own.concurrency)} here, ${show(fleet.concurrency)} in the fleet`);
  if (own.leaseTtlMs !== fleet.leaseTtlMs) differences.push(`leaseTtlMs: ${own.leaseTtlMs} here, ${fleet.leaseTtlMs} in the fleet`);
  if (JSON.stringify(own.reserve) !== JSON.stringify(fleet.reserve)) differences.push(`reserve: ${show(own.reserve)} here, ${show(fleet.reserve)} in the fleet`);
  if (JSON.stringify(own.pools) !== JSON.stringify(fleet.pools)) differences.push(`pools: ${show(own.pools)} here, ${show(fleet.pools)} in the fleet`);
  const groups = (limits: FleetLimits) => (limits.groups === undefined ? undefined : sortedGroups(limits.groups));
  if (JSON.stringify(groups(own)) !== JSON.stringify(groups(fleet))) differences.push(`groups: ${show(groups(own))} here, ${show(groups(fleet))} in the fleet`);
  for (const dimension of new Set([...Object.keys(own.rates), ...Object.keys(fleet.rates)])) {
    const mine = own.rates[dimension];
    const theirs = fleet.rates[dimension];
    if (JSON.stringify(mine) !== JSON.stringify(theirs)) differences.push(`rates.${dimension}: ${show(mine)} here, ${show(theirs)} in the fleet`);
  }
  return differences;
}

/** The ARGV tail of configure for a limits document: concurrency, leaseTtlMs, reserve, lanes, dims. */
export function limitsArgs(limits: FleetLimits): Array<string | number> {
  const buckets = limitsBuckets(limits);
  const budgets = limitsGroupBuckets(limits);
  return [
    limits.concurrency ?? 0,
    limits.leaseTtlMs,
    limits.reserve.map((channel) => `${channel.maxPriority}:${channel.concurrency}`).join(';'),
    [...(limits.pools ?? [])].sort().join(','),
    buckets.length,
    ...buckets.flatMap((spec) => [spec.dimension, spec.capacityTokens, spec.refillPerMs]),
    budgets.length,
    ...budgets.flatMap((spec) => [spec.dimension, spec.capacityTokens, spec.refillPerMs]),
  ];
}
