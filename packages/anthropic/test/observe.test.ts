import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { limitAnthropic } from '../src/index.js';
import { clientFor, request, startStack, type Stack } from './support.js';

/** One request per second at the mock, so nothing refills noticeably during the test. */
const RPM = 60;
const MOCK_BURST = 5;
/** Longer than the test: only a 429 or an emptied server bucket makes an observe after the first. */
const OBSERVE_INTERVAL_MS = 60_000;

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ limits: { rpm: RPM, burst: { rpm: MOCK_BURST } } });
});
afterAll(() => stack.close());

describe('rate-limit headers reach the limiter', () => {
  it('an answer that shows the server bucket newly empty is observed at once, inside the interval', async () => {
    // the fleet guessed a larger burst than the account's, and another client of the key spends from it too
    const limiter = await stack.limiter({ rates: { requests: { limit: RPM, intervalMs: 60_000, burst: 2 * MOCK_BURST } } });
    const anthropic = limitAnthropic(clientFor(stack.mock.url), limiter, { observeIntervalMs: OBSERVE_INTERVAL_MS });
    const outsider = clientFor(stack.mock.url);

    await anthropic.messages.create(request()); // the first answer is observed: the server has 4 left
    expect(anthropic.stats().observes).toBe(1);
    expect(Math.floor((await limiter.snapshot()).buckets.requests?.tokens ?? Number.NaN)).toBe(MOCK_BURST - 1);

    for (let sent = 0; sent < MOCK_BURST - 2; sent += 1) await outsider.messages.create(request()); // leaves 1
    const { response } = await anthropic.messages.create(request()).withResponse(); // takes the last one
    expect(response.headers.get('anthropic-ratelimit-requests-remaining')).toBe('0');
    expect(anthropic.stats().observes).toBe(2); // inside the interval, but news: the server's bucket ran empty
    const tokens = (await limiter.snapshot()).buckets.requests?.tokens ?? Number.NaN;
    expect(tokens).toBeLessThan(1); // without the observe the fleet would still think it holds 3 and meet 429s
    expect(stack.mock.stats().rateLimited.requests).toBe(0);
  });
});
