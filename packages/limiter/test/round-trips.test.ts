import { startRedis, uniqueName, type TestRedis } from '@tollgate/test-support';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLimiter, type Limiter, type Permit } from '../src/index.js';

/** Commands a client sends that a script never calls, so INFO commandstats counts them exactly. */
const CLIENT_COMMANDS = ['fcall', 'evalsha', 'eval', 'blpop', 'blmpop', 'subscribe'] as const;
const CALLS = 200;
/** Each process subscribes once to its grants channel (at start, and after a reconnect), not per call. */
const STANDING_SUBSCRIPTIONS_PER_PROCESS = 1;

let redis: TestRedis;
let admin: Redis;
const open: Limiter[] = [];

beforeAll(async () => {
  redis = await startRedis({ dedicated: true }); // INFO commandstats must hold only our commands
  admin = new Redis(redis.url);
});

afterAll(async () => {
  await Promise.all(open.map((limiter) => limiter.close()));
  admin.disconnect();
  await redis.close();
});

async function clientCommands(): Promise<Record<string, number>> {
  const info = await admin.info('commandstats');
  const counts: Record<string, number> = {};
  for (const command of CLIENT_COMMANDS) {
    const match = new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(info);
    counts[command] = Number(match?.[1] ?? 0);
  }
  return counts;
}

/** Calls of one command since the last RESETSTAT, inner commands of the functions included. */
async function commandCalls(command: string): Promise<number> {
  const info = await admin.info('commandstats');
  return Number(new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(info)?.[1] ?? 0);
}

function total(counts: Record<string, number>): number {
  return Object.values(counts).reduce((sum, count) => sum + count, 0);
}

/** Long leases and heartbeats, so no heartbeat lands inside the measured window. */
async function limiterFor(name: string, concurrency: number): Promise<Limiter> {
  const limiter = createLimiter({ redis: redis.url, name, concurrency, leaseTtlMs: 600_000, heartbeatMs: 300_000, rates: { inputTokens: { limit: 1e9, intervalMs: 60_000 } } });
  open.push(limiter);
  await limiter.ready();
  return limiter;
}

describe('Redis round trips per call', () => {
  it('G5: uncontended: acquire + release cost 2 commands', async () => {
    const limiter = await limiterFor(uniqueName('trips'), 4);
    await admin.config('RESETSTAT');
    for (let index = 0; index < CALLS; index++) {
      const permit = await limiter.acquire({ cost: { inputTokens: 100 } });
      await permit.release({ used: { inputTokens: 80 } });
    }
    const counts = await clientCommands();
    console.log(`uncontended, ${CALLS} calls:`, counts);
    expect(counts.fcall).toBe(2 * CALLS);
    // the one subscription each process keeps is not per call
    expect(total(counts) - 2 * CALLS).toBeLessThanOrEqual(STANDING_SUBSCRIPTIONS_PER_PROCESS);
  });

  it('G5: contended: a waiter served through its grants channel costs 2 (acquire, release; the grant arrives as a message)', async () => {
    const name = uniqueName('trips');
    const holder = await limiterFor(name, 1);
    const waiter = await limiterFor(name, 1);
    let held: Permit = await holder.acquire();
    await admin.config('RESETSTAT');
    for (let index = 0; index < CALLS; index++) {
      const pending = waiter.acquire(); // queued behind `held`
      while ((await admin.zcard(`{tollgate:${name}}:waiting`)) === 0) await new Promise((resolve) => setImmediate(resolve)); // not an fcall
      await held.release(); // the release script grants the waiter and publishes the grant on its channel
      const permit = await pending;
      await permit.release();
      held = await holder.acquire();
    }
    const counts = await clientCommands();
    console.log(`contended, ${CALLS} hand-offs:`, counts);
    // per hand-off: the holder's release + acquire (2 fcalls), the waiter's acquire + release
    // (2 fcalls); the grant reaches the waiter as a Pub/Sub message, which is no command
    expect(counts.fcall).toBe(4 * CALLS);
    expect((counts.blmpop ?? 0) + (counts.blpop ?? 0)).toBe(0);
    expect(counts.subscribe ?? 0).toBeLessThanOrEqual(2 * STANDING_SUBSCRIPTIONS_PER_PROCESS); // two processes
    const waiterCommandsPerCall = Math.round((total(counts) - 2 * CALLS) / CALLS);
    expect(waiterCommandsPerCall).toBe(2);
    await held.release();
  });
});

describe('Redis TIME per pair', () => {
  it('a release reads the clock only when a bucket or a waiter needs it', async () => {
    const plain = createLimiter({ redis: redis.url, name: uniqueName('clock'), concurrency: 1, leaseTtlMs: 600_000, heartbeatMs: 300_000 });
    open.push(plain);
    await plain.ready();
    await admin.config('RESETSTAT');
    for (let index = 0; index < CALLS; index++) await (await plain.acquire()).release();
    expect(await commandCalls('time')).toBe(CALLS); // the acquires' only: nobody waits, no bucket

    const rated = await limiterFor(uniqueName('clock'), 4);
    await admin.config('RESETSTAT');
    for (let index = 0; index < CALLS; index++) await (await rated.acquire({ cost: { inputTokens: 100 } })).release({ used: { inputTokens: 80 } });
    expect(await commandCalls('time')).toBe(2 * CALLS); // the release refills and settles a bucket

    // with a waiter: the holder's release reads the clock and grants it (its deadline and lease need it)
    const waiter = createLimiter({ redis: redis.url, name: plain.name, concurrency: 1, leaseTtlMs: 600_000, heartbeatMs: 300_000 });
    open.push(waiter);
    await waiter.ready();
    const held = await plain.acquire();
    const pending = waiter.acquire({ timeoutMs: 60_000 });
    while ((await admin.zcard(`{tollgate:${plain.name}}:waiting`)) === 0) await new Promise((resolve) => setImmediate(resolve)); // queued
    await admin.config('RESETSTAT');
    await held.release();
    const granted = await pending;
    expect(await commandCalls('time')).toBe(1);
    expect(Math.abs(granted.grantedAtMs - Date.now())).toBeLessThan(5_000); // Redis time of that release's grant
    await granted.release();
  });
});
