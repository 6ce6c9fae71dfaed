import type { Cluster, Redis, Result } from 'ioredis';
import { TENANT_PATTERN } from './schema.js';

/**
 * The per-tenant view of a queue (read-only with respect to scheduling): which tenant each unfinished job belongs
 * to, kept beside BullMQ's own keys, so that `tollgate status`, the dashboard and /metrics can say, per tenant, how
 * many jobs are in flight (in BullMQ's active list: held by a worker) and how many wait (unfinished, not active).
 *
 * In flight is read from the active list itself at each read, so a killed worker's jobs stop counting the moment
 * BullMQ's stalled check moves them back to waiting: nothing to drift. Unfinished is a counter kept in the same Lua
 * as its member hash (idempotent: a job is counted once whatever is retried), added to after a job is enqueued and
 * taken from when it is found finished or gone: by its worker at once, by `cancel`, and by every worker's sweep,
 * which looks at a bounded slice of the members each time and so also catches what a crash left behind.
 */

/** The label of jobs enqueued without a tenant (a tenant name has 1 to 64 characters, so '' is never one). */
export const NO_TENANT_LABEL = '-';
/** Members a sweep looks at per call (one EXISTS and one HEXISTS each). */
export const TENANT_SWEEP_BATCH = 200;
/** How often each worker sweeps, in ms. */
export const TENANT_SWEEP_INTERVAL_MS = 5_000;

/**
 * tenant-track.v1: counts an enqueued job under its tenant, once. A job that is already finished or gone is not
 * counted (its worker may have been faster than this call).
 *   KEYS[1]  {tollgate-queue:<q>}:<q>:tenant-jobs        HASH jobId -> tenant ('' = none)
 *   KEYS[2]  {tollgate-queue:<q>}:<q>:tenant-unfinished  HASH tenant -> unfinished jobs
 *   ARGV[1]  jobPrefix  string, '{tollgate-queue:<q>}:<q>:' (BullMQ's job hash is jobPrefix .. jobId; same hash tag)
 *   ARGV[2]  jobId      string, JOB_ID_PATTERN
 *   ARGV[3]  tenant     string, TENANT_PATTERN or '' (none)
 *   Returns  1 counted now | 0 already counted, finished or gone
 */
const TENANT_TRACK_V1 = `
local job = ARGV[1] .. ARGV[2]
if redis.call('EXISTS', job) == 0 or redis.call('HEXISTS', job, 'finishedOn') == 1 then return 0 end
if redis.call('HSETNX', KEYS[1], ARGV[2], ARGV[3]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
return 1
`;

/**
 * tenant-prune.v1: stops counting each given job that is finished (`finishedOn` set) or gone; unfinished ones stay.
 *   KEYS[1], KEYS[2]  as tenant-track.v1
 *   ARGV[1]   jobPrefix as tenant-track.v1
 *   ARGV[2..] jobIds    at most TENANT_SWEEP_BATCH
 *   Returns   the number of jobs no longer counted
 */
const TENANT_PRUNE_V1 = `
local removed = 0
for i = 2, #ARGV do
  local id = ARGV[i]
  local tenant = redis.call('HGET', KEYS[1], id)
  local job = ARGV[1] .. id
  if tenant and (redis.call('EXISTS', job) == 0 or redis.call('HEXISTS', job, 'finishedOn') == 1) then
    redis.call('HDEL', KEYS[1], id)
    if redis.call('HINCRBY', KEYS[2], tenant, -1) <= 0 then redis.call('HDEL', KEYS[2], tenant) end
    removed = removed + 1
  end
end
return removed
`;

/**
 * tenant-counts.v1: one consistent reading of unfinished and in-flight jobs per tenant. The active list is bounded
 * by the fleet's worker concurrency, so this costs O(active + tenants with unfinished jobs).
 *   KEYS[1], KEYS[2]  as tenant-track.v1
 *   KEYS[3]  {tollgate-queue:<q>}:<q>:active  LIST of BullMQ's active job ids
 *   Returns  {unfinished, active}: two flat lists tenant, count, … (an active job not counted shows as '')
 */
