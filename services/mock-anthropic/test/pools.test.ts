import Anthropic from '@anthropic-ai/sdk';
import { parseLimitsDocument } from '@tollgate/config';
import { thrown } from '@tollgate/test-support';
import { afterEach, describe, expect, it } from 'vitest';
import { apiKeyFingerprint, startMockAnthropic, type MockAnthropic, type MockOptions, type PoolStats } from '../src/index.js';
import type { poolLimitsSchema } from '../src/options.js';
import type { z } from 'zod';

type PoolLimitsInput = z.input<typeof poolLimitsSchema>;
import { API_KEY, clientFor, retryAfterMs, sleepMs } from './helpers.js';

const SONNET = 'claude-sonnet-4-6';
const HAIKU = 'claude-haiku-4-5';
const OPUS_NEW = 'claude-opus-4-6';
const OPUS_OLD = 'claude-opus-4-5';
/** Long enough that calls started together overlap even on a slow, busy machine. */
const HOLD_MS = 1_000;

/** Anthropic's pools, each with its own small limits (burst = what may go at once). */
const POOLS = {
  sonnet: { models: ['claude-sonnet-4*'], rpm: 60, itpm: 60_000, otpm: 60_000, burst: { rpm: 5, itpm: 1_000 } },
  haiku: { models: ['claude-haiku-4*'], rpm: 60, itpm: 120_000, otpm: 60_000, burst: { rpm: 2, itpm: 5_000 } },
  opus: { models: ['claude-opus-4*'], rpm: 60, burst: { rpm: 2 } },
} satisfies Record<string, PoolLimitsInput>;

let mock: MockAnthropic | undefined;
afterEach(() => mock?.close());

async function start(options: MockOptions): Promise<MockAnthropic> {
  mock = await startMockAnthropic(options);
  return mock;
}

/** One small call to `model` with fixed token counts; returns the response headers. */
async function send(client: Anthropic, model: string, tokens: { input?: number; output?: number } = {}): Promise<Headers> {
  const headers = { 'x-mock-input-tokens': String(tokens.input ?? 10), 'x-mock-output-tokens': String(tokens.output ?? 5) };
  const { response } = await client.messages.create({ model, max_tokens: 64, messages: [{ role: 'user', content: 'hi' }] }, { headers }).withResponse();
  return response.headers;
}

async function rateLimited(call: () => Promise<unknown>): Promise<InstanceType<typeof Anthropic.RateLimitError>> {
  const error = await thrown(call);
  expect(error).toBeInstanceOf(Anthropic.RateLimitError);
  return error as InstanceType<typeof Anthropic.RateLimitError>;
}

function poolStats(target: MockAnthropic, pool: string, apiKey: string = API_KEY): PoolStats {
  const stats = target.stats().byKey[apiKeyFingerprint(apiKey)]?.pools[pool];
  if (stats === undefined) throw new Error(`no stats for pool ${pool}`);
  return stats;
}

