import type Anthropic from '@anthropic-ai/sdk';
import { InvalidArgumentError, InvalidConfigError, type Limiter } from '@tollgate/limiter';
import type { MockAnthropic } from '@tollgate/mock-anthropic';
import { thrown } from '@tollgate/test-support';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { DOCUMENT_TOKENS_DEFAULT, estimateInputTokens, IMAGE_TOKENS_DEFAULT, limitAnthropic, type LimitAnthropicOptions } from '../src/index.js';
import { clientFor, MODEL, startStack, type Stack } from './support.js';

const RATE = { limit: 1_000_000, intervalMs: 60_000 };
const MAX_TOKENS = 64;
/**
 * A prompt whose count_tokens answer differs from the local estimate: the mock counts an image's base64 characters
 * (ceil(chars / 4)), the local estimate a fixed figure per image.
 */
const PARAMS: Anthropic.MessageCreateParamsNonStreaming = {
  model: MODEL,
  max_tokens: MAX_TOKENS,
  messages: [
    {
      role: 'user',
      content: [
        { type: 'text', text: 'What is in this picture?' },
        { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'A'.repeat(400) } },
      ],
    },
  ],
};
const LOCAL_ESTIMATE = estimateInputTokens(PARAMS, { imageTokens: IMAGE_TOKENS_DEFAULT, documentTokens: DOCUMENT_TOKENS_DEFAULT });

let stack: Stack;
let mock: MockAnthropic;
let limiter: Limiter;

beforeAll(async () => {
  stack = await startStack();
  mock = stack.mock;
  limiter = await stack.limiter({ concurrency: 2, rates: { requests: RATE, inputTokens: RATE, outputTokens: RATE } });
});
afterAll(() => stack.close());
beforeEach(() => {
  stack.resetMock();
  mock.setConfig({ limits: {} });
});
afterEach(() => {
  vi.restoreAllMocks();
});

/** Calls `limiter.acquire` for real and records the cost of every permit asked for. */
function recordCosts(): Array<Record<string, number> | undefined> {
  const costs: Array<Record<string, number> | undefined> = [];
  const acquire = limiter.acquire.bind(limiter);
  vi.spyOn(limiter, 'acquire').mockImplementation((options) => {
    costs.push(options?.cost);
    return acquire(options);
  });
  return costs;
}

/** What the mock's count_tokens says about PARAMS. */
async function countedByUpstream(): Promise<number> {
  const { model, messages } = PARAMS;
  return (await clientFor(mock.url).messages.countTokens({ model, messages })).input_tokens;
}

