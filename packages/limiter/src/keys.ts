import { strict as assert } from 'node:assert';

/** Limiter names: letters, digits and `:._-`; no braces, so no one can inject a hash tag. */
export const LIMITER_NAME_PATTERN = /^[A-Za-z0-9:._-]{1,200}$/;

/**
 * The one place a key prefix is spelled. Every key of one limiter shares the hash tag
 * `{tollgate:<name>}`, so every script touches one Redis Cluster slot. Scripts receive only
 * the prefix (KEYS[1]) and derive sibling keys from it (see lua/prelude.lua for the list).
 */
export function limiterKeys(name: string) {
  assert(LIMITER_NAME_PATTERN.test(name), `invalid limiter name ${JSON.stringify(name)}`);
  const prefix = `{tollgate:${name}}`;
  return {
    prefix,
    config: `${prefix}:config`,
    leases: `${prefix}:leases`,
    waiting: `${prefix}:waiting`,
    grants: (ownerId: string) => `${prefix}:grants:${ownerId}`,
    owner: (ownerId: string) => `${prefix}:owner:${ownerId}`,
    bucket: (dimension: string) => `${prefix}:bucket:${dimension}`,
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
