import Anthropic from '@anthropic-ai/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stopAllServices } from '../support/processes.js';
import { GATEWAY_TOKEN, SETTLE_TIMEOUT_MS, jobRecord, messagesRequest, settle, startFleet, type Fleet } from '../support/fleet.js';

/** The account's concurrency limit, enforced by the mock and known to the fleet. */
const CONCURRENCY = 5;
const WORKERS = 4;
/** 460 jobs through the queue and 40 requests through the gateway: 500 in all. */
const QUEUE_JOBS = 460;
const GATEWAY_REQUESTS = 40;
const PRIORITIES = 10;
/** Output sizes cycle through these, so calls last from ~30 ms to ~100 ms upstream. */
const MAX_TOKENS = [8, 16, 32, 64] as const;

let fleet: Fleet;

describe('the fleet under a mixed load (DESIGN §1, issue 6)', () => {
  beforeAll(async () => {
    fleet = await startFleet({ workers: WORKERS, concurrency: CONCURRENCY, gateway: true, mockEnv: { MOCK_LATENCY_MS: '20', MOCK_PER_TOKEN_MS: '1' } });
  });

  afterAll(async () => {
    await fleet?.close();
    await stopAllServices();
  });

  it(`G1, G2, G4: completes ${QUEUE_JOBS + GATEWAY_REQUESTS} mixed jobs inside the limit with no 429, priority 0 before 9`, { timeout: SETTLE_TIMEOUT_MS + 30_000 }, async () => {
    const startedMs = performance.now();
    const jobs = Array.from({ length: QUEUE_JOBS }, (_, i) => ({
      i,
      priority: i % PRIORITIES,
      stream: i % 2 === 1,
      maxTokens: MAX_TOKENS[i % MAX_TOKENS.length] ?? MAX_TOKENS[0],
    }));
    const ids = await Promise.all(jobs.map((job) => fleet.producer.enqueue(messagesRequest(job.i, job), { priority: job.priority, idempotencyKey: `accept-${job.i}` })));
    const client = new Anthropic({ baseURL: fleet.gatewayUrl, apiKey: GATEWAY_TOKEN, maxRetries: 0, timeout: SETTLE_TIMEOUT_MS });
    const viaGateway = Promise.all(
      Array.from({ length: GATEWAY_REQUESTS }, async (_, i) => {
        const { stream: _stream, ...request } = messagesRequest(QUEUE_JOBS + i);
        const options = { headers: { 'tollgate-priority': String(i % PRIORITIES) } };
        return i % 2 === 0 ? client.messages.create(request, options) : client.messages.stream(request, options).finalMessage();
      }),
    );
    const [outcomes, gatewayAnswers] = await Promise.all([settle(fleet.producer, ids), viaGateway]);
    const wallMs = performance.now() - startedMs;

    const records = await Promise.all(jobs.map(async (job, index) => ({ ...job, ...(await jobRecord(fleet.producer, ids[index] ?? '')) })));
    const meanLatencyMs = (priority: number) => {
      const mine = records.filter((record) => record.priority === priority);
      return mine.reduce((sum, record) => sum + (record.finishedAtMs - record.createdAtMs), 0) / mine.length;
    };
    const stats = await fleet.mockStats();
    const counts = await fleet.producer.counts();
    console.log(
      `acceptance: ${outcomes.completed.length}/${QUEUE_JOBS} queue jobs + ${gatewayAnswers.length}/${GATEWAY_REQUESTS} gateway requests in ${Math.round(wallMs)} ms; ` +
        `mock max concurrent ${stats.maxConcurrent}/${CONCURRENCY}, 429s ${stats.byStatus['429'] ?? 0}, calls ${stats.messages}; ` +
        `mean enqueue→done: priority 0 ${Math.round(meanLatencyMs(0))} ms, priority 9 ${Math.round(meanLatencyMs(9))} ms`,
    );

    expect(outcomes.lost).toEqual([]);
    expect([...outcomes.failed.keys()]).toEqual([]);
    expect(outcomes.completed).toHaveLength(QUEUE_JOBS);
    expect(gatewayAnswers.every((answer) => answer.type === 'message')).toBe(true);
    expect(counts).toMatchObject({ waiting: 0, prioritized: 0, delayed: 0, active: 0, failed: 0 });
    expect(stats.maxConcurrent).toBeLessThanOrEqual(CONCURRENCY);
    expect(stats.byStatus['429'] ?? 0).toBe(0);
    expect(stats.messages).toBe(QUEUE_JOBS + GATEWAY_REQUESTS); // no call was made twice
    expect(meanLatencyMs(0)).toBeLessThan(meanLatencyMs(9));
  });
});