describe('the input-token reservation', () => {
  it("estimate: 'count_tokens' reserves what the endpoint returns, with one count_tokens request per call", async () => {
    const counted = await countedByUpstream();
    expect(counted).not.toBe(LOCAL_ESTIMATE); // else this test could not tell the two apart
    mock.reset();
    const costs = recordCosts();
    const anthropic = limitAnthropic(clientFor(mock.url), limiter, { estimate: 'count_tokens' });
    await anthropic.messages.create(PARAMS);
    expect(costs).toEqual([{ inputTokens: counted, outputTokens: MAX_TOKENS }]);
    expect(mock.stats()).toMatchObject({ countTokens: 1, messages: 1 });
  });

  it("estimate: 'count_tokens' falls back to the local estimate when count_tokens is rate limited; the call still succeeds", async () => {
    mock.setConfig({ limits: { countTokensRpm: 1 } });
    await countedByUpstream(); // the count_tokens bucket (capacity 1) is now empty; a reset would refill it
    const costs = recordCosts();
    const anthropic = limitAnthropic(clientFor(mock.url), limiter, { estimate: 'count_tokens' });
    const message = await anthropic.messages.create(PARAMS);
    expect(message.type).toBe('message');
    expect(costs).toEqual([{ inputTokens: LOCAL_ESTIMATE, outputTokens: MAX_TOKENS }]);
    expect(mock.stats()).toMatchObject({ countTokens: 2, messages: 1, rateLimited: { count_tokens: 1 } });
  });

  it("with countTokensLimiter, each count_tokens call takes a permit of the account's count_tokens rate first: none in time, the local estimate, count_tokens never called and never a 429", async () => {
    mock.setConfig({ limits: { countTokensRpm: 3 } }); // the account's count_tokens limit: 3 a minute, of which the test takes 1
    const counted = await countedByUpstream();
    const countTokensLimiter = await stack.limiter({ rates: { requests: { limit: 2, intervalMs: 60_000 } } }); // the fleet's share: 2
    const costs = recordCosts();
    const anthropic = limitAnthropic(clientFor(mock.url), limiter, { estimate: 'count_tokens', countTokensLimiter, countTokensWaitMs: 100 });
    for (let call = 0; call < 3; call += 1) await anthropic.messages.create(PARAMS);
    expect(costs).toEqual([
      { inputTokens: counted, outputTokens: MAX_TOKENS },
      { inputTokens: counted, outputTokens: MAX_TOKENS },
      { inputTokens: LOCAL_ESTIMATE, outputTokens: MAX_TOKENS }, // no count_tokens permit within 100 ms: not called
    ]);
    expect(mock.stats()).toMatchObject({ countTokens: 3, messages: 3, rateLimited: { count_tokens: 0 } });
    expect((await countTokensLimiter.snapshot()).inFlight).toBe(0); // released
    expect((await limiter.snapshot()).buckets.requests?.tokens).toBeGreaterThan(RATE.limit - 4); // the Messages buckets paid only the 3 messages
  });

  it("the default 'local' estimate never calls count_tokens", async () => {
    const costs = recordCosts();
    await limitAnthropic(clientFor(mock.url), limiter).messages.create(PARAMS);
    expect(costs).toEqual([{ inputTokens: LOCAL_ESTIMATE, outputTokens: MAX_TOKENS }]);
    expect(mock.stats().countTokens).toBe(0);
  });

  it("a caller's function (sync or async) gets the request and sets the reservation, once per call whatever the retries", async () => {
    const CALLER_ESTIMATE = 1_234;
    const seen: Anthropic.MessageCreateParams[] = [];
    const costs = recordCosts();
    const sync = limitAnthropic(clientFor(mock.url), limiter, {
      estimate: (params) => {
        seen.push(params);
        return CALLER_ESTIMATE;
      },
      backoffBaseMs: 1,
    });
    mock.setConfig({ faults: { schedule: [{ nth: 1, fault: '529' }] } });
    await sync.messages.create(PARAMS);
    const async = limitAnthropic(clientFor(mock.url), limiter, { estimate: async () => Promise.resolve(CALLER_ESTIMATE + 1) });
    await async.messages.create({ ...PARAMS, stream: true }).then(async (stream) => {
      for await (const _event of stream) {
        // drain
      }
    });
    expect(seen).toEqual([PARAMS]);
    expect(costs).toEqual([
      { inputTokens: CALLER_ESTIMATE, outputTokens: MAX_TOKENS },
      { inputTokens: CALLER_ESTIMATE, outputTokens: MAX_TOKENS }, // the retry after the 529: a fresh permit, same cost
      { inputTokens: CALLER_ESTIMATE + 1, outputTokens: MAX_TOKENS },
    ]);
    expect(mock.stats().countTokens).toBe(0);
  });
});

describe('option validation', () => {
  const cases: Array<{ options: Record<string, unknown>; field: string; value: string }> = [
    { options: { streamIdleTimeoutMs: 0 }, field: 'streamIdleTimeoutMs', value: '0' },
    { options: { maxAttempts: 0 }, field: 'maxAttempts', value: '0' },
    { options: { maxRetryMs: -1 }, field: 'maxRetryMs', value: '-1' },
    { options: { backoffBaseMs: 1.5 }, field: 'backoffBaseMs', value: '1.5' },
    { options: { priority: 10 }, field: 'priority', value: '10' },
    { options: { estimate: 'guess' }, field: 'estimate', value: '"guess"' },
    { options: { adaptiveConcurrency: { decreaseFactor: 1.5 } }, field: 'adaptiveConcurrency.decreaseFactor', value: '1.5' },
    { options: { logger: 'console' }, field: 'logger', value: '"console"' },
    { options: { colour: 'blue' }, field: 'colour', value: '"blue"' },
  ];
  it.each(cases)('$field = $value throws InvalidConfigError naming both', async ({ options, field, value }) => {
    const error = await thrown(async () => limitAnthropic(clientFor(mock.url), limiter, options as LimitAnthropicOptions));
    expect(error).toBeInstanceOf(InvalidConfigError);
    const message = (error as InvalidConfigError).message;
    expect(message).toContain(field);
    expect(message).toContain(value);
  });
});

describe('withPriority', () => {
  it('takes permits at the view priority and shares the client stats', async () => {
    const priorities: Array<number | undefined> = [];
    const acquire = limiter.acquire.bind(limiter);
    vi.spyOn(limiter, 'acquire').mockImplementation((options) => {
      priorities.push(options?.priority);
      return acquire(options);
    });
    const anthropic = limitAnthropic(clientFor(mock.url), limiter, { priority: 7 });
    const urgent = anthropic.withPriority(0);
    await anthropic.messages.create(PARAMS);
    await urgent.messages.create(PARAMS);
    await urgent.messages.stream(PARAMS).finalMessage();
    expect(priorities).toEqual([7, 0, 0]);
    expect(anthropic.stats().calls).toBe(3); // one runner behind both views
    expect(urgent.stats().calls).toBe(3);
    expect(() => anthropic.withPriority(10)).toThrow(InvalidArgumentError);
  });
});
