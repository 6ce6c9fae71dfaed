import Anthropic from '@anthropic-ai/sdk';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startMockAnthropic, type MockAnthropic } from '../src/index.js';
import { thrown } from '@tollgate/test-support';
import { clientFor, request } from './helpers.js';

/** Far longer than the client timeout below, so the slow-headers fault always wins the race. */
const SLOW_HEADERS_MS = 3_000;
const CLIENT_TIMEOUT_MS = 300;
let mock: MockAnthropic;
let client: Anthropic;

beforeAll(async () => {
  mock = await startMockAnthropic({ seed: 11, faults: { slowHeadersMs: SLOW_HEADERS_MS, stallMs: 200 } });
  client = clientFor(mock);
});
afterAll(() => mock.close());
beforeEach(() => {
  mock.setConfig({ faults: { slowHeadersMs: SLOW_HEADERS_MS, stallMs: 200 } });
  mock.reset();
});

const withFault = (fault: string) => ({ headers: { 'x-mock-fault': fault, 'x-mock-output-tokens': '12' } });

async function drain(stream: AsyncIterable<unknown>): Promise<number> {
  let events = 0;
  for await (const _event of stream) events += 1;
  return events;
}

describe('faults as the SDK sees them', () => {
  it('mid-stream error: an APIError without status, type overloaded_error; no message_stop', async () => {
    const stream = client.messages.stream({ ...request(), stream: true }, withFault('mid_stream_error'));
    const error = await thrown(() => drain(stream));
    expect(error).toBeInstanceOf(Anthropic.APIError);
    expect(error).not.toBeInstanceOf(Anthropic.OverloadedError);
    const apiError = error as InstanceType<typeof Anthropic.APIError>;
    expect(apiError.status).toBeUndefined();
    expect(apiError.type).toBe('overloaded_error');
    await expect(stream.finalMessage()).rejects.toThrow();
    expect(mock.stats().byErrorType).toEqual({ overloaded_error: 1 });
  });

  it('mid-stream error through create({ stream: true }) arrives after some events', async () => {
    const seen: string[] = [];
    const stream = await client.messages.create({ ...request(), stream: true }, withFault('mid_stream_error'));
    const error = await thrown(async () => {
      for await (const event of stream) seen.push(event.type);
    });
    expect((error as InstanceType<typeof Anthropic.APIError>).type).toBe('overloaded_error');
    expect(seen.slice(0, 2)).toEqual(['message_start', 'content_block_start']);
    expect(seen).not.toContain('message_stop');
  });

  it('a non-streaming request with the mid-stream fault gets a 529', async () => {
    const error = await thrown(() => client.messages.create(request(), withFault('mid_stream_error')));
    expect(error).toBeInstanceOf(Anthropic.OverloadedError);
  });

  it('reset before headers: APIConnectionError', async () => {
    const error = await thrown(() => client.messages.create(request(), withFault('reset')));
    expect(error).toBeInstanceOf(Anthropic.APIConnectionError);
    expect(mock.stats().byStatus).toEqual({ reset: 1 });
  });

  it('reset mid-stream: the stream starts, then fails without message_stop', async () => {
    const stream = await client.messages.create({ ...request(), stream: true }, withFault('reset_mid_stream'));
    const seen: string[] = [];
    const error = await thrown(async () => {
      for await (const event of stream) seen.push(event.type);
    });
    expect(error).toBeInstanceOf(Error);
    expect(seen[0]).toBe('message_start');
    expect(seen).not.toContain('message_stop');
  });

  it('stalled stream: events stop, then the connection drops', async () => {
    const stream = client.messages.stream({ ...request(), stream: true }, withFault('stall'));
    await expect(stream.finalMessage()).rejects.toThrow();
  });

  it('slow headers: the SDK times out waiting for them', async () => {
    const error = await thrown(() => client.messages.create(request(), { ...withFault('slow_headers'), timeout: CLIENT_TIMEOUT_MS }));
    expect(error).toBeInstanceOf(Anthropic.APIConnectionTimeoutError);
  });

  it('a schedule strikes exactly the nth admitted request', async () => {
    mock.setConfig({
      faults: {
        schedule: [
          { nth: 2, fault: '529' },
          { nth: 4, fault: '500' },
        ],
      },
    });
    const outcomes: string[] = [];
    for (let i = 0; i < 5; i += 1) {
      const result = await client.messages.create(request()).then(
        () => 'ok',
        (error: unknown) => (error instanceof Anthropic.APIError ? String(error.status) : 'other'),
      );
      outcomes.push(result);
    }
    expect(outcomes).toEqual(['ok', '529', 'ok', '500', 'ok']);
    expect(mock.stats().faults).toEqual({ '529': 1, '500': 1 });
  });

  it('rates are seeded: the same seed strikes the same requests after a reset', async () => {
    mock.setConfig({ faults: { rate529: 0.3, rate500: 0.2 } });
    const run = async () => {
      const statuses: number[] = [];
      for (let i = 0; i < 20; i += 1) {
        statuses.push(
          await client.messages.create(request()).then(
            () => 200,
            (error: unknown) => (error as InstanceType<typeof Anthropic.APIError>).status ?? 0,
          ),
        );
      }
      return statuses;
    };
    const first = await run();
    mock.reset();
    expect(await run()).toEqual(first);
    expect(first.filter((status) => status !== 200).length).toBeGreaterThan(0);
    expect(first.filter((status) => status === 200).length).toBeGreaterThan(0);
  });
});

describe('admin routes', () => {
  it('GET /_mock/stats, POST /_mock/config and POST /_mock/reset', async () => {
    await client.messages.create(request(), { headers: { 'x-stainless-retry-count': '1', 'x-mock-output-tokens': '7' } });
    const stats = (await (await fetch(`${mock.url}/_mock/stats`)).json()) as ReturnType<MockAnthropic['stats']>;
    expect(stats).toMatchObject({ requests: 1, messages: 1, retries: 1, byStatus: { '200': 1 } });
    expect(stats.windows[0]).toMatchObject({ index: 0, requests: 1, outputTokens: 7 });

    const config = await fetch(`${mock.url}/_mock/config`, { method: 'POST', body: JSON.stringify({ limits: { rpm: 5 } }) });
    expect(config.status).toBe(200);
    const { response } = await client.messages.create(request()).withResponse();
    expect(response.headers.get('anthropic-ratelimit-requests-limit')).toBe('5');

    const invalid = await fetch(`${mock.url}/_mock/config`, { method: 'POST', body: JSON.stringify({ limits: { rpm: -1 } }) });
    expect(invalid.status).toBe(400);
    expect(await invalid.json()).toMatchObject({ error: { type: 'invalid_request_error' } });

    expect((await fetch(`${mock.url}/_mock/reset`, { method: 'POST' })).status).toBe(200);
    expect(mock.stats().requests).toBe(0);
    mock.setConfig({ limits: {} });
  });

  it('rejects an invalid config without changing anything', () => {
    expect(() => mock.setConfig({ latency: { perTokenMs: { kind: 'uniform', minMs: 5, maxMs: 1 } } })).toThrow();
    expect(() => mock.setConfig({ faults: { rate529: 0.8, rate500: 0.8 } })).toThrow(/at most 1/);
  });
});
