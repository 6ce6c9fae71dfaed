import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { startRedis, uniqueName, type TestRedis } from '@tollgate/test-support';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AcquireTimeoutError, createLimiter, limiterKeys, type Limiter, type LimiterOptions, type Permit } from '../src/index.js';

/**
 * Redis loses data under processes that hold permits (DESIGN §10): all of it (FLUSHALL, a restart
 * without persistence) or part of it with the epoch kept (an AOF `everysec` crash, a failover to a
 * lagging replica); Redis's clock steps back. Old processes are real processes (fork) that hold
 * permits across the loss; new ones are limiters of this test process, with their own owner ids.
 */
const WORKER = fileURLToPath(new URL('./fixtures/task-worker.ts', import.meta.url));
const LEASE_TTL_MS = 3_000;
const HEARTBEAT_MS = 300;
/** Long enough for several heartbeats of every process and the grace pause of a new dataset. */
const WAIT_MS = 3_000;

let redis: TestRedis;
let admin: Redis;
const children: ChildProcess[] = [];
let open: Limiter[] = [];

beforeAll(async () => {
  redis = await startRedis({ dedicated: true }); // FLUSHALL and restarts need a server of our own
  admin = new Redis(redis.url, { maxRetriesPerRequest: null });
  admin.on('error', () => {}); // while Redis restarts
});

afterEach(async () => {
  for (const child of children.splice(0)) child.kill('SIGKILL');
  await Promise.all(open.map((limiter) => limiter.close()));
  open = [];
});

afterAll(async () => {
  admin.disconnect();
  await redis.close();
});

async function limiterFor(name: string, options: Partial<LimiterOptions> = {}): Promise<Limiter> {
  const limiter = createLimiter({ redis: redis.url, name, concurrency: 2, leaseTtlMs: LEASE_TTL_MS, heartbeatMs: HEARTBEAT_MS, redisTimeoutMs: 500, ...options });
  limiter.on('redisError', () => {}); // expected while Redis restarts
  open.push(limiter);
  await limiter.ready();
  return limiter;
}

