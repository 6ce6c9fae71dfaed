/**
 * Issue 12, cases 1 and 3: a Redis stall longer than `redisTimeoutMs` (DEBUG SLEEP) makes a call
 * miss its deadline while its script still runs. Nothing the script did may be lost with the reply:
 * a grant to this process's own waiter is delivered, and a waiter queued for an acquire that already
 * failed is removed.
 */
import { uniqueName } from '@tollgate/test-support';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { LimiterUnavailableError, type Limiter, type Permit } from '../src/index.js';
import { limiterKeys } from '../src/keys.js';
import { STUCK_MS, settledWithin, startReplyLosingProxy, until, useDebugRedis } from './support.js';

const REDIS_TIMEOUT_MS = 200;
/** Longer than REDIS_TIMEOUT_MS: a call sent during it misses its deadline, then runs. */
const STALL_SECONDS = 0.6;

const fixture = useDebugRedis();

/** Long leases and heartbeats: no heartbeat pumps (or renews) during a test, so only the call under test can grant. */
async function limiterFor(name: string): Promise<Limiter> {
  return fixture.limiter({ name, concurrency: 1, redisTimeoutMs: REDIS_TIMEOUT_MS, leaseTtlMs: 60_000, heartbeatMs: 30_000 });
}

describe('a grant inside a reply that missed its deadline (case 1)', () => {
  it("a process's own release meets a stall: the waiter it granted is still granted", async () => {
    const limiter = await limiterFor(uniqueName('lost-grant'));
    const held = await limiter.acquire();
    const waiting = limiter.acquire(); // queued behind `held`, in the same process
    expect(await until(async () => (await limiter.snapshot()).waiting === 1, STUCK_MS)).toBe(true);
    const stall = await fixture.redis.stall(STALL_SECONDS);
    // the release script runs after the stall and grants `waiting`; its reply comes after the deadline
    await expect(held.release()).rejects.toBeInstanceOf(LimiterUnavailableError);
    await stall.woken;
    const permit = await settledWithin(waiting, STUCK_MS);
    expect(permit).not.toBe('stuck');
    await (permit as Permit).release();
    const snapshot = await limiter.snapshot();
    expect(snapshot.inFlight).toBe(0);
    expect(snapshot.waiting).toBe(0);
  });
});

describe('a grant inside a reply that never comes (case 1)', () => {
  it("a process's own release ran, but the connection dropped before its reply: the waiter it granted is granted on reconnect", async () => {
    const proxy = await startReplyLosingProxy(fixture.redis.url);
    try {
      const limiter = await fixture.limiter({
        redis: proxy.url,
        name: uniqueName('dropped-grant'),
        concurrency: 1,
        redisTimeoutMs: REDIS_TIMEOUT_MS,
        leaseTtlMs: 60_000,
        heartbeatMs: 30_000,
      });
      const held = await limiter.acquire();
      const waiting = limiter.acquire(); // queued behind `held`, in the same process
      expect(await until(async () => (await limiter.snapshot()).waiting === 1)).toBe(true);
      proxy.loseNextReply(); // the release script runs and grants `waiting`; its reply is lost with the connection
      await expect(held.release()).rejects.toBeInstanceOf(LimiterUnavailableError);
      const permit = await settledWithin(waiting);
      expect(permit).not.toBe('stuck');
      expect((await limiter.snapshot()).inFlight).toBe(1);
      await (permit as Permit).release();
      expect((await limiter.snapshot()).inFlight).toBe(0);
      await limiter.close();
    } finally {
      await proxy.close();
    }
  });
});

