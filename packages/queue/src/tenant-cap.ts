import type { Cluster, Redis, Result } from 'ioredis';

/** Reservations younger than this are kept even without a job hash: their enqueue may still be on its way, in ms. */
export const RESERVE_GRACE_MS = 30_000;

/**
 * tenant-reserve.v2: reserves a queued-job place for a tenant's new job, at most `max` unfinished jobs on any of the
 * tenant's queues (its pool-less queue and its pool queues, which share one hash tag: keys.ts). Finished or vanished
 * jobs are pruned only when the set is full, so the usual cost is O(log n); a full set costs one look at each member
 * on each queue (at most `max` × queues), which bounds the loop.
 *   KEYS[1]  {tollgate-queue:<q>}:<q>:tenant-open:<tenant>   ZSET jobId -> reserved at (Redis ms)
 *   ARGV[1]  jobId        string, JOB_ID_PATTERN
 *   ARGV[2]  max          integer, 1..TENANT_QUEUED_MAX
 *   ARGV[3]  graceMs      integer, RESERVE_GRACE_MS
 *   ARGV[4…] jobPrefix    string each, '{tollgate-queue:<q>}:<queue>:' of each of the tenant's queues (BullMQ's job
 *                         hash is jobPrefix .. jobId; same hash tag)
 *   Returns  {1, open} reserved (or already held by this id) | {0, open} full
 */
const TENANT_RESERVE_V2 = `
local t = redis.call('TIME')
local nowMs = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return {1, redis.call('ZCARD', KEYS[1])} end
local max = tonumber(ARGV[2])
local open = redis.call('ZCARD', KEYS[1])
if open >= max then
  local members = redis.call('ZRANGE', KEYS[1], 0, max - 1, 'WITHSCORES')
  for i = 1, #members, 2 do
    local exists, finished = false, false
    for p = 4, #ARGV do
      local key = ARGV[p] .. members[i]
      if redis.call('EXISTS', key) == 1 then
        exists = true
        if redis.call('HEXISTS', key, 'finishedOn') == 1 then finished = true end
        break
      end
    end
    local gone = not exists and tonumber(members[i + 1]) < nowMs - tonumber(ARGV[3])
    if gone or finished then redis.call('ZREM', KEYS[1], members[i]) end
  end
  open = redis.call('ZCARD', KEYS[1])
  if open >= max then return {0, open} end
end
redis.call('ZADD', KEYS[1], nowMs, ARGV[1])
return {1, open + 1}
`;

declare module 'ioredis' {
  interface RedisCommander<Context> {
    tollgateTenantReserveV2(key: string, jobId: string, max: number, graceMs: number, ...jobPrefixes: string[]): Result<[0 | 1, number], Context>;
  }
}

/** Loads the script on `redis` once (ioredis sends EVALSHA, then EVAL after a NOSCRIPT). */
export function defineTenantReserve(redis: Redis | Cluster): void {
  if (typeof (redis as Partial<Redis>).tollgateTenantReserveV2 !== 'function') redis.defineCommand('tollgateTenantReserveV2', { numberOfKeys: 1, lua: TENANT_RESERVE_V2 });
}

/**
 * True when the job got its place (or held it already); false when the tenant is at its cap. `jobPrefixes`: the job
 * hash prefix of each queue the tenant's jobs may be on (one hash tag).
 */
export async function reserveTenantPlace(redis: Redis | Cluster, key: string, jobId: string, max: number, jobPrefixes: readonly string[]): Promise<boolean> {
  const [status] = await redis.tollgateTenantReserveV2(key, jobId, max, RESERVE_GRACE_MS, ...jobPrefixes);
  return status === 1;
}

/** Gives a place back (the job was cancelled before it ran). */
export async function releaseTenantPlace(redis: Redis | Cluster, key: string, jobId: string): Promise<void> {
  await redis.zrem(key, jobId);
}