/** An old process: holds `hold` permits of a concurrency-2 limiter and heartbeats until killed. */
async function holder(name: string, hold: number): Promise<{ ids: string[]; fences: number[] }> {
  const child = fork(WORKER, [], {
    execArgv: ['--conditions=tollgate-source', '--import', 'tsx'],
    env: {
      ...process.env,
      REDIS_URL: redis.url,
      LIMITER_NAME: name,
      CONCURRENCY: '2',
      LEASE_TTL_MS: String(LEASE_TTL_MS),
      HEARTBEAT_MS: String(HEARTBEAT_MS),
      MODE: 'hold',
      HOLD: String(hold),
    },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  children.push(child);
  for (;;) {
    const [received] = (await once(child, 'message')) as [{ type: string; ids: string[]; fences: number[] }];
    if (received.type === 'holding') return received;
  }
}

/** Tries to take one more permit than the limit leaves; resolves with what it got. */
async function tryAcquire(limiter: Limiter, timeoutMs: number): Promise<Permit | AcquireTimeoutError> {
  return limiter.acquire({ timeoutMs }).catch((error: unknown) => {
    if (error instanceof AcquireTimeoutError) return error;
    throw error;
  });
}

describe('G1 across data loss (case 4)', () => {
  it('FLUSHALL under an old process holding the whole limit: a brand-new process is not granted a third permit', async () => {
    const name = uniqueName('loss-new');
    const old = await holder(name, 2);
    await admin.flushall();
    const fresh = await limiterFor(name); // the first to configure after the loss: it creates the new dataset
    const third = await tryAcquire(fresh, WAIT_MS);
    expect(third).toBeInstanceOf(AcquireTimeoutError);
    const snapshot = await fresh.snapshot();
    expect(snapshot.inFlight).toBe(2);
    expect(snapshot.leases.map((lease) => lease.id).sort()).toEqual([...old.ids].sort()); // re-registered by the old process
  }, 30_000);

  it('restart without persistence: a process retrying ready() and a new one together get no permit beyond the limit', async () => {
    const name = uniqueName('loss-restart');
    const old = await holder(name, 1);
    const retrying = createLimiter({ redis: redis.url, name, concurrency: 2, leaseTtlMs: LEASE_TTL_MS, heartbeatMs: HEARTBEAT_MS, redisTimeoutMs: 500 });
    retrying.on('redisError', () => {});
    open.push(retrying);
    await redis.stop();
    await expect(retrying.ready()).rejects.toThrow(); // its first ready() meets Redis down
    await redis.restart({ keepData: false });
    await retrying.ready(); // retried after the loss: it may be the one that creates the new dataset
    const fresh = await limiterFor(name);
    const granted = await Promise.all([tryAcquire(retrying, WAIT_MS), tryAcquire(fresh, WAIT_MS)]);
    const permits = granted.filter((result): result is Permit => !(result instanceof AcquireTimeoutError));
    expect(permits).toHaveLength(1); // 1 held by the old process + 1 = the limit of 2
    const snapshot = await fresh.snapshot();
    expect(snapshot.inFlight).toBe(2);
    expect(snapshot.leases.map((lease) => lease.id)).toEqual(expect.arrayContaining(old.ids));
    for (const permit of permits) await permit.release();
  }, 30_000);
});

describe('fences rise across data loss (case 14)', () => {
  it('a grant after FLUSHALL, by an old process or a brand-new one, has a fence above every fence before it', async () => {
    const name = uniqueName('fence');
    const old = await holder(name, 1);
    const before = await limiterFor(name);
    const fences = [...old.fences];
    for (let index = 0; index < 6; index++) {
      const permit = await before.acquire();
      fences.push(permit.fence);
      await permit.release();
    }
    await admin.flushall();
    const fresh = await limiterFor(name);
    const afterFresh = await fresh.acquire({ timeoutMs: WAIT_MS }); // waits out the new dataset's grace pause
    await afterFresh.release();
    const afterOld = await before.acquire({ timeoutMs: WAIT_MS });
    await afterOld.release();
    expect(afterFresh.fence).toBeGreaterThan(Math.max(...fences));
    expect(afterOld.fence).toBeGreaterThan(afterFresh.fence);
  }, 30_000);
});

describe('the parsed-config cache never serves another dataset (case 7)', () => {
  const WIDE = { concurrency: undefined, rates: { requests: { limit: 1_000, intervalMs: 60_000 } } };
  const NARROW = { concurrency: undefined, rates: { requests: { limit: 10, intervalMs: 60_000 } } };

  /** Takes as many permits as the narrow limit's bucket holds, then one more, which must wait. */
  async function expectNarrowLimit(narrow: Limiter, firstTimeoutMs: number): Promise<void> {
    const permits = [await narrow.acquire({ timeoutMs: firstTimeoutMs })];
    for (let index = 1; index < 10; index++) permits.push(await narrow.acquire({ timeoutMs: 200 }));
    expect(await tryAcquire(narrow, 200)).toBeInstanceOf(AcquireTimeoutError); // the 11th of a bucket of 10
    for (const permit of permits) await permit.release();
  }

  it('the same name in two databases of one server: each database enforces its own bucket', { timeout: 30_000 }, async () => {
    const name = uniqueName('select');
    const wide = await limiterFor(name, WIDE);
    const narrow = await limiterFor(name, { ...NARROW, redis: `${redis.url}/1` });
    await (await wide.acquire()).release(); // the library's cache now holds database 0's limits for this name
    await expectNarrowLimit(narrow, WAIT_MS); // database 1 is new to Tollgate: the first waits out its grace pause
  });

  it('after an in-place FLUSHALL, a new process runs with its limits, not the cached ones of the lost dataset', async () => {
    const name = uniqueName('flush-cache');
    const wide = await limiterFor(name, WIDE);
    await (await wide.acquire()).release();
    await wide.close();
    await admin.flushall();
    const narrow = await limiterFor(name, NARROW);
    await expectNarrowLimit(narrow, WAIT_MS); // the first waits out the new dataset's grace pause
  }, 30_000);
});

describe('partial data loss that keeps the epoch', () => {
  it('an apply that is the first call after FLUSHALL registers the leases its process holds: none is reported lost', async () => {
    const name = uniqueName('apply-after-loss');
    const limiter = await limiterFor(name);
    const permit = await limiter.acquire();
    await admin.flushall();
    await limiter.applyLimits(); // re-creates the dataset; before the fix it did not re-register the permit's lease
    expect((await limiter.snapshot()).inFlight).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 3 * HEARTBEAT_MS)); // heartbeats: the lease is in Redis, nothing to report lost
    expect(permit.leaseLost).toBe(false);
    expect(permit.signal.aborted).toBe(false);
    await permit.release();
    expect((await limiter.snapshot()).inFlight).toBe(0);
  });

  it('a lease Redis lost while its process holds it is registered again by the next heartbeat and reported lost', async () => {
    const name = uniqueName('partial');
    const holding = await limiterFor(name, { concurrency: 1 });
    const other = await limiterFor(name, { concurrency: 1 });
    const permit = await holding.acquire();
    const lost = new Promise<void>((resolve) => holding.once('leaseLost', () => resolve()));
    await admin.zrem(limiterKeys(name).leases, permit.id); // the write of the lease never reached the disk
    await lost;
    expect(permit.signal.aborted).toBe(true); // another process may have had its slot meanwhile: the work stops
    expect((await other.snapshot()).leases.map((lease) => lease.id)).toEqual([permit.id]);
    const blocked = await tryAcquire(other, 300); // the work may still run until released: it still counts
    expect(blocked).toBeInstanceOf(AcquireTimeoutError);
    const result = await permit.release();
    expect(result.leaseLost).toBe(true);
    await (await other.acquire({ timeoutMs: 1_000 })).release();
  });
});

