import { createAnthropic } from '@ai-sdk/anthropic';
import Anthropic from '@anthropic-ai/sdk';
import { ChatAnthropic } from '@langchain/anthropic';
import type { LoggedRequest } from '@tollgate/mock-anthropic';
import { generateText, streamText, tool } from 'ai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { MODEL, startFleet, type Fleet } from '../support/fleet.js';

/**
 * Messages API clients this project did not write, pointed at the gateway with real worker and mock processes behind
 * it: the official SDK, the Vercel AI SDK's Anthropic provider and LangChain's ChatAnthropic (its own, older copy of
 * the official SDK). Issue 14.
 */

const TOKEN = 'tok-clients-4b7e1d9a2c6f8e03';
const CONCURRENCY = 3;
const RPM = 600;
const COUNT_TOKENS_RPM = 120;
const WEATHER_SCHEMA = { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } as const;

let fleet: Fleet;

beforeAll(async () => {
  fleet = await startFleet({
    concurrency: CONCURRENCY,
    rpm: RPM,
    workers: 2,
    gateway: true,
    gatewayEnv: { GATEWAY_TOKENS: `clients:${TOKEN}` },
    workerEnv: { TOLLGATE_COUNT_TOKENS_RPM: String(COUNT_TOKENS_RPM) },
    mockEnv: { MOCK_COUNT_TOKENS_RPM: String(COUNT_TOKENS_RPM), MOCK_LATENCY_MS: '5' },
  });
});
afterAll(() => fleet?.close());
beforeEach(() => fleet.mockAdmin('reset'));

async function received(): Promise<LoggedRequest[]> {
  return ((await (await fetch(`${fleet.mockUrl}/_mock/requests`)).json()) as { requests: LoggedRequest[] }).requests;
}

/** What every test ends with: the mock saw no 429 and never more in flight than the account allows. */
async function expectLimitsHeld(): Promise<void> {
  const stats = await fleet.mockStats();
  expect(stats.maxConcurrent).toBeLessThanOrEqual(CONCURRENCY);
  expect(Object.values(stats.rateLimited).reduce((sum, n) => sum + n, 0)).toBe(0);
  expect(stats.byStatus['429']).toBeUndefined();
}

const sdk = () => new Anthropic({ baseURL: fleet.gatewayUrl, apiKey: TOKEN, maxRetries: 0 });

describe('the official SDK (@anthropic-ai/sdk 1.14)', () => {
  it('plain, streamed and tool calls; the answer carries the upstream request id and the tollgate headers', async () => {
    const client = sdk();
    const { data, response, request_id } = await client.messages.create({ model: MODEL, max_tokens: 32, messages: [{ role: 'user', content: 'plain' }] }).withResponse();
    expect(data.type).toBe('message');
    const [upstream] = await received();
    expect(upstream?.url).toBe('/v1/messages');
    expect(request_id).toMatch(/^req_[1-9A-HJ-NP-Za-km-z]{24}$/); // the mock's id format, not the gateway's req_<hex>
    expect(response.headers.get('tollgate-job-id')).toMatch(/^job_/);
    expect(Number(response.headers.get('tollgate-waited-ms'))).toBeGreaterThanOrEqual(0);
    expect(response.headers.get('tollgate-account')).toBe(fleet.limiterName);
    expect(response.headers.get('tollgate-priority')).toBe('5'); // served as asked: the default, no policy in this fleet
    expect(response.headers.get('tollgate-request-id')).toMatch(/^req_[0-9a-f]+$/);
    expect(response.headers.get('anthropic-ratelimit-requests-limit')).toBe(String(RPM));

    const stream = client.messages.stream({ model: MODEL, max_tokens: 32, messages: [{ role: 'user', content: 'streamed' }] });
    let text = '';
    for await (const event of stream) if (event.type === 'content_block_delta' && event.delta.type === 'text_delta') text += event.delta.text;
    const final = await stream.finalMessage();
    expect(text.length).toBeGreaterThan(0);
    expect(final.content.map((block) => (block.type === 'text' ? block.text : '')).join('')).toBe(text); // no block twice
    expect(stream.request_id).toMatch(/^req_[1-9A-HJ-NP-Za-km-z]{24}$/);

    const tools: Anthropic.Tool[] = [{ name: 'get_weather', description: 'Weather of a city', input_schema: WEATHER_SCHEMA }];
    const called = await client.messages.create({ model: MODEL, max_tokens: 64, tools, tool_choice: { type: 'any' }, messages: [{ role: 'user', content: 'Weather in Oslo?' }] });
    expect(called.stop_reason).toBe('tool_use');
    expect(called.content[0]).toMatchObject({ type: 'tool_use', name: 'get_weather', input: { city: 'toll' } });
    await expectLimitsHeld();
  });

  it('beta calls with `betas` and beta-only fields, streamed too: the anthropic-beta header reaches the upstream', async () => {
    const client = sdk();
    const params = {
      model: MODEL,
      max_tokens: 32,
      messages: [{ role: 'user' as const, content: 'beta' }],
      betas: ['context-management-2025-06-27'],
      context_management: { edits: [{ type: 'clear_tool_uses_20250919' as const }] },
    };
    const message = await client.beta.messages.create(params);
    expect(message.type).toBe('message');
    const streamed = await client.beta.messages.stream(params).finalMessage();
    expect(streamed.type).toBe('message');
    const sent = await received();
    expect(sent).toHaveLength(2);
    for (const request of sent) {
      expect(request.headers['anthropic-beta']).toBe('context-management-2025-06-27');
      expect(JSON.parse(request.body ?? '{}')).toHaveProperty('context_management');
    }
    await expectLimitsHeld();
  });

  it('countTokens goes through a worker under the count_tokens rate; models.list and models.retrieve come from the upstream, cached', async () => {
    const client = sdk();
    const counted = await client.messages.countTokens({ model: MODEL, messages: [{ role: 'user', content: 'count me please' }] });
    expect(counted).toEqual({ input_tokens: Math.ceil('count me please'.length / 4) });
    const ids: string[] = [];
    for await (const model of client.models.list({ limit: 3 })) ids.push(model.id);
    expect(ids).toContain(MODEL);
    expect((await client.models.retrieve(MODEL)).id).toBe(MODEL);
    const again = await client.models.retrieve(MODEL).asResponse();
    expect(again.headers.get('tollgate-cache')).toBe('hit');
    const missing = await client.models.retrieve('claude-nonexistent-1').catch((error: unknown) => error);
    expect(missing).toBeInstanceOf(Anthropic.NotFoundError);
    const stats = await fleet.mockStats();
    expect(stats.countTokens).toBe(1);
    expect(stats.models).toBe(Math.ceil(ids.length / 3) + 1 + 1); // the pages, one retrieve (the second was cached), the 404
    await expectLimitsHeld();
  });
});

