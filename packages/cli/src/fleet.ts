import { createLimiter, limiterOptionsFor, readFleetLimits, type FleetLimitsReading, type Limiter } from '@tollgate/limiter';
import { readStoredDocument, type LimitsDocument, type StoredDocument } from '@tollgate/config';
import { queueFamily } from '@tollgate/queue';
import { InvalidConfigError } from '@tollgate/limiter';
import { queueKeys, withDeadline } from '@tollgate/queue/internal';
import { Queue } from 'bullmq';
import type { Cluster, Redis } from 'ioredis';
import { CliError, EXIT, shown } from './errors.js';

/** What every command gets: one Redis connection, the names it acts on, and where it writes. */
export interface Context {
  redis: Redis | Cluster;
  /** Limiter names (`--name`, repeatable for `status`). */
  names: string[];
  /** Whether `--name` chose `names` (else TOLLGATE_NAME's default: `status` then shows every account of the fleet's document). */
  namesGiven: boolean;
  /** The BullMQ queue the queue commands act on: `--queue`, or its account's or tenant's queue with `--account` / `--tenant`. */
  queue: string;
  /** `--queue` as given (or TOLLGATE_QUEUE): the name every account's queue is made of. */
  baseQueue: string;
  /** The account of `queue` (`--account`, or `--tenant`'s); undefined for the queue as given. */
  account: string | undefined;
  timeoutMs: number;
  json: boolean;
  /** Writes one line (or a block) to stdout. */
  print(text: string): void;
  /** Closed when the command ends (limiters and queues it opened). */
  closers: Array<() => Promise<void>>;
  /** Aborted on SIGINT/SIGTERM (`--watch` ends on it). */
  signal: AbortSignal;
}

/** Reads a limiter's limits without joining the fleet; a name that no process has used here is an error naming it. */
export async function fleetLimits(context: Context, name: string): Promise<FleetLimitsReading> {
  const limits = await withDeadline(readFleetLimits(context.redis, name), context.timeoutMs, 'read limits');
  if (limits === undefined) {
    throw new CliError(
      EXIT.notFound,
      `no limiter named ${shown(name)} in this Redis: start a worker with TOLLGATE_NAME=${name}, or pass the right --name (default: TOLLGATE_NAME, else "anthropic")`,
    );
  }
  return limits;
}

/**
 * A limiter that joins the fleet with the fleet's own limits, for snapshot, pause, resume, setConcurrency and
 * applyLimits. Joining writes no limits (DESIGN §8: only an explicit apply does), and since its options state the
 * fleet's limits it joins without a "limits differ" warning.
 */
export async function openLimiter(context: Context, name: string): Promise<{ limiter: Limiter; reading: FleetLimitsReading }> {
  const reading = await fleetLimits(context, name);
  const limiter = createLimiter({ ...limiterOptionsFor(reading.limits, context.redis, name), redisTimeoutMs: context.timeoutMs });
  context.closers.push(() => limiter.close());
  await limiter.ready();
  return { limiter, reading };
}

/**
 * The BullMQ queue `name` (default: the command's), read-mostly: it never writes the queue's settings. An unknown name
 * is an error, unless `mayBeEmpty` (an account's or a tenant's queue that has had no job yet counts as empty).
 */
export async function openQueue(context: Context, name: string = context.queue, options: { mayBeEmpty?: boolean } = {}): Promise<Queue> {
  const keys = queueKeys(name);
  if (options.mayBeEmpty !== true && (await withDeadline(context.redis.exists(keys.meta), context.timeoutMs, 'queue')) === 0) {
    throw new CliError(EXIT.notFound, `no queue named ${shown(name)} in this Redis: pass the right --queue (default: TOLLGATE_QUEUE, else "messages"), --account or --tenant`);
  }
  const queue = new Queue(name, { connection: context.redis, prefix: keys.prefix, skipVersionCheck: true, skipMetasUpdate: true });
  queue.on('error', () => {}); // each call rejects on its own
  context.closers.push(() => queue.close());
  return queue;
}

/**
 * The BullMQ queue `name` (default: the command's) and its pool queues that exist (`queueFamily`: on an account with
 * several pools a pool-less name stands for itself and its pools' queues), read-mostly. None of them existing is an
 * error naming `name`, unless `mayBeEmpty`; the queue `name` itself is always first.
 */
export async function openQueues(context: Context, name: string = context.queue, options: { mayBeEmpty?: boolean } = {}): Promise<Array<{ name: string; queue: Queue }>> {
  let document: LimitsDocument | undefined;
  try {
    document = (await storedDocument(context))?.document;
  } catch (error) {
    if (!(error instanceof CliError)) throw error; // a stored document this CLI cannot read: the queue as named, alone
  }
  const names = await withDeadline(queueFamily(context.redis, document, name), context.timeoutMs, 'pool queues');
  const exists = await Promise.all(names.map(async (each) => (await withDeadline(context.redis.exists(queueKeys(each).meta), context.timeoutMs, 'queue')) === 1));
  if (!exists.some(Boolean)) await openQueue(context, name, options); // an unknown name is the same error as alone
  const opened = names.filter((each, i) => each === name || exists[i] === true);
  return Promise.all(opened.map(async (each) => ({ name: each, queue: await openQueue(context, each, { mayBeEmpty: true }) })));
}

/** The fleet's stored limits document, when one was applied. */
export async function storedDocument(context: Pick<Context, 'redis' | 'timeoutMs'>): Promise<StoredDocument | undefined> {
  try {
    return await withDeadline(readStoredDocument(context.redis), context.timeoutMs, 'read the limits document');
  } catch (error) {
    if (error instanceof InvalidConfigError) throw new CliError(EXIT.refused, error.message);
    throw error;
  }
}
