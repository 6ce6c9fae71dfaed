import { createLimiter, limiterOptionsFor, readFleetLimits } from '@tollgate/limiter';
import { uniqueName } from '@tollgate/test-support';
import { describe, expect, it } from 'vitest';
import { APPLY_LOCK_KEY, COUNT_TOKENS_LIMITER_SUFFIX, accountLimiters, applyLimitsDocument, readStoredDocument, validateLimitsDocument } from '../src/index.js';
import { useRedis } from './support.js';

const redis = useRedis();

const documentFor = (account: string, concurrency: number) =>
  validateLimitsDocument(
    {
      accounts: {
        [account]: {
          apiKeyEnv: 'ANTHROPIC_API_KEY',
          concurrency,
          leaseTtlMs: 4_000,
          pools: { all: { models: ['*'], rpm: 600, itpm: 60_000, burst: { rpm: 20 } } },
          countTokens: { rpm: 120 },
        },
      },
    },
    'test',
  );

describe('applyLimitsDocument', () => {
  it("writes each account's limiter (Messages and count_tokens) and then the document, creating limiters no process has started yet", async () => {
    const account = uniqueName('apply');
    const applied = await applyLimitsDocument(redis.client, documentFor(account, 6));
    expect(applied).toMatchObject({ revision: 1, changed: true });
    expect(applied.limiters.map((limiter) => limiter.name)).toEqual([account, `${account}${COUNT_TOKENS_LIMITER_SUFFIX}`]);
    expect((await readFleetLimits(redis.client, account))?.limits).toEqual({
      schema: 1,
      concurrency: 6,
      rates: { requests: { limit: 600, intervalMs: 60_000, burst: 20 }, inputTokens: { limit: 60_000, intervalMs: 60_000, burst: null } },
      reserve: [],
      leaseTtlMs: 4_000,
    });
    expect((await readFleetLimits(redis.client, `${account}${COUNT_TOKENS_LIMITER_SUFFIX}`))?.limits.rates).toEqual({ requests: { limit: 120, intervalMs: 60_000, burst: null } });
    expect((await readStoredDocument(redis.client))?.document.accounts[account]?.concurrency).toBe(6);
  });

  it('a running limiter of the account runs with the applied limits, and keeps the reserve the document does not state', async () => {
    const account = uniqueName('apply-live');
    const limiter = createLimiter({ redis: redis.server.url, name: account, concurrency: 6, reserve: [{ maxPriority: 0, concurrency: 1 }], leaseTtlMs: 4_000, heartbeatMs: 100 });
    try {
      await limiter.ready();
      const applied = await applyLimitsDocument(redis.client, documentFor(account, 3));
      const version = applied.limiters.find((entry) => entry.name === account)?.version;
      await expect.poll(() => limiter.fleetLimits?.version, { timeout: 5_000 }).toBe(version);
      expect(limiter.fleetLimits?.limits.concurrency).toBe(3);
      expect(limiter.fleetLimits?.limits.reserve).toEqual([{ maxPriority: 0, concurrency: 1 }]);
    } finally {
      await limiter.close();
    }
  });

  it('an account with two pools runs one limiter with pools: a lane and a set of buckets per pool, the concurrency shared', async () => {
    const account = uniqueName('apply-pools');
    const document = validateLimitsDocument(
      {
        accounts: {
          [account]: {
            apiKeyEnv: 'ANTHROPIC_API_KEY',
            concurrency: 4,
            pools: { sonnet: { models: ['claude-sonnet-*'], rpm: 100, itpm: 50_000 }, haiku: { models: ['claude-haiku-*'], rpm: 200, burst: { rpm: 20 } } },
          },
        },
      },
      'test',
    );
    const [messages] = accountLimiters(document);
    expect(messages?.limits).toEqual({
      schema: 1,
      concurrency: 4,
      pools: ['haiku', 'sonnet'],
      rates: {
        'haiku/requests': { limit: 200, intervalMs: 60_000, burst: 20 },
        'sonnet/requests': { limit: 100, intervalMs: 60_000, burst: null },
        'sonnet/inputTokens': { limit: 50_000, intervalMs: 60_000, burst: null },
      },
      reserve: [],
      leaseTtlMs: expect.any(Number),
    });
    await applyLimitsDocument(redis.client, document);
    const fleet = await readFleetLimits(redis.client, account);
    expect(fleet?.limits.pools).toEqual(['haiku', 'sonnet']);
    // a limiter built from the fleet's limits joins them as they are, and takes from a pool
    const limiter = createLimiter(limiterOptionsFor(fleet!.limits, redis.client, account));
    try {
      const permit = await limiter.acquire({ pool: 'sonnet', cost: { inputTokens: 1_000 } });
      expect(permit.cost).toEqual({ 'sonnet/requests': 1, 'sonnet/inputTokens': 1_000 });
      await permit.release();
    } finally {
      await limiter.close();
    }
  });

  it("a tenant's budgets become its group's buckets (a day's over 24 h, a month's over 30 days), enforced by the account's limiter", async () => {
    const account = uniqueName('apply-budgets');
    const document = validateLimitsDocument(
      {
        accounts: { [account]: { apiKeyEnv: 'ANTHROPIC_API_KEY', concurrency: 4, pools: { all: { models: ['*'], otpm: 100_000 } } } },
        tenants: {
          capped: { tokenEnv: 'TOKEN_CAPPED', account, budgets: { outputTokensPerDay: 5_000, inputTokensPerMonth: 90_000, requestsPerDay: 10 } },
          free: { tokenEnv: 'TOKEN_FREE', account, weight: 2 },
        },
      },
      'test',
    );
    await applyLimitsDocument(redis.client, document);
    const day = 24 * 60 * 60 * 1000;
    expect((await readFleetLimits(redis.client, account))?.limits.groups).toEqual({
      capped: {
        weight: 1,
        buckets: {
          inputTokensPerMonth: { dimension: 'inputTokens', limit: 90_000, intervalMs: 30 * day },
          outputTokensPerDay: { dimension: 'outputTokens', limit: 5_000, intervalMs: day },
          requestsPerDay: { dimension: 'requests', limit: 10, intervalMs: day },
        },
      },
      free: { weight: 2 },
    });
    const limiter = createLimiter({ redis: redis.server.url, name: account, concurrency: 4 });
    try {
      await limiter.ready();
      await (await limiter.acquire({ group: 'capped', cost: { outputTokens: 5_000 } })).release();
      await expect(limiter.acquire({ group: 'capped', cost: { outputTokens: 1 } })).rejects.toMatchObject({
        code: 'BUDGET_EXCEEDED',
        group: 'capped',
        dimension: 'outputTokensPerDay',
      });
      await (await limiter.acquire({ group: 'free', cost: { outputTokens: 50_000 } })).release();
    } finally {
      await limiter.close();
    }
  });

  it('two applies at once never interleave: one holds the lock, the other is refused, and limiters and document agree with the one applied', async () => {
    const account = uniqueName('apply-race');
    const results = await Promise.allSettled([applyLimitsDocument(redis.client, documentFor(account, 2)), applyLimitsDocument(redis.client, documentFor(account, 5))]);
    const fulfilled = results.filter((result) => result.status === 'fulfilled');
    const rejected = results.flatMap((result) => (result.status === 'rejected' ? [result.reason as Error] : []));
    expect(fulfilled).toHaveLength(1);
    expect(rejected.map((error) => error.message)).toEqual([expect.stringMatching(/^another limits apply is running \(tollgate:document:apply-lock\)/)]);
    const concurrency = (await readStoredDocument(redis.client))?.document.accounts[account]?.concurrency;
    expect((await readFleetLimits(redis.client, account))?.limits.concurrency).toBe(concurrency);
    expect(await redis.client.exists(APPLY_LOCK_KEY)).toBe(0); // released
  });

  it('says which limiters it wrote: none for the document in force, the one whose limits drifted from it', async () => {
    const account = uniqueName('apply-drift');
    await applyLimitsDocument(redis.client, documentFor(account, 4));
    const again = await applyLimitsDocument(redis.client, documentFor(account, 4));
    expect(again.changed).toBe(false);
    expect(again.limiters.map((limiter) => limiter.changed)).toEqual([false, false]);
    const drift = createLimiter({
      redis: redis.server.url,
      name: account,
      concurrency: 1,
      rates: { requests: { limit: 5, intervalMs: 60_000 } },
      leaseTtlMs: 4_000,
      applyLimits: 'force',
    });
    await drift.ready();
    await drift.close();
    const back = await applyLimitsDocument(redis.client, documentFor(account, 4));
    expect(back.changed).toBe(false); // the stored document did not change
    expect(back.limiters.map((limiter) => limiter.changed)).toEqual([true, false]); // the drifted limiter was written back
    expect((await readFleetLimits(redis.client, account))?.limits.concurrency).toBe(4);
  });
});
