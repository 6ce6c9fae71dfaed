import Anthropic from '@anthropic-ai/sdk';
import { afterEach, describe, expect, it } from 'vitest';
import { apiKeyFingerprint, startMockAnthropic, type MockAnthropic, type MockOptions } from '../src/index.js';
import { thrown } from '@tollgate/test-support';
import { API_KEY, clientFor, request, retryAfterMs, sleepMs } from './helpers.js';

/** Long enough that ten calls started together overlap even on a slow, busy machine. */
const HOLD_MS = 1_000;
let mock: MockAnthropic | undefined;

async function start(options: MockOptions): Promise<{ mock: MockAnthropic; client: Anthropic }> {
  mock = await startMockAnthropic(options);
  return { mock, client: clientFor(mock) };
}
afterEach(() => mock?.close());

/** Sends a request whose token counts are fixed by the x-mock headers; returns the response headers. */
async function send(client: Anthropic, tokens: { input?: number; output?: number; maxTokens?: number }): Promise<Headers> {
  const headers: Record<string, string> = {};
  if (tokens.input !== undefined) headers['x-mock-input-tokens'] = String(tokens.input);
  if (tokens.output !== undefined) headers['x-mock-output-tokens'] = String(tokens.output);
  const { response } = await client.messages.create(request('hi', tokens.maxTokens ?? 256), { headers }).withResponse();
  return response.headers;
}

function remaining(headers: Headers, dimension: string): number {
  return Number(headers.get(`anthropic-ratelimit-${dimension}-remaining`));
}

/** Expects a rate-limit 429 (with `remaining: 0` on `dimension`, when given); returns its retry-after in ms. */
async function expectRateLimited(call: () => Promise<unknown>, dimension?: string): Promise<number> {
  const error = await thrown(call);
  expect(error).toBeInstanceOf(Anthropic.RateLimitError);
  const rateLimit = error as InstanceType<typeof Anthropic.RateLimitError>;
  if (dimension !== undefined) expect(rateLimit.headers.get(`anthropic-ratelimit-${dimension}-remaining`)).toBe('0');
  expect(rateLimit.headers.get('retry-after')).toMatch(/^[1-9]\d*$/);
  return retryAfterMs(error);
}

describe('concurrency', () => {
  it('limit 3 with 10 simultaneous calls gives exactly 7 concurrency 429s', async () => {
    const { mock, client } = await start({ limits: { concurrency: 3 }, latency: { timeToFirstTokenMs: HOLD_MS } });
    const results = await Promise.allSettled(Array.from({ length: 10 }, () => client.messages.create(request())));
    const rejected = results.flatMap((result) => (result.status === 'rejected' ? [result.reason as unknown] : []));
    expect(results.filter((result) => result.status === 'fulfilled')).toHaveLength(3);
    expect(rejected).toHaveLength(7);
    for (const error of rejected) {
      expect(error).toBeInstanceOf(Anthropic.RateLimitError);
      const rateLimit = error as InstanceType<typeof Anthropic.RateLimitError>;
      expect(rateLimit.apiMessage).toMatch(/^Number of concurrent connections has exceeded your rate limit\./);
      expect(rateLimit.headers.get('retry-after')).toBe('1');
    }
    const stats = mock.stats();
    expect(stats.rateLimited.concurrency).toBe(7);
    expect(stats.maxConcurrent).toBe(3);
    expect(stats.byKey[apiKeyFingerprint(API_KEY)]?.maxConcurrent).toBe(3);
    expect(stats.inFlight).toBe(0);
  });

  it('counts open streams as in flight', async () => {
    const { mock, client } = await start({ limits: { concurrency: 1 }, latency: { perTokenMs: 50 } });
    const stream = await client.messages.create({ ...request(), stream: true }, { headers: { 'x-mock-output-tokens': '20' } });
    await expectRateLimited(() => client.messages.create(request()));
    expect(mock.stats().inFlight).toBe(1);
    for await (const _event of stream) {
      // drain
    }
    await client.messages.create(request(), { headers: { 'x-mock-output-tokens': '1' } }); // the stream's slot is free again
    expect(mock.stats().rateLimited.concurrency).toBe(1);
  });
});

