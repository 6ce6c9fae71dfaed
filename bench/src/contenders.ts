import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { createLimiter as createLimiterType } from '@tollgate/limiter';
import Bottleneck from 'bottleneck';
import { Redis } from 'ioredis';
import { Semaphore } from 'redis-semaphore';
import { LocalSemaphore } from './local-semaphore.js';

/** Every contender hides behind this: take one fleet-wide slot, get back its release. */
export interface LimiterAdapter {
  acquire(): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

/** Contenders that run behind a {@link LimiterAdapter} in every worker process. */
export const ADAPTER_CONTENDERS = ['tollgate', 'tollgate-baseline', 'bottleneck', 'redis-semaphore', 'redis-semaphore-tuned', 'static-split', 'local'] as const;
export type AdapterContender = (typeof ADAPTER_CONTENDERS)[number];
/** Queue-only contender: BullMQ's own queue-wide limit, no adapter at all. */
export const QUEUE_ONLY_CONTENDERS = ['bullmq-global'] as const;
export type ContenderName = AdapterContender | (typeof QUEUE_ONLY_CONTENDERS)[number];
export const CONTENDERS: readonly ContenderName[] = [...ADAPTER_CONTENDERS, ...QUEUE_ONLY_CONTENDERS];

export function isContenderName(value: string): value is ContenderName {
  return (CONTENDERS as readonly string[]).includes(value);
}

export function isAdapterContender(value: ContenderName): value is AdapterContender {
  return (ADAPTER_CONTENDERS as readonly string[]).includes(value);
}

/** What a worker process needs to build its adapter. */
export interface AdapterParams {
  redisUrl: string;
  /** Shared by every process of one run: the limiter name, bottleneck id or semaphore key. */
  name: string;
  /** The fleet-wide limit. */
  limit: number;
  /** This process's share of the limit (static-split only). */
  localLimit: number;
}

/** Longest any contender may wait for a slot; far above a run's length, so a wait never times out. */
export const ACQUIRE_TIMEOUT_MS = 120_000;
/** The limiter's lease; DESIGN §5 default. */
const LEASE_TTL_MS = 15_000;
const HEARTBEAT_MS = 5_000;
/** redis-semaphore's default retryInterval is 10 ms; the tuned contender polls every millisecond. */
const REDIS_SEMAPHORE_TUNED_RETRY_INTERVAL_MS = 1;
/** redis-semaphore's lease; the same as Tollgate's so both refresh alike. */
const REDIS_SEMAPHORE_LOCK_TIMEOUT_MS = LEASE_TTL_MS;

type CreateLimiter = typeof createLimiterType;

/**
 * `tollgate-baseline`: another checkout's `packages/limiter` (e.g. a `git worktree` of an older
 * commit, with its own `npm ci`), given by `--baseline-limiter DIR`; the coordinator puts it here so
 * that the forked workers inherit it. Measured in the same run as `tollgate`, as its own row.
 */
export const BASELINE_LIMITER_ENV = 'TOLLGATE_BASELINE_LIMITER';

export function baselineLimiterDir(): string | undefined {
  const dir = process.env[BASELINE_LIMITER_ENV];
  return dir === undefined || dir === '' ? undefined : resolve(dir);
}

/**
 * `--compiled`: both limiters are imported from their builds (`dist/index.js`, what an installed package runs), not
 * from their TypeScript sources through tsx (whose `keepNames` wraps every closure a call makes in `__name`). Each
 * checkout must be built first (`npm run build -w @tollgate/limiter`). The coordinator sets it; the workers inherit it.
 */
export const COMPILED_LIMITERS_ENV = 'TOLLGATE_BENCH_COMPILED';
const compiled = (): boolean => process.env[COMPILED_LIMITERS_ENV] === '1';

/** This checkout's limiter build. */
const TOLLGATE_DIST = new URL('../../packages/limiter/dist/index.js', import.meta.url).href;

/**
 * Imported at run time by a computed specifier, so that a limiter that does not load yet costs its
 * rows, not the whole run; the types above are erased.
 */
const tollgateSpecifier = (): string => (compiled() ? TOLLGATE_DIST : '@tollgate/limiter');

/**
 * Imports `@tollgate/limiter` and returns its `createLimiter`, or the reason it cannot be used yet.
 */
export async function loadTollgate(specifier: string = tollgateSpecifier()): Promise<{ createLimiter: CreateLimiter } | { error: string }> {
  let loaded: unknown;
  try {
    loaded = await import(specifier);
  } catch (error) {
    return { error: error instanceof Error ? (error.message.split('\n')[0] ?? error.message) : String(error) };
  }
  if (typeof loaded === 'object' && loaded !== null && 'createLimiter' in loaded && typeof loaded.createLimiter === 'function') {
    return { createLimiter: loaded.createLimiter as CreateLimiter };
  }
  return { error: 'the module has no createLimiter export' };
}

/** The baseline limiter's source entry (the `tollgate-source` condition of its package), or its build (`--compiled`). */
function baselineSpecifier(dir: string): string {
  return pathToFileURL(compiled() ? join(dir, 'dist', 'index.js') : join(dir, 'src', 'index.ts')).href;
}

/** `createLimiter` of the baseline checkout, or why it cannot be used. */
export function loadBaseline(): Promise<{ createLimiter: CreateLimiter } | { error: string }> {
  const dir = baselineLimiterDir();
  if (dir === undefined) return Promise.resolve({ error: `no baseline limiter given (--baseline-limiter DIR or ${BASELINE_LIMITER_ENV})` });
  return loadTollgate(baselineSpecifier(dir));
}

/** The baseline checkout's own copy of ioredis (its node_modules), so that its commands are counted too. */
export async function baselineRedisClass(): Promise<typeof Redis | undefined> {
  const dir = baselineLimiterDir();
  if (dir === undefined) return undefined;
  const path = createRequire(join(dir, 'package.json')).resolve('ioredis');
  const loaded = (await import(pathToFileURL(path).href)) as { Redis?: typeof Redis; default?: { Redis?: typeof Redis } };
  return loaded.Redis ?? loaded.default?.Redis;
}

async function tollgateAdapter(params: AdapterParams, baseline: boolean): Promise<LimiterAdapter> {
  const tollgate = baseline ? await loadBaseline() : await loadTollgate();
  if ('error' in tollgate) throw new Error(`${baseline ? 'baseline limiter' : '@tollgate/limiter'}: ${tollgate.error}`);
  const limiter = tollgate.createLimiter({
    redis: params.redisUrl,
    name: params.name,
    concurrency: params.limit,
    leaseTtlMs: LEASE_TTL_MS,
    heartbeatMs: HEARTBEAT_MS,
  });
  await limiter.ready();
  return {
    acquire: async () => {
      const permit = await limiter.acquire({ timeoutMs: ACQUIRE_TIMEOUT_MS });
      return async () => {
        await permit.release();
      };
    },
    close: async () => {
      await limiter.close();
    },
  };
}

async function bottleneckAdapter(params: AdapterParams): Promise<LimiterAdapter> {
  const { hostname, port } = new URL(params.redisUrl);
  const limiter = new Bottleneck({
    id: params.name,
    maxConcurrent: params.limit,
    datastore: 'ioredis',
    Redis, // the same ioredis module the command counter wraps
    clientOptions: { host: hostname, port: Number(port) },
    clearDatastore: false, // every process shares one id; the coordinator flushes Redis between runs
  });
  await limiter.ready();
  return {
    // schedule() runs the job once a slot is free; the job lasts until the caller releases
    acquire: () =>
      new Promise((resolveAcquire, rejectAcquire) => {
        const finished = limiter.schedule(
          () =>
            new Promise<void>((finishJob) => {
              resolveAcquire(async () => {
                finishJob();
                await finished; // resolves after bottleneck has freed the slot in Redis
              });
            }),
        );
        finished.catch(rejectAcquire);
      }),
    close: async () => {
      await limiter.disconnect(true);
    },
  };
}

async function redisSemaphoreAdapter(params: AdapterParams, retryIntervalMs: number | undefined): Promise<LimiterAdapter> {
  const client = new Redis(params.redisUrl, { maxRetriesPerRequest: 1 });
  await client.ping();
  const options = {
    lockTimeout: REDIS_SEMAPHORE_LOCK_TIMEOUT_MS,
    acquireTimeout: ACQUIRE_TIMEOUT_MS,
    ...(retryIntervalMs === undefined ? {} : { retryInterval: retryIntervalMs }),
  };
  return {
    acquire: async () => {
      const semaphore = new Semaphore(client, params.name, params.limit, options);
      await semaphore.acquire();
      return () => semaphore.release();
    },
    close: async () => {
      // a connection already closed (the scale scenario closes it under thousands of polling callers) needs no QUIT
      await client.quit().catch(() => client.disconnect());
    },
  };
}

function localAdapter(limit: number): LimiterAdapter {
  const semaphore = new LocalSemaphore(limit);
  return { acquire: () => semaphore.acquire(), close: async () => {} };
}

/** Builds one worker process's adapter for `contender`. */
export async function createAdapter(contender: AdapterContender, params: AdapterParams): Promise<LimiterAdapter> {
  switch (contender) {
    case 'tollgate':
      return tollgateAdapter(params, false);
    case 'tollgate-baseline':
      return tollgateAdapter(params, true);
    case 'bottleneck':
      return bottleneckAdapter(params);
    case 'redis-semaphore':
      return redisSemaphoreAdapter(params, undefined); // its default retry interval
    case 'redis-semaphore-tuned':
      return redisSemaphoreAdapter(params, REDIS_SEMAPHORE_TUNED_RETRY_INTERVAL_MS);
    case 'static-split':
      return localAdapter(params.localLimit);
    case 'local':
      return localAdapter(params.limit);
  }
}
