import { InvalidArgumentError, LIMITER_NAME_PATTERN } from '@tollgate/limiter';
import { POOL_NAME_PATTERN } from '@tollgate/config';
import { TENANT_PATTERN } from './schema.js';

/** Queue names share the limiter's alphabet minus `:` (BullMQ splits its keys on it). */
export const QUEUE_NAME_PATTERN = /^[A-Za-z0-9._-]{1,100}$/;
/** Between an account's queue and a pool: `~` is in no queue, account (`%3A`-encoded), pool or tenant name. */
export const POOL_SEPARATOR = '~';
/** Account names as the limiter spells them, before their `:` is written `%3A`. */
const ACCOUNT_NAME_MAX = 200;
/**
 * The BullMQ queue of one account's jobs: `<queue>@<account>`, the account's `:` written `%3A` (BullMQ splits keys
 * on `:`); then, on an account with several pools, `~<pool>` (the jobs whose model is of that pool); then `#<tenant>`
 * (one tenant's jobs). Neither a queue, an account, a pool nor a tenant name holds `@`, `%`, `~` or `#`, and `%` only
 * begins `%3A`, so each name is read back one way only ({@link parseQueueName}), apart from every plain queue.
 */
export const ACCOUNT_QUEUE_PATTERN = /^[A-Za-z0-9._-]{1,100}@(?:[A-Za-z0-9._-]|%3A){1,200}(~[A-Za-z0-9][A-Za-z0-9._-]{0,63})?(#[A-Za-z0-9._-]{1,64})?$/;
const ACCOUNT_QUEUE_PARTS = /^([A-Za-z0-9._-]{1,100})@((?:[A-Za-z0-9._-]|%3A){1,200})(?:~([A-Za-z0-9][A-Za-z0-9._-]{0,63}))?(?:#([A-Za-z0-9._-]{1,64}))?$/;

/** What a queue name says: its base queue, and its account, pool and tenant when it has them. */
export interface QueueNameParts {
  queue: string;
  account?: string;
  pool?: string;
  tenant?: string;
}

/**
 * Reads a queue name back into its parts (the account's `%3A` as `:`); undefined for a name that none of
 * {@link accountQueueName}, {@link poolQueueName} and {@link tenantQueueName} makes (a stray `%`, `~` or `#`, a part
 * too long or empty, a second separator).
 */
export function parseQueueName(name: string): QueueNameParts | undefined {
  if (QUEUE_NAME_PATTERN.test(name)) return { queue: name };
  const match = ACCOUNT_QUEUE_PARTS.exec(name);
  if (match === null) return undefined;
  const [, queue = '', encoded = '', pool, tenant] = match;
  const account = encoded.replaceAll('%3A', ':');
  if (account.length > ACCOUNT_NAME_MAX) return undefined;
  return { queue, account, ...(pool === undefined ? {} : { pool }), ...(tenant === undefined ? {} : { tenant }) };
}

/**
 * The queue that the jobs of `account` go on (DESIGN §9: one queue per account, so that one account's backlog never
 * holds the worker slots another account's jobs need).
 * @throws {@link InvalidArgumentError} for a queue or account name outside their patterns.
 */
export function accountQueueName(queue: string, account: string): string {
  if (!QUEUE_NAME_PATTERN.test(queue)) throw new InvalidArgumentError('queue', queue, 'a queue name (letters, digits and ._-, 1 to 100 characters)');
  if (!LIMITER_NAME_PATTERN.test(account)) throw new InvalidArgumentError('account', account, 'an account name (letters, digits and :._-, 1 to 200 characters)');
  return `${queue}@${account.replaceAll(':', '%3A')}`;
}

/**
 * The queue of the jobs of one pool on an account's queue: `<queue>@<account>~<pool>` (DESIGN §9: one pool's backlog,
 * its jobs waiting for their permits in the workers' slots, never holds the slots another pool's jobs need).
 * @throws {@link InvalidArgumentError} for a name outside the patterns.
 */
export function poolQueueName(accountQueue: string, pool: string): string {
  const parts = parseQueueName(accountQueue);
  if (parts?.account === undefined || parts.pool !== undefined || parts.tenant !== undefined)
    throw new InvalidArgumentError('queue', accountQueue, 'an account queue (accountQueueName)');
  if (!POOL_NAME_PATTERN.test(pool)) throw new InvalidArgumentError('pool', pool, 'a pool name (letters, digits and ._-, 1 to 64 characters)');
  return `${accountQueue}${POOL_SEPARATOR}${pool}`;
}

/**
 * The queue of one tenant's jobs on an account's queue or on one of its pool queues: `<queue>@<account>[~<pool>]#<tenant>`
 * (DESIGN §9: its backlog holds only its own worker slots; a tenant's cap is the global concurrency of its pool-less
 * queue).
 * @throws {@link InvalidArgumentError} for a name outside the patterns.
 */
export function tenantQueueName(accountQueue: string, tenant: string): string {
  const parts = parseQueueName(accountQueue);
  if (parts?.account === undefined || parts.tenant !== undefined)
    throw new InvalidArgumentError('queue', accountQueue, 'an account queue (accountQueueName) or a pool queue (poolQueueName)');
  if (!TENANT_PATTERN.test(tenant)) throw new InvalidArgumentError('tenant', tenant, 'a tenant name (letters, digits and ._-, 1 to 64 characters)');
  return `${accountQueue}#${tenant}`;
}

/**
 * The pool-less queue of a queue: `<queue>@<account>[#<tenant>]` for a pool queue, else the name itself. A pool queue
 * shares its hash tag (one Redis Cluster slot) and its tenant's queued-jobs set with it.
 */
export function poolLessQueueName(name: string): string {
  const parts = parseQueueName(name);
  if (parts?.pool === undefined) return name;
  return name.replace(`${POOL_SEPARATOR}${parts.pool}`, '');
}

/** A plain queue name, an account's queue ({@link accountQueueName}), a pool's ({@link poolQueueName}) or a tenant's ({@link tenantQueueName}). */
export const isQueueName = (name: string): boolean => parseQueueName(name) !== undefined;

/** Every key of one queue, with one hash tag so BullMQ's scripts and our per-job streams stay in one Cluster slot. */
export function queueKeys(queue: string) {
  if (!isQueueName(queue))
    throw new InvalidArgumentError('queue', queue, 'a queue name (letters, digits and ._-, 1 to 100 characters), or an account queue <queue>@<account>[~<pool>][#<tenant>]');
  // a pool queue's keys share its pool-less queue's hash tag: a tenant's queued-jobs set and each job hash it counts
  // (on any of its pool queues) are in one Cluster slot, for the script that reads them together (tenant-cap.ts)
  const prefix = `{tollgate-queue:${poolLessQueueName(queue)}}`;
  return {
    /** BullMQ's `prefix` option: its keys become `<prefix>:<queue>:…`. */
    prefix,
    /** BullMQ's hash of queue settings, written when a producer or worker first opens the queue: its presence means the queue exists. */
    meta: `${prefix}:${queue}:meta`,
    /** BullMQ's stream of queue events (`completed`, `failed`, …) that QueueEvents reads. */
    queueEvents: `${prefix}:${queue}:events`,
    /** The stream a streaming job's SSE events are published to. */
    jobEvents: (jobId: string) => `${prefix}:${queue}:events:${jobId}`,
    /** BullMQ's hash of one job (the id is one this package made: see job-ids.ts). */
    job: (jobId: string) => `${prefix}:${queue}:${jobId}`,
    /** BullMQ's job hashes are this plus the id (for the tenant-cap script). */
    jobPrefix: `${prefix}:${queue}:`,
    /** The unfinished jobs of one tenant (configured names only, never a caller's string), for the queued-jobs cap. */
    tenantOpen: (tenant: string) => {
      if (!TENANT_PATTERN.test(tenant)) throw new InvalidArgumentError('tenant', tenant, 'a tenant name (letters, digits and ._-, 1 to 64 characters)');
      return `${prefix}:${queue}:tenant-open:${tenant}`;
    },
    /** BullMQ's list of the jobs held by a worker now (bounded by the fleet's worker concurrency). */
    active: `${prefix}:${queue}:active`,
    /** The tenant of each unfinished job ('' = none), for the per-tenant view (tenant-counts.ts). */
    tenantJobs: `${prefix}:${queue}:tenant-jobs`,
    /** Unfinished jobs per tenant ('' = none), kept with `tenantJobs` in one script. */
    tenantUnfinished: `${prefix}:${queue}:tenant-unfinished`,
    /** Set once per Redis dataset by producers; a missing or changed value means Redis lost its data. */
    epoch: `${prefix}:${queue}:epoch`,
    /** A gateway reader's wake stream is this plus the reader's random id. */
    relayWakePrefix: `${prefix}:${queue}:relay-wake:`,
    /** Pub/sub channel: a message is the id of a running job whose caller went away; its worker aborts the call. */
    abortChannel: `${prefix}:${queue}:abort`,
    /**
     * On a pool-less queue: the names of its pool queues that a producer has put a job on (SET), so that workers and
     * `tollgate` find them whatever the fleet's document says now (an apply may have removed the pool since).
     */
    poolQueues: `${prefix}:${queue}:pool-queues`,
    /** Fleet-wide counters the workers add to (upstream 429s by kind). */
    fleetStats: `${prefix}:${queue}:fleet-stats`,
  } as const;
}

export type QueueKeys = ReturnType<typeof queueKeys>;

/**
 * The hash of an account's fleet-wide counters (completed, failed, 429s by kind, answers by status): its own queue's
 * (`<queue>@<account>`), whichever of the account's queues a job came from, so that every process reading an account
 * (the gateway's dashboard, `tollgate status`) finds them whatever the writing worker's default account is.
 */
export function fleetStatsKey(queue: string, account: string): string {
  return queueKeys(accountQueueName(queue, account)).fleetStats;
}
