import { strict as assert } from 'node:assert';

/** Limiter names: letters, digits and `:._-`; no braces, so no one can inject a hash tag. */
export const LIMITER_NAME_PATTERN = /^[A-Za-z0-9:._-]{1,200}$/;

/**
 * The one place a key is spelled. Every key of one limiter shares the hash tag `{tollgate:<name>}`,
 * so every function touches one Redis Cluster slot, and every function declares all of them
 * (`functionKeys`, in the order lua/prelude.lua reads them), so that a slot migration redirects a
 * call (ASK, TRYAGAIN) instead of running it on a node that holds only some of them.
 */
export function limiterKeys(name: string) {
  assert(LIMITER_NAME_PATTERN.test(name), `invalid limiter name ${JSON.stringify(name)}`);
  const prefix = `{tollgate:${name}}`;
  const keys = {
    /**
     * The config, and in the same hash (one key fewer to declare per call) the counters `seq` (waiter
     * order) and `fence` (fencing numbers) and every bucket: fields `t:<dimension>` (tokens) and
     * `ts:<dimension>` (Redis ms of t).
     */
    config: `${prefix}:config`,
    leases: `${prefix}:leases`,
    waiting: `${prefix}:waiting`,
    /** ownerId → Redis ms until which the process counts as alive. */
    owners: `${prefix}:owners`,
    /** waiterId → a grant the pump made, kept until released (for a process that missed its message). */
    granted: `${prefix}:granted`,
    /** permitId → expiry: leases reclaimed after expiry and not released yet, so that a late release settles once. */
    expired: `${prefix}:expired`,
  } as const;
  return {
    prefix,
    ...keys,
    functionKeys: [keys.config, keys.leases, keys.waiting, keys.owners, keys.granted, keys.expired] as readonly string[],
    /** The Pub/Sub channel a process's grants are published on (a channel, not a key). */
    grantsChannel: (ownerId: string) => `${prefix}:grants:${ownerId}`,
  } as const;
}

export type LimiterKeys = ReturnType<typeof limiterKeys>;

/**
 * One key per Redis database, shared by every limiter (configure.v2.lua sets it once): while it
 * exists the database has not lost its data, so a limiter name configured for the first time needs
 * no grace pause. Not used on a Cluster (a script may touch only its own slot), where every new
 * dataset pauses.
 */
export const DATASETS_KEY = 'tollgate:datasets';
