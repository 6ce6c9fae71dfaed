import { uniqueName } from '@tollgate/test-support';
import { createLimiter } from '@tollgate/limiter';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runFleet, total } from './fleet/run-fleet.js';
import type { CallShape, WorkerConfig } from './fleet/protocol.js';
import { API_KEY, MODEL, clientFor, request, startStack, type Stack } from './support.js';

/** Cross-process runs: each spawns real Node processes, so give them room on a slow machine. */
const FLEET_TEST_TIMEOUT_MS = 90_000;
const PROCESSES = 4;
const SHAPES: CallShape[] = [
  { promptChars: 40, maxTokens: 64 },
  { promptChars: 400, maxTokens: 128 },
  { promptChars: 120, maxTokens: 32 },
];

let stack: Stack;
beforeAll(async () => {
  stack = await startStack();
});
afterAll(() => stack.close());

function fleetConfigs(name: string, perProcess: Omit<WorkerConfig, 'redisUrl' | 'limiterName' | 'mockUrl' | 'apiKey' | 'model' | 'shapeOffset'>): WorkerConfig[] {
  return Array.from({ length: PROCESSES }, (_, index) => ({
    redisUrl: stack.redis.url,
    limiterName: name,
    mockUrl: stack.mock.url,
    apiKey: API_KEY,
    model: MODEL,
    shapeOffset: index,
    ...perProcess,
  }));
}

describe('a fleet of processes', () => {
  it(
    '(1) 4 × 16 callers, 600 mixed calls, limit 5 on both sides: all succeed, upstream never above 5, no 429',
    async () => {
      stack.mock.reset();
      stack.mock.setConfig({ limits: { concurrency: 5 }, latency: { timeToFirstTokenMs: { kind: 'uniform', minMs: 2, maxMs: 15 }, perTokenMs: 0.2 } });
      const results = await runFleet(
        fleetConfigs(uniqueName('fleet-1'), { limiter: { concurrency: 5 }, calls: 150, parallel: 16, kinds: ['create', 'stream', 'messages.stream'], shapes: SHAPES }),
      );
      const stats = stack.mock.stats();
      console.log(`(1) mock max concurrency ${stats.maxConcurrent}, 429s ${stats.byStatus['429'] ?? 0}, answers ${JSON.stringify(stats.byStatus)}`);
      expect(results.flatMap((result) => result.errors)).toEqual([]);
      expect(total(results, (result) => result.succeeded)).toBe(600);
      expect(stats.maxConcurrent).toBeLessThanOrEqual(5);
      expect(stats.byStatus['429'] ?? 0).toBe(0);
      expect(stats.byStatus['200']).toBe(600);
    },
    FLEET_TEST_TIMEOUT_MS,
  );

  it(
    '(2) Tollgate at 8, upstream at 4: all complete, the effective limit settles at ≤ 4, concurrency 429s < 10%',
    async () => {
      stack.mock.reset();
      stack.mock.setConfig({ limits: { concurrency: 4 }, latency: { timeToFirstTokenMs: { kind: 'uniform', minMs: 5, maxMs: 20 }, perTokenMs: 0.2 } });
      const name = uniqueName('fleet-2');
      const results = await runFleet(fleetConfigs(name, { limiter: { concurrency: 8 }, calls: 150, parallel: 16, kinds: ['create', 'stream', 'messages.stream'], shapes: SHAPES }));
      const observer = createLimiter({ redis: stack.redis.url, name, concurrency: 8 });
      const snapshot = await observer.snapshot();
      await observer.close();
      const stats = stack.mock.stats();
      const limited = stats.rateLimited.concurrency;
      console.log(
        `(2) concurrency 429s ${limited} of 600 calls (${((100 * limited) / 600).toFixed(1)}%), effective concurrency at the end ${snapshot.concurrency}, ` +
          `decreases ${total(results, (r) => r.stats.concurrencyDecreases)}, raises ${total(results, (r) => r.stats.concurrencyRaises)}, mock max concurrency ${
            stats.maxConcurrent
          }`,
      );
      expect(results.flatMap((result) => result.errors)).toEqual([]);
      expect(total(results, (result) => result.succeeded)).toBe(600);
      expect(snapshot.concurrency).toBeLessThanOrEqual(4);
      expect(limited).toBeLessThan(60);
      expect(total(results, (result) => result.stats.rateLimited.concurrency)).toBe(limited);
    },
    FLEET_TEST_TIMEOUT_MS,
  );

  it(
    '(3) the upstream RPM runs dry: the fleet pauses at its first 429; no call granted after that meets a 429',
    async () => {
      const rpm = 600; // 10 per second
      const burst = 10;
      stack.mock.reset();
      stack.mock.setConfig({ limits: { rpm, burst: { rpm: burst } }, latency: { timeToFirstTokenMs: 5 } });
      const results = await runFleet(
        fleetConfigs(uniqueName('fleet-3'), {
          // the fleet knows the account's rate and burst, and keeps its bucket ~100 ms of refill below the burst (the
          // README's advice: a call reaches the server a few ms after its grant); what it cannot know is the outsider
          limiter: { concurrency: PROCESSES, rates: { requests: { limit: rpm, intervalMs: 60_000, burst: burst - 1 } } },
          calls: 12,
          parallel: 4,
          kinds: ['create', 'stream'],
          shapes: SHAPES,
          warmUpCalls: 1, // a cold process is slow to send its first calls, and the bucket refills meanwhile
        }),
        async () => {
          // another client of the same key (outside Tollgate) empties the RPM bucket just before the warm fleet starts:
          // the fleet's first calls meet 429s, and the first one must stop the whole fleet
          const outsider = clientFor(stack.mock.url);
          for (let sent = 0; sent < 4 * burst; sent += 1) {
            const { response } = await outsider.messages.create(request()).withResponse();
            if (response.headers.get('anthropic-ratelimit-requests-remaining') === '0') break;
          }
        },
      );
      const stats = stack.mock.stats();
      const perProcess = results.map((result) => result.stats.rateLimited.rate);
      // Redis time: the first pause took effect (the fleet knew), and the grant of each permit whose call met a 429
      const firstPauseAtMs = Math.min(...results.flatMap((result) => result.pausedAtMs));
      const limitedGrants = results.flatMap((result) => result.rateLimitedGrantedAtMs);
      const grantedAfterPause = limitedGrants.filter((grantedAtMs) => !(grantedAtMs <= firstPauseAtMs));
      console.log(
        `(3) RPM 429s ${stats.rateLimited.requests} (per process ${perProcess.join(', ')}), answers ${JSON.stringify(stats.byStatus)}; ` +
          `permits granted ms before the first pause: ${limitedGrants.map((grantedAtMs) => firstPauseAtMs - grantedAtMs).join(', ')}`,
      );
      expect(results.flatMap((result) => result.errors)).toEqual([]);
      expect(total(results, (result) => result.succeeded)).toBe(48);
      expect(stats.rateLimited.requests).toBeGreaterThanOrEqual(1); // the limit was hit
      expect(total(results, (result) => result.stats.rateLimited.rate)).toBe(stats.rateLimited.requests);
      expect(limitedGrants).toHaveLength(stats.rateLimited.requests);
      // Only calls already granted when the first pause reached Redis can meet a 429 (those in flight, and under load
      // those granted while the first 429 travelled back): once the fleet knows, it waits and then sends at the
      // upstream's pace, so no permit granted after the first pause meets a 429.
      expect(grantedAfterPause).toEqual([]);
    },
    FLEET_TEST_TIMEOUT_MS,
  );
});
