import { MAX_ATTEMPTS_DEFAULT } from '@tollgate/anthropic';
import { JOB_ATTEMPTS_DEFAULT } from '@tollgate/queue';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stopAllServices } from '../support/processes.js';
import { SETTLE_TIMEOUT_MS, messagesRequest, settle, startFleet, type Fleet } from '../support/fleet.js';

const CONCURRENCY = 5;
const WORKERS = 4;
const JOBS = 24;
/** Upstream calls one job may cause at most: BullMQ attempts × the client's attempts per job attempt. */
const CALLS_PER_JOB_MAX = JOB_ATTEMPTS_DEFAULT * MAX_ATTEMPTS_DEFAULT;

let fleet: Fleet;

/** Each row: the mock's `faults` section for one storm. */
const STORMS = [
  ['429 storm', { rate429: 0.3, retryAfterS: 1 }],
  ['529 overload', { rate529: 0.4 }],
  ['mid-stream errors', { rateMidStreamError: 0.3 }],
  ['connection resets', { rateReset: 0.2, rateResetMidStream: 0.2 }],
] as const;

describe('upstream faults (DESIGN §7 row 6)', () => {
  beforeAll(async () => {
    fleet = await startFleet({ workers: WORKERS, concurrency: CONCURRENCY, mockEnv: { MOCK_LATENCY_MS: '50', MOCK_SEED: '7' } });
  });

  afterAll(async () => {
    await fleet?.close();
    await stopAllServices();
  });

  it.each(STORMS)(
    'G10: %s: every job completed or failed with the upstream error, nothing lost, retries bounded',
    { timeout: SETTLE_TIMEOUT_MS + 30_000 },
    async (kind, faults) => {
      await fleet.mockAdmin('config', { faults });
      await fleet.mockAdmin('reset');
      const tag = kind.replace(/\W+/g, '-');
      const ids = await Promise.all(
        Array.from({ length: JOBS }, (_, i) =>
          fleet.producer.enqueue(messagesRequest(i, { stream: i % 2 === 0, maxTokens: 16 }), { idempotencyKey: `${tag}-${i}`, priority: i % 10 }),
        ),
      );
      const outcomes = await settle(fleet.producer, ids);
      const stats = await fleet.mockStats();
      await fleet.mockAdmin('config', { faults: {} });
      const failures = [...outcomes.failed.values()].map((error) => `${error.status} ${error.type}`);
      console.log(
        `${kind}: ${outcomes.completed.length} completed, ${outcomes.failed.size} failed [${[...new Set(failures)].join(', ')}], ${outcomes.lost.length} lost; ` +
          `${stats.messages} upstream calls for ${JOBS} jobs (bound ${JOBS * CALLS_PER_JOB_MAX}), injected faults ${JSON.stringify(stats.faults)}, ` +
          `real limit 429s ${stats.rateLimited.concurrency + stats.rateLimited.requests}, mock max concurrent ${stats.maxConcurrent}/${CONCURRENCY}`,
      );
      expect(outcomes.lost).toEqual([]);
      expect(outcomes.completed.length + outcomes.failed.size).toBe(JOBS);
      for (const error of outcomes.failed.values()) {
        expect(error.status).toBeGreaterThanOrEqual(400); // the upstream's status and error body, kept
        expect(error.body.error.type).not.toBe('');
      }
      expect(stats.messages).toBeLessThanOrEqual(JOBS * CALLS_PER_JOB_MAX);
      expect(Object.values(stats.faults).reduce((sum, count) => sum + count, 0)).toBeGreaterThan(0); // the storm happened
      expect(stats.rateLimited.concurrency).toBe(0); // retries still go through the limiter
      expect(stats.maxConcurrent).toBeLessThanOrEqual(CONCURRENCY);
    },
  );
});
