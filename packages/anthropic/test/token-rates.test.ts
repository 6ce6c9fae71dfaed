import { uniqueName } from '@tollgate/test-support';
import type { MockStats } from '@tollgate/mock-anthropic';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runFleet, total } from './fleet/run-fleet.js';
import type { CallShape } from './fleet/protocol.js';
import { API_KEY, MODEL, startStack, type Stack } from './support.js';

const FLEET_TEST_TIMEOUT_MS = 90_000;
const PROCESSES = 4;
const CALLS = 300;
const MS_PER_MINUTE = 60_000;
/** Stats windows of one second: tokens per minute = tokens per window × 60. */
const WINDOW_MS = 1_000;
/**
 * Limits are per minute on both sides, but a small burst capacity (same on both sides) makes the refill rate, not
 * the initial bucket, carry the run, so each run lasts about 5 s instead of minutes.
 */
const BURST_TOKENS = 2_000;
/**
 * The upstream's bucket is larger by what refills during this much dispatch jitter: a permit granted at t reaches
 * the upstream at t + d, so calls granted in order may arrive bunched. With the real API's burst (a whole minute of
 * tokens) that slack is always there; in a 5-second run it has to be given explicitly. 300 ms was measured to be
 * too little when CI's 2 cores also run Redis, the mock and four worker processes (a full CI run saw one 429).
 */
const DISPATCH_JITTER_MS = 1_000;
/** Prompt chars 400–1,600 (100–400 input tokens), max_tokens 100–300, answers 80–300 tokens. */
const SHAPES: CallShape[] = [
  { promptChars: 400, maxTokens: 100, outputTokens: 80 },
  { promptChars: 1_600, maxTokens: 300, outputTokens: 300 },
  { promptChars: 800, maxTokens: 200, outputTokens: 150 },
  { promptChars: 1_200, maxTokens: 300, outputTokens: 200 },
];
const UNBOUND_PER_MINUTE = 100_000_000;
const SHARE_MIN = 0.9;

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ statsWindowMs: WINDOW_MS });
});
afterAll(() => stack.close());

/** Tokens per minute in the full windows of the run, leaving out the first (the initial burst) and the last (partial). */
function perMinute(stats: MockStats, dimension: 'inputTokens' | 'outputTokens'): number {
  const middle = stats.windows.slice(1, -1);
  expect(middle.length).toBeGreaterThanOrEqual(2);
  const tokens = middle.reduce((sum, window) => sum + window[dimension], 0);
  return (tokens / middle.length) * (MS_PER_MINUTE / stats.windowMs);
}

function upstreamBurst(perMinute: number): number {
  return Math.min(perMinute, BURST_TOKENS + Math.ceil((perMinute / MS_PER_MINUTE) * DISPATCH_JITTER_MS));
}

async function run(label: string, limits: { itpm: number; otpm: number; otpmMode: 'actual' | 'max_tokens' }, bound: 'inputTokens' | 'outputTokens'): Promise<void> {
  stack.mock.reset();
  stack.mock.setConfig({
    limits: {
      itpm: limits.itpm,
      otpm: limits.otpm,
      otpmMode: limits.otpmMode,
      burst: { itpm: upstreamBurst(limits.itpm), otpm: upstreamBurst(limits.otpm) },
    },
    latency: { timeToFirstTokenMs: 2, perTokenMs: 0.02 },
  });
  const name = uniqueName('rates');
  const rates = {
    inputTokens: { limit: limits.itpm, intervalMs: MS_PER_MINUTE, burst: BURST_TOKENS },
    outputTokens: { limit: limits.otpm, intervalMs: MS_PER_MINUTE, burst: BURST_TOKENS },
  };
  const results = await runFleet(
    Array.from({ length: PROCESSES }, (_, index) => ({
      redisUrl: stack.redis.url,
      limiterName: name,
      mockUrl: stack.mock.url,
      apiKey: API_KEY,
      model: MODEL,
      limiter: { rates },
      calls: CALLS / PROCESSES,
      parallel: 8,
      kinds: ['create', 'stream'] as const,
      shapes: SHAPES,
      shapeOffset: index,
    })),
    async () => stack.mock.reset(), // the windows start when the fleet does (and the buckets are full, like the limiter's)
  );
  const stats = stack.mock.stats();
  const limit = bound === 'inputTokens' ? limits.itpm : limits.otpm;
  const delivered = perMinute(stats, bound);
  console.log(
    `(4) ${label}: ${bound} ${Math.round(delivered)}/min of ${limit}/min (${((100 * delivered) / limit).toFixed(1)}%), 429s ${JSON.stringify(stats.rateLimited)}, ` +
      `observes ${total(results, (r) => r.stats.observes)} for ${CALLS} calls, windows ${JSON.stringify(
        stats.windows.map((w) => (bound === 'inputTokens' ? w.inputTokens : w.outputTokens)),
      )}`,
  );
  expect(results.flatMap((result) => result.errors)).toEqual([]);
  expect(total(results, (result) => result.succeeded)).toBe(CALLS);
  expect(stats.byStatus['429'] ?? 0).toBe(0);
  expect(delivered).toBeGreaterThanOrEqual(SHARE_MIN * limit);
}

describe('token rates across a fleet: no 429s, ≥ 90% of the limit delivered', () => {
  it('G2: (4a) ITPM bound', () => run('ITPM', { itpm: 840_000, otpm: UNBOUND_PER_MINUTE, otpmMode: 'max_tokens' }, 'inputTokens'), FLEET_TEST_TIMEOUT_MS);
  it(
    'G2: (4b) OTPM bound, real-time (actual) mode',
    () => run('OTPM actual', { itpm: UNBOUND_PER_MINUTE, otpm: 600_000, otpmMode: 'actual' }, 'outputTokens'),
    FLEET_TEST_TIMEOUT_MS,
  );
  it(
    'G2: (4c) OTPM bound, max_tokens mode',
    () => run('OTPM max_tokens', { itpm: UNBOUND_PER_MINUTE, otpm: 600_000, otpmMode: 'max_tokens' }, 'outputTokens'),
    FLEET_TEST_TIMEOUT_MS,
  );
});
