import { Cluster, Redis } from 'ioredis';
import { QueueUnavailableError } from './errors.js';

/** A Redis URL, or an ioredis client (a Cluster for Redis Cluster). */
export type RedisInput = string | Redis | Cluster;

/** Default for how long a producer or gateway waits on Redis before answering "unavailable". */
export const REDIS_TIMEOUT_MS_DEFAULT = 1_000;

/** A connection and whether we opened it (and so must close it). */
export interface OwnedRedis {
  client: Redis | Cluster;
  owned: boolean;
}

/**
 * Opens (or reuses) a command connection that fails fast: no offline queue, no per-command retries, a command
 * timeout. While Redis is down every call rejects at once instead of piling up.
 */
export function commandConnection(input: RedisInput, timeoutMs: number): OwnedRedis {
  if (typeof input !== 'string') return { client: input, owned: false };
  const client = new Redis(input, {
    enableOfflineQueue: false, // fail at once while disconnected
    maxRetriesPerRequest: 0,
    commandTimeout: timeoutMs,
    connectTimeout: Math.max(timeoutMs, 1_000),
  });
  return { client, owned: true };
}

/** A connection for blocking reads (BullMQ workers and queue events need `maxRetriesPerRequest: null`). */
export function blockingConnection(input: RedisInput): OwnedRedis {
  if (input instanceof Cluster) return { client: input.duplicate(), owned: true };
  if (input instanceof Redis) return { client: input.duplicate({ maxRetriesPerRequest: null, enableOfflineQueue: true, commandTimeout: undefined }), owned: true };
  return { client: new Redis(input, { maxRetriesPerRequest: null }), owned: true };
}

/** Resolves with `promise` or rejects with {@link QueueUnavailableError} after `timeoutMs`. */
export async function withDeadline<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new QueueUnavailableError(`${what}: Redis did not answer within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, deadline]);
  } catch (error) {
    if (error instanceof QueueUnavailableError) throw error;
    if (isConnectionError(error)) throw new QueueUnavailableError(`${what}: Redis is unreachable`, { cause: error });
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

/** A call's deadline: `promise` under the caller's `redisTimeoutMs` (plus `extraMs`), {@link QueueUnavailableError} past it. */
export type Deadline = <T>(promise: Promise<T>, what: string, extraMs?: number) => Promise<T>;

/** The {@link Deadline} of a producer (or service) whose Redis calls each get `timeoutMs`. */
export function deadlineOf(timeoutMs: number): Deadline {
  return (promise, what, extraMs = 0) => withDeadline(promise, timeoutMs + extraMs, what);
}

/** ioredis's errors for a closed, refused or timed-out connection. */
export function isConnectionError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && ['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ENOTCONN'].includes(code)) return true;
  return /Connection is closed|enableOfflineQueue|Command timed out|Stream isn't writeable|MaxRetriesPerRequest|connect ECONNREFUSED/i.test(error.message);
}
