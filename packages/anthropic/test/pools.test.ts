/**
 * The wrapper with a limiter that has pools (DESIGN §9, issue 13): each call takes its permit from its model's pool,
 * settles that pool's buckets, and a rate-limit 429 of one pool pauses that pool only: the other pool's calls go on.
 */
import { InvalidArgumentError } from '@tollgate/limiter';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { limitAnthropic } from '../src/index.js';
import { clientFor, startStack, type Stack } from './support.js';

const HAIKU = 'claude-haiku-4-5';
const SONNET = 'claude-sonnet-4-5';
const MINUTE_MS = 60_000;
/** Input tokens refill per day: what the calls took is still missing at the end of the test. */
const DAY_MS = 24 * 60 * MINUTE_MS;
/** The mock's haiku pool: 2 requests of burst, then one every 3 s (a 429's retry-after of 3 s); sonnet's is ample. */
const HAIKU_RPM = 20;
const HAIKU_BURST = 2;

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({
    limits: {
      pools: {
        haiku: { models: ['claude-haiku-4*'], rpm: HAIKU_RPM, burst: { rpm: HAIKU_BURST } },
        sonnet: { models: ['claude-sonnet-4*'], rpm: 6_000 },
      },
    },
  });
});
afterAll(() => stack.close());

const poolFor = (model: string) => (model.startsWith('claude-haiku') ? 'haiku' : 'sonnet');
const ask = (model: string) => ({ model, max_tokens: 50, messages: [{ role: 'user' as const, content: 'a'.repeat(400) }] });

describe('limitAnthropic with pools', () => {
  it("a 429 of one pool's rate limit pauses that pool only; the other pool's calls go on at once", async () => {
    // another client of the key spends haiku's burst: the fleet's next haiku call meets a 429 with retry-after
    const limiter = await stack.limiter({
      concurrency: 10,
      pools: {
        haiku: { requests: { limit: HAIKU_RPM, intervalMs: MINUTE_MS, burst: 10 }, inputTokens: { limit: 1_000_000, intervalMs: DAY_MS } },
        sonnet: { requests: { limit: 6_000, intervalMs: MINUTE_MS }, inputTokens: { limit: 1_000_000, intervalMs: DAY_MS } },
      },
    });
    const anthropic = limitAnthropic(clientFor(stack.mock.url), limiter, { poolFor, maxRetryMs: 10_000 });
    const outsider = clientFor(stack.mock.url);
    for (let i = 0; i < HAIKU_BURST; i += 1) await outsider.messages.create(ask(HAIKU));
    const retried = anthropic.messages.create(ask(HAIKU)); // 429 → haiku paused for its retry-after, then retried
    await expect.poll(async () => (await limiter.snapshot()).pools.haiku?.pausedUntilMs ?? 0, { timeout: 5_000 }).toBeGreaterThan(0);
    const snapshot = await limiter.snapshot();
    expect(snapshot.pausedUntilMs).toBe(0); // the account is not paused
    expect(snapshot.pools.sonnet?.pausedUntilMs).toBe(0);
    const startedAt = performance.now();
    await Promise.all([anthropic.messages.create(ask(SONNET)), anthropic.messages.create(ask(SONNET))]);
    const sonnetMs = performance.now() - startedAt;
    const pausedForMs = (snapshot.pools.haiku?.pausedUntilMs ?? 0) - snapshot.nowMs;
    expect(pausedForMs).toBeGreaterThan(200); // the pause was still on when sonnet went
    expect(sonnetMs).toBeLessThan(pausedForMs); // sonnet did not wait for haiku's pause
    await retried; // and haiku goes on after its pause
    const stats = stack.mock.stats();
    expect(stats.byStatus['429']).toBe(1);
    const after = await limiter.snapshot();
    // each call took from its own pool's buckets: ~100 input tokens each (400 characters), settled to the usage
    expect(after.buckets['sonnet/inputTokens']?.tokens).toBeGreaterThan(1_000_000 - 2 * 200);
    expect(after.buckets['sonnet/inputTokens']?.tokens).toBeLessThan(1_000_000 - 100);
    expect(after.buckets['haiku/inputTokens']?.tokens).toBeLessThan(1_000_000 - 50);
    expect(after.inFlight).toBe(0);
  });

  it('a limiter with pools needs poolFor: without it, a call is refused naming the pools, and nothing reaches the API', async () => {
    const limiter = await stack.limiter({ concurrency: 2, pools: { haiku: {}, sonnet: {} } });
    const anthropic = limitAnthropic(clientFor(stack.mock.url), limiter);
    const before = stack.mock.stats().messages;
    await expect(anthropic.messages.create(ask(HAIKU))).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(anthropic.messages.create(ask(HAIKU))).rejects.toThrow(/pool: expected one of the pools of limiter .* \(haiku, sonnet\) \(got undefined\)/);
    expect(stack.mock.stats().messages).toBe(before);
  });

  it("an apply that changes the account's pools under a queued call: the call takes its model's pool again and completes", async () => {
    const limiter = await stack.limiter({
      concurrency: 1,
      pools: { haiku: { requests: { limit: 1_000, intervalMs: MINUTE_MS } }, sonnet: { requests: { limit: 1_000, intervalMs: MINUTE_MS } } },
    });
    const anthropic = limitAnthropic(clientFor(stack.mock.url), limiter, { poolFor });
    const held = await limiter.acquire({ pool: 'sonnet' });
    const call = anthropic.messages.create(ask(SONNET)); // waits for the one slot, in sonnet's lane
    await expect.poll(async () => (await limiter.snapshot()).pools.sonnet?.waiting, { timeout: 5_000 }).toBe(1);
    await limiter.applyLimits({ concurrency: 1, rates: { requests: { limit: 1_000, intervalMs: MINUTE_MS } } }); // one pool: no pools
    await held.release();
    expect((await call).type).toBe('message');
    expect((await limiter.snapshot()).inFlight).toBe(0);
  });
});
