import type { LimitsDocument } from '@tollgate/config';
import type { Cluster, Redis } from 'ioredis';
import { accountQueueName, parseQueueName, poolLessQueueName, poolQueueName, queueKeys, tenantQueueName } from './keys.js';

/**
 * Which queue a job goes on under the fleet's limits document (DESIGN §9), and every queue an account's jobs may be
 * on. An account with one pool (the environment's shorthand, or a document with one pool) keeps one queue,
 * `<queue>@<account>`; an account with several has one queue per pool, `<queue>@<account>~<pool>`, so that one pool's
 * backlog (jobs waiting in the workers' slots for that pool's permits) never holds the slots another pool's jobs need.
 * A tenant of the document has its own queues likewise (`…#<tenant>`), except a tenant with a concurrency cap: its cap
 * is BullMQ's global concurrency of one queue, and it must span the tenant's pools, so a capped tenant keeps the one
 * queue `<queue>@<account>#<tenant>` for all of them. Jobs without a pool (count_tokens, models) go on the pool-less
 * queue of the account (or tenant).
 */

/** The pools of `account` that have queues of their own: none for an account with one pool (or not in `document`). */
export function queuedPools(document: LimitsDocument | undefined, account: string): string[] {
  const limits = document !== undefined && Object.hasOwn(document.accounts, account) ? document.accounts[account] : undefined;
  const pools = Object.keys(limits?.pools ?? {});
  return pools.length > 1 ? pools : [];
}

/** Whether the document's tenant has a concurrency cap (its jobs then stay on one queue across pools). */
function capped(document: LimitsDocument | undefined, tenant: string): boolean {
  return document !== undefined && Object.hasOwn(document.tenants, tenant) && document.tenants[tenant]?.concurrency !== undefined;
}

/**
 * The queue of a job of `account` whose model is of `pool` (undefined: a job of no pool), for `tenant` (a tenant of
 * the document on that account; undefined: none).
 */
export function jobQueueName(document: LimitsDocument | undefined, queue: string, account: string, pool: string | undefined, tenant: string | undefined): string {
  const base = accountQueueName(queue, account);
  const split = pool !== undefined && queuedPools(document, account).includes(pool) && (tenant === undefined || !capped(document, tenant));
  const home = split ? poolQueueName(base, pool) : base;
  return tenant === undefined ? home : tenantQueueName(home, tenant);
}

/**
 * Every queue of `tenant` on `account` under `document`: its pool-less queue first (the capped tenant's only one, and
 * the one of jobs enqueued before its account had several pools), then one per pool unless it is capped.
 */
export function tenantQueueNames(document: LimitsDocument | undefined, queue: string, account: string, tenant: string): string[] {
  const base = accountQueueName(queue, account);
  const pools = capped(document, tenant) ? [] : queuedPools(document, account);
  return [tenantQueueName(base, tenant), ...pools.map((pool) => tenantQueueName(poolQueueName(base, pool), tenant))];
}

/**
 * Every queue of `account` under `document`: the account's own (`<queue>@<account>`, which also holds the jobs of an
 * older producer or of before an apply that added pools), one per pool, then each of its tenants' ({@link tenantQueueNames}).
 */
export function accountQueueNames(document: LimitsDocument | undefined, queue: string, account: string): string[] {
  const base = accountQueueName(queue, account);
  const tenants = Object.entries(document?.tenants ?? {}).flatMap(([tenant, policy]) => (policy.account === account ? tenantQueueNames(document, queue, account, tenant) : []));
  return [base, ...queuedPools(document, account).map((pool) => poolQueueName(base, pool)), ...tenants];
}

/**
 * The pool queues of a pool-less queue (`<queue>@<account>` or `<queue>@<account>#<tenant>`) under `document`: none for
 * a plain queue, an account with one pool or a capped tenant.
 */
export function poolQueueNames(document: LimitsDocument | undefined, poolLess: string): string[] {
  const parts = parseQueueName(poolLess);
  if (parts?.account === undefined || parts.pool !== undefined) return [];
  const { queue, account, tenant } = parts;
  if (tenant === undefined) return queuedPools(document, account).map((pool) => poolQueueName(poolLess, pool));
  return tenantQueueNames(document, queue, account, tenant).slice(1);
}

/**
 * The pool queues of each pool-less queue in `poolLess` that a producer has put a job on (their `poolQueues` sets),
 * whatever the fleet's document says now: an apply may have removed a pool (or a tenant's cap may have moved its jobs)
 * since. A member that is not a pool queue of its set's queue is ignored.
 */
export async function registeredPoolQueues(redis: Redis | Cluster, poolLess: readonly string[]): Promise<string[]> {
  const sets = await Promise.all(poolLess.map(async (name) => ({ name, members: await redis.smembers(queueKeys(name).poolQueues) })));
  return sets.flatMap(({ name, members }) => members.filter((member) => parseQueueName(member)?.pool !== undefined && poolLessQueueName(member) === name).sort());
}

/**
 * A queue and its pool queues, as `tollgate`'s queue commands act on them: for a pool-less account or tenant queue,
 * itself, then each pool queue of the document and each one a producer has used; for the plain queue, itself and
 * those of the document's only account (where a producer without an account puts its jobs of a pool); a pool queue
 * alone.
 */
export async function queueFamily(redis: Redis | Cluster, document: LimitsDocument | undefined, name: string): Promise<string[]> {
  const parts = parseQueueName(name);
  if (parts === undefined || parts.pool !== undefined) return [name];
  const accounts = Object.keys(document?.accounts ?? {});
  const poolLess = parts.account !== undefined ? name : accounts.length === 1 ? accountQueueName(parts.queue, accounts[0] ?? '') : undefined;
  if (poolLess === undefined) return [name];
  const pools = [...poolQueueNames(document, poolLess), ...(await registeredPoolQueues(redis, [poolLess]))];
  return [...new Set([name, ...pools])];
}

/**
 * Every queue of `account` ({@link accountQueueNames}) and every pool queue a producer has used on its pool-less ones
 * ({@link registeredPoolQueues}): what its workers run and what `tollgate status` counts.
 */
export async function knownAccountQueueNames(redis: Redis | Cluster, document: LimitsDocument | undefined, queue: string, account: string): Promise<string[]> {
  const names = accountQueueNames(document, queue, account);
  const registered = await registeredPoolQueues(
    redis,
    names.filter((name) => parseQueueName(name)?.pool === undefined),
  );
  return [...new Set([...names, ...registered])];
}