const TENANT_COUNTS_V1 = `
local unfinished = redis.call('HGETALL', KEYS[2])
local ids = redis.call('LRANGE', KEYS[3], 0, -1)
local byTenant = {}
local order = {}
for i = 1, #ids, 1000 do
  local tenants = redis.call('HMGET', KEYS[1], unpack(ids, i, math.min(i + 999, #ids)))
  for j = 1, #tenants do
    local tenant = tenants[j] or ''
    if byTenant[tenant] == nil then byTenant[tenant] = 0; order[#order + 1] = tenant end
    byTenant[tenant] = byTenant[tenant] + 1
  end
end
local active = {}
for _, tenant in ipairs(order) do active[#active + 1] = tenant; active[#active + 1] = byTenant[tenant] end
return {unfinished, active}
`;

declare module 'ioredis' {
  interface RedisCommander<Context> {
    tollgateTenantTrackV1(jobs: string, unfinished: string, jobPrefix: string, jobId: string, tenant: string): Result<0 | 1, Context>;
    tollgateTenantPruneV1(jobs: string, unfinished: string, jobPrefix: string, ...jobIds: string[]): Result<number, Context>;
    tollgateTenantCountsV1(jobs: string, unfinished: string, active: string): Result<[Array<string | number>, Array<string | number>], Context>;
  }
}

/** The keys of the per-tenant view of one queue (see `queueKeys`). */
export interface TenantCountKeys {
  tenantJobs: string;
  tenantUnfinished: string;
  active: string;
  jobPrefix: string;
}

/** Loads the scripts on `redis` once (ioredis sends EVALSHA, then EVAL after a NOSCRIPT). */
export function defineTenantCounts(redis: Redis | Cluster): void {
  if (typeof (redis as Partial<Redis>).tollgateTenantTrackV1 === 'function') return;
  redis.defineCommand('tollgateTenantTrackV1', { numberOfKeys: 2, lua: TENANT_TRACK_V1 });
  redis.defineCommand('tollgateTenantPruneV1', { numberOfKeys: 2, lua: TENANT_PRUNE_V1 });
  redis.defineCommand('tollgateTenantCountsV1', { numberOfKeys: 3, lua: TENANT_COUNTS_V1 });
}

/** Counts an enqueued job under its tenant (null: none). */
export async function trackTenantJob(redis: Redis | Cluster, keys: TenantCountKeys, jobId: string, tenant: string | null): Promise<void> {
  defineTenantCounts(redis);
  await redis.tollgateTenantTrackV1(keys.tenantJobs, keys.tenantUnfinished, keys.jobPrefix, jobId, tenant ?? '');
}

/** Jobs whose data one step of {@link trackRetriedTenantJobs} reads at once (a job's data holds its whole request). */
const RETRACK_BATCH = 100;

/**
 * Counts again each given job that is unfinished now, under the tenant its data names: for jobs BullMQ's `retryJobs`
 * brought back (the view forgot them when they failed; their worker would count them only once it starts them). A
 * job still finished or gone is left out, so the ids may be read before the retry. Returns how many now count.
 */
export async function trackRetriedTenantJobs(redis: Redis | Cluster, keys: TenantCountKeys, jobIds: readonly string[]): Promise<number> {
  defineTenantCounts(redis);
  let counted = 0;
  for (let from = 0; from < jobIds.length; from += RETRACK_BATCH) {
    const ids = jobIds.slice(from, from + RETRACK_BATCH);
    const tracked = await Promise.all(
      ids.map(async (jobId) => {
        const tenant = tenantOfData(await redis.hget(keys.jobPrefix + jobId, 'data'));
        return tenant === undefined ? 0 : redis.tollgateTenantTrackV1(keys.tenantJobs, keys.tenantUnfinished, keys.jobPrefix, jobId, tenant ?? '');
      }),
    );
    counted += tracked.reduce<number>((sum, one) => sum + one, 0);
  }
  return counted;
}

/** The tenant a job's data names (null: none); undefined when the job is gone or its data is not a job's. */
function tenantOfData(text: string | null): string | null | undefined {
  if (text === null) return undefined;
  try {
    const tenant = (JSON.parse(text) as { tenant?: unknown }).tenant;
    return tenant === null ? null : typeof tenant === 'string' && TENANT_PATTERN.test(tenant) ? tenant : undefined;
  } catch {
    return undefined;
  }
}

