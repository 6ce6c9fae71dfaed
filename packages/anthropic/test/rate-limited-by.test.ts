import Anthropic from '@anthropic-ai/sdk';
import { thrown } from '@tollgate/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { limitAnthropic, rateLimitKind, type TenantRateLimited } from '../src/index.js';
import { clientFor, request, startStack, type Stack } from './support.js';

/**
 * Issue 15, "Visible": the wrapper counts each upstream 429 under the tenant and the pool of its permit and what it
 * ran out of (concurrency, RPM, ITPM, OTPM, other), for per-tenant metrics. The mock gives each key its own limits,
 * and the limiter here holds only concurrency, so the mock's per-minute limits are what answer 429.
 */
const KEYS = {
  rpm: 'key-rpm',
  itpm: 'key-itpm',
  otpm: 'key-otpm',
  pools: 'key-pools',
  concurrency: 'key-concurrency',
} as const;
const SONNET = 'claude-sonnet-4-6';
/** A prompt of 60 input tokens (ceil(chars / 4)): one fits the ITPM key's bucket of 100, two do not. */
const PROMPT_CHARS = 240;
const OUTPUT_TOKENS = 40;
const ANSWER = { headers: { 'x-mock-output-tokens': String(OUTPUT_TOKENS) } };
/** Holds the concurrency key's one slot while the second call is made. */
const SLOW_HEADERS_MS = 1_000;

let stack: Stack;

beforeAll(async () => {
  stack = await startStack({
    keyLimits: {
      [KEYS.rpm]: { rpm: 1 },
      [KEYS.itpm]: { itpm: 100 },
      [KEYS.otpm]: { otpm: 50 }, // max_tokens mode: admission needs max_tokens of balance
      [KEYS.pools]: { pools: { sonnet: { models: ['claude-sonnet-4*'], rpm: 1 } } },
      [KEYS.concurrency]: { concurrency: 1 },
    },
    faults: { slowHeadersMs: SLOW_HEADERS_MS },
  });
});
afterAll(() => stack.close());

/** Two calls of one client, one attempt each; the second meets the key's limit. Returns the client's `rateLimitedBy`. */
async function secondCallLimited(anthropic: ReturnType<typeof limitAnthropic>, params: Anthropic.MessageCreateParamsNonStreaming): Promise<TenantRateLimited[]> {
  await anthropic.messages.create(params, ANSWER);
  const error = await thrown(() => anthropic.messages.create(params, ANSWER));
  expect(error).toBeInstanceOf(Anthropic.RateLimitError);
  return anthropic.stats().rateLimitedBy;
}

describe('stats().rateLimitedBy: 429s by tenant, pool and kind', () => {
  it('an RPM 429 of a tenant view is counted as rpm for that tenant; a concurrency 429 of another as concurrency', async () => {
    const limiter = await stack.limiter({ concurrency: 4, groups: {} });
    const client = limitAnthropic(clientFor(stack.mock.url, KEYS.rpm), limiter, { maxAttempts: 1 });
    const byTenant = await secondCallLimited(client.withTenant('alpha'), request());
    expect(byTenant).toEqual([{ tenant: 'alpha', pool: null, kind: 'rpm', count: 1 }]);
    expect(client.stats().rateLimited).toEqual({ concurrency: 0, rate: 1, other: 0 }); // the views share the client's counters

    const busy = limitAnthropic(clientFor(stack.mock.url, KEYS.concurrency), await stack.limiter({ concurrency: 4 }), { maxAttempts: 1 }).withTenant('delta');
    const holding = busy.messages.create(request(), { headers: { 'x-mock-fault': 'slow_headers' } }); // the key's one slot
    await expect.poll(() => stack.mock.stats().inFlight).toBe(1);
    expect(await thrown(() => busy.messages.create(request()))).toBeInstanceOf(Anthropic.RateLimitError);
    await holding;
    expect(busy.stats().rateLimitedBy).toEqual([{ tenant: 'delta', pool: null, kind: 'concurrency', count: 1 }]);
  });

  it('ITPM and OTPM 429s are told apart by the limit the answer names; a call without a tenant has tenant null', async () => {
    const itpm = limitAnthropic(clientFor(stack.mock.url, KEYS.itpm), await stack.limiter({ concurrency: 4 }), { maxAttempts: 1 });
    expect(await secondCallLimited(itpm, request(PROMPT_CHARS, OUTPUT_TOKENS))).toEqual([{ tenant: null, pool: null, kind: 'itpm', count: 1 }]);
    const otpm = limitAnthropic(clientFor(stack.mock.url, KEYS.otpm), await stack.limiter({ concurrency: 4 }), { maxAttempts: 1, tenant: 'beta' });
    expect(await secondCallLimited(otpm, request(40, OUTPUT_TOKENS))).toEqual([{ tenant: 'beta', pool: null, kind: 'otpm', count: 1 }]);
  });

  it("with pools, the 429 is counted under the pool of the call's model", async () => {
    const limiter = await stack.limiter({ concurrency: 4, pools: { sonnet: {}, haiku: {} } });
    const poolFor = (model: string): string => (model.startsWith('claude-sonnet-4') ? 'sonnet' : 'haiku');
    const client = limitAnthropic(clientFor(stack.mock.url, KEYS.pools), limiter, { maxAttempts: 1, poolFor }).withTenant('gamma');
    const byTenant = await secondCallLimited(client, { ...request(), model: SONNET });
    expect(byTenant).toEqual([{ tenant: 'gamma', pool: 'sonnet', kind: 'rpm', count: 1 }]);
  });

  it('rateLimitKind reads the kind off the SDK error: a spend limit is other; an error that is no 429 has none', async () => {
    const client = clientFor(stack.mock.url); // a key without limits of its own
    const injected = await thrown(() => client.messages.create(request(), { headers: { 'x-mock-fault': '429' } }));
    expect(rateLimitKind(injected)).toBe('rpm'); // the mock's injected 429 names the requests limit
    const spend = await thrown(() => client.messages.create(request(), { headers: { 'x-mock-fault': 'spend_cap' } }));
    expect(rateLimitKind(spend)).toBe('other');
    const badRequest = await thrown(() => client.messages.create({ ...request(), max_tokens: 0 }));
    expect(badRequest).toBeInstanceOf(Anthropic.BadRequestError);
    expect(rateLimitKind(badRequest)).toBeUndefined();
    expect(rateLimitKind(new Error('not an SDK error'))).toBeUndefined();
  });
});
