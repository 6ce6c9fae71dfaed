/**
 * A worker's metrics for an account with pools (DESIGN §9): its own counters carry pool `*` (all the account's
 * pools), the fleet gauges one series per pool; rendered from a real limiter and queue on a real Redis.
 */
import { createLimiter } from '@tollgate/limiter';
import { createProducer } from '@tollgate/queue';
import { startRedis, uniqueName, type TestRedis } from '@tollgate/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ServiceMetrics } from '../src/metrics.js';

let redis: TestRedis;

beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis.close();
});

describe('ServiceMetrics with pools', () => {
  it('labels its counters pool "*" and the fleet gauges by pool', async () => {
    const name = uniqueName('worker-pools');
    const perMinute = (limit: number) => ({ limit, intervalMs: 60_000 });
    const limiter = createLimiter({ redis: redis.url, name, concurrency: 4, pools: { sonnet: { requests: perMinute(50) }, haiku: { requests: perMinute(500) } } });
    const producer = createProducer({ redis: redis.url, queue: uniqueName('worker-pools-queue') });
    try {
      await limiter.ready();
      const metrics = new ServiceMetrics();
      const counters = metrics.addAccount(limiter, producer);
      const permit = await limiter.acquire({ pool: 'sonnet' });
      counters.upstreamAnswered('200');
      const text = await metrics.render();
      await permit.release();
      const account = `account="${name}"`;
      for (const line of [
        `tollgate_upstream_requests_total{${account},pool="*",status="200"} 1`,
        `tollgate_lease_lost_total{${account},pool="*"} 0`,
        `tollgate_acquire_wait_seconds_count{${account},pool="*"} 1`,
        `tollgate_permits_held{${account},pool="*"} 1`,
        `tollgate_permits_in_flight{${account},pool="*"} 1`,
        `tollgate_bucket_capacity_tokens{${account},pool="sonnet",dimension="requests"} 50`,
        `tollgate_bucket_capacity_tokens{${account},pool="haiku",dimension="requests"} 500`,
        `tollgate_waiting{${account},pool="sonnet"} 0`,
        `tollgate_pause_remaining_seconds{${account},pool="haiku"} 0`,
      ]) {
        expect(text).toContain(line);
      }
      expect(text).not.toContain('pool="default"');
    } finally {
      await limiter.close();
      await producer.close();
    }
  });
});
