import { randomBytes } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import { InvalidConfigError, createLimiter, limiterOptionsFor, readFleetLimits, type FleetLimits } from '@tollgate/limiter';
import { COUNT_TOKENS_LIMITER_SUFFIX, type LimitsDocument, type TenantPolicy } from './document.js';
import { countTokensRates, poolRates, type LimiterRate } from './env.js';
import { storeLimitsDocument } from './store.js';

/** Held while one apply writes: two applies at once would leave limiters enforcing a mix of both documents. */
export const APPLY_LOCK_KEY = 'tollgate:document:apply-lock';
const APPLY_LOCK_MS = 60_000;
/** Deletes the lock only when it is still this apply's. */
const UNLOCK_SCRIPT = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

/** One limiter that a document's account runs, and the limits it enforces. */
export interface AccountLimiter {
  account: string;
  /** The limiter name: the account's, or the account's with {@link COUNT_TOKENS_LIMITER_SUFFIX}. */
  name: string;
  limits: FleetLimits;
}

const limiterRates = (rates: Record<string, LimiterRate>): FleetLimits['rates'] =>
  Object.fromEntries(Object.entries(rates).map(([dimension, rate]) => [dimension, { limit: rate.limit, intervalMs: rate.intervalMs, burst: rate.burst ?? null }]));

/**
 * The limiters a document's accounts run (DESIGN §8): per account, its Messages limiter (the account's concurrency,
 * and its pools' buckets) and, with a `countTokens` limit, its count_tokens limiter. An account with one pool has that
 * pool's buckets as the limiter's own; one with several has a limiter with pools (DESIGN §9: a lane of the queue and
 * a set of buckets per pool, `<pool>/<dimension>`), so a waiter blocked on one pool never delays another's. The
 * document states no reserved-slot channels (`reserve: []`; an apply keeps what the fleet has).
 */
export function accountLimiters(document: LimitsDocument): AccountLimiter[] {
  const limiters: AccountLimiter[] = [];
  for (const [account, limits] of Object.entries(document.accounts)) {
    const pools = Object.entries(limits.pools).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const single = pools.length === 1 ? pools[0]?.[1] : undefined;
    const rates =
      single !== undefined
        ? limiterRates(poolRates(single))
        : Object.fromEntries(pools.flatMap(([pool, spec]) => Object.entries(limiterRates(poolRates(spec))).map(([dimension, rate]) => [`${pool}/${dimension}`, rate])));
    limiters.push({
      account,
      name: account,
      limits: {
        schema: 1,
        concurrency: limits.concurrency ?? null,
        rates,
        reserve: [],
        leaseTtlMs: limits.leaseTtlMs,
        ...(single !== undefined ? {} : { pools: pools.map(([pool]) => pool) }),
        // an account whose tenants the document names shares its queue between them by weight (DESIGN §9)
        ...(tenantGroups(document, account) ?? {}),
      },
    });
    if (limits.countTokens !== undefined) {
      const name = `${account}${COUNT_TOKENS_LIMITER_SUFFIX}`;
      limiters.push({
        account,
        name,
        limits: { schema: 1, concurrency: null, rates: limiterRates(countTokensRates(limits)), reserve: [], leaseTtlMs: limits.leaseTtlMs },
      });
    }
  }
  return limiters;
}

const DAY_MS = 24 * 60 * 60 * 1000;
/** A month's budget refills over 30 days (continuously, like every bucket: no calendar boundary). */
const MONTH_MS = 30 * DAY_MS;
/** Each budget of the document as a bucket of the tenant's group: the cost dimension it counts, and its refill interval. */
const BUDGET_BUCKETS = {
  inputTokensPerDay: { dimension: 'inputTokens', intervalMs: DAY_MS },
  outputTokensPerDay: { dimension: 'outputTokens', intervalMs: DAY_MS },
  inputTokensPerMonth: { dimension: 'inputTokens', intervalMs: MONTH_MS },
  outputTokensPerMonth: { dimension: 'outputTokens', intervalMs: MONTH_MS },
  requestsPerDay: { dimension: 'requests', intervalMs: DAY_MS },
} as const satisfies Record<keyof NonNullable<TenantPolicy['budgets']>, { dimension: string; intervalMs: number }>;

type TenantGroup = NonNullable<FleetLimits['groups']>[string];

