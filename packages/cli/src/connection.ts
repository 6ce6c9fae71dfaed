import { Cluster, Redis } from 'ioredis';
import { toError } from '@tollgate/limiter/internal';
import { CliError, EXIT } from './errors.js';

/** Where the CLI finds Redis: `--redis`, else `REDIS_CLUSTER_NODES`, else `REDIS_URL`, else the local default. */
export type RedisTarget = { kind: 'url'; url: string } | { kind: 'cluster'; nodes: Array<{ host: string; port: number }>; shown: string };

/** A URL without its password, for messages. */
export function withoutPassword(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//***@');
}

/**
 * Connects once, within `timeoutMs`, and never reconnects: a wrong address fails the command at once with
 * {@link EXIT.unreachable} instead of retrying forever.
 */
export async function connect(target: RedisTarget, timeoutMs: number): Promise<Redis | Cluster> {
  const shown = target.kind === 'url' ? withoutPassword(target.url) : `cluster ${target.shown}`;
  const common = { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, connectTimeout: timeoutMs } as const;
  const client =
    target.kind === 'url'
      ? new Redis(target.url, { ...common, retryStrategy: () => null })
      : new Cluster(target.nodes, {
          lazyConnect: true,
          enableOfflineQueue: false,
          clusterRetryStrategy: () => null,
          redisOptions: { maxRetriesPerRequest: 0, connectTimeout: timeoutMs },
        });
  let lastError: Error | undefined;
  client.on('error', (error: Error) => (lastError = error)); // reported below, once
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      client.connect().then(() => client.ping()),
      new Promise<never>((_resolve, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs))),
    ]);
  } catch (error) {
    client.disconnect();
    const reason = lastError?.message ?? toError(error).message;
    throw new CliError(EXIT.unreachable, `cannot reach Redis at ${shown}: ${reason}`, { cause: error });
  } finally {
    clearTimeout(timer);
  }
  return client;
}
