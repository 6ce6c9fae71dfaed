import { createRequire } from 'node:module';
import type EsmAnthropic from '@anthropic-ai/sdk';
import { createLimiter, type Limiter } from '@tollgate/limiter';
import type { MockAnthropic } from '@tollgate/mock-anthropic';
import { thrown, uniqueName } from '@tollgate/test-support';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { classifyFailure, limitAnthropic } from '../src/index.js';
import { CJS_WORKER_SCRIPT, runFleet, total } from './fleet/run-fleet.js';
import { API_KEY, MODEL, request, startStack, type Stack } from './support.js';

/**
 * Issue 12, case 15: a client made from the SDK's CommonJS build throws that build's error classes, which fail
 * `instanceof` against the ESM build the wrapper imports. The wrapper must classify them alike.
 */

/** The SDK's CommonJS build, as `require('@anthropic-ai/sdk')` in a CommonJS app gives it. */
const CjsAnthropic = createRequire(import.meta.url)('@anthropic-ai/sdk') as typeof EsmAnthropic;
const FLEET_TEST_TIMEOUT_MS = 90_000;
const BACKOFF_BASE_MS = 20;

let stack: Stack;
let mock: MockAnthropic;
let limiter: Limiter;

beforeAll(async () => {
  stack = await startStack();
  mock = stack.mock;
  limiter = await stack.limiter({ concurrency: 4 });
});
afterAll(() => stack.close());
beforeEach(() => stack.resetMock());

function cjsClient(): EsmAnthropic {
  return new CjsAnthropic({ baseURL: mock.url, apiKey: API_KEY, maxRetries: 0 });
}

describe('errors of the SDK CommonJS build are classified like the ESM build errors', () => {
  it('the two builds are distinct (else this file proves nothing)', async () => {
    const esm = await import('@anthropic-ai/sdk');
    expect(CjsAnthropic.APIError).not.toBe(esm.APIError);
  });

  it.each([
    {
      name: 'rate 429 with retry-after',
      make: (headers: Headers) => new CjsAnthropic.RateLimitError(429, { type: 'error', error: { type: 'rate_limit_error', message: 'too many requests' } }, undefined, headers),
      expected: { kind: 'rate_limited', pauseMs: 2_000 },
    },
    {
      name: 'concurrency 429',
      make: (headers: Headers) =>
        new CjsAnthropic.RateLimitError(
          429,
          { type: 'error', error: { type: 'rate_limit_error', message: 'Number of concurrent connections has exceeded your rate limit.' } },
          undefined,
          headers,
        ),
      expected: { kind: 'concurrency' },
    },
    {
      name: '529',
      make: (headers: Headers) => new CjsAnthropic.InternalServerError(529, { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } }, undefined, headers),
      expected: { kind: 'transient', serverWaitMs: 2_000 },
    },
    {
      name: 'mid-stream overloaded',
      make: (headers: Headers) => new CjsAnthropic.APIError(undefined, { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } }, undefined, headers),
      expected: { kind: 'transient', serverWaitMs: undefined },
    },
    { name: 'connection error', make: () => new CjsAnthropic.APIConnectionError({ message: 'Connection error.' }), expected: { kind: 'transient', serverWaitMs: undefined } },
    { name: "caller's abort", make: () => new CjsAnthropic.APIUserAbortError(), expected: { kind: 'fatal' } },
    {
      name: '400',
      make: (headers: Headers) => new CjsAnthropic.BadRequestError(400, { type: 'error', error: { type: 'invalid_request_error', message: 'bad' } }, undefined, headers),
      expected: { kind: 'fatal' },
    },
  ])('$name', ({ make, expected }) => {
    const error = make(new Headers({ 'retry-after': '2' }));
    expect(classifyFailure(error, false)).toEqual(expected);
  });

  it('a rate 429 from a CommonJS client pauses the fleet and is retried; a 403 surfaces as the caller’s own class', async () => {
    const anthropic = limitAnthropic(cjsClient(), limiter, { backoffBaseMs: BACKOFF_BASE_MS });
    mock.setConfig({ faults: { retryAfterS: 1, schedule: [{ nth: 1, fault: '429' }] } });
    const message = await anthropic.messages.create(request());
    expect(message.type).toBe('message');
    expect(anthropic.stats().rateLimited.rate).toBe(1);
    expect(anthropic.stats().attempts).toBe(2);
    const forbidden = await thrown(() => anthropic.messages.create(request(), { headers: { 'x-mock-fault': '403' } }));
    expect(forbidden).toBeInstanceOf(CjsAnthropic.PermissionDeniedError);
    expect((await limiter.snapshot()).inFlight).toBe(0);
  });

  it('an abort while waiting to retry rejects with the caller’s own APIUserAbortError', async () => {
    const anthropic = limitAnthropic(cjsClient(), limiter, { backoffBaseMs: 60_000, backoffMaxMs: 60_000 });
    mock.setConfig({ faults: { schedule: [{ nth: 1, fault: '500' }] } });
    const controller = new AbortController();
    const outcome = thrown(() => anthropic.messages.create(request(), { signal: controller.signal }));
    await expect.poll(() => anthropic.stats().failures['500'] ?? 0).toBe(1);
    controller.abort();
    expect(await outcome).toBeInstanceOf(CjsAnthropic.APIUserAbortError);
    expect((await limiter.snapshot()).inFlight).toBe(0);
  });
});

describe('a fleet of CommonJS processes', () => {
  it(
    'Tollgate at 8, upstream at 4, 150 calls from 3 processes: every call succeeds, the concurrency 429s were retried',
    async () => {
      mock.reset();
      mock.setConfig({ limits: { concurrency: 4 }, latency: { timeToFirstTokenMs: { kind: 'uniform', minMs: 5, maxMs: 20 }, perTokenMs: 0.2 } });
      const name = uniqueName('cjs-fleet');
      const configs = Array.from({ length: 3 }, (_, index) => ({
        redisUrl: stack.redis.url,
        limiterName: name,
        limiter: { concurrency: 8 },
        mockUrl: mock.url,
        apiKey: API_KEY,
        model: MODEL,
        calls: 50,
        parallel: 8,
        kinds: ['create' as const, 'stream' as const],
        shapes: [{ promptChars: 40, maxTokens: 64 }],
        shapeOffset: index,
      }));
      const results = await runFleet(configs, undefined, CJS_WORKER_SCRIPT);
      const observer = createLimiter({ redis: stack.redis.url, name, concurrency: 8 });
      const snapshot = await observer.snapshot();
      await observer.close();
      const limited = mock.stats().rateLimited.concurrency;
      console.log(`CommonJS fleet: ${total(results, (r) => r.succeeded)} of 150 succeeded, concurrency 429s ${limited}, effective concurrency at the end ${snapshot.concurrency}`);
      expect(results.flatMap((result) => result.errors)).toEqual([]);
      expect(total(results, (result) => result.succeeded)).toBe(150);
      expect(limited).toBeGreaterThan(0); // the run met the upstream's limit, so the retries were exercised
      expect(total(results, (result) => result.stats.rateLimited.concurrency)).toBe(limited);
      expect(snapshot.concurrency).toBeLessThanOrEqual(4);
    },
    FLEET_TEST_TIMEOUT_MS,
  );
});