describe('queue entries nobody owns (case 3)', () => {
  it('an acquire that timed out while its script queued the waiter late leaves no queue entry and no lease', async () => {
    const name = uniqueName('late-queued');
    const holder = await limiterFor(name);
    const late = await limiterFor(name);
    const held = await holder.acquire();
    const stall = await fixture.redis.stall(STALL_SECONDS);
    await expect(late.acquire()).rejects.toBeInstanceOf(LimiterUnavailableError); // its script queues it after the stall
    await stall.woken;
    // the entry is removed (the late answer names it); before the fix it stayed and took the slot
    // on the next release, held by nobody for leaseTtlMs
    expect(await until(async () => (await holder.snapshot()).waiting === 0, STUCK_MS)).toBe(true);
    await held.release();
    const snapshot = await holder.snapshot();
    expect(snapshot.inFlight).toBe(0);
    const next = await settledWithin(holder.acquire(), STUCK_MS);
    expect(next).not.toBe('stuck');
    await (next as Permit).release();
  });

  it('a cancel that never ran (its connection dropped) is sent again: the entry does not take the next free slot', async () => {
    const name = uniqueName('failed-cancel');
    const holder = await limiterFor(name);
    // its own client, named, so that the test can drop exactly its command connection
    const connection = new Redis(fixture.redis.url, { connectionName: 'failed-cancel', enableOfflineQueue: false, maxRetriesPerRequest: 0 });
    connection.on('error', () => {}); // the connection is killed on purpose
    const late = await fixture.limiter({ redis: connection, name, concurrency: 1, redisTimeoutMs: REDIS_TIMEOUT_MS, leaseTtlMs: 60_000, heartbeatMs: 30_000 });
    const held = await holder.acquire();
    const controller = new AbortController();
    const waiting = late.acquire({ signal: controller.signal }); // no deadline: only a cancel or a grant removes it
    expect(await until(async () => (await holder.snapshot()).waiting === 1, STUCK_MS)).toBe(true);
    await fixture.admin.call('CLIENT', 'PAUSE', '5000', 'WRITE'); // scripts wait, unrun
    try {
      controller.abort();
      await expect(waiting).rejects.toMatchObject({ code: 'ACQUIRE_ABORTED' }); // its cancel timed out, unrun
      const clients = String(await fixture.admin.call('CLIENT', 'LIST')).split('\n');
      const command = clients.find((line) => line.includes('name=failed-cancel') && line.includes('cmd=fcall'));
      const id = /\bid=(\d+)/.exec(command ?? '')?.[1];
      expect(id).toBeDefined();
      await fixture.admin.call('CLIENT', 'KILL', 'ID', id ?? ''); // the cancel is dropped with the connection
    } finally {
      await fixture.admin.call('CLIENT', 'UNPAUSE');
    }
    // the limiter reconnects and sends the cancel again; before the fix the entry stayed, and the
    // release below granted it to nobody, holding the slot for leaseTtlMs
    expect(await until(async () => (await holder.snapshot()).waiting === 0, STUCK_MS)).toBe(true);
    await held.release();
    expect((await holder.snapshot()).inFlight).toBe(0);
    await late.close();
    connection.disconnect();
  });
});

describe('a heartbeat that missed its deadline (a process presumed dead meanwhile)', () => {
  it('its late reply says the process was presumed dead: the waiters a pump dropped meanwhile are submitted again', async () => {
    const name = uniqueName('late-heartbeat');
    const keys = limiterKeys(name);
    const holder = await limiterFor(name);
    // heartbeats often, so that some are sent during the stall; leases long: only the test presumes it dead
    const waiter = await fixture.limiter({ name, concurrency: 1, redisTimeoutMs: REDIS_TIMEOUT_MS, leaseTtlMs: 60_000, heartbeatMs: 100 });
    const held = await holder.acquire();
    const waiting = waiter.acquire(); // no deadline: only a grant ends it
    expect(await until(async () => (await holder.snapshot()).waiting === 1)).toBe(true);
    const [member] = await fixture.admin.zrange(keys.waiting, '0', '0');
    expect(member).toBeDefined();
    // at once, as a long freeze leaves it: the process's mark has passed and a pump of another process
    // dropped its waiter; then Redis stalls, so that the heartbeats sent meanwhile run (the first one
    // answering wasAlive 0, and marking the process alive again) after their deadline
    await fixture.admin
      .multi()
      .zadd(keys.owners, 0, waiter.ownerId)
      .zrem(keys.waiting, member ?? '')
      .call('DEBUG', 'SLEEP', String(STALL_SECONDS))
      .exec();
    // before the fix the late reply was read for its grants only: every later heartbeat answered
    // wasAlive 1, the waiter was never submitted again, and it waited for ever with a free slot
    await held.release();
    const permit = await settledWithin(waiting);
    expect(permit).not.toBe('stuck');
    await (permit as Permit).release();
    const snapshot = await holder.snapshot();
    expect(snapshot.inFlight).toBe(0);
    expect(snapshot.waiting).toBe(0);
  });
});