/** Stops counting the given jobs that are finished or gone; returns how many. */
export async function pruneTenantJobs(redis: Redis | Cluster, keys: TenantCountKeys, jobIds: readonly string[]): Promise<number> {
  if (jobIds.length === 0) return 0;
  defineTenantCounts(redis);
  return redis.tollgateTenantPruneV1(keys.tenantJobs, keys.tenantUnfinished, keys.jobPrefix, ...jobIds);
}

/**
 * One step of the sweep: looks at about {@link TENANT_SWEEP_BATCH} counted jobs from `cursor` (HSCAN, so a full
 * pass visits every member present throughout) and stops counting those finished or gone.
 * @returns the next cursor ('0': a pass ended) and how many were pruned.
 */
export async function sweepTenantJobs(redis: Redis | Cluster, keys: TenantCountKeys, cursor: string): Promise<{ cursor: string; pruned: number }> {
  const [next, entries] = await redis.hscan(keys.tenantJobs, cursor, 'COUNT', TENANT_SWEEP_BATCH);
  const ids = entries.filter((_, i) => i % 2 === 0);
  return { cursor: next, pruned: await pruneTenantJobs(redis, keys, ids) };
}

/** A whole sweep pass now (after a bulk removal such as `queue drain`); returns how many jobs stopped counting. */
export async function sweepAllTenantJobs(redis: Redis | Cluster, keys: TenantCountKeys): Promise<number> {
  let cursor = '0';
  let pruned = 0;
  do {
    const step = await sweepTenantJobs(redis, keys, cursor);
    cursor = step.cursor;
    pruned += step.pruned;
  } while (cursor !== '0'); // HSCAN always comes back to 0
  return pruned;
}

/** Jobs of one tenant: held by a worker, and unfinished but not held (waiting, prioritized or delayed for a retry). */
export interface TenantCount {
  /** The tenant's name, or {@link NO_TENANT_LABEL} for jobs without one. */
  tenant: string;
  inFlight: number;
  waiting: number;
}

/** Per-tenant counts of a queue, busiest first (then by name). Tenants with nothing unfinished are left out. */
export async function readTenantCounts(redis: Redis | Cluster, keys: TenantCountKeys): Promise<TenantCount[]> {
  defineTenantCounts(redis);
  const [unfinished, active] = await redis.tollgateTenantCountsV1(keys.tenantJobs, keys.tenantUnfinished, keys.active);
  const pairs = (flat: Array<string | number>) => {
    const out = new Map<string, number>();
    for (let i = 0; i + 1 < flat.length; i += 2) out.set(String(flat[i]) || NO_TENANT_LABEL, (out.get(String(flat[i]) || NO_TENANT_LABEL) ?? 0) + Number(flat[i + 1]));
    return out;
  };
  const open = pairs(unfinished);
  const held = pairs(active);
  const tenants = new Set([...open.keys(), ...held.keys()]);
  return [...tenants]
    .map((tenant) => {
      const inFlight = held.get(tenant) ?? 0;
      // an active job counted late (its enqueue's second step still on its way) is in flight, never a negative wait
      return { tenant, inFlight, waiting: Math.max(0, (open.get(tenant) ?? 0) - inFlight) };
    })
    .filter((count) => count.inFlight + count.waiting > 0)
    .sort((a, b) => b.inFlight + b.waiting - (a.inFlight + a.waiting) || a.tenant.localeCompare(b.tenant));
}

/** Sums the per-tenant counts of several queues (a tenant's jobs may be on more than one), busiest first as {@link readTenantCounts}. */
export function mergeTenantCounts(lists: ReadonlyArray<readonly TenantCount[]>): TenantCount[] {
  const byTenant = new Map<string, TenantCount>();
  for (const { tenant, inFlight, waiting } of lists.flat()) {
    const total = byTenant.get(tenant);
    byTenant.set(tenant, total === undefined ? { tenant, inFlight, waiting } : { tenant, inFlight: total.inFlight + inFlight, waiting: total.waiting + waiting });
  }
  return [...byTenant.values()].sort((a, b) => b.inFlight + b.waiting - (a.inFlight + a.waiting) || a.tenant.localeCompare(b.tenant));
}
