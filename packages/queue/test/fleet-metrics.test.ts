/**
 * The fleet gauges of a limiter with pools (DESIGN §9, issue 13): each bucket's gauges carry its pool and its plain
 * dimension, waiters and pauses have one series per pool, what the account shares carries pool `*`; a limiter
 * without pools keeps pool `default`. Read from a real limiter on a real Redis, checked in the scrape text.
 */
import { createLimiter, type Limiter, type Permit } from '@tollgate/limiter';
import { startRedis, uniqueName, type TestRedis } from '@tollgate/test-support';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FleetGauges } from '../src/internal.js';

/** Refills too slowly to matter within a test. */
const DAY = 24 * 60 * 60 * 1000;
const slow = (limit: number) => ({ limit, intervalMs: DAY });

let redis: TestRedis;
const limiters: Limiter[] = [];
const permits: Permit[] = [];

beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  for (const permit of permits) await permit.release().catch(() => {});
  for (const limiter of limiters) await limiter.close();
  await redis.close();
});

async function open(options: Omit<Parameters<typeof createLimiter>[0], 'redis'>): Promise<Limiter> {
  const limiter = createLimiter({ redis: redis.url, ...options });
  limiters.push(limiter);
  await limiter.ready();
  return limiter;
}

/** The value of one series in the scrape text (labels exactly as rendered), or undefined. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('FleetGauges with pools', () => {
  it('labels each bucket with its pool and dimension, and shows waiters and pauses per pool', async () => {
    const name = uniqueName('metrics-pools');
    const limiter = await open({
      name,
      concurrency: 8,
      pools: { sonnet: { requests: slow(100), inputTokens: slow(50_000) }, haiku: { requests: slow(1) } },
    });
    permits.push(await limiter.acquire({ pool: 'sonnet', cost: { inputTokens: 1_200 } }));
    permits.push(await limiter.acquire({ pool: 'haiku' })); // haiku's only request of the day
    const queued = limiter.acquire({ pool: 'haiku', timeoutMs: 60_000 }); // waits: haiku/requests is empty
    queued.catch(() => {}); // rejected when the limiter closes
    await limiter.pause(30_000, 'sonnet ITPM 429', { pool: 'sonnet' });
    const snapshot = await limiter.snapshot();
    expect(snapshot.pools.haiku?.waiting).toBe(1);

    const registry = new Registry();
    const gauges = new FleetGauges(registry, { account: name, queue: 'q', tenants: ['alpha'] });
    gauges.update(snapshot, null, [{ tenant: 'alpha', inFlight: 1, waiting: 2 }]);
    const text = await registry.metrics();
    const of = (labels: string) => `account="${name}",${labels}`;
    expect(sample(text, `tollgate_bucket_tokens{${of('pool="sonnet",dimension="inputTokens"')}}`)).toBeCloseTo(50_000 - 1_200, -1);
    expect(sample(text, `tollgate_bucket_capacity_tokens{${of('pool="sonnet",dimension="inputTokens"')}}`)).toBe(50_000);
    expect(sample(text, `tollgate_bucket_capacity_tokens{${of('pool="sonnet",dimension="requests"')}}`)).toBe(100);
    expect(sample(text, `tollgate_bucket_tokens{${of('pool="haiku",dimension="requests"')}}`)).toBeCloseTo(0, 2);
    expect(sample(text, `tollgate_bucket_refill_tokens_per_second{${of('pool="haiku",dimension="requests"')}}`)).toBeCloseTo(1 / 86_400, 8);
    expect(text).not.toMatch(/dimension="[^"]*\//); // no `<pool>/<dimension>` as a dimension
    expect(text).not.toContain('pool="default"');
    expect(sample(text, `tollgate_waiting{${of('pool="haiku"')}}`)).toBe(1);
    expect(sample(text, `tollgate_waiting{${of('pool="sonnet"')}}`)).toBe(0);
    expect(sample(text, `tollgate_pause_remaining_seconds{${of('pool="haiku"')}}`)).toBe(0);
    const sonnetPause = sample(text, `tollgate_pause_remaining_seconds{${of('pool="sonnet"')}}`) ?? 0;
    expect(sonnetPause).toBeGreaterThan(25);
    expect(sonnetPause).toBeLessThanOrEqual(30);
    // what the account shares: all pools together
    expect(sample(text, `tollgate_permits_in_flight{${of('pool="*"')}}`)).toBe(2);
    expect(sample(text, `tollgate_concurrency_configured{${of('pool="*"')}}`)).toBe(8);
    expect(sample(text, `tollgate_tenant_jobs_waiting{${of('pool="*"')},tenant="alpha"}`)).toBe(2);

    // an account-wide pause holds every pool
    await limiter.pause(60_000, 'operator');
    gauges.update(await limiter.snapshot(), null, []);
    const paused = await registry.metrics();
    expect(sample(paused, `tollgate_pause_remaining_seconds{${of('pool="haiku"')}}`)).toBeGreaterThan(55);
    expect(sample(paused, `tollgate_pause_remaining_seconds{${of('pool="sonnet"')}}`)).toBeGreaterThan(55);
  });

  it('a limiter without pools keeps pool "default" and its plain dimensions; series of pools gone go with them', async () => {
    const name = uniqueName('metrics-plain');
    const pooled = await open({ name: `${name}-pooled`, concurrency: 4, pools: { opus: { requests: slow(10) }, haiku: { requests: slow(10) } } });
    const plain = await open({ name, concurrency: 4, rates: { requests: slow(10), outputTokens: slow(1_000) } });
    const registry = new Registry();
    // one exporter whose limiter changes from pools to none (an apply): the same account label, on purpose
    const gauges = new FleetGauges(registry, { account: name, queue: 'q', tenants: ['alpha'] });
    gauges.update(await pooled.snapshot(), null, []);
    expect(await registry.metrics()).toContain(`tollgate_bucket_capacity_tokens{account="${name}",pool="opus",dimension="requests"} 10`);
    gauges.update(await plain.snapshot(), null, []);
    const text = await registry.metrics();
    expect(sample(text, `tollgate_bucket_capacity_tokens{account="${name}",pool="default",dimension="requests"}`)).toBe(10);
    expect(sample(text, `tollgate_bucket_capacity_tokens{account="${name}",pool="default",dimension="outputTokens"}`)).toBe(1_000);
    expect(sample(text, `tollgate_waiting{account="${name}",pool="default"}`)).toBe(0);
    expect(sample(text, `tollgate_pause_remaining_seconds{account="${name}",pool="default"}`)).toBe(0);
    expect(sample(text, `tollgate_permits_in_flight{account="${name}",pool="default"}`)).toBe(0);
    expect(sample(text, `tollgate_tenant_jobs_waiting{account="${name}",pool="default",tenant="alpha"}`)).toBe(0);
    expect(text).not.toMatch(/pool="(opus|haiku|\*)"/);
  });

  it('two accounts on one registry (a process serving both): each writes and removes only its own series', async () => {
    const name = uniqueName('metrics-two');
    const first = await open({ name: `${name}-a`, concurrency: 2, pools: { opus: { requests: slow(10) }, haiku: { requests: slow(20) } } });
    const second = await open({ name: `${name}-b`, concurrency: 6, rates: { requests: slow(30) } });
    const plainFirst = await open({ name: `${name}-a2`, concurrency: 3, rates: { requests: slow(40) } });
    const registry = new Registry();
    const a = new FleetGauges(registry, { account: `${name}-a`, queue: 'q', tenants: ['alpha'] });
    const b = new FleetGauges(registry, { account: `${name}-b`, queue: 'q@b', tenants: ['beta'] });
    a.update(await first.snapshot(), null, []);
    b.update(await second.snapshot(), { waiting: 1, prioritized: 0, delayed: 0, active: 0, completed: 0, failed: 0 }, []);
    let text = await registry.metrics();
    expect(sample(text, `tollgate_bucket_capacity_tokens{account="${name}-a",pool="opus",dimension="requests"}`)).toBe(10);
    expect(sample(text, `tollgate_bucket_capacity_tokens{account="${name}-b",pool="default",dimension="requests"}`)).toBe(30);
    expect(sample(text, `tollgate_concurrency_configured{account="${name}-a",pool="*"}`)).toBe(2);
    expect(sample(text, `tollgate_concurrency_configured{account="${name}-b",pool="default"}`)).toBe(6);
    expect(sample(text, `tollgate_tenant_jobs_waiting{account="${name}-b",pool="default",tenant="beta"}`)).toBe(0);
    expect(sample(text, 'tollgate_queue_jobs{queue="q@b",state="waiting"}')).toBe(1);
    // account a drops its pools (an apply): its pool series go, b's stay
    a.update(await plainFirst.snapshot(), null, []);
    text = await registry.metrics();
    expect(text).not.toMatch(/pool="(opus|haiku|\*)"/);
    expect(sample(text, `tollgate_bucket_capacity_tokens{account="${name}-a",pool="default",dimension="requests"}`)).toBe(40);
    expect(sample(text, `tollgate_bucket_capacity_tokens{account="${name}-b",pool="default",dimension="requests"}`)).toBe(30);
    expect(sample(text, `tollgate_concurrency_configured{account="${name}-b",pool="default"}`)).toBe(6);
    expect(sample(text, `tollgate_tenant_jobs_waiting{account="${name}-b",pool="default",tenant="beta"}`)).toBe(0);
    // one tollgate_redis_up for the process: what the caller sets from all accounts
    b.setRedisUp(false);
    expect(sample(await registry.metrics(), 'tollgate_redis_up')).toBe(0);
  });
});
