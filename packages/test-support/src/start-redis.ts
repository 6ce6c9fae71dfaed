import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { RedisServerProcess, freePort } from './redis-server.js';

/** A real Redis for one test file, from `REDIS_URL`, a Docker container or a local `redis-server`. */
export interface TestRedis {
  readonly url: string;
  /** Where the server came from: `REDIS_URL`, a testcontainers container, or a child process. */
  readonly kind: 'external' | 'container' | 'process';
  /** Crash-stops the server (it answers nothing until `restart`). */
  stop(): Promise<void>;
  /** Brings it back on the same address; `keepData: false` starts with an empty dataset. */
  restart(options: { keepData: boolean }): Promise<void>;
  /** Freezes the server (SIGSTOP or a container pause): connections stay open, nothing answers. */
  pause(): Promise<void>;
  resume(): Promise<void>;
  /** Stops and removes a server this helper started; leaves an external one alone. */
  close(): Promise<void>;
}

export interface StartRedisOptions {
  /**
   * A server of this test file's own, never the shared `REDIS_URL`: needed to stop, pause or
   * restart Redis, or to read `INFO commandstats` without other tests' commands in it.
   */
  dedicated?: boolean;
  /** Persist every write (AOF, fsync always), so that a crash and restart keeps the data. */
  appendonly?: boolean;
}

const DOCKER_SOCKETS = ['/var/run/docker.sock', join(homedir(), '.docker/run/docker.sock'), join(homedir(), '.colima/default/docker.sock')];

function dockerReachable(): boolean {
  if (process.env.TOLLGATE_TEST_NO_DOCKER === '1') return false;
  if (process.env.DOCKER_HOST) return true;
  return DOCKER_SOCKETS.some((path) => existsSync(path));
}

/**
 * Gives a test file a real Redis. The order is fixed: `REDIS_URL` when set (unless `dedicated`),
 * else a testcontainers `redis:7` when a Docker engine answers, else a `redis-server` child
 * process on a free port with its own temporary directory.
 */
export async function startRedis(options: StartRedisOptions = {}): Promise<TestRedis> {
  const fromEnv = process.env.REDIS_URL;
  if (fromEnv && !options.dedicated) return externalRedis(fromEnv);
  if (dockerReachable()) {
    try {
      return await markedAsNotNew(await containerRedis(options));
    } catch (error) {
      if (process.env.DOCKER_HOST) throw error;
      // a stale socket file without an engine behind it: fall through to the local binary
    }
  }
  return markedAsNotNew(await processRedis(options));
}

/**
 * The limiter's marker of a database that has not lost its data (`DATASETS_KEY` in
 * packages/limiter/src/keys.ts). A fresh test server has no earlier limiter processes, so the first
 * limiter on it needs no grace pause for their re-registration; a FLUSHALL or a restart without
 * data removes the marker, and the limiter then pauses as after any data loss.
 */
const LIMITER_DATASETS_KEY = 'tollgate:datasets';

async function markedAsNotNew(redis: TestRedis): Promise<TestRedis> {
  const admin = new Redis(redis.url, { lazyConnect: true });
  try {
    await admin.connect();
    await admin.set(LIMITER_DATASETS_KEY, 'test-support');
  } finally {
    admin.disconnect();
  }
  return redis;
}

function externalRedis(url: string): TestRedis {
  const refuse = async (): Promise<never> => {
    throw new Error('this test needs a Redis of its own: call startRedis({ dedicated: true })');
  };
  return { url, kind: 'external', stop: refuse, restart: refuse, pause: refuse, resume: refuse, close: async () => {} };
}

async function processRedis(options: StartRedisOptions): Promise<TestRedis> {
  const server = await RedisServerProcess.start({ appendonly: options.appendonly ?? false });
  return {
    url: server.url,
    kind: 'process',
    stop: () => server.kill(),
    restart: (restartOptions) => server.restart(restartOptions),
    pause: async () => server.pause(),
    resume: async () => server.resume(),
    close: () => server.close(),
  };
}

async function containerRedis(options: StartRedisOptions): Promise<TestRedis> {
  const { GenericContainer, Wait, getContainerRuntimeClient } = await import('testcontainers');
  const hostPort = await freePort();
  const appendonly = options.appendonly ?? false;
  const container = await new GenericContainer('redis:7')
    .withCommand(['redis-server', '--appendonly', appendonly ? 'yes' : 'no', '--appendfsync', 'always', '--save', '', '--maxmemory-policy', 'noeviction'])
    .withExposedPorts({ container: 6379, host: hostPort }) // a fixed host port survives a restart
    .withWaitStrategy(Wait.forLogMessage('Ready to accept connections'))
    .start();
  const runtime = await getContainerRuntimeClient();
  const docker = runtime.container.getById(container.getId());
  const url = `redis://${container.getHost()}:${hostPort}`;
  let stopped = false;
  return {
    url,
    kind: 'container',
    stop: async () => {
      await docker.kill({ signal: 'SIGKILL' });
      stopped = true;
    },
    restart: async ({ keepData }) => {
      if (!keepData && !stopped) await container.exec(['redis-cli', 'FLUSHALL']);
      if (stopped) await docker.start();
      else await container.restart();
      stopped = false;
      if (!keepData) await container.exec(['redis-cli', 'FLUSHALL']);
    },
    pause: async () => {
      await docker.pause();
    },
    resume: async () => {
      await docker.unpause();
    },
    close: async () => {
      await container.stop({ remove: true });
    },
  };
}