describe('a Redis clock step backwards', () => {
  it('never drains a bucket: a bucket written at a later Redis time keeps its tokens', async () => {
    const name = uniqueName('clock');
    const limiter = await limiterFor(name, { concurrency: undefined, rates: { requests: { limit: 10, intervalMs: 1_000 } } });
    await (await limiter.acquire()).release(); // the bucket now holds 9 tokens, stamped with Redis time
    const { config: buckets } = limiterKeys(name); // the buckets are fields of the config hash
    const ts = Number(await admin.hget(buckets, 'ts:requests'));
    await admin.hset(buckets, 'ts:requests', ts + 3_600_000); // as if Redis's clock had since stepped back an hour
    const permits: Permit[] = [];
    for (let index = 0; index < 9; index++) permits.push(await limiter.acquire({ timeoutMs: 200 }));
    expect(permits).toHaveLength(9);
    expect(await tryAcquire(limiter, 50)).toBeInstanceOf(AcquireTimeoutError); // and it did not refill either
    for (const permit of permits) await permit.release();
    expect(Number(await admin.hget(buckets, 'ts:requests'))).toBe(ts + 3_600_000); // its time never moves back
  });
});

describe('a grant message missed while the subscription is down', () => {
  it('is collected from Redis when the subscription is back: the waiter is granted, and nothing is granted twice', async () => {
    const name = uniqueName('missed');
    const holding = await limiterFor(name, { concurrency: 1 });
    const waiting = await limiterFor(name, { concurrency: 1 });
    const held = await holding.acquire();
    const pending = waiting.acquire({ timeoutMs: 10_000 });
    await expect.poll(async () => (await holding.snapshot()).waiting).toBe(1);
    await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub'); // every subscription drops; the grant below is published to no one
    await held.release();
    const permit = await pending; // collected by the heartbeat the resubscription sends (or the next one)
    expect((await holding.snapshot()).leases.map((lease) => lease.id)).toEqual([permit.id]);
    await permit.release();
    expect(await admin.hlen(limiterKeys(name).granted)).toBe(0); // the kept copy goes with the release
  });
});
