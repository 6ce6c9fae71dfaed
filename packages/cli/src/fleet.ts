import { createLimiter, limiterOptionsFor, readFleetLimits, type FleetLimitsReading, type Limiter } from '@tollgate/limiter';
import { queueKeys, withDeadline } from '@tollgate/queue/internal';
import { Queue } from 'bullmq';
import type { Cluster, Redis } from 'ioredis';
import { CliError, EXIT, shown } from './errors.js';

/** What every command gets: one Redis connection, the names it acts on, and where it writes. */
export interface Context {
  redis: Redis | Cluster;
  /** Limiter names (`--name`, repeatable for `status`). */
  names: string[];
  queue: string;
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

/** The BullMQ queue, read-mostly: it never writes the queue's settings, and an unknown name is an error. */
export async function openQueue(context: Context): Promise<Queue> {
  const keys = queueKeys(context.queue);
  if ((await withDeadline(context.redis.exists(keys.meta), context.timeoutMs, 'queue')) === 0) {
    throw new CliError(EXIT.notFound, `no queue named ${shown(context.queue)} in this Redis: pass the right --queue (default: TOLLGATE_QUEUE, else "messages")`);
  }
  const queue = new Queue(context.queue, { connection: context.redis, prefix: keys.prefix, skipVersionCheck: true, skipMetasUpdate: true });
  queue.on('error', () => {}); // each call rejects on its own
  context.closers.push(() => queue.close());
  return queue;
}