describe('the Vercel AI SDK (ai 6 + @ai-sdk/anthropic 3)', () => {
  const provider = () => createAnthropic({ baseURL: `${fleet.gatewayUrl}/v1`, apiKey: TOKEN });

  it('generateText with temperature, streamText, and a required tool call', async () => {
    const model = provider()(MODEL);
    const plain = await generateText({ model, prompt: 'plain', temperature: 0.3, maxOutputTokens: 32, maxRetries: 0 });
    expect(plain.text.length).toBeGreaterThan(0);
    const [first] = await received();
    expect(first?.headers['anthropic-version']).toBe('2023-06-01'); // its own version travels, so temperature is valid upstream
    expect(JSON.parse(first?.body ?? '{}')).toMatchObject({ temperature: 0.3 });

    const streamed = streamText({ model, prompt: 'streamed', maxOutputTokens: 32, maxRetries: 0 });
    expect((await streamed.text).length).toBeGreaterThan(0);

    const called = await generateText({
      model,
      prompt: 'Weather in Oslo?',
      maxOutputTokens: 64,
      maxRetries: 0,
      toolChoice: 'required',
      tools: { get_weather: tool({ description: 'Weather of a city', inputSchema: z.object({ city: z.string() }) }) },
    });
    expect(called.toolCalls).toHaveLength(1);
    expect(called.toolCalls[0]).toMatchObject({ toolName: 'get_weather', input: { city: 'toll' } });
    await expectLimitsHeld();
  });
});

describe('LangChain (@langchain/anthropic 1.5)', () => {
  const chat = () => new ChatAnthropic({ model: MODEL, apiKey: TOKEN, anthropicApiUrl: fleet.gatewayUrl, maxTokens: 32, maxRetries: 0 });

  it('invoke, stream, and a tool call through bindTools', async () => {
    const plain = await chat().invoke('plain');
    expect(String(plain.content).length).toBeGreaterThan(0);
    let streamed = '';
    for await (const chunk of await chat().stream('streamed')) streamed += typeof chunk.content === 'string' ? chunk.content : '';
    expect(streamed.length).toBeGreaterThan(0);
    const withTools = chat().bindTools([{ name: 'get_weather', description: 'Weather of a city', schema: z.object({ city: z.string() }) }], { tool_choice: 'any' });
    const called = await withTools.invoke('Weather in Oslo?');
    expect(called.tool_calls).toHaveLength(1);
    expect(called.tool_calls?.[0]).toMatchObject({ name: 'get_weather', args: { city: 'toll' } });
    expect((await received()).length).toBe(3);
    await expectLimitsHeld();
  });
});

const post = (path: string, body: string, headers: Record<string, string> = {}) =>
  fetch(`${fleet.gatewayUrl}${path}`, { method: 'POST', body, headers: { 'content-type': 'application/json', 'x-api-key': TOKEN, 'anthropic-version': '2023-06-01', ...headers } });

