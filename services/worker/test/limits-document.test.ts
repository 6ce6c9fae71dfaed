import { countTokensRates, documentFromEnv, poolRates, resolvePool, ENV_POOL_NAME } from '@tollgate/config';
import { LEASE_TTL_MS_DEFAULT } from '@tollgate/limiter';
import { countTokensLimiterOptionsFromEnv, limiterOptionsFromEnv, parseEnv, requireLimit, tollgateEnvSchema, type TollgateEnv } from '@tollgate/queue/internal';
import { describe, expect, it } from 'vitest';
import { parseWorkerEnv } from '../src/index.js';

const WORKER = { ANTHROPIC_API_KEY: 'sk-ant-secret-value', REDIS_URL: 'redis://127.0.0.1:6379' };

/** The limit variables in the combinations a fleet uses them. */
const LIMITS: Array<Record<string, string>> = [
  { TOLLGATE_CONCURRENCY: '4' },
  { TOLLGATE_RPM: '50' },
  { TOLLGATE_CONCURRENCY: '8', TOLLGATE_RPM: '4000', TOLLGATE_ITPM: '2000000', TOLLGATE_OTPM: '400000' },
  { TOLLGATE_ITPM: '30000', TOLLGATE_OTPM: '8000', TOLLGATE_COUNT_TOKENS_RPM: '100', TOLLGATE_LEASE_TTL_MS: '2000' },
  { TOLLGATE_NAME: 'second-account', TOLLGATE_CONCURRENCY: '2', TOLLGATE_COUNT_TOKENS_RPM: '2000', TOLLGATE_HEARTBEAT_MS: '500' },
];

/** The document built from `env` states exactly the limiter options the services build from it today. */
function expectSameLimits(env: TollgateEnv & { ANTHROPIC_BASE_URL?: string }): void {
  const document = documentFromEnv(env);
  expect(Object.keys(document.accounts)).toEqual([env.TOLLGATE_NAME]);
  expect(document.tenants).toEqual({});
  const account = document.accounts[env.TOLLGATE_NAME]!;
  const options = limiterOptionsFromEnv(env);
  expect(account.apiKeyEnv).toBe('ANTHROPIC_API_KEY');
  expect(account.baseUrl).toBe(env.ANTHROPIC_BASE_URL ?? 'https://api.anthropic.com');
  expect(account.concurrency).toBe(options.concurrency);
  expect(Object.keys(account.pools)).toEqual([ENV_POOL_NAME]);
  expect(poolRates(account.pools[ENV_POOL_NAME]!)).toEqual(options.rates ?? {});
  expect(account.leaseTtlMs).toBe(options.leaseTtlMs ?? LEASE_TTL_MS_DEFAULT);
  expect(countTokensRates(account)).toEqual(countTokensLimiterOptionsFromEnv(env)?.rates ?? {});
  for (const model of ['claude-sonnet-4-6', 'claude-haiku-4-5', 'claude-opus-4-1']) expect(resolvePool(account, model, env.TOLLGATE_NAME).pool).toBe(ENV_POOL_NAME);
}

describe('the environment shorthand as a limits document', () => {
  it.each(LIMITS)("the worker's environment %o", (limits) => {
    expectSameLimits(parseWorkerEnv({ ...WORKER, ...limits }));
  });

  it("the worker's base URL becomes the account's", () => {
    const env = parseWorkerEnv({ ...WORKER, TOLLGATE_CONCURRENCY: '4', ANTHROPIC_BASE_URL: 'http://127.0.0.1:4000' });
    expectSameLimits(env);
    expect(documentFromEnv(env).accounts.anthropic?.baseUrl).toBe('http://127.0.0.1:4000');
  });

  it.each(LIMITS)("the gateway's shared variables %o (no base URL)", (limits) => {
    expectSameLimits(parseEnv(requireLimit(tollgateEnvSchema), { REDIS_URL: WORKER.REDIS_URL, ...limits }));
  });

  it('an environment with no limit is refused, as the services refuse it', () => {
    expect(() => documentFromEnv({ TOLLGATE_NAME: 'anthropic' })).toThrow(
      /the environment \(TOLLGATE_\*\) is invalid: accounts\.anthropic\.concurrency: set concurrency, a pool limit/,
    );
  });
});
