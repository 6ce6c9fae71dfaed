/**
 * A worker's metrics for an account with pools (DESIGN §9): its own counters carry pool `*` (all the account's
 * pools), the fleet gauges one series per pool; rendered from a real limiter and queue on a real Redis.
 */
import { createLimiter } from '@tollgate/limiter';
import type { TenantRateLimited } from '@tollgate/anthropic';
import { createProducer } from '@tollgate/queue';
import { OTHER_TENANTS_LABEL, TENANT_SERIES_MAX } from '@tollgate/queue/internal';
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
      const counters = metrics.addAccount(limiter, [producer]);
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

describe('ServiceMetrics per tenant', () => {
  it(`bounds the tenant label: beyond ${TENANT_SERIES_MAX} tenants, tokens and 429s add up under ${OTHER_TENANTS_LABEL}`, async () => {
    const name = uniqueName('worker-tenants');
    const limiter = createLimiter({ redis: redis.url, name, concurrency: 4 });
    const producer = createProducer({ redis: redis.url, queue: uniqueName('worker-tenants-queue') });
    try {
      await limiter.ready();
      const metrics = new ServiceMetrics();
      const account = metrics.addAccount(limiter, [producer]);
      const tenants = Array.from({ length: TENANT_SERIES_MAX + 2 }, (_, i) => `t${i}`);
      const usage = { input_tokens: 10, output_tokens: 3, cache_creation_input_tokens: 5, cache_read_input_tokens: 7 } as Parameters<typeof account.tenantCompleted>[2];
      for (const tenant of tenants) account.tenantCompleted(tenant, 'default', usage);
      account.tenantCompleted(null, 'default', usage);
      // the wrapper's cumulative counts, read at each scrape: only what is new is added
      let rateLimitedBy: TenantRateLimited[] = tenants.map((tenant) => ({ tenant, pool: null, kind: 'rpm', count: 1 }));
      account.follow(() => ({ rateLimitedBy }));
      await metrics.render();
      rateLimitedBy = rateLimitedBy.map((entry) => ({ ...entry, count: 2 }));
      const text = await metrics.render();
      const labels = (tenant: string) => `account="${name}",pool="default",tenant="${tenant}"`;
      for (const line of [
        `tollgate_tenant_granted_tokens_total{${labels('t0')},dimension="inputTokens"} 15`, // input + cache writes; reads are not settled
        `tollgate_tenant_granted_tokens_total{${labels('t0')},dimension="outputTokens"} 3`,
        `tollgate_tenant_granted_tokens_total{${labels('t98')},dimension="inputTokens"} 15`,
        `tollgate_tenant_rate_limited_total{${labels('t0')},kind="rpm"} 2`,
        `tollgate_tenant_rate_limited_total{${labels('t0')},kind="itpm"} 0`,
      ]) {
        expect(text.split('\n'), line).toContain(line);
      }
      // t0…t99 have names (100); t100, t101 and the no-tenant jobs come after the bound: one label for all three
      expect(text).not.toContain('tenant="t100"');
      expect(text).toContain(`tollgate_tenant_granted_tokens_total{${labels(OTHER_TENANTS_LABEL)},dimension="inputTokens"} ${3 * 15}`);
      expect(text).toContain(`tollgate_tenant_rate_limited_total{${labels(OTHER_TENANTS_LABEL)},kind="rpm"} ${2 * 2}`);
    } finally {
      await limiter.close();
      await producer.close();
    }
  });
});
