import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { startOverlapServer, startRedis, uniqueName, type OverlapServer, type TestRedis } from '@tollgate/test-support';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLimiter, type Limiter } from '../src/index.js';

const WORKER = fileURLToPath(new URL('./fixtures/task-worker.ts', import.meta.url));
const FLEET_LIMIT = 5;
const PROCESSES = 4;
const SLOTS_PER_PROCESS = 16;
const TASKS = 2_000;
const HOLD_MS_MIN = 5;
const HOLD_MS_MAX = 30;
const LEASE_TTL_MS = 3_000;
const HEARTBEAT_MS = 1_000;

let redis: TestRedis;
let upstream: OverlapServer;
let admin: Redis;
const children: ChildProcess[] = [];

beforeAll(async () => {
  redis = await startRedis();
  upstream = await startOverlapServer();
  admin = new Redis(redis.url);
});

afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  admin.disconnect();
  await upstream.close();
  await redis.close();
});

function startWorker(env: Record<string, string | number>): ChildProcess {
  const child = fork(WORKER, [], {
    execArgv: ['--conditions=tollgate-source', '--import', 'tsx'],
    env: { ...process.env, ...Object.fromEntries(Object.entries(env).map(([key, value]) => [key, String(value)])) },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  children.push(child);
  return child;
}

async function message<T>(child: ChildProcess, type: string): Promise<T> {
  for (;;) {
    const [received] = (await once(child, 'message')) as [{ type: string } & T];
    if (received.type === type) return received;
  }
}

/** A seeded list of hold times, pushed to Redis as the shared task queue. */
async function pushTasks(key: string, count: number, seed: number): Promise<number> {
  let state = seed;
  const holds: number[] = [];
  for (let index = 0; index < count; index++) {
    state = (state * 1_103_515_245 + 12_345) % 2 ** 31;
    holds.push(HOLD_MS_MIN + (state % (HOLD_MS_MAX - HOLD_MS_MIN + 1)));
  }
  await admin.rpush(key, ...holds);
  return holds.length;
}

function baseEnv(name: string) {
  return { REDIS_URL: redis.url, LIMITER_NAME: name, CONCURRENCY: FLEET_LIMIT, LEASE_TTL_MS, HEARTBEAT_MS, UPSTREAM_URL: upstream.url };
}

describe('cross-process: 4 real processes share one fleet limit', () => {
  it(`G1: runs ${TASKS} tasks from 4 × ${SLOTS_PER_PROCESS} slots and never exceeds ${FLEET_LIMIT} calls at once`, async () => {
    const name = uniqueName('fleet');
    const tasksKey = `${name}:tasks`;
    await pushTasks(tasksKey, TASKS, 7);
    upstream.reset();
    const workers = Array.from({ length: PROCESSES }, () => startWorker({ ...baseEnv(name), MODE: 'tasks', SLOTS: SLOTS_PER_PROCESS, TASKS_KEY: tasksKey }));
    const results = await Promise.all(workers.map((worker) => message<{ count: number }>(worker, 'done')));
    const stats = upstream.stats({ limit: FLEET_LIMIT });
    console.log(
      `fleet: ${stats.calls} calls, max in flight ${stats.maxInFlight}, mean in flight ${stats.inFlightMean.toFixed(
        2,
      )} of ${FLEET_LIMIT}, refill gap median ${stats.refillGap.medianMs.toFixed(2)} ms`,
    );
    expect(results.reduce((sum, result) => sum + result.count, 0)).toBe(TASKS);
    expect(await admin.llen(tasksKey)).toBe(0);
    expect(stats.calls).toBe(TASKS);
    expect(stats.maxInFlight).toBeLessThanOrEqual(FLEET_LIMIT);
    expect(stats.maxInFlight).toBe(FLEET_LIMIT); // and the fleet did use the whole limit
  }, 120_000);

  it('G6: kill -9 of a process holding permits: the others finish every task, and its permits come back by themselves', async () => {
    const name = uniqueName('kill');
    const tasksKey = `${name}:tasks`;
    const observer: Limiter = createLimiter({ redis: redis.url, name, concurrency: FLEET_LIMIT, leaseTtlMs: LEASE_TTL_MS, heartbeatMs: HEARTBEAT_MS });
    await observer.ready();
    const victim = startWorker({ ...baseEnv(name), MODE: 'hold', HOLD: 3 });
    const { ids, ownerId } = await message<{ ids: string[]; ownerId: string }>(victim, 'holding');
    expect(ids).toHaveLength(3);

    const total = await pushTasks(tasksKey, 300, 11);
    upstream.reset();
    const workers = Array.from({ length: 3 }, () => startWorker({ ...baseEnv(name), MODE: 'tasks', SLOTS: SLOTS_PER_PROCESS, TASKS_KEY: tasksKey }));
    await sleep(200);
    victim.kill('SIGKILL');
    const killedAt = performance.now();
    let reclaimedAfterMs: number;
    for (;;) {
      const { leases } = await observer.snapshot();
      if (!leases.some((lease) => lease.id.startsWith(`${ownerId}:`))) {
        reclaimedAfterMs = performance.now() - killedAt;
        break;
      }
      await sleep(50);
    }
    const results = await Promise.all(workers.map((worker) => message<{ count: number }>(worker, 'done')));
    const stats = upstream.stats({ limit: FLEET_LIMIT });
    console.log(`kill -9: permits back ${reclaimedAfterMs.toFixed(0)} ms after the kill (leaseTtlMs ${LEASE_TTL_MS}); ${stats.calls} calls, max in flight ${stats.maxInFlight}`);
    expect(reclaimedAfterMs).toBeGreaterThan(0);
    expect(results.reduce((sum, result) => sum + result.count, 0)).toBe(total);
    expect(stats.maxInFlight).toBeLessThanOrEqual(FLEET_LIMIT);
    const after = await observer.snapshot();
    expect(after.inFlight).toBe(0);
    await observer.close();
  }, 120_000);

  it('G7: SIGSTOP past the lease, then SIGCONT: the frozen process aborts its work within one heartbeat, and others got its slots meanwhile', async () => {
    const name = uniqueName('stop');
    const observer: Limiter = createLimiter({ redis: redis.url, name, concurrency: FLEET_LIMIT, leaseTtlMs: LEASE_TTL_MS, heartbeatMs: HEARTBEAT_MS });
    await observer.ready();
    const frozen = startWorker({ ...baseEnv(name), MODE: 'hold', HOLD: FLEET_LIMIT });
    const { ids } = await message<{ ids: string[] }>(frozen, 'holding');
    const lost = new Set<string>();
    frozen.on('message', (received: { type: string; id?: string }) => {
      if (received.type === 'leaseLost' && received.id) lost.add(received.id);
    });
    frozen.kill('SIGSTOP');
    // while it is frozen its leases expire and the whole limit goes to someone else
    const others = await Promise.all(Array.from({ length: FLEET_LIMIT }, () => observer.acquire({ timeoutMs: 3 * LEASE_TTL_MS })));
    expect(others).toHaveLength(FLEET_LIMIT);
    await sleep(LEASE_TTL_MS); // frozen for well over one lease
    frozen.kill('SIGCONT');
    const resumedAt = performance.now();
    while (lost.size < ids.length && performance.now() - resumedAt < 10 * HEARTBEAT_MS) await sleep(20);
    const abortedAfterMs = performance.now() - resumedAt;
    console.log(`SIGSTOP: all ${lost.size} leases reported lost ${abortedAfterMs.toFixed(0)} ms after SIGCONT (heartbeatMs ${HEARTBEAT_MS})`);
    expect([...lost].sort()).toEqual([...ids].sort());
    expect(abortedAfterMs).toBeLessThan(HEARTBEAT_MS + 1_000); // one heartbeat, plus scheduling slack on 2 cores
    expect((await observer.snapshot()).inFlight).toBe(FLEET_LIMIT); // only the observer's; the frozen ones are gone
    for (const permit of others) await permit.release();
    frozen.kill('SIGKILL');
    await observer.close();
  }, 60_000);
});
