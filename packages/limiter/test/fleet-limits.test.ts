import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { startRedis, uniqueName, type TestRedis } from '@tollgate/test-support';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AcquireTimeoutError, CostExceedsCapacityError, createLimiter, type Limiter, type LimiterOptions, type Permit } from '../src/index.js';

/**
 * DESIGN §8 for the single-pool limits (case 6 of issue 12): the fleet's limits change only by an
 * explicit apply; a process whose options differ warns once and runs with the fleet's, including the
 * lease TTL Redis enforces; lowering a capacity under a queued waiter rejects it at once.
 */
const WORKER = fileURLToPath(new URL('./fixtures/task-worker.ts', import.meta.url));

let redis: TestRedis;
const children: ChildProcess[] = [];
let open: Limiter[] = [];

beforeAll(async () => {
  redis = await startRedis();
});

afterEach(async () => {
  for (const child of children.splice(0)) child.kill('SIGKILL');
  await Promise.all(open.map((limiter) => limiter.close()));
  open = [];
});

afterAll(async () => {
  await redis.close();
});

async function limiterFor(name: string, options: Partial<LimiterOptions>): Promise<Limiter> {
  const limiter = createLimiter({ redis: redis.url, name, leaseTtlMs: 3_000, heartbeatMs: 300, ...options } as LimiterOptions);
  open.push(limiter);
  await limiter.ready();
  return limiter;
}

async function timesOut(limiter: Limiter, timeoutMs: number): Promise<boolean> {
  return limiter.acquire({ timeoutMs }).then(
    async (permit) => {
      await permit.release();
      return false;
    },
    (error: unknown) => {
      if (error instanceof AcquireTimeoutError) return true;
      throw error;
    },
  );
}

