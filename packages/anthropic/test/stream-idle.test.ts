import { APIConnectionTimeoutError } from '@anthropic-ai/sdk';
import type { Limiter } from '@tollgate/limiter';
import type { MockAnthropic } from '@tollgate/mock-anthropic';
import { thrown } from '@tollgate/test-support';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { limitAnthropic, StreamIdleTimeoutError, type LimitedAnthropic } from '../src/index.js';
import { clientFor, expectAllEnded, request, startStack, type Stack } from './support.js';

/** Short, so a stalled stream fails fast; the mock's stall (60 s) is far longer, so the timer always decides. */
const STREAM_IDLE_TIMEOUT_MS = 300;
const BACKOFF_BASE_MS = 20;
/** Enough deltas that some reach the caller before the mock stalls halfway. */
const LONG_ANSWER = { 'x-mock-output-tokens': '40' };
/** One delta only: the mock stalls before it, so no text reaches the caller. */
const ONE_DELTA_ANSWER = { 'x-mock-output-tokens': '1' };

let stack: Stack;
let mock: MockAnthropic;
let limiter: Limiter;
let anthropic: LimitedAnthropic;

beforeAll(async () => {
  stack = await startStack();
  mock = stack.mock;
  limiter = await stack.limiter({ concurrency: 2 });
  anthropic = limitAnthropic(clientFor(mock.url), limiter, { streamIdleTimeoutMs: STREAM_IDLE_TIMEOUT_MS, backoffBaseMs: BACKOFF_BASE_MS });
});
afterAll(() => stack.close());
beforeEach(() => stack.resetMock());

function expectIdleTimeout(error: unknown): void {
  expect(error).toBeInstanceOf(StreamIdleTimeoutError);
  expect(error).toBeInstanceOf(APIConnectionTimeoutError); // the SDK's own class: callers' timeout handling applies
  expect((error as StreamIdleTimeoutError).code).toBe('STREAM_IDLE_TIMEOUT');
  expect((error as StreamIdleTimeoutError).idleMs).toBe(STREAM_IDLE_TIMEOUT_MS);
}

describe('a stalled stream after text reached the caller', () => {
  it('create({ stream: true }): aborted after streamIdleTimeoutMs, not retried, permit released', async () => {
    const before = anthropic.stats();
    const stream = await anthropic.messages.create({ ...request(), stream: true }, { headers: { 'x-mock-fault': 'stall', ...LONG_ANSWER } });
    let deltas = 0;
    const error = await thrown(async () => {
      for await (const event of stream) if (event.type === 'content_block_delta') deltas += 1;
    });
    expectIdleTimeout(error);
    expect(deltas).toBeGreaterThan(0);
    expect(mock.stats().messages).toBe(1);
    expect(anthropic.stats().attempts - before.attempts).toBe(1);
    expect((anthropic.stats().failures.stream_idle ?? 0) - (before.failures.stream_idle ?? 0)).toBe(1);
    await expectAllEnded(limiter, mock);
  });

  it('messages.stream(): finalMessage() rejects with the same error, permit released', async () => {
    const stream = anthropic.messages.stream(request(), { headers: { 'x-mock-fault': 'stall', ...LONG_ANSWER } });
    expectIdleTimeout(await thrown(() => stream.finalMessage()));
    expect(mock.stats().messages).toBe(1);
    await expectAllEnded(limiter, mock);
  });
});

describe('a stream that stalls before any text', () => {
  it('create({ stream: true }) is retried with a fresh permit; the caller sees one clean stream', async () => {
    mock.setConfig({ faults: { schedule: [{ nth: 1, fault: 'stall' }] } });
    const before = anthropic.stats();
    const stream = await anthropic.messages.create({ ...request(), stream: true }, { headers: ONE_DELTA_ANSWER });
    const types: string[] = [];
    for await (const event of stream) types.push(event.type);
    expect(types[0]).toBe('message_start');
    expect(types.filter((type) => type === 'message_start')).toHaveLength(1);
    expect(types.at(-1)).toBe('message_stop');
    expect(mock.stats().messages).toBe(2);
    expect(anthropic.stats().attempts - before.attempts).toBe(2);
    await expectAllEnded(limiter, mock);
  });

  it('messages.stream() with a stall on every attempt: maxAttempts bounds it, the last idle error surfaces', async () => {
    const once = limitAnthropic(clientFor(mock.url), limiter, { streamIdleTimeoutMs: STREAM_IDLE_TIMEOUT_MS, backoffBaseMs: BACKOFF_BASE_MS, maxAttempts: 2 });
    const stream = once.messages.stream(request(), { headers: { 'x-mock-fault': 'stall', ...ONE_DELTA_ANSWER } });
    expectIdleTimeout(await thrown(() => stream.finalMessage()));
    expect(mock.stats().messages).toBe(2);
    expect(once.stats().failures.stream_idle).toBe(2);
    await expectAllEnded(limiter, mock);
  });
});

/** Bound on waiting for an unread stream's permit to come back (a deadline, not a measurement). */
const UNREAD_RELEASE_TIMEOUT_MS = 10 * STREAM_IDLE_TIMEOUT_MS;

describe('a stream its caller never reads (issue 12, also: a stream nobody iterates or aborts)', () => {
  it('create({ stream: true }): request ended and permit released after streamIdleTimeoutMs; a late read gets the error', async () => {
    const before = anthropic.stats();
    const stream = await anthropic.messages.create({ ...request(), stream: true }, { headers: LONG_ANSWER });
    await vi.waitFor(async () => expect((await limiter.snapshot()).inFlight).toBe(0), { timeout: UNREAD_RELEASE_TIMEOUT_MS, interval: 50 });
    const error = await thrown(async () => {
      for await (const _event of stream) {
        // nothing comes: the attempt was ended
      }
    });
    expectIdleTimeout(error);
    expect((error as StreamIdleTimeoutError).waitingFor).toBe('caller');
    expect((anthropic.stats().failures.stream_unread ?? 0) - (before.failures.stream_unread ?? 0)).toBe(1);
    expect(anthropic.stats().attempts - before.attempts).toBe(1);
    await expectAllEnded(limiter, mock);
  });

  it('messages.stream(): the SDK reads it for the caller, so its permit is back when the answer ends, unread or not', async () => {
    const stream = anthropic.messages.stream(request(), { headers: LONG_ANSWER });
    await vi.waitFor(async () => expect((await limiter.snapshot()).inFlight).toBe(0), { timeout: UNREAD_RELEASE_TIMEOUT_MS, interval: 50 });
    const message = await stream.finalMessage(); // read afterwards: the whole answer is there
    expect(message.stop_reason).toBe('end_turn');
    await expectAllEnded(limiter, mock);
  });

  it('a stream read before the deadline is not cut by it', async () => {
    const stream = await anthropic.messages.create({ ...request(), stream: true }, { headers: LONG_ANSWER });
    const types: string[] = [];
    for await (const event of stream) types.push(event.type);
    expect(types.at(-1)).toBe('message_stop');
    await expectAllEnded(limiter, mock);
  });
});