describe('token buckets', () => {
  it('RPM: 429 once the burst is used; retry-after is enough; remaining counts down', async () => {
    const { mock, client } = await start({ limits: { rpm: 30, burst: { rpm: 2 } } });
    expect(remaining(await send(client, {}), 'requests')).toBe(1);
    expect(remaining(await send(client, {}), 'requests')).toBe(0);
    const waitMs = await expectRateLimited(() => send(client, {}), 'requests');
    expect(waitMs).toBeLessThanOrEqual(2_000); // one request refills in 2 s at 30 RPM
    await sleepMs(waitMs);
    await send(client, {});
    const stats = mock.stats();
    expect(stats.rateLimited.requests).toBe(1);
    expect(stats.tokens.requests.admitted).toBe(3); // the rejected request consumed nothing
  });

  it('RPM: the 429 names the limit like the real one', async () => {
    const { client } = await start({ limits: { rpm: 50, burst: { rpm: 1 } } });
    await send(client, {});
    const error = await thrown(() => send(client, {}));
    expect((error as InstanceType<typeof Anthropic.RateLimitError>).apiMessage).toMatch(
      /^This request would exceed your organization's rate limit of 50 requests per minute \(org: [0-9a-f-]{36}, model: claude-haiku-4-5\)\./,
    );
  });

  it('ITPM: remaining falls by the input tokens; retry-after is enough', async () => {
    const { mock, client } = await start({ limits: { itpm: 120, burst: { itpm: 40 }, roundHeaders: false } });
    const after30 = remaining(await send(client, { input: 30 }), 'input-tokens');
    expect(after30).toBeGreaterThanOrEqual(10);
    expect(after30).toBeLessThan(20); // 2 tokens/s refill: 10 + a few
    const waitMs = await expectRateLimited(() => send(client, { input: 12 + (after30 - 10) }), 'input-tokens');
    await sleepMs(waitMs);
    await send(client, { input: 12 });
    const stats = mock.stats();
    expect(stats.rateLimited.input_tokens).toBe(1);
    expect(stats.tokens.input_tokens.settled).toBe(42);
  });

  it('OTPM max_tokens mode: admission needs max_tokens, unused tokens come back', async () => {
    const { mock, client } = await start({ limits: { otpm: 120, burst: { otpm: 50 }, otpmMode: 'max_tokens', roundHeaders: false } });
    const headers = await send(client, { output: 40, maxTokens: 40 });
    expect(remaining(headers, 'output-tokens')).toBeLessThan(15); // charged 40 of 50 at admission
    const waitMs = await expectRateLimited(() => send(client, { output: 1, maxTokens: 14 }), 'output-tokens');
    await sleepMs(waitMs);
    await send(client, { output: 1, maxTokens: 14 });
    // The 14 charged at admission were settled to 1, so 13 came back: the next 40-token admission fits sooner.
    const stats = mock.stats();
    expect(stats.tokens.output_tokens).toEqual({ admitted: 54, settled: 41 });
    expect(stats.rateLimited.output_tokens).toBe(1);
  });

  it('OTPM actual mode: admits on a positive balance, which may then go negative', async () => {
    const { mock, client } = await start({ limits: { otpm: 600, burst: { otpm: 20 }, otpmMode: 'actual', roundHeaders: false } });
    await send(client, { output: 30, maxTokens: 1_000 });
    const lowest = mock.stats().lowestBalance.output_tokens;
    expect(lowest).not.toBeNull();
    expect(lowest).toBeLessThan(0);
    const waitMs = await expectRateLimited(() => send(client, { output: 1 }), 'output-tokens');
    expect(waitMs).toBeLessThanOrEqual(3_000); // an ~11-token deficit at 10 tokens/s
    await sleepMs(waitMs);
    await send(client, { output: 1 });
    expect(mock.stats().tokens.output_tokens).toEqual({ admitted: 0, settled: 31 });
  });

  it('the first failing check wins and limits are per key', async () => {
    const { mock } = await start({ limits: { rpm: 60, itpm: 60, burst: { rpm: 1, itpm: 1 } } });
    const alice = clientFor(mock, 'alice');
    const bob = clientFor(mock, 'bob');
    await send(alice, { input: 1 });
    await expectRateLimited(() => send(alice, { input: 5 }), 'requests'); // RPM and ITPM both short: RPM is checked first
    await send(bob, { input: 1 });
    expect(mock.stats().rateLimited).toMatchObject({ requests: 1, input_tokens: 0 });
  });

  it('sends all rate-limit headers with whole-second RFC 3339 resets', async () => {
    const { client } = await start({ limits: { rpm: 100, itpm: 10_000, otpm: 2_000 } });
    const headers = await send(client, { input: 10, output: 5 });
    for (const dimension of ['requests', 'input-tokens', 'output-tokens', 'tokens']) {
      expect(headers.get(`anthropic-ratelimit-${dimension}-reset`)).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);
    }
    expect(headers.get('anthropic-ratelimit-tokens-limit')).toBe('12000');
    expect(remaining(headers, 'input-tokens')).toBe(10_000); // rounded to the nearest 1,000
    expect(remaining(headers, 'requests')).toBe(99);
  });

  it('the spend cap answers 429 enforced_spend_limit_reached without retry-after', async () => {
    const { client } = await start({ limits: { spendCapTokens: 10 } });
    await send(client, { input: 8, output: 5 });
    const error = await thrown(() => send(client, {}));
    expect(error).toBeInstanceOf(Anthropic.EnforcedSpendLimitReachedError);
    const apiError = error as InstanceType<typeof Anthropic.RateLimitError>;
    expect(apiError.headers.get('retry-after')).toBeNull();
    expect(apiError.headers.get('x-should-retry')).toBe('false');
  });
});
