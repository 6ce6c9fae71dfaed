import { APIUserAbortError } from '@anthropic-ai/sdk';
import { limiterKeys, type Limiter, type LimiterEvents } from '@tollgate/limiter';
import type { MockAnthropic } from '@tollgate/mock-anthropic';
import { thrown } from '@tollgate/test-support';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { limitAnthropic } from '../src/index.js';
import { clientFor, expectAllEnded, request, startStack, type Stack } from './support.js';

/** The shortest lease the limiter allows; heartbeats every third of it. */
const LEASE_TTL_MS = 500;
/** Far longer than the lease, so only the lost lease can end the call before its answer. */
const SLOW_HEADERS_MS = 30_000;
const BACKOFF_BASE_MS = 20;
/** Bound on waiting for the mock to have the call in flight (a deadline, not a measurement). */
const UPSTREAM_WAIT_MS = 5_000;

let stack: Stack;
let mock: MockAnthropic;
let limiter: Limiter;
/** A test's own connection: deletes a lease behind the limiter's back, as an expiry or another process would. */
let admin: Redis;
let released: Array<LimiterEvents['released'][0]>;
let lost: Array<LimiterEvents['leaseLost'][0]>;

beforeAll(async () => {
  stack = await startStack();
  mock = stack.mock;
  limiter = await stack.limiter({ concurrency: 2, leaseTtlMs: LEASE_TTL_MS });
  limiter.on('released', (event) => released.push(event));
  limiter.on('leaseLost', (event) => lost.push(event));
  admin = new Redis(stack.redis.url);
});
afterAll(async () => {
  admin.disconnect();
  await stack.close();
});
beforeEach(() => {
  stack.resetMock();
  released = [];
  lost = [];
});

/** Once the upstream holds the call, removes its lease from Redis; returns the lease's id. */
async function deleteLeaseMidCall(): Promise<string> {
  await vi.waitFor(() => expect(mock.stats().inFlight).toBe(1), { timeout: UPSTREAM_WAIT_MS });
  const { leases } = await limiter.snapshot();
  expect(leases).toHaveLength(1);
  const leaseId = leases[0]?.id ?? '';
  expect(await admin.zrem(limiterKeys(limiter.name).leases, leaseId)).toBe(1);
  return leaseId;
}

describe('a lease lost while its call is in flight', () => {
  it('G7: aborts the SDK call through permit.signal; with no attempts left the caller sees the abort; released once', async () => {
    const anthropic = limitAnthropic(clientFor(mock.url), limiter, { maxAttempts: 1 });
    mock.setConfig({ faults: { slowHeadersMs: SLOW_HEADERS_MS } });
    const outcome = thrown(() => anthropic.messages.create(request(), { headers: { 'x-mock-fault': 'slow_headers' } }));
    const leaseId = await deleteLeaseMidCall();
    const error = await outcome;
    expect(error).toBeInstanceOf(APIUserAbortError);
    expect(lost).toEqual([{ permitId: leaseId }]);
    expect(released).toEqual([{ permitId: leaseId, leaseLost: true }]);
    expect(anthropic.stats().attempts).toBe(1);
    expect(mock.stats().messages).toBe(1);
    await expectAllEnded(limiter, mock);
  });

  it('a stream waiting for its headers: the same', async () => {
    const anthropic = limitAnthropic(clientFor(mock.url), limiter, { maxAttempts: 1 });
    mock.setConfig({ faults: { slowHeadersMs: SLOW_HEADERS_MS } });
    const outcome = thrown(() => anthropic.messages.stream(request(), { headers: { 'x-mock-fault': 'slow_headers' } }).finalMessage());
    const leaseId = await deleteLeaseMidCall();
    expect(await outcome).toBeInstanceOf(APIUserAbortError);
    expect(released).toEqual([{ permitId: leaseId, leaseLost: true }]);
    await expectAllEnded(limiter, mock);
  });

  it('with attempts left, the call is retried under a fresh permit and succeeds', async () => {
    const anthropic = limitAnthropic(clientFor(mock.url), limiter, { backoffBaseMs: BACKOFF_BASE_MS });
    mock.setConfig({ faults: { slowHeadersMs: SLOW_HEADERS_MS, schedule: [{ nth: 1, fault: 'slow_headers' }] } });
    const call = anthropic.messages.create(request());
    const leaseId = await deleteLeaseMidCall();
    const message = await call;
    expect(message.type).toBe('message');
    expect(lost).toEqual([{ permitId: leaseId }]);
    expect(released).toHaveLength(2);
    expect(released[0]).toEqual({ permitId: leaseId, leaseLost: true });
    expect(released[1]).toMatchObject({ leaseLost: false });
    expect(released[1]?.permitId).not.toBe(leaseId);
    expect(anthropic.stats().attempts).toBe(2);
    expect(mock.stats().messages).toBe(2);
    await expectAllEnded(limiter, mock);
  });
});
