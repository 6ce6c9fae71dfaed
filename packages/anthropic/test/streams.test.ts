import type { Limiter } from '@tollgate/limiter';
import type { MockAnthropic } from '@tollgate/mock-anthropic';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { limitAnthropic, type LimitedAnthropic } from '../src/index.js';
import { clientFor, limiterFor, request, startStack, type Stack } from './support.js';

const MAX_TOKENS = 1_000;
/** Long answers, slowly produced, so the consumer stops well before the end. */
const OUTPUT_TOKENS = 400;
const PER_TOKEN_MS = 5;
const DELTAS_BEFORE_STOP = 3;
/** Capacity fits one reservation; a day's interval makes the refill during a test negligible (< 1 token/s). */
const OUTPUT_RATE = { limit: 2 * MAX_TOKENS, intervalMs: 24 * 60 * 60 * 1000 };
/** Refill of OUTPUT_RATE over the longest this test could take (60 s), rounded up. */
const REFILL_SLACK_TOKENS = 2;

let stack: Stack;
let mock: MockAnthropic;
let limiter: Limiter;
let anthropic: LimitedAnthropic;

beforeAll(async () => {
  stack = await startStack({ latency: { perTokenMs: PER_TOKEN_MS } });
  mock = stack.mock;
});
afterAll(() => stack.close());
beforeEach(async () => {
  await limiter?.close();
  limiter = await limiterFor(stack.redis.url, { concurrency: 2, rates: { outputTokens: OUTPUT_RATE } });
  anthropic = limitAnthropic(clientFor(mock.url), limiter);
  mock.reset();
});

const headers = { 'x-mock-output-tokens': String(OUTPUT_TOKENS) };

/** Output tokens taken from the bucket and not given back. */
async function outputTokensSettled(): Promise<number> {
  const bucket = (await limiter.snapshot()).buckets.outputTokens;
  if (bucket === undefined) throw new Error('no outputTokens bucket');
  return bucket.capacity - bucket.tokens;
}

async function expectStoppedEarly(): Promise<void> {
  const snapshot = await limiter.snapshot();
  expect(snapshot.inFlight).toBe(0);
  const settled = await outputTokensSettled();
  console.log(`stopped after ${DELTAS_BEFORE_STOP} deltas: ${settled.toFixed(1)} output tokens settled of ${MAX_TOKENS} reserved`);
  expect(settled).toBeGreaterThan(0); // what was produced is paid for
  expect(settled).toBeLessThan(OUTPUT_TOKENS / 2 + REFILL_SLACK_TOKENS); // the unproduced reservation came back
}

describe('a consumer that stops early releases the permit and settles what was produced', () => {
  it('break out of for await over create({ stream: true })', async () => {
    const stream = await anthropic.messages.create({ ...request(40, MAX_TOKENS), stream: true }, { headers });
    let deltas = 0;
    for await (const event of stream) {
      if (event.type === 'content_block_delta') deltas += 1;
      if (deltas === DELTAS_BEFORE_STOP) break;
    }
    await expectStoppedEarly();
  });

  it('stream.controller.abort() while iterating', async () => {
    const stream = await anthropic.messages.create({ ...request(40, MAX_TOKENS), stream: true }, { headers });
    let deltas = 0;
    for await (const event of stream) {
      if (event.type === 'content_block_delta') deltas += 1;
      if (deltas === DELTAS_BEFORE_STOP) stream.controller.abort();
    }
    await expectStoppedEarly();
  });

  it('break out of for await over messages.stream()', async () => {
    const stream = anthropic.messages.stream(request(40, MAX_TOKENS), { headers });
    let deltas = 0;
    for await (const event of stream) {
      if (event.type === 'content_block_delta') deltas += 1;
      if (deltas === DELTAS_BEFORE_STOP) break;
    }
    await stream.done().catch(() => undefined); // the abort ends the stream with APIUserAbortError
    await expectStoppedEarly();
  });

  it('a stream read to its end settles the exact usage', async () => {
    const stream = await anthropic.messages.create({ ...request(40, MAX_TOKENS), stream: true }, { headers: { 'x-mock-output-tokens': '12' } });
    for await (const _event of stream) {
      // drain
    }
    expect((await limiter.snapshot()).inFlight).toBe(0);
    expect(await outputTokensSettled()).toBeCloseTo(12, 0);
  });
});
