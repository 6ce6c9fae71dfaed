import Anthropic from '@anthropic-ai/sdk';
import { afterEach, describe, expect, it } from 'vitest';
import { startMockAnthropic, type MockAnthropic, type MockOptions } from '../src/index.js';
import { thrown } from '@tollgate/test-support';
import { clientFor, request } from './helpers.js';

let mock: MockAnthropic | undefined;
async function start(options: MockOptions): Promise<{ mock: MockAnthropic; client: Anthropic }> {
  mock = await startMockAnthropic(options);
  return { mock, client: clientFor(mock) };
}
afterEach(() => mock?.close());

const CACHED = { headers: { 'x-mock-input-tokens': '10', 'x-mock-cache-read': '100', 'x-mock-cache-write': '20' } };

describe('ITPM accounting', () => {
  it('admits on the whole prompt, then settles to input + cache writes (cache reads are free)', async () => {
    const { mock, client } = await start({ limits: { itpm: 100_000 } });
    const message = await client.messages.create(request(), CACHED);
    expect(message.usage).toMatchObject({ input_tokens: 10, cache_read_input_tokens: 100, cache_creation_input_tokens: 20 });
    expect(mock.stats().tokens.input_tokens).toEqual({ admitted: 130, settled: 30 });
  });

  it('counts cache reads on models flagged like Haiku 3.5', async () => {
    const { mock, client } = await start({ limits: { itpm: 100_000 } });
    await client.messages.create({ ...request(), model: 'claude-3-5-haiku-20241022' }, CACHED);
    expect(mock.stats().tokens.input_tokens.settled).toBe(130);
  });

  it('count_tokens has its own RPM and uses none of the Messages limits', async () => {
    const { mock, client } = await start({ limits: { rpm: 1, countTokensRpm: 60, burst: { countTokensRpm: 2 } } });
    const params = { model: request().model, messages: request().messages };
    await client.messages.countTokens(params);
    await client.messages.countTokens(params);
    const error = await thrown(() => client.messages.countTokens(params));
    expect(error).toBeInstanceOf(Anthropic.RateLimitError);
    await client.messages.create(request()); // the Messages RPM bucket is untouched
    expect(mock.stats().rateLimited).toMatchObject({ count_tokens: 1, requests: 0 });
  });
});

describe('latency', () => {
  it('draws seeded delays from a distribution and still answers correctly', async () => {
    const { mock, client } = await start({
      seed: 3,
      latency: { timeToFirstTokenMs: { kind: 'lognormal', medianMs: 5, sigma: 0.5, maxMs: 50 }, perTokenMs: { kind: 'uniform', minMs: 0, maxMs: 1 } },
    });
    const results = await Promise.all(Array.from({ length: 5 }, () => client.messages.create(request())));
    expect(results.every((message) => message.stop_reason === 'end_turn')).toBe(true);
    expect(mock.stats().byStatus).toEqual({ '200': 5 });
  });
});

describe('stats windows', () => {
  it('splits delivered tokens into windows since the reset', async () => {
    const { mock, client } = await start({ statsWindowMs: 60_000 });
    await client.messages.create(request(), { headers: { 'x-mock-input-tokens': '11', 'x-mock-output-tokens': '13' } });
    await client.messages.create(request(), { headers: { 'x-mock-input-tokens': '11', 'x-mock-output-tokens': '13' } });
    const [window] = mock.stats().windows;
    expect(window).toEqual({ index: 0, requests: 2, inputTokens: 22, outputTokens: 26, countTokens: 0 });
  });
});
