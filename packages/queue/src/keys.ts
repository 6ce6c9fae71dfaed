import { InvalidArgumentError, LIMITER_NAME_PATTERN } from '@tollgate/limiter';
import { TENANT_PATTERN } from './schema.js';

/** Queue names share the limiter's alphabet minus `:` (BullMQ splits its keys on it). */
export const QUEUE_NAME_PATTERN = /^[A-Za-z0-9._-]{1,100}$/;
/**
 * The BullMQ queue of one account's jobs: `<queue>@<account>`, the account's `:` written `%3A` (BullMQ splits keys
 * on `:`). Neither a queue nor an account name holds `@` or `%`, so each pair has a name of its own, apart from every
 * plain queue.
 */
export const ACCOUNT_QUEUE_PATTERN = /^[A-Za-z0-9._-]{1,100}@[A-Za-z0-9._%-]{1,600}(#[A-Za-z0-9._-]{1,64})?$/;

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
 * The queue of one tenant's jobs on an account's queue: `<queue>@<account>#<tenant>` (DESIGN §9: its backlog holds only
 * its own worker slots, and its cap is that queue's global concurrency).
 * @throws {@link InvalidArgumentError} for a name outside the patterns.
 */
export function tenantQueueName(accountQueue: string, tenant: string): string {
  if (!ACCOUNT_QUEUE_PATTERN.test(accountQueue) || accountQueue.includes('#')) throw new InvalidArgumentError('queue', accountQueue, 'an account queue (accountQueueName)');
  if (!TENANT_PATTERN.test(tenant)) throw new InvalidArgumentError('tenant', tenant, 'a tenant name (letters, digits and ._-, 1 to 64 characters)');
  return `${accountQueue}#${tenant}`;
}

/** A plain queue name, an account's queue ({@link accountQueueName}) or a tenant's ({@link tenantQueueName}). */
export const isQueueName = (name: string): boolean => QUEUE_NAME_PATTERN.test(name) || ACCOUNT_QUEUE_PATTERN.test(name);

/** Every key of one queue, with one hash tag so BullMQ's scripts and our per-job streams stay in one Cluster slot. */
export function queueKeys(queue: string) {
  if (!isQueueName(queue)) throw new InvalidArgumentError('queue', queue, 'a queue name (letters, digits and ._-, 1 to 100 characters), or an account queue <queue>@<account>');
  const prefix = `{tollgate-queue:${queue}}`;
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
