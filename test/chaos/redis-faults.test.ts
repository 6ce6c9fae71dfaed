import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stopAllServices } from '../support/processes.js';
import { GATEWAY_TOKEN, SETTLE_TIMEOUT_MS, eventually, messagesRequest, settle, startFleet, type Fleet } from '../support/fleet.js';

const CONCURRENCY = 5;
const WORKERS = 4;
const JOBS = 60;
/** The gateway's promise when Redis is gone (DESIGN §7). */
const GATEWAY_UNAVAILABLE_MS_MAX = 1_000;
/** Workers must take jobs again this soon after Redis is back with its AOF (DESIGN §7). */
const CONSUMING_AGAIN_MS_MAX = 5_000;
/** Calls outlast the restart without persistence, so that permits are held across it. */
const LONG_CALL_MS = 2_000;
/** How long the test watches for an upstream call while Redis is down. */
const QUIET_WATCH_MS = 2_000;

let fleet: Fleet;

async function enqueueJobs(tag: string, count = JOBS): Promise<string[]> {
  return Promise.all(Array.from({ length: count }, (_, i) => fleet.producer.enqueue(messagesRequest(i, { maxTokens: 8 }), { idempotencyKey: `${tag}-${i}`, priority: i % 10 })));
}

/** The producer (an app) fails fast while its connection comes back after a Redis fault; wait until it is back. */
async function producerReachable(): Promise<void> {
  expect(
    await eventually(
      () =>
        fleet.producer.counts().then(
          () => true,
          () => false,
        ),
      10_000,
    ),
  ).toBe(true);
}

describe('Redis faults (DESIGN §7 rows 3 to 5)', () => {
  beforeAll(async () => {
    fleet = await startFleet({ workers: WORKERS, concurrency: CONCURRENCY, gateway: true, appendonly: true, mockEnv: { MOCK_LATENCY_MS: '200' } });
  });

  afterAll(async () => {
    await fleet?.close();
    await stopAllServices();
  });

  it.each([
    ['frozen (SIGSTOP)', () => fleet.redis.pause(), () => fleet.redis.resume()],
    ['down (crashed)', () => fleet.redis.kill(), () => fleet.redis.start()],
  ] as const)('G8: Redis %s: the gateway answers 503 within 1 s and no upstream call starts', async (_kind, breakRedis, repair) => {
    const before = (await fleet.mockStats()).messages;
    await breakRedis();
    try {
      const timed = async (path: string, init?: RequestInit) => {
        const startedMs = performance.now();
        const response = await fetch(`${fleet.gatewayUrl}${path}`, init);
        await response.arrayBuffer();
        return { status: response.status, ms: performance.now() - startedMs };
      };
      const health = await timed('/health');
      const message = await timed('/v1/messages', {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-api-key': GATEWAY_TOKEN, 'anthropic-version': '2023-06-01' },
        body: JSON.stringify(messagesRequest(0)),
      });
      await new Promise((resolve) => setTimeout(resolve, QUIET_WATCH_MS));
      const after = (await fleet.mockStats()).messages;
      console.log(
        `Redis ${_kind}: /health ${health.status} in ${Math.round(health.ms)} ms, POST /v1/messages ${message.status} in ${Math.round(message.ms)} ms; upstream calls meanwhile ${
          after - before
        }`,
      );
      expect(health.status).toBe(503);
      expect(message.status).toBe(503);
      expect(health.ms).toBeLessThanOrEqual(GATEWAY_UNAVAILABLE_MS_MAX);
      expect(message.ms).toBeLessThanOrEqual(GATEWAY_UNAVAILABLE_MS_MAX);
      expect(after - before).toBe(0);
    } finally {
      await repair();
    }
  });

  it('G10: Redis restarted with AOF: workers consume again within 5 s, 0 lost, limit held', { timeout: SETTLE_TIMEOUT_MS + 30_000 }, async () => {
    await fleet.mockAdmin('reset');
    await producerReachable();
    const ids = await enqueueJobs('aof');
    expect(await eventually(async () => (await fleet.mockStats()).messages >= JOBS / 4, 30_000)).toBe(true);
    await fleet.redis.kill(); // a crash; the AOF (fsync always in tests) keeps every acknowledged write
    await fleet.redis.start();
    const backMs = performance.now();
    const callsAtRestart = (await fleet.mockStats()).messages;
    const consuming = await eventually(async () => (await fleet.mockStats()).messages > callsAtRestart, CONSUMING_AGAIN_MS_MAX * 4);
    const consumingAfterMs = performance.now() - backMs;
    const outcomes = await settle(fleet.producer, ids);
    const stats = await fleet.mockStats();
    console.log(
      `Redis AOF restart: first upstream call ${Math.round(consumingAfterMs)} ms after Redis answered again (bound ${CONSUMING_AGAIN_MS_MAX} ms); ` +
        `completed ${outcomes.completed.length}/${JOBS}, failed ${outcomes.failed.size}, lost ${outcomes.lost.length}; mock max concurrent ${
          stats.maxConcurrent
        }/${CONCURRENCY}, 429s ${stats.byStatus['429'] ?? 0}` +
        (outcomes.failed.size === 0 ? '' : `; first failure: ${[...outcomes.failed.values()][0]?.message ?? ''}`),
    );
    expect(consuming).toBe(true);
    expect(consumingAfterMs).toBeLessThanOrEqual(CONSUMING_AGAIN_MS_MAX);
    expect(outcomes.completed).toHaveLength(JOBS);
    expect(outcomes.lost).toEqual([]);
    expect(stats.maxConcurrent).toBeLessThanOrEqual(CONCURRENCY);
    expect(stats.byStatus['429'] ?? 0).toBe(0);
  });

  it('G1, G10: Redis restarted without persistence: leases re-registered, the limit still holds, workers resume', { timeout: SETTLE_TIMEOUT_MS + 30_000 }, async () => {
    await fleet.mockAdmin('config', { latency: { timeToFirstTokenMs: LONG_CALL_MS, perTokenMs: 0 } });
    await producerReachable();
    await enqueueJobs('before-wipe', CONCURRENCY * 2); // these die with the dataset: nothing can keep them
    expect(await eventually(async () => (await fleet.mockStats()).inFlight === CONCURRENCY, 30_000)).toBe(true);
    await fleet.mockAdmin('reset'); // max concurrent restarts from the calls in flight now
    await fleet.redis.restart({ keepData: false });
    await producerReachable();
    const ids = await enqueueJobs('after-wipe', JOBS / 3);
    const outcomes = await settle(fleet.producer, ids);
    const stats = await fleet.mockStats();
    console.log(
      `Redis restart without data: ${CONCURRENCY} calls in flight across it; after it ${outcomes.completed.length}/${ids.length} new jobs completed, lost ${outcomes.lost.length}; ` +
        `mock max concurrent ${stats.maxConcurrent}/${CONCURRENCY}, 429s ${stats.byStatus['429'] ?? 0}`,
    );
    expect(stats.maxConcurrent).toBeLessThanOrEqual(CONCURRENCY);
    expect(stats.byStatus['429'] ?? 0).toBe(0);
    expect(outcomes.completed).toHaveLength(ids.length);
    expect(outcomes.lost).toEqual([]);
  });
});
