import Anthropic from '@anthropic-ai/sdk';
import { thrown } from '@tollgate/test-support';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DEFAULT_MODELS, REDACTED, startMockAnthropic, type MockAnthropic } from '../src/index.js';
import { API_KEY, clientFor, MODEL, rawPost, request, VALID_HEADERS } from './helpers.js';

let mock: MockAnthropic;
let client: Anthropic;

beforeAll(async () => {
  mock = await startMockAnthropic({ seed: 3, requestLog: { size: 5 } });
  client = clientFor(mock);
});
afterAll(() => mock.close());
beforeEach(() => mock.reset());

const CONTEXT_MANAGEMENT = { edits: [{ type: 'clear_tool_uses_20250919' as const }] };

describe('the fields the API takes', () => {
  it('takes beta-only fields with an anthropic-beta header and refuses them without one, as the API does', async () => {
    const beta = await client.beta.messages.create({ ...request(), betas: ['context-management-2025-06-27'], context_management: CONTEXT_MANAGEMENT });
    expect(beta.type).toBe('message');
    const body = JSON.stringify({ ...request(), context_management: CONTEXT_MANAGEMENT });
    const plain = await rawPost(mock, '/v1/messages', body, VALID_HEADERS);
    expect(plain.status).toBe(400);
    expect(await plain.json()).toMatchObject({ type: 'error', error: { type: 'invalid_request_error', message: 'context_management: Extra inputs are not permitted' } });
    const withHeader = await rawPost(mock, '/v1/messages?beta=true', body, { ...VALID_HEADERS, 'anthropic-beta': 'context-management-2025-06-27' });
    expect(withHeader.status).toBe(200);
  });

  it('takes every body field of SDK 1.x at once, and the sampling fields on 2023-06-01 only', async () => {
    const everything = {
      ...request(),
      system: [{ type: 'text', text: 'Be brief.' }],
      metadata: { user_id: 'u-1' },
      stop_sequences: ['END'],
      tools: [{ name: 'get_weather', description: 'Weather', input_schema: { type: 'object', properties: {} } }],
      tool_choice: { type: 'auto' },
      thinking: { type: 'disabled' },
      output_config: { effort: 'low' },
      service_tier: 'auto',
      speed: 'standard',
      cache_control: { type: 'ephemeral' },
      container: null,
      inference_geo: null,
      diagnostics: null,
    };
    expect((await rawPost(mock, '/v1/messages', JSON.stringify(everything), { ...VALID_HEADERS, 'anthropic-version': '2026-10-21' })).status).toBe(200);
    const sampled = JSON.stringify({ ...request(), temperature: 0.2, top_p: 0.9, top_k: 5 });
    expect((await rawPost(mock, '/v1/messages', sampled, VALID_HEADERS)).status).toBe(200);
    const strict = await rawPost(mock, '/v1/messages', sampled, { ...VALID_HEADERS, 'anthropic-version': '2026-10-21' });
    expect(strict.status).toBe(400);
  });

  it('answers a forced tool choice with a tool_use block whose input fills the required properties, streamed or not', async () => {
    const tools: Anthropic.Tool[] = [
      { name: 'get_weather', input_schema: { type: 'object', properties: { city: { type: 'string' }, days: { type: 'integer' } }, required: ['city', 'days'] } },
    ];
    const forced = { ...request('Weather in Oslo?'), tools, tool_choice: { type: 'any' as const } };
    const message = await client.messages.create(forced);
    expect(message.stop_reason).toBe('tool_use');
    expect(message.content).toEqual([{ type: 'tool_use', id: expect.stringMatching(/^toolu_/), name: 'get_weather', input: { city: 'toll', days: 1 } }]);
    const streamed = await client.messages.stream(forced).finalMessage();
    expect(streamed.stop_reason).toBe('tool_use');
    expect(streamed.content).toEqual([{ type: 'tool_use', id: expect.stringMatching(/^toolu_/), name: 'get_weather', input: { city: 'toll', days: 1 } }]);
    const auto = await client.messages.create({ ...forced, tool_choice: { type: 'auto' } });
    expect(auto.content[0]?.type).toBe('text');
  });
});

describe('GET /v1/models', () => {
  it('lists the configured models in pages and retrieves one; an unknown one is a 404', async () => {
    const ids = Object.keys(DEFAULT_MODELS);
    const all: string[] = [];
    for await (const model of client.models.list({ limit: 2 })) all.push(model.id);
    expect(all).toEqual(ids);
    const first = await client.models.list({ limit: 2 });
    expect(first.data.map((model) => model.id)).toEqual(ids.slice(0, 2));
    expect(first.has_more).toBe(true);
    const model = await client.models.retrieve(MODEL);
    expect(model).toMatchObject({ type: 'model', id: MODEL, display_name: 'Claude Haiku 4.5', max_tokens: 64_000, max_input_tokens: 200_000 });
    const error = await thrown(() => client.models.retrieve('claude-nonexistent'));
    expect(error).toBeInstanceOf(Anthropic.NotFoundError);
    expect(mock.stats().models).toBe(4 + 1 + 1 + 1); // four pages of two, one page, one model, one 404
  });

  it('needs a key like every API route', async () => {
    const response = await fetch(`${mock.url}/v1/models`, { headers: { 'anthropic-version': '2023-06-01' } });
    expect(response.status).toBe(401);
  });
});

describe('GET /_mock/requests', () => {
  it('keeps the body text exactly as sent and the headers with secrets redacted', async () => {
    const body = '{ "model" :"claude-haiku-4-5","zeta":{"b":1,"a":[1.50,"é"]},"max_tokens":16,"messages":[{"role":"user","content":"hi"}]}';
    await rawPost(mock, '/v1/messages?beta=true', body, { ...VALID_HEADERS, 'anthropic-beta': 'b1,b2', authorization: `Bearer ${API_KEY}` });
    const [logged] = mock.requests();
    expect(logged).toMatchObject({ seq: 1, method: 'POST', url: '/v1/messages?beta=true', body, bodyTruncated: false });
    expect(logged?.headers).toMatchObject({ 'anthropic-beta': 'b1,b2', 'anthropic-version': '2023-06-01', 'x-api-key': REDACTED, authorization: REDACTED });
    const served = (await (await fetch(`${mock.url}/_mock/requests`)).json()) as { requests: unknown[] };
    expect(served.requests).toEqual(mock.requests());
  });

  it('holds at most `size` requests, the newest', async () => {
    for (let i = 0; i < 7; i += 1) await client.messages.countTokens({ model: MODEL, messages: [{ role: 'user', content: `n${i}` }] });
    const logged = mock.requests();
    expect(logged.map((entry) => entry.seq)).toEqual([3, 4, 5, 6, 7]);
    expect(logged.at(-1)?.body).toContain('"n6"');
  });
});