/** A real process holding one permit of a concurrency-1 limiter; reports a lost lease. */
async function holder(name: string, leaseTtlMs: number, heartbeatMs: number): Promise<{ child: ChildProcess; lost: Promise<unknown> }> {
  const child = fork(WORKER, [], {
    execArgv: ['--conditions=tollgate-source', '--import', 'tsx'],
    env: {
      ...process.env,
      REDIS_URL: redis.url,
      LIMITER_NAME: name,
      CONCURRENCY: '1',
      LEASE_TTL_MS: String(leaseTtlMs),
      HEARTBEAT_MS: String(heartbeatMs),
      MODE: 'hold',
      HOLD: '1',
    },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  children.push(child);
  const lost = new Promise((resolve) => child.on('message', (message: { type: string }) => message.type === 'leaseLost' && resolve(message)));
  for (;;) {
    const [received] = (await once(child, 'message')) as [{ type: string }];
    if (received.type === 'holding') return { child, lost };
  }
}

describe('whoever configures last no longer wins', () => {
  it("a process started with other limits runs with the fleet's and warns once, naming each difference", async () => {
    const name = uniqueName('differ');
    const first = await limiterFor(name, { concurrency: 2 });
    const differences: string[][] = [];
    const later = createLimiter({ redis: redis.url, name, concurrency: 5, leaseTtlMs: 3_000, heartbeatMs: 300, rates: { requests: { limit: 10, intervalMs: 1_000 } } });
    open.push(later);
    later.on('limitsDiffer', (event) => differences.push(event.differences));
    await later.ready();
    expect(later.fleetLimits?.limits.concurrency).toBe(2);
    expect(differences).toHaveLength(1);
    expect(differences[0]).toEqual(['concurrency: 5 here, 2 in the fleet', 'rates.requests: {"limit":10,"intervalMs":1000,"burst":null} here, none in the fleet']);
    const held: Permit[] = [await later.acquire(), await first.acquire()];
    expect(await timesOut(later, 200)).toBe(true); // the fleet's 2, not this process's 5
    for (const permit of held) await permit.release();
  });

  it("a process that omits concurrency does not remove the fleet's concurrency limit", async () => {
    const name = uniqueName('omit');
    const rates = { requests: { limit: 1_000, intervalMs: 1_000 } };
    const first = await limiterFor(name, { concurrency: 1, rates });
    const later = await limiterFor(name, { rates });
    expect(later.fleetLimits?.limits.concurrency).toBe(1);
    const held = await first.acquire();
    expect(await timesOut(later, 200)).toBe(true);
    await held.release();
  });
});

describe('timings Redis enforces come from Redis', () => {
  it('a process with a longer leaseTtlMs started first: a later one with a shorter TTL does not shorten the leases the first renews', async () => {
    const name = uniqueName('ttl-first');
    const long = await holder(name, 4_000, 1_300);
    const short = await limiterFor(name, { concurrency: 1, leaseTtlMs: 1_000, heartbeatMs: 300 });
    expect(short.fleetLimits?.limits.leaseTtlMs).toBe(4_000);
    expect(await timesOut(short, 3_000)).toBe(true); // the holder's lease outlives three of the short TTLs
    long.child.kill('SIGKILL');
  });

  it("a process with a longer leaseTtlMs started later heartbeats by the fleet's shorter TTL and keeps its lease", async () => {
    const name = uniqueName('ttl-later');
    const short = await limiterFor(name, { concurrency: 1, leaseTtlMs: 1_000, heartbeatMs: 300 });
    const long = await holder(name, 4_000, 1_300); // would renew every 1.3 s, past the fleet's 1 s lease
    let lostFirst = false;
    void long.lost.then(() => (lostFirst = true));
    expect(await timesOut(short, 3_000)).toBe(true);
    expect(lostFirst).toBe(false);
    long.child.kill('SIGKILL');
  });
});

describe('applyLimits', () => {
  it("first boot writes the process's limits; a forced apply replaces them and every process picks them up from its heartbeat", async () => {
    const name = uniqueName('apply');
    const first = await limiterFor(name, { concurrency: 3 });
    expect(first.fleetLimits?.limits.concurrency).toBe(3);
    const revision = Number(first.fleetLimits?.version);
    const changed = new Promise((resolve) => first.once('limitsChanged', resolve));
    const forced = await limiterFor(name, { concurrency: 1, applyLimits: 'force' });
    expect(forced.fleetLimits?.limits.concurrency).toBe(1);
    await changed; // hot reload: the next heartbeat carried the new revision
    expect(Number(first.fleetLimits?.version)).toBe(revision + 1);
    expect(first.fleetLimits?.limits.concurrency).toBe(1);
    const held = await forced.acquire();
    expect(await timesOut(first, 200)).toBe(true);
    await held.release();
  });

  it('applying equal limits writes nothing (the revision stays)', async () => {
    const name = uniqueName('apply-same');
    const limiter = await limiterFor(name, { concurrency: 2 });
    const before = limiter.fleetLimits?.version;
    const after = await limiter.applyLimits();
    expect(after.version).toBe(before);
  });

  it('a raise admits queued waiters at once', async () => {
    const name = uniqueName('raise');
    const limiter = await limiterFor(name, { concurrency: 1 });
    const held = await limiter.acquire();
    const queued = limiter.acquire({ timeoutMs: 10_000 });
    await limiter.applyLimits({ concurrency: 2, leaseTtlMs: 3_000, heartbeatMs: 300 });
    const second = await queued;
    expect((await limiter.snapshot()).inFlight).toBe(2);
    await Promise.all([held.release(), second.release()]);
  });

  it("lowering a capacity below a queued waiter's cost rejects it with CostExceedsCapacityError at once, and the queue behind it moves", async () => {
    const name = uniqueName('lower');
    const options = { leaseTtlMs: 3_000, heartbeatMs: 300 };
    const admin = await limiterFor(name, { ...options, rates: { tokens: { limit: 100, intervalMs: 60_000 } } });
    const other = await limiterFor(name, { ...options, rates: { tokens: { limit: 100, intervalMs: 60_000 } } });
    await (await admin.acquire({ cost: { tokens: 100 } })).release(); // the bucket is empty now
    const big = other.acquire({ cost: { tokens: 80 } }).catch((error: unknown) => error); // waits about 48 s for the refill
    const small = other.acquire({ cost: { tokens: 1 }, timeoutMs: 20_000 }); // behind it
    await expect.poll(async () => (await admin.snapshot()).waiting).toBe(2);
    await admin.applyLimits({ ...options, rates: { tokens: { limit: 50, intervalMs: 1_000 } } });
    const rejected = await big;
    expect(rejected).toBeInstanceOf(CostExceedsCapacityError);
    expect(rejected).toMatchObject({ dimension: 'tokens', cost: 80, capacity: 50 });
    await (await small).release(); // no longer behind a waiter that can never fit
    await expect.poll(() => other.fleetLimits?.limits.rates.tokens?.limit).toBe(50); // its next heartbeat
  });
});
