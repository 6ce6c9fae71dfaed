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
      const results = await runFleet(
        fleetConfigs(name, { limiter: { concurrency: 8 }, calls: 150, parallel: 16, kinds: ['create', 'stream', 'messages.stream'], shapes: SHAPES }),
      );
      const observer = createLimiter({ redis: stack.redis.url, name, concurrency: 8 });
      const snapshot = await observer.snapshot();
      await observer.close();
      const stats = stack.mock.stats();
      const limited = stats.rateLimited.concurrency;
      console.log(
        `(2) concurrency 429s ${limited} of 600 calls (${((100 * limited) / 600).toFixed(1)}%), effective concurrency at the end ${snapshot.concurrency}, ` +
          `decreases ${total(results, (r) => r.stats.concurrencyDecreases)}, raises ${total(results, (r) => r.stats.concurrencyRaises)}, mock max concurrency ${stats.maxConcurrent}`,
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
    '(3) the upstream RPM runs dry: the fleet pauses; no 429 burst, at most as many 429s as processes',
    async () => {
      const rpm = 600; // 10 per second
      const burst = 10;
      stack.mock.reset();
      stack.mock.setConfig({ limits: { rpm, burst: { rpm: burst } }, latency: { timeToFirstTokenMs: 5 } });
      const results = await runFleet(
        fleetConfigs(uniqueName('fleet-3'), {
          // the fleet's guess of the burst is 3× the account's (the burst is undocumented): the fleet runs into the
          // upstream's limit whatever the timing of its start, and its first 429 must stop the whole fleet
          limiter: { concurrency: PROCESSES, rates: { requests: { limit: rpm, intervalMs: 60_000, burst: 3 * burst } } },
          calls: 12,
          parallel: 4,
          kinds: ['create', 'stream'],
          shapes: SHAPES,
        }),
        async () => {
          // another client of the same key (outside Tollgate) empties the RPM bucket just before the fleet starts
          const outsider = clientFor(stack.mock.url);
          for (let sent = 0; sent < burst; sent += 1) await outsider.messages.create(request());
        },
      );
      const stats = stack.mock.stats();
      const perProcess = results.map((result) => result.stats.rateLimited.rate);
      console.log(`(3) RPM 429s ${stats.rateLimited.requests} (per process ${perProcess.join(', ')}), answers ${JSON.stringify(stats.byStatus)}`);
      expect(results.flatMap((result) => result.errors)).toEqual([]);
      expect(total(results, (result) => result.succeeded)).toBe(48);
      expect(stats.rateLimited.requests).toBeGreaterThanOrEqual(1); // the limit was hit
      // Only calls already in flight when the first 429 came back can hit it: at most the fleet's concurrency (4),
      // one per process on average; after the pause the fleet sends at the upstream's pace.
      expect(stats.rateLimited.requests).toBeLessThanOrEqual(PROCESSES);
      expect(total(results, (result) => result.stats.rateLimited.rate)).toBe(stats.rateLimited.requests);
    },
    FLEET_TEST_TIMEOUT_MS,
  );
});
