import Anthropic from '@anthropic-ai/sdk';
import { createLimiter, type Limiter } from '@tollgate/limiter';
import { startMockAnthropic, type MockAnthropic } from '@tollgate/mock-anthropic';
import { RedisServerProcess, thrown, uniqueName } from '@tollgate/test-support';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { limitAnthropic } from '../src/index.js';
import { clientFor, request } from './support.js';

/**
 * Issue 12, case 2: after a 429 the wrapper asks Redis for a fleet pause (rate 429) or a lower concurrency
 * (concurrency 429) before it releases the attempt's permit. Here Redis stalls (DEBUG SLEEP) right after the grant,
 * so that call times out; the permit must be released all the same, and the caller must get the upstream's answer.
 */

/** Short, so the pause (or the decrease's snapshot) times out well inside the stall. */
const REDIS_TIMEOUT_MS = 100;
/** Longer than the Redis timeout, far shorter than the lease: the lease survives the stall and, unreleased, would be renewed for ever. */
const STALL_SECONDS = 0.6;
const LEASE_TTL_MS = 3_000;
/** Bound on waiting for the permit to be gone (released, or its lease expired once no heartbeat renews it). */
const PERMIT_GONE_TIMEOUT_MS = 4 * LEASE_TTL_MS;
/** Holds the mock's only concurrency slot while the call under test runs. */
const SLOW_HEADERS_MS = 30_000;
const UPSTREAM_WAIT_MS = 5_000;

let redis: RedisServerProcess;
let admin: Redis;
let mock: MockAnthropic;
let limiter: Limiter;

beforeAll(async () => {
  redis = await RedisServerProcess.start({ args: ['--enable-debug-command', 'local'] });
  admin = new Redis(redis.url);
  mock = await startMockAnthropic({ limits: { concurrency: 1 }, faults: { slowHeadersMs: SLOW_HEADERS_MS } });
});
afterEach(async () => {
  await limiter.close();
  mock.reset();
});
afterAll(async () => {
  admin.disconnect();
  await mock.close();
  await redis.close();
});

async function limiterWithShortTimeouts(): Promise<Limiter> {
  const created = createLimiter({ redis: redis.url, name: uniqueName('release-always'), concurrency: 2, leaseTtlMs: LEASE_TTL_MS, redisTimeoutMs: REDIS_TIMEOUT_MS });
  created.on('redisError', () => {}); // the stall's timeouts are the point of the test
  await created.ready();
  return created;
}

/** Stalls Redis the moment the next permit is granted: the attempt's HTTP call runs, its reaction to the 429 times out. */
function stallRedisAtNextGrant(target: Limiter): void {
  target.once('granted', () => void admin.call('DEBUG', 'SLEEP', String(STALL_SECONDS)));
}

/** No permit left in Redis: released, or at least no longer renewed so that its lease expired. */
async function expectPermitGone(): Promise<void> {
  await vi.waitFor(async () => expect((await limiter.snapshot()).inFlight).toBe(0), { timeout: PERMIT_GONE_TIMEOUT_MS, interval: 100 });
}

describe('a 429 whose reaction fails in Redis still releases the permit (issue 12, case 2)', () => {
  it('rate 429: limiter.pause() times out; the caller gets the RateLimitError, the permit is released', async () => {
    limiter = await limiterWithShortTimeouts();
    const anthropic = limitAnthropic(clientFor(mock.url), limiter, { maxAttempts: 1 });
    stallRedisAtNextGrant(limiter);
    const error = await thrown(() => anthropic.messages.create(request(), { headers: { 'x-mock-fault': '429' } }));
    await expectPermitGone();
    expect(error).toBeInstanceOf(Anthropic.RateLimitError);
    expect(anthropic.stats().rateLimited.rate).toBe(1);
  });

  it('concurrency 429: the adaptive decrease times out; the caller gets the RateLimitError, the permit is released', async () => {
    limiter = await limiterWithShortTimeouts();
    const anthropic = limitAnthropic(clientFor(mock.url), limiter, { maxAttempts: 1 });
    const holder = new AbortController();
    const holding = thrown(() => anthropic.messages.create(request(), { headers: { 'x-mock-fault': 'slow_headers' }, signal: holder.signal }));
    await vi.waitFor(() => expect(mock.stats().inFlight).toBe(1), { timeout: UPSTREAM_WAIT_MS });
    stallRedisAtNextGrant(limiter);
    const error = await thrown(() => anthropic.messages.create(request()));
    holder.abort();
    await holding;
    await expectPermitGone();
    expect(error).toBeInstanceOf(Anthropic.RateLimitError);
    expect(anthropic.stats().rateLimited.concurrency).toBe(1);
  });
});
