import { setTimeout as sleep } from 'node:timers/promises';
import { startRedis, uniqueName, type TestRedis } from '@tollgate/test-support';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AcquireAbortedError, InvalidArgumentError, createLimiter, limiterKeys, type Limiter, type Permit } from '../src/index.js';
import { tollgateLibrary } from '../src/scripts/library.js';

/**
 * Case 9 of issue 12: what one caller sends can never break another process. Out-of-range
 * arguments are refused naming the field (by zod in the client, and by the function itself for a
 * caller that is not this client); an in-range one is honoured exactly.
 */
let redis: TestRedis;
let admin: Redis;
const open: Limiter[] = [];

beforeAll(async () => {
  redis = await startRedis();
  admin = new Redis(redis.url);
});

afterAll(async () => {
  await Promise.all(open.map((limiter) => limiter.close()));
  admin.disconnect();
  await redis.close();
});

async function limiterFor(name: string): Promise<Limiter> {
  const limiter = createLimiter({ redis: redis.url, name, concurrency: 1 });
  open.push(limiter);
  await limiter.ready();
  return limiter;
}

/** Sends acquire straight to the function, as a caller that is not this client could. */
interface RogueFields {
  waiterId?: string;
  priority?: string;
  /** '' (the default) for a limiter without pools. */
  pool?: string;
  /** group and step ('' and '0' by default: a limiter without groups). */
  group?: [string, string];
  /** costCount, then (dimension, amount) pairs. */
  cost?: string[];
}
type RogueCall = [timeoutMs: string, fields?: RogueFields];

async function rawAcquire(name: string, timeoutMs: string, fields: RogueFields = {}): Promise<unknown> {
  const { functionKeys, config } = limiterKeys(name);
  const epoch = await admin.hget(config, 'epoch');
  const cost = fields.cost ?? ['0'];
  return admin.fcall(
    tollgateLibrary().functionName('acquire'),
    functionKeys.length,
    ...functionKeys,
    epoch ?? '',
    'rogue',
    fields.waiterId ?? 'rogue:1',
    fields.priority ?? '5',
    timeoutMs,
    '',
    fields.pool ?? '',
    ...(fields.group ?? ['', '0']),
    ...cost,
  );
}

describe('the function itself', () => {
  it('refuses each out-of-range field by name, before it writes anything', async () => {
    const name = uniqueName('rogue-fields');
    await limiterFor(name);
    const refused: Array<[string, RogueCall]> = [
      ['waiterId', ['0', { waiterId: 'no-colon' }]],
      ['waiterId', ['0', { waiterId: ':1' }]],
      ['waiterId', ['0', { waiterId: 'rogue:' }]],
      ['waiterId', ['0', { waiterId: 'ro gue:1' }]],
      ['priority', ['0', { priority: '1.5' }]],
      ['priority', ['0', { priority: '-1' }]],
      ['priority', ['0', { priority: '10' }]],
      ['priority', ['0', { priority: 'nan' }]],
      ['priority', ['0', { priority: 'inf' }]],
      ['priority', ['0', { priority: 'x' }]],
      ['timeoutMs', ['0.5']],
      ['timeoutMs', ['-1']],
      ['timeoutMs', ['2147483648']],
      ['timeoutMs', ['nan']],
      ['timeoutMs', ['-inf']],
      ['cost', ['0', { cost: ['1.5', 'requests', '1'] }]],
      ['cost', ['0', { cost: ['65'] }]],
      ['cost', ['0', { cost: ['-1'] }]],
      ['cost', ['0', { cost: ['nan'] }]],
      ['cost', ['0', { cost: ['1', 'requests', '-1'] }]],
      ['cost', ['0', { cost: ['1', 'requests', 'nan'] }]],
      ['cost', ['0', { cost: ['1', 'requests', '0x10'] }]],
      ['pool', ['0', { pool: 'sonnet' }]], // a limiter without pools
      ['pool', ['0', { pool: 'so nnet' }]],
      // a group's name and step (fair share): a rogue step would move a group's tags out of its band
      ['group', ['0', { group: ['a b', '1000'] }]],
      ['group', ['0', { group: ['x'.repeat(65), '1000'] }]],
      ['group', ['0', { group: ['team', '0'] }]],
      ['group', ['0', { group: ['team', '1.5'] }]],
      ['group', ['0', { group: ['team', '1000000001'] }]],
      ['group', ['0', { group: ['team', 'nan'] }]],
    ];
    for (const [field, args] of refused) expect([field, await rawAcquire(name, ...args)]).toEqual([field, [-4, field]]);
    expect(await admin.zcard(limiterKeys(name).leases)).toBe(0);
    expect(await admin.zcard(limiterKeys(name).waiting)).toBe(0);
    // the limits of each range are in range: granted (concurrency 1, so released in between)
    for (const args of [
      ['2147483647', { priority: '9' }],
      ['0', { priority: '0', waiterId: 'rogue:a:b' }],
    ] as RogueCall[]) {
      const reply = (await rawAcquire(name, ...args)) as [number];
      expect(reply[0]).toBe(1);
      await admin.zrem(limiterKeys(name).leases, args[1]?.waiterId ?? 'rogue:1');
    }
  });
});

