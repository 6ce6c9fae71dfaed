import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { RedisServerProcess, eventually } from '@tollgate/test-support';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { DATASETS_KEY, createLimiter, type Limiter, type LimiterOptions } from '../src/index.js';

/** How long a test waits for something that must happen before it calls it stuck (never reached when it works). */
export const STUCK_MS = 8_000;

/** The promise's value, or 'stuck' when it has not settled within `ms`. */
export function settledWithin<T>(promise: Promise<T>, ms: number = STUCK_MS): Promise<T | 'stuck'> {
  return Promise.race([promise, sleep(ms).then(() => 'stuck' as const)]);
}

/** Polls `check` until it holds (true) or `ms` pass (false): @tollgate/test-support's `eventually`. */
export const until = (check: () => Promise<boolean>, ms: number = STUCK_MS): Promise<boolean> => eventually(check, ms);

/** The value or the error, so that a rejection is handled from the start. */
export function outcome<T>(promise: Promise<T>): Promise<T | unknown> {
  return promise.catch((error: unknown) => error);
}

/** A redis-server of a test file's own, with DEBUG enabled, and an admin connection to it. */
export interface DebugRedis {
  readonly url: string;
  readonly admin: Redis;
  /** Sends DEBUG SLEEP and waits until the server is asleep; `woken` resolves when it wakes. */
  stall(seconds: number): Promise<{ woken: Promise<unknown> }>;
  close(): Promise<void>;
}

export async function startDebugRedis(): Promise<DebugRedis> {
  const server = await RedisServerProcess.start({ args: ['--enable-debug-command', 'local'] });
  const admin = new Redis(server.url);
  await admin.set(DATASETS_KEY, 'test'); // a database that has not lost its data: no first-boot grace pause
  return {
    url: server.url,
    admin,
    async stall(seconds) {
      await admin.ping(); // connected, so the sleep starts now
      const woken = admin.call('DEBUG', 'SLEEP', String(seconds));
      await sleep(50); // the server is asleep before the caller sends anything
      return { woken };
    },
    async close() {
      admin.disconnect();
      await server.close();
    },
  };
}

/**
 * Registers a test file's hooks: one DEBUG-enabled Redis for the file, and the limiters a test opens
 * with `limiter()` are closed after it (on the file's Redis unless `redis` says otherwise).
 */
export function useDebugRedis(): {
  readonly redis: DebugRedis;
  readonly admin: Redis;
  limiter(options: Omit<LimiterOptions, 'redis'> & { redis?: LimiterOptions['redis'] }): Promise<Limiter>;
} {
  let redis: DebugRedis | undefined;
  const open: Limiter[] = [];
  beforeAll(async () => {
    redis = await startDebugRedis();
  });
  afterEach(async () => {
    await Promise.all(open.splice(0).map((limiter) => limiter.close()));
  });
  afterAll(async () => {
    await redis?.close();
  });
  const started = (): DebugRedis => {
    if (redis === undefined) throw new Error('useDebugRedis: the Redis starts in beforeAll');
    return redis;
  };
  return {
    get redis() {
      return started();
    },
    get admin() {
      return started().admin;
    },
    async limiter(options) {
      const limiter = createLimiter({ redis: started().url, ...options } as LimiterOptions);
      limiter.on('redisError', () => {}); // expected during the faults these tests inject
      open.push(limiter);
      await limiter.ready();
      return limiter;
    },
  };
}

/**
 * A TCP proxy in front of Redis that can lose a reply: after `loseNextReply()`, the first bytes Redis
 * sends back on any connection are dropped and that connection is cut, as a network fault after the
 * command ran would.
 */
export interface ReplyLosingProxy {
  readonly url: string;
  loseNextReply(): void;
  close(): Promise<void>;
}

export async function startReplyLosingProxy(redisUrl: string): Promise<ReplyLosingProxy> {
  const target = new URL(redisUrl);
  let loseNext = false;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(Number(target.port), target.hostname);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('error', () => {}); // a cut connection is the point
      socket.on('close', () => sockets.delete(socket));
    }
    client.on('data', (chunk) => upstream.write(chunk));
    upstream.on('data', (chunk) => {
      if (loseNext) {
        loseNext = false;
        client.destroy();
        upstream.destroy();
        return;
      }
      client.write(chunk);
    });
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address() as AddressInfo;
  return {
    url: `redis://127.0.0.1:${address.port}`,
    loseNextReply: () => {
      loseNext = true;
    },
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
