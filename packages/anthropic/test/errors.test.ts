import Anthropic, { APIError } from '@anthropic-ai/sdk';
import type { Limiter } from '@tollgate/limiter';
import type { MockAnthropic } from '@tollgate/mock-anthropic';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { limitAnthropic, type LimitedAnthropic } from '../src/index.js';
import { thrown } from '@tollgate/test-support';
import { API_KEY, MODEL, answers, clientFor, request, startStack, type Stack } from './support.js';

/** Small, so a 413 needs only a modest prompt. */
const BODY_LIMIT_BYTES = 16_384;
/** Short backoffs keep the retry tests quick; the policy is the same. */
const BACKOFF_BASE_MS = 20;
const TOKEN_RATE = { limit: 1_000_000, intervalMs: 60_000 };

let stack: Stack;
let mock: MockAnthropic;
let limiter: Limiter;
let anthropic: LimitedAnthropic;

beforeAll(async () => {
  stack = await startStack({ apiKeys: [API_KEY], bodyLimitBytes: BODY_LIMIT_BYTES });
  mock = stack.mock;
  limiter = await stack.limiter({ concurrency: 4, rates: { requests: TOKEN_RATE, inputTokens: TOKEN_RATE, outputTokens: TOKEN_RATE } });
  anthropic = limitAnthropic(clientFor(mock.url), limiter, { backoffBaseMs: BACKOFF_BASE_MS });
});
afterAll(() => stack.close());
beforeEach(() => stack.resetMock());

async function expectNoPermitHeld(): Promise<void> {
  expect((await limiter.snapshot()).inFlight).toBe(0);
}

describe('non-retryable answers reach the upstream once and surface as the SDK error', () => {
  const cases: Array<{ status: number; errorClass: new (...args: never[]) => APIError; call: (a: LimitedAnthropic) => Promise<unknown> }> = [
    { status: 400, errorClass: Anthropic.BadRequestError, call: (a) => a.messages.create(request(), { headers: { 'x-mock-fault': 'no_such_fault' } }) },
    { status: 403, errorClass: Anthropic.PermissionDeniedError, call: (a) => a.messages.create(request(), { headers: { 'x-mock-fault': '403' } }) },
    { status: 403, errorClass: Anthropic.PermissionDeniedError, call: (a) => a.messages.stream(request(), { headers: { 'x-mock-fault': '403' } }).finalMessage() },
    { status: 404, errorClass: Anthropic.NotFoundError, call: (a) => a.messages.create({ ...request(), model: 'claude-no-such-model' }) },
    { status: 413, errorClass: Anthropic.ContentTooLargeError, call: (a) => a.messages.create(request(2 * BODY_LIMIT_BYTES)) },
    { status: 429, errorClass: Anthropic.RateLimitError, call: (a) => a.messages.create(request(), { headers: { 'x-mock-fault': 'spend_cap' } }) },
    { status: 429, errorClass: Anthropic.RateLimitError, call: (a) => a.messages.create({ ...request(), stream: true }, { headers: { 'x-mock-fault': 'spend_cap' } }) },
  ];
  it.each(cases)('$status ($errorClass.name)', async ({ status, errorClass, call }) => {
    const error = await thrown(() => call(anthropic));
    expect(error).toBeInstanceOf(errorClass);
    expect((error as APIError).status).toBe(status);
    const stats = mock.stats();
    expect(answers(stats.byStatus)).toBe(1);
    expect(stats.byStatus[String(status)]).toBe(1);
    await expectNoPermitHeld();
  });

  it('401 (AuthenticationError)', async () => {
    const wrongKey = limitAnthropic(clientFor(mock.url, 'not-a-valid-key'), limiter, { backoffBaseMs: BACKOFF_BASE_MS });
    const error = await thrown(() => wrongKey.messages.create(request()));
    expect(error).toBeInstanceOf(Anthropic.AuthenticationError);
    expect(answers(mock.stats().byStatus)).toBe(1);
    await expectNoPermitHeld();
  });
});

describe('retryable answers are retried with fresh permits', () => {
  it('529, 500, 408 and 409, then success (5 attempts)', async () => {
    const faults = ['529', '500', '408', '409'] as const;
    mock.setConfig({ faults: { schedule: faults.map((fault, index) => ({ nth: index + 1, fault })) } });
    const patient = limitAnthropic(clientFor(mock.url), limiter, { backoffBaseMs: BACKOFF_BASE_MS, maxAttempts: faults.length + 1 });
    const message = await patient.messages.create(request());
    expect(message.type).toBe('message');
    expect(mock.stats().byStatus).toEqual({ '529': 1, '500': 1, '408': 1, '409': 1, '200': 1 });
    expect(patient.stats().attempts).toBe(faults.length + 1);
    expect(patient.stats().failures).toEqual({ '529': 1, '500': 1, '408': 1, '409': 1 });
    await expectNoPermitHeld();
  });

  it('a stream whose first attempt gets a 529 before its headers', async () => {
    mock.setConfig({ faults: { schedule: [{ nth: 1, fault: '529' }] } });
    const stream = await anthropic.messages.create({ ...request(), stream: true });
    let text = '';
    for await (const event of stream) if (event.type === 'content_block_delta' && event.delta.type === 'text_delta') text += event.delta.text;
    expect(text.length).toBeGreaterThan(0);
    expect(mock.stats().byStatus).toEqual({ '529': 1, '200': 1 });
    await expectNoPermitHeld();
  });

  it('a mid-stream error before any text is retried; the caller sees one clean stream', async () => {
    mock.setConfig({ faults: { schedule: [{ nth: 1, fault: 'mid_stream_error' }] } });
    const stream = anthropic.messages.stream({ ...request(), model: MODEL }, { headers: { 'x-mock-output-tokens': '4' } });
    const message = await stream.finalMessage();
    expect(message.usage.output_tokens).toBe(4);
    expect(mock.stats().byErrorType.overloaded_error).toBe(1);
    expect(mock.stats().messages).toBe(2);
    await expectNoPermitHeld();
  });
});

describe('a mid-stream error after text reached the caller', () => {
  it('is not retried, surfaces as the SDK error and releases the permit', async () => {
    const stream = await anthropic.messages.create({ ...request(), stream: true }, { headers: { 'x-mock-fault': 'mid_stream_error', 'x-mock-output-tokens': '40' } });
    let deltas = 0;
    const error = await thrown(async () => {
      for await (const event of stream) if (event.type === 'content_block_delta') deltas += 1;
    });
    expect(deltas).toBeGreaterThan(0);
    expect(error).toBeInstanceOf(APIError);
    expect((error as APIError).type).toBe('overloaded_error');
    expect(mock.stats().messages).toBe(1);
    await expectNoPermitHeld();
  });

  it('through messages.stream(): the same', async () => {
    const stream = anthropic.messages.stream(request(), { headers: { 'x-mock-fault': 'mid_stream_error', 'x-mock-output-tokens': '40' } });
    const error = await thrown(() => stream.finalMessage());
    expect(error).toBeInstanceOf(APIError);
    expect(mock.stats().messages).toBe(1);
    await expectNoPermitHeld();
  });
});