describe('the function itself, with fields left off', () => {
  it('reads the fields after timeoutMs (acquire) and settleCount (release) that a caller leaves off as their defaults', async () => {
    const name = uniqueName('rogue-short');
    await limiterFor(name);
    const { functionKeys, config, leases, waiting } = limiterKeys(name);
    const epoch = (await admin.hget(config, 'epoch')) ?? '';
    const call = (script: 'acquire' | 'release', ...args: string[]) =>
      admin.fcall(tollgateLibrary().functionName(script), functionKeys.length, ...functionKeys, epoch, 'rogue', ...args);
    expect(((await call('acquire', 'rogue:1', '0', '0')) as [number])[0]).toBe(1);
    expect(((await call('acquire', 'rogue:2', '0', '0')) as [number])[0]).toBe(0); // concurrency 1: queued
    expect(await admin.zcard(waiting)).toBe(1);
    const released = (await call('release', 'rogue:1', '0')) as [number, number, number, string[]];
    expect(released[0]).toBe(1);
    expect(released[3].map((message) => message.split(' ')[0])).toEqual(['rogue:2']); // the pump granted the next
    expect(await admin.zrange(leases, '0', '-1')).toEqual(['rogue:2']);
    expect(await admin.zcard(waiting)).toBe(0);
  });
});

describe('the function itself, with pools', () => {
  it("refuses a pool it does not have, no pool, and a cost outside the waiter's pool", async () => {
    const name = uniqueName('rogue-pools');
    const limiter = createLimiter({
      redis: redis.url,
      name,
      concurrency: 1,
      pools: { haiku: { requests: { limit: 10, intervalMs: 60_000 } }, sonnet: { requests: { limit: 10, intervalMs: 60_000 } } },
    });
    open.push(limiter);
    await limiter.ready();
    for (const [field, args] of [
      ['pool', ['0', {}]], // a limiter with pools: every waiter names one
      ['pool', ['0', { pool: 'opus' }]],
      ['pool', ['0', { pool: 'haiku', cost: ['1', 'sonnet/requests', '1'] }]],
      ['pool', ['0', { pool: 'haiku', cost: ['1', 'requests', '1'] }]],
    ] as Array<[string, RogueCall]>) {
      expect([field, await rawAcquire(name, ...args)]).toEqual([field, [-4, field]]);
    }
    expect(await admin.zcard(limiterKeys(name).waiting)).toBe(0);
    const reply = (await rawAcquire(name, '0', { pool: 'haiku', cost: ['1', 'haiku/requests', '1'] })) as [number];
    expect(reply[0]).toBe(1);
  });
});

describe('timeoutMs', () => {
  it('above 2^31 − 1 ms is refused naming the field, not turned into a deadline that fires after 1 ms', async () => {
    const limiter = await limiterFor(uniqueName('timeout-max'));
    await expect(limiter.acquire({ timeoutMs: 2 ** 31 })).rejects.toThrow(InvalidArgumentError);
    await expect(limiter.acquire({ timeoutMs: 1e14 })).rejects.toThrow(/timeoutMs: .*\(got 100000000000000\)/);
  });

  it('of 2^31 − 1 ms is honoured: the waiter keeps waiting and is granted on the next release', async () => {
    const name = uniqueName('timeout-long');
    const holder = await limiterFor(name);
    const waiter = await limiterFor(name);
    const held = await holder.acquire();
    let settled: Permit | unknown;
    const pending = waiter.acquire({ timeoutMs: 2 ** 31 - 1 }).then(
      (permit) => (settled = permit),
      (error: unknown) => (settled = error),
    );
    await sleep(100); // a timer that fires after 1 ms would have fired by now
    expect(settled).toBeUndefined();
    await held.release();
    await pending;
    expect(settled).toBeInstanceOf(Object);
    expect(settled).not.toBeInstanceOf(Error);
    await (settled as Permit).release();
  });

  it('a deadline of about 1e14 ms sent straight to Redis is refused, and every other process keeps working', async () => {
    const name = uniqueName('timeout-rogue');
    const holder = await limiterFor(name);
    const waiter = await limiterFor(name);
    const held = await holder.acquire(); // the rogue call would be queued, not granted
    expect(await rawAcquire(name, '100000000000000')).toEqual([-4, 'timeoutMs']);
    const queued = waiter.acquire({ timeoutMs: 10_000 });
    await held.release(); // pumps the queue: it must still be readable
    await (await queued).release();
    expect(await admin.zcard(limiterKeys(name).waiting)).toBe(0);
  });
});

describe('the queue', () => {
  it('an entry no function can read is dropped by the pump instead of failing every process', async () => {
    const name = uniqueName('unreadable');
    const holder = await limiterFor(name);
    const waiter = await limiterFor(name);
    const held = await holder.acquire();
    await admin.zadd(limiterKeys(name).waiting, 0, 'rogue:1 5 1.0017e+14 1764000000000'); // an exponent-form deadline, as v1 wrote it
    const queued = waiter.acquire({ timeoutMs: 10_000 });
    await held.release();
    await (await queued).release();
    expect(await admin.zcard(limiterKeys(name).waiting)).toBe(0);
  });

  it('an abort still works for a waiter with the longest deadline', async () => {
    const name = uniqueName('timeout-abort');
    const holder = await limiterFor(name);
    const waiter = await limiterFor(name);
    const held = await holder.acquire();
    const controller = new AbortController();
    const pending = waiter.acquire({ timeoutMs: 2 ** 31 - 1, signal: controller.signal });
    await sleep(50);
    controller.abort();
    await expect(pending).rejects.toBeInstanceOf(AcquireAbortedError);
    await held.release();
  });
});
