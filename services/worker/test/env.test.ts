import { EnvError, limiterOptionsFromEnv } from '@tollgate/queue/internal';
import { describe, expect, it } from 'vitest';
import { parseWorkerEnv } from '../src/index.js';

const VALID = { ANTHROPIC_API_KEY: 'sk-ant-secret-value', TOLLGATE_CONCURRENCY: '4', REDIS_URL: 'redis://127.0.0.1:6379' };

function envError(env: Record<string, string>): string {
  try {
    parseWorkerEnv(env);
  } catch (error) {
    expect(error).toBeInstanceOf(EnvError);
    return (error as EnvError).message;
  }
  throw new Error('expected an EnvError');
}

describe('worker environment', () => {
  it('applies defaults and builds the limiter options', () => {
    const env = parseWorkerEnv({ ...VALID, TOLLGATE_RPM: '50', TOLLGATE_OTPM: '8000', TOLLGATE_LEASE_TTL_MS: '2000' });
    expect(env).toMatchObject({ WORKER_CONCURRENCY: 16, METRICS_PORT: 9464, TOLLGATE_NAME: 'anthropic', TOLLGATE_QUEUE: 'messages', LOG_LEVEL: 'info', WORKER_ESTIMATE: 'local' });
    expect(parseWorkerEnv({ ...VALID, WORKER_ESTIMATE: 'count_tokens' }).WORKER_ESTIMATE).toBe('count_tokens');
    expect(limiterOptionsFromEnv(env)).toEqual({
      redis: VALID.REDIS_URL,
      name: 'anthropic',
      concurrency: 4,
      rates: { requests: { limit: 50, intervalMs: 60_000 }, outputTokens: { limit: 8_000, intervalMs: 60_000 } },
      leaseTtlMs: 2_000,
    });
  });

  it.each([
    [{ TOLLGATE_RPM: 'abc' }, /^TOLLGATE_RPM="abc" is invalid: /],
    [{ WORKER_CONCURRENCY: '0' }, /^WORKER_CONCURRENCY="0" is invalid: /],
    [{ METRICS_PORT: '70000' }, /^METRICS_PORT="70000" is invalid: /],
    [{ REDIS_URL: 'localhost:6379' }, /^REDIS_URL="localhost:6379" is invalid: expected a redis:/],
    [{ REDIS_CLUSTER_NODES: 'redis-1,redis-2' }, /^REDIS_CLUSTER_NODES="redis-1,redis-2" is invalid: expected host:port,host:port/],
    [{ ANTHROPIC_BASE_URL: 'ftp://x' }, /^ANTHROPIC_BASE_URL="ftp:\/\/x" is invalid: /],
    [{ LOG_LEVEL: 'loud' }, /^LOG_LEVEL="loud" is invalid: /],
    [{ WORKER_ESTIMATE: 'remote' }, /^WORKER_ESTIMATE="remote" is invalid: /],
    [{ TOLLGATE_NAME: 'has space' }, /^TOLLGATE_NAME="has space" is invalid: /],
    [{ TOLLGATE_APPLY_LIMITS: 'yes' }, /^TOLLGATE_APPLY_LIMITS="yes" is invalid: expected 0 or 1/],
  ])('%o stops the start with a message naming the variable', (override, message) => {
    expect(envError({ ...VALID, ...override })).toMatch(message);
  });

  it("TOLLGATE_APPLY_LIMITS=1 makes the process write its limits as the fleet's at start; unset or 0 adopts the fleet's", () => {
    expect(limiterOptionsFromEnv(parseWorkerEnv({ ...VALID, TOLLGATE_APPLY_LIMITS: '1' }))).toMatchObject({ applyLimits: 'force' });
    expect(limiterOptionsFromEnv(parseWorkerEnv({ ...VALID, TOLLGATE_APPLY_LIMITS: '0' }))).not.toHaveProperty('applyLimits');
    expect(limiterOptionsFromEnv(parseWorkerEnv(VALID))).not.toHaveProperty('applyLimits');
  });

  it('requires the API key and at least one limit, and never shows the key', () => {
    expect(envError({ TOLLGATE_CONCURRENCY: '4' })).toMatch(/ANTHROPIC_API_KEY=unset is invalid/);
    expect(envError({ ANTHROPIC_API_KEY: 'k' })).toMatch(/TOLLGATE_CONCURRENCY=unset is invalid: set at least one of/);
    const message = envError({ ...VALID, ANTHROPIC_API_KEY: '', TOLLGATE_RPM: 'x' });
    expect(message).toMatch(/ANTHROPIC_API_KEY="\*\*\*" is invalid/);
    expect(message).not.toContain(VALID.ANTHROPIC_API_KEY);
  });
});