describe('the gateway passes what it does not read through, untouched', () => {
  it('fields the gateway has never heard of, top level and nested, reach the upstream byte for byte in the same order', async () => {
    // odd spacing, a float spelled 1.50, an escape, integer-like keys and unknown keys inside a block and a tool
    const text =
      '{"context_management" : {"edits":[], "zz_future": {"2": 1.50, "1": "\\u00e9"}},"model":"claude-haiku-4-5","max_tokens":16,' +
      '"messages":[{"role":"user","content":[{"type":"text","text":"hi","zz_block_flag":true,"cache_control":{"type":"ephemeral","ttl":"5m"}}]}],' +
      '"tools":[{"name":"t","input_schema":{"type":"object"},"zz_tool_extra":[null]}]}';
    const response = await post('/v1/messages?beta=true', text, { 'anthropic-beta': 'context-management-2025-06-27' });
    expect(response.status).toBe(200);
    const [sent] = await received();
    expect(sent?.body).toBe(text);
    expect(sent?.url).toBe('/v1/messages');
  });

  it('an invalid request only the upstream can judge comes back with the upstream status and body, unchanged', async () => {
    for (const [text, message] of [
      ['{"model":"claude-haiku-4-5","max_tokens":16,"x_not_an_api_field":1,"messages":[{"role":"user","content":"hi"}]}', 'x_not_an_api_field: Extra inputs are not permitted'],
      ['{"model":"claude-haiku-4-5","max_tokens":16,"messages":[{"role":"robot","content":"hi"}]}', "messages.0.role: Input should be 'user' or 'assistant'"],
    ] as const) {
      const response = await post('/v1/messages', text);
      expect(response.status).toBe(400);
      const body = (await response.json()) as { request_id: string };
      expect(body).toEqual({ type: 'error', error: { type: 'invalid_request_error', message }, request_id: expect.stringMatching(/^req_[1-9A-HJ-NP-Za-km-z]{24}$/) });
      expect(response.headers.get('request-id')).toBe(body.request_id); // the upstream's id, header and body alike
      expect(response.headers.get('tollgate-job-id')).toMatch(/^job_/);
    }
  });

  it('unknown routes and methods answer 404 and 405 in the envelope; every API route needs a tenant token', async () => {
    const notFound = await fetch(`${fleet.gatewayUrl}/v1/nothing-here`, { headers: { 'x-api-key': TOKEN } });
    expect(notFound.status).toBe(404);
    expect(await notFound.json()).toMatchObject({ type: 'error', error: { type: 'not_found_error' } });
    const wrongMethod = await fetch(`${fleet.gatewayUrl}/v1/messages`, { method: 'GET', headers: { 'x-api-key': TOKEN } });
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.headers.get('allow')).toBe('POST');
    expect(await wrongMethod.json()).toMatchObject({ type: 'error', error: { type: 'api_error', message: expect.stringMatching(/^Method not allowed/) } });
    expect((await fetch(`${fleet.gatewayUrl}/v1/messages`, { method: 'GET' })).status).toBe(401); // only a tenant learns the methods
    for (const [method, path] of [
      ['GET', '/v1/models'],
      ['GET', `/v1/models/${MODEL}`],
      ['POST', '/v1/messages/count_tokens'],
    ] as const) {
      const response = await fetch(`${fleet.gatewayUrl}${path}`, { method, ...(method === 'POST' ? { body: '{}', headers: { 'content-type': 'application/json' } } : {}) });
      expect(response.status).toBe(401);
    }
  });
});

describe('a client that goes away', () => {
  it('a streaming answer is aborted: the job fails as abandoned, the upstream call ends and the permit is back', async () => {
    await fleet.mockAdmin('config', { latency: { timeToFirstTokenMs: 5, perTokenMs: 100 } }); // 64 tokens: seconds of stream
    try {
      const response = await post('/v1/messages', JSON.stringify({ model: MODEL, max_tokens: 64, stream: true, messages: [{ role: 'user', content: 'long' }] }));
      const jobId = response.headers.get('tollgate-job-id') ?? '';
      expect(response.headers.get('tollgate-priority')).toBe('5'); // a stream's answer says it too
      const reader = response.body?.getReader();
      await reader?.read(); // the answer has started
      await reader?.cancel(); // the client goes away mid-answer
      const error = await fleet.producer.wait(jobId, { timeoutMs: 30_000 }).catch((failure: unknown) => failure);
      expect(error).toMatchObject({ status: 499 });
      for (let i = 0; i < 100 && ((await fleet.observer.snapshot()).inFlight > 0 || (await fleet.mockStats()).inFlight > 0); i += 1)
        await new Promise((resolve) => setTimeout(resolve, 100));
      expect((await fleet.observer.snapshot()).inFlight).toBe(0);
      expect((await fleet.mockStats()).inFlight).toBe(0);
    } finally {
      await fleet.mockAdmin('config', { latency: { timeToFirstTokenMs: 5, perTokenMs: 0 } });
    }
  });
});