describe('model pools', () => {
  it('a pool named like an Object.prototype member (constructor, toString) is metered and reported like any other', async () => {
    const target = await start({
      limits: { pools: { constructor: { models: ['claude-haiku-4*'], rpm: 60, burst: { rpm: 2 } }, toString: { models: ['claude-sonnet-4*'], rpm: 60 } } },
    });
    const client = clientFor(target);
    await send(client, HAIKU);
    await send(client, HAIKU);
    await rateLimited(() => send(client, HAIKU));
    await send(client, SONNET);
    expect(poolStats(target, 'constructor')).toMatchObject({ requests: 2, inFlight: 0, rateLimited: { requests: 1 } });
    expect(poolStats(target, 'toString')).toMatchObject({ requests: 1 });
    expect(Object.hasOwn(Object, 'requests')).toBe(false); // nothing written onto the Object function
  });

  it("a Haiku RPM 429 leaves the Sonnet pool untouched; each answer carries its own pool's headers", async () => {
    const target = await start({ limits: { pools: POOLS } });
    const client = clientFor(target);
    expect((await send(client, HAIKU)).get('anthropic-ratelimit-requests-remaining')).toBe('1');
    await send(client, HAIKU);
    const error = await rateLimited(() => send(client, HAIKU));
    expect(error.apiMessage).toMatch(/^This request would exceed your organization's rate limit of 60 requests per minute \(org: [0-9a-f-]{36}, model: claude-haiku-4-5\)\./);
    expect(error.headers.get('anthropic-ratelimit-requests-remaining')).toBe('0');
    expect(error.headers.get('anthropic-ratelimit-input-tokens-limit')).toBe('120000'); // Haiku's ITPM, not Sonnet's
    expect(error.headers.get('retry-after')).toMatch(/^[1-9]\d*$/);
    for (let i = 4; i >= 0; i -= 1) {
      const headers = await send(client, SONNET); // the Sonnet pool still has its whole burst
      expect(headers.get('anthropic-ratelimit-requests-remaining')).toBe(String(i));
      expect(headers.get('anthropic-ratelimit-input-tokens-limit')).toBe('60000');
    }
    const haiku = poolStats(target, 'haiku');
    const sonnet = poolStats(target, 'sonnet');
    expect(haiku).toMatchObject({ requests: 2, inputTokens: 20, outputTokens: 10, rateLimited: { requests: 1, input_tokens: 0, output_tokens: 0 } });
    expect(sonnet).toMatchObject({ requests: 5, inputTokens: 50, outputTokens: 25, rateLimited: { requests: 0, input_tokens: 0, output_tokens: 0 } });
    expect(haiku.lowestBalance.requests).toBeLessThan(1);
    expect(target.stats().rateLimited.requests).toBe(1);
  });

  it('a Sonnet ITPM 429 names Sonnet and its limit; Haiku calls of the same size still pass', async () => {
    const target = await start({ limits: { pools: POOLS, roundHeaders: false } });
    const client = clientFor(target);
    await send(client, SONNET, { input: 900 });
    const error = await rateLimited(() => send(client, SONNET, { input: 900 }));
    expect(error.apiMessage).toMatch(/rate limit of 60,000 input tokens per minute \(org: [0-9a-f-]{36}, model: claude-sonnet-4-6\)/);
    expect(error.headers.get('anthropic-ratelimit-input-tokens-remaining')).toBe('0');
    const waitMs = retryAfterMs(error);
    await send(client, HAIKU, { input: 900 });
    await send(client, HAIKU, { input: 900 }); // 1,800 of Haiku's 5,000, and its burst of 2 requests
    expect(poolStats(target, 'sonnet').rateLimited.input_tokens).toBe(1);
    expect(poolStats(target, 'haiku').rateLimited).toEqual({ requests: 0, input_tokens: 0, output_tokens: 0 });
    await sleepMs(waitMs);
    await send(client, SONNET, { input: 900 }); // retry-after was enough for Sonnet's own bucket
  });

  it("OTPM is charged at admission and settled in the model's own pool", async () => {
    // 1 token per second: refill during the test is a few tokens, far less than a call's 64
    const pools = { sonnet: { models: ['claude-sonnet-4*'], otpm: 60, burst: { otpm: 100 } }, haiku: { models: ['claude-haiku-4*'], otpm: 60, burst: { otpm: 100 } } };
    const target = await start({ limits: { pools, otpmMode: 'max_tokens', roundHeaders: false } });
    const client = clientFor(target);
    const first = await send(client, SONNET, { output: 5 }); // max_tokens 64 charged, 5 produced: 59 come back to Sonnet
    expect(Number(first.get('anthropic-ratelimit-output-tokens-remaining'))).toBeLessThanOrEqual(100 - 64 + 5); // as of admission, plus refill
    const haiku = await send(client, HAIKU, { output: 5 });
    expect(Number(haiku.get('anthropic-ratelimit-output-tokens-remaining'))).toBeLessThanOrEqual(100 - 64 + 5);
    const sonnet = poolStats(target, 'sonnet');
    expect(sonnet.outputTokens).toBe(5);
    expect(sonnet.lowestBalance.output_tokens).toBeGreaterThanOrEqual(100 - 64 - 1);
    await send(client, SONNET, { output: 5 }); // fits only because the first call's unused 59 went back to Sonnet's bucket
    expect(poolStats(target, 'sonnet').rateLimited.output_tokens).toBe(0);
    expect(poolStats(target, 'haiku')).toMatchObject({ outputTokens: 5, requests: 1 });
  });

  it('every Opus 4.x model shares one pool', async () => {
    const target = await start({ limits: { pools: POOLS } });
    const client = clientFor(target);
    await send(client, OPUS_NEW);
    await send(client, OPUS_OLD);
    const error = await rateLimited(() => send(client, OPUS_NEW));
    expect(error.apiMessage).toContain('model: claude-opus-4-6');
    expect(poolStats(target, 'opus')).toMatchObject({ requests: 2, rateLimited: { requests: 1 } });
  });

  it('a model that matches no pool is in pool default, with the top-level limits', async () => {
    const target = await start({ limits: { rpm: 30, burst: { rpm: 1 }, pools: POOLS } });
    const client = clientFor(target);
    const headers = await send(client, 'claude-3-5-haiku-20241022');
    expect(headers.get('anthropic-ratelimit-requests-limit')).toBe('30');
    await rateLimited(() => send(client, 'claude-3-5-haiku-20241022'));
    await send(client, HAIKU);
    expect(poolStats(target, 'default')).toMatchObject({ requests: 1, rateLimited: { requests: 1 } });
    expect(poolStats(target, 'haiku').requests).toBe(1);
  });

  it('concurrency stays per key, across pools', async () => {
    const target = await start({ limits: { concurrency: 2, pools: POOLS }, latency: { timeToFirstTokenMs: HOLD_MS } });
    const client = clientFor(target);
    const results = await Promise.allSettled([send(client, SONNET), send(client, HAIKU), send(client, OPUS_NEW)]);
    expect(results.filter((result) => result.status === 'fulfilled')).toHaveLength(2);
    const stats = target.stats();
    expect(stats.rateLimited.concurrency).toBe(1);
    expect(stats.byKey[apiKeyFingerprint(API_KEY)]).toMatchObject({ maxConcurrent: 2, rateLimited: { concurrency: 1 } });
    const pools = Object.values(stats.byKey[apiKeyFingerprint(API_KEY)]?.pools ?? {});
    expect(pools.reduce((sum, pool) => sum + pool.maxConcurrent, 0)).toBe(2);
  });

  it('reports delivered requests and tokens per window for each pool', async () => {
    const target = await start({ limits: { pools: POOLS }, statsWindowMs: 60_000 });
    const client = clientFor(target);
    await send(client, SONNET, { input: 100, output: 7 });
    await send(client, SONNET, { input: 100, output: 7 });
    await send(client, HAIKU, { input: 30, output: 3 });
    await client.messages.countTokens({ model: HAIKU, messages: [{ role: 'user', content: 'hi' }] });
    expect(poolStats(target, 'sonnet').windows).toEqual([{ index: 0, requests: 2, inputTokens: 200, outputTokens: 14, countTokens: 0 }]);
    expect(poolStats(target, 'haiku').windows).toEqual([{ index: 0, requests: 1, inputTokens: 30, outputTokens: 3, countTokens: 0 }]);
    const key = target.stats().byKey[apiKeyFingerprint(API_KEY)];
    expect(key?.windows).toEqual([{ index: 0, requests: 3, inputTokens: 230, outputTokens: 17, countTokens: 1 }]);
    expect(key?.countTokens).toBe(1);
    expect(target.stats().windows).toEqual(key?.windows);
  });

  it('refuses a pattern in two pools and the reserved pool name, and answers 500 for a model two pools match equally', async () => {
    await expect(startMockAnthropic({ limits: { pools: { a: { models: ['claude-*'] }, b: { models: ['claude-*'] } } } })).rejects.toThrow(/also a pattern of pool a/);
    await expect(startMockAnthropic({ limits: { pools: { default: { models: ['claude-*'] } } } })).rejects.toThrow(/and not \\"default\\" \(the pool of unmatched models\)/);
    const target = await start({ limits: { pools: { a: { models: ['claude-*-4-5'], rpm: 5 }, b: { models: ['claude-haik*'], rpm: 5 } } } });
    const error = await thrown(() => send(clientFor(target), HAIKU));
    expect(error).toBeInstanceOf(Anthropic.InternalServerError);
    expect((error as InstanceType<typeof Anthropic.InternalServerError>).apiMessage).toMatch(
      /^mock configuration: model "claude-haiku-4-5" matches pool a .* and pool b .* equally/,
    );
  });

  it('POST /_mock/config replaces the pools; buckets start full', async () => {
    const target = await start({ limits: { pools: { haiku: { models: ['claude-haiku-4*'], rpm: 60, burst: { rpm: 1 } } } } });
    const client = clientFor(target);
    await send(client, HAIKU);
    await rateLimited(() => send(client, HAIKU));
    const response = await fetch(`${target.url}/_mock/config`, {
      method: 'POST',
      body: JSON.stringify({ limits: { pools: { haiku: { models: ['claude-haiku-4*'], rpm: 60, burst: { rpm: 3 } } } } }),
    });
    expect(response.status).toBe(200);
    for (let i = 0; i < 3; i += 1) await send(client, HAIKU);
    await rateLimited(() => send(client, HAIKU));
  });
});

describe('a limits document configures the mock', () => {
  it("an account's pools, concurrency and count_tokens RPM of a tollgate.yaml are the mock's limits as they stand", async () => {
    const document = parseLimitsDocument(
      `accounts:
  main:
    apiKeyEnv: ANTHROPIC_API_KEY
    concurrency: 8
    pools:
      sonnet-4: { models: ['claude-sonnet-4*'], rpm: 4000, itpm: 2000000, otpm: 400000 }
      haiku-4:  { models: ['claude-haiku-4*'],  rpm: 4000, itpm: 4000000, otpm: 800000, burst: { itpm: 1000000 } }
    countTokens: { rpm: 2000 }
`,
      'tollgate.yaml',
    );
    const account = document.accounts.main!;
    const target = await start({ limits: { concurrency: account.concurrency, countTokensRpm: account.countTokens?.rpm, pools: account.pools } });
    const client = clientFor(target);
    const haiku = await send(client, HAIKU);
    expect(haiku.get('anthropic-ratelimit-input-tokens-limit')).toBe('4000000');
    expect(haiku.get('anthropic-ratelimit-input-tokens-remaining')).toBe('1000000'); // the burst is the bucket's capacity
    expect((await send(client, SONNET)).get('anthropic-ratelimit-output-tokens-limit')).toBe('400000');
    expect(Object.keys(target.stats().byKey[apiKeyFingerprint(API_KEY)]?.pools ?? {}).sort()).toEqual(['haiku-4', 'sonnet-4']);
  });
});

describe('accounts: each key its own limits', () => {
  it('a second key has its own concurrency and pools; its load does not touch the first', async () => {
    const target = await start({
      limits: { concurrency: 3, pools: POOLS },
      keyLimits: { 'key-b': { concurrency: 1, pools: { haiku: { models: ['claude-haiku-4*'], rpm: 1 } } } }, // 1 per minute: no refill during the test
      latency: { timeToFirstTokenMs: HOLD_MS },
    });
    const a = clientFor(target);
    const b = clientFor(target, 'key-b');
    const results = await Promise.allSettled([send(b, HAIKU), send(b, HAIKU), send(a, HAIKU), send(a, SONNET), send(a, SONNET)]);
    expect(results.map((result) => result.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled', 'fulfilled']);
    expect((results[1] as PromiseRejectedResult).reason).toBeInstanceOf(Anthropic.RateLimitError);
    const stats = target.stats();
    expect(stats.byKey[apiKeyFingerprint('key-b')]).toMatchObject({ maxConcurrent: 1, rateLimited: { concurrency: 1 } });
    expect(stats.byKey[apiKeyFingerprint(API_KEY)]).toMatchObject({ maxConcurrent: 3, rateLimited: { concurrency: 0 } });
    await rateLimited(() => send(b, HAIKU)); // key B's Haiku burst of 1 is spent
    await send(a, HAIKU); // key A's Haiku pool has its own burst of 2
    expect(poolStats(target, 'haiku', 'key-b')).toMatchObject({ requests: 1, rateLimited: { requests: 1 } });
    expect(poolStats(target, 'haiku')).toMatchObject({ requests: 2, rateLimited: { requests: 0 } });
    expect(JSON.stringify(stats)).not.toContain('key-b'); // keys appear only as fingerprints
  });
});

describe('count_tokens has its own RPM', () => {
  it('spending it leaves the Messages pools alone, and spending those leaves it alone', async () => {
    const target = await start({ limits: { countTokensRpm: 60, burst: { countTokensRpm: 2 }, pools: POOLS } });
    const client = clientFor(target);
    const params = { model: HAIKU, messages: [{ role: 'user' as const, content: 'hi' }] };
    await send(client, HAIKU);
    await send(client, HAIKU); // Haiku's RPM burst is spent
    await rateLimited(() => send(client, HAIKU));
    await client.messages.countTokens(params);
    await client.messages.countTokens(params);
    const error = await rateLimited(() => client.messages.countTokens(params));
    expect(error.apiMessage).toMatch(/rate limit of 60 count_tokens requests per minute/);
    await send(client, SONNET);
    const stats = target.stats();
    expect(stats.byKey[apiKeyFingerprint(API_KEY)]).toMatchObject({ countTokens: 2, rateLimited: { count_tokens: 1, requests: 1 } });
    expect(poolStats(target, 'haiku')).toMatchObject({ requests: 2, rateLimited: { requests: 1 } });
    expect(poolStats(target, 'sonnet').requests).toBe(1);
  });
});
