import * as anthropicModule from '@tollgate/anthropic';
import * as limiterModule from '@tollgate/limiter';
import * as queueModule from '@tollgate/queue';
import { startRedis, uniqueName, type TestRedis } from '@tollgate/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { asExpected, badInputs, type Case } from './error-cases.js';

/**
 * Issue 17: one error tree. The public API of the three packages, called with bad inputs (fixtures/bad-inputs.cjs),
 * throws a TollgateError of the documented class with its stable code, every time. The same walk runs on the packed
 * tarballs from an ES module and from CommonJS (packed-tarballs.test.ts).
 */

let redis: TestRedis;
let cases: Case[];

beforeAll(async () => {
  redis = await startRedis();
  cases = await badInputs({
    limiterModule,
    anthropicModule,
    queueModule,
    env: { REDIS_URL: redis.url, MODEL: 'claude-haiku-4-5', LIMITER_NAME: uniqueName('errors'), QUEUE_NAME: uniqueName('errors') },
  });
}, 60_000);
afterAll(() => redis?.close());

describe('the public API with bad inputs (sources)', () => {
  it('walks every package: limiter, anthropic and queue cases each ran', () => {
    expect(cases.length).toBeGreaterThanOrEqual(30);
    const codes = new Set(cases.map((result) => result.expected.code));
    for (const code of ['INVALID_CONFIG', 'INVALID_ARGUMENT', 'INVALID_REQUEST', 'QUEUE_UNAVAILABLE', 'JOB_WAIT_TIMEOUT', 'JOB_LOST', 'UPSTREAM_ERROR', 'LIMITER_UNAVAILABLE'])
      expect(codes).toContain(code);
  });

  it('every error is a TollgateError of the documented class with its stable code', () => {
    expect(cases.map(({ message: _message, ...result }) => result)).toEqual(cases.map(asExpected));
  });

  it('a bad option names its field and its value', () => {
    const byCall = new Map(cases.map((result) => [result.call, result.message ?? '']));
    expect(byCall.get('acquire({ priority: 10 })')).toMatch(/^priority: .*\(got 10\)/);
    expect(byCall.get('enqueue(request, { priority: 10 })')).toMatch(/priority: .*\(got 10\)/);
    expect(byCall.get('wait("not-a-job-id")')).toMatch(/^jobId: .*\(got "not-a-job-id"\)/);
    expect(byCall.get('wait(id, { timeoutMs: -1 })')).toMatch(/^timeoutMs: .*\(got -1\)/);
    expect(byCall.get('createProducer({ queue: "a:b" })')).toMatch(/queue: .*\(got "a:b"\)/);
    expect(byCall.get('createWorker({ concurrency: 0 })')).toMatch(/concurrency: .*\(got 0\)/);
    expect(byCall.get('withPriority(10)')).toMatch(/^priority: .*\(got 10\)/);
  });
});