/** A tenant's budgets as its group's buckets; undefined when it has none. */
function budgetBuckets(budgets: TenantPolicy['budgets']): TenantGroup['buckets'] {
  const buckets = Object.entries(budgets ?? {}).flatMap(([name, limit]) =>
    limit === undefined ? [] : [[name, { ...BUDGET_BUCKETS[name as keyof typeof BUDGET_BUCKETS], limit }] as const],
  );
  return buckets.length === 0 ? undefined : Object.fromEntries(buckets);
}

/** The weights and budgets of an account's tenants as its limiter's groups; undefined when the document names none of them. */
function tenantGroups(document: LimitsDocument, account: string): { groups: Record<string, TenantGroup> } | undefined {
  const tenants = Object.entries(document.tenants)
    .filter(([, tenant]) => tenant.account === account)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  if (tenants.length === 0) return undefined;
  return {
    groups: Object.fromEntries(
      tenants.map(([name, tenant]) => {
        const buckets = budgetBuckets(tenant.budgets);
        return [name, { weight: tenant.weight, ...(buckets === undefined ? {} : { buckets }) }];
      }),
    ),
  };
}

/** What {@link applyLimitsDocument} did. */
export interface AppliedDocument {
  /** The document's revision in force now, and whether this apply wrote it. */
  revision: number;
  changed: boolean;
  /** Each limiter's limits revision in force now, and whether this apply wrote it (a limiter whose limits had drifted from the document, e.g. by a one-limiter apply, is written back). */
  limiters: Array<{ name: string; version: string; changed: boolean }>;
}

/**
 * The explicit apply of DESIGN §8 (what `tollgate limits apply FILE` runs): writes each account's limits into its
 * limiter (every process of that account runs with them within one heartbeat; a queued waiter that a lowered capacity
 * cannot hold is rejected at once), then stores the document as the fleet's (tenant policy, followed live). Every
 * limiter is checked before anything is written, so a document this release cannot enforce writes nothing; the writes
 * themselves are per account (each in its own Redis Cluster slot), in document order, under a lock
 * ({@link APPLY_LOCK_KEY}) so that two applies never interleave.
 * @throws {@link InvalidConfigError} while another apply holds the lock.
 * @throws {@link InvalidConfigError} as {@link accountLimiters}.
 */
export async function applyLimitsDocument(redis: Redis | Cluster, document: LimitsDocument, options: { redisTimeoutMs?: number } = {}): Promise<AppliedDocument> {
  const limiters = accountLimiters(document); // refused before the lock: nothing to wait for
  const token = randomBytes(8).toString('hex');
  if ((await redis.set(APPLY_LOCK_KEY, token, 'PX', APPLY_LOCK_MS, 'NX')) !== 'OK') {
    throw new InvalidConfigError(`another limits apply is running (${APPLY_LOCK_KEY}); retry when it ends (the lock expires after ${APPLY_LOCK_MS / 1000} s)`);
  }
  try {
    return await applyLocked(redis, document, limiters, options);
  } finally {
    await redis.eval(UNLOCK_SCRIPT, 1, APPLY_LOCK_KEY, token).catch(() => {}); // it expires by itself otherwise
  }
}

async function applyLocked(redis: Redis | Cluster, document: LimitsDocument, limiters: readonly AccountLimiter[], options: { redisTimeoutMs?: number }): Promise<AppliedDocument> {
  const readings = new Map(await Promise.all(limiters.map(async ({ name }) => [name, await readFleetLimits(redis, name)] as const)));
  const applied: AppliedDocument['limiters'] = [];
  for (const { name, limits } of limiters) {
    // the document states no reserve: the one the limiter has is kept
    const reserve = readings.get(name)?.limits.reserve ?? [];
    const limiter = createLimiter({
      ...limiterOptionsFor({ ...limits, reserve }, redis, name),
      applyLimits: 'force',
      ...(options.redisTimeoutMs === undefined ? {} : { redisTimeoutMs: options.redisTimeoutMs }),
    });
    try {
      await limiter.ready();
      const version = limiter.fleetLimits?.version ?? '';
      applied.push({ name, version, changed: version !== (readings.get(name)?.version ?? '') });
    } finally {
      await limiter.close();
    }
  }
  const stored = await storeLimitsDocument(redis, document);
  return { revision: stored.revision, changed: stored.changed, limiters: applied };
}
