import Anthropic from '@anthropic-ai/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMockAnthropic, type MockAnthropic } from '../src/index.js';
import { clientFor, MODEL, request } from './helpers.js';

let mock: MockAnthropic;
let client: Anthropic;

beforeAll(async () => {
  mock = await startMockAnthropic({ seed: 7 });
  client = clientFor(mock);
});
afterAll(() => mock.close());

describe('POST /v1/messages', () => {
  it('returns a Message with text, usage and a request id', async () => {
    const { data, response, request_id } = await client.messages.create(request('Say hello')).withResponse();
    expect(data.type).toBe('message');
    expect(data.role).toBe('assistant');
    expect(data.model).toBe(MODEL);
    expect(data.id).toMatch(/^msg_[1-9A-HJ-NP-Za-km-z]{24}$/);
    expect(data.content).toHaveLength(1);
    const [block] = data.content;
    expect(block?.type).toBe('text');
    expect(block?.type === 'text' && block.text.length).toBeGreaterThan(0);
    expect(data.stop_reason).toBe('end_turn');
    expect(data.stop_sequence).toBeNull();
    expect(data.usage.input_tokens).toBe(Math.ceil('Say hello'.length / 4));
    expect(data.usage.cache_creation_input_tokens).toBe(0);
    expect(data.usage.cache_read_input_tokens).toBe(0);
    expect(data.usage.output_tokens).toBeGreaterThan(0);
    expect(request_id).toMatch(/^req_[1-9A-HJ-NP-Za-km-z]{24}$/);
    expect(response.headers.get('content-type')).toContain('application/json');
  });

  it('answers the same request with the same text', async () => {
    const first = await client.messages.create(request('Deterministic?'));
    const second = await client.messages.create(request('Deterministic?'));
    expect(second.content).toEqual(first.content);
    expect(second.usage.output_tokens).toBe(first.usage.output_tokens);
  });

  it('never exceeds max_tokens and then stops with max_tokens', async () => {
    const message = await client.messages.create(request('Long answer please', 3), { headers: { 'x-mock-output-tokens': '50' } });
    expect(message.usage.output_tokens).toBe(3);
    expect(message.stop_reason).toBe('max_tokens');
  });

  it('takes token counts from the x-mock headers', async () => {
    const message = await client.messages.create(request(), {
      headers: { 'x-mock-input-tokens': '100', 'x-mock-output-tokens': '9', 'x-mock-cache-read': '40', 'x-mock-cache-write': '5' },
    });
    expect(message.usage).toMatchObject({
      input_tokens: 100,
      output_tokens: 9,
      cache_read_input_tokens: 40,
      cache_creation_input_tokens: 5,
      cache_creation: { ephemeral_5m_input_tokens: 5, ephemeral_1h_input_tokens: 0 },
    });
    expect(message.content[0]?.type === 'text' && message.content[0].text.split(' ')).toHaveLength(9);
  });

  it('accepts x-api-key as well as Authorization: Bearer', async () => {
    const viaApiKey = new Anthropic({ baseURL: mock.url, apiKey: null, authToken: null, maxRetries: 0, defaultHeaders: { 'x-api-key': 'k' } });
    const message = await viaApiKey.messages.create(request());
    expect(message.type).toBe('message');
  });
});

describe('streaming', () => {
  it('sends the documented event order and a final message with usage', async () => {
    const stream = client.messages.stream({ ...request('Stream to me'), stream: true });
    const events: string[] = [];
    for await (const event of stream) events.push(event.type);
    const final = await stream.finalMessage();
    const deltas = events.filter((type) => type === 'content_block_delta').length;
    expect(deltas).toBeGreaterThan(0);
    expect(events).toEqual(['message_start', 'content_block_start', ...Array<string>(deltas).fill('content_block_delta'), 'content_block_stop', 'message_delta', 'message_stop']);
    expect(final.stop_reason).toBe('end_turn');
    expect(final.usage.input_tokens).toBe(Math.ceil('Stream to me'.length / 4));
    expect(final.usage.output_tokens).toBeGreaterThan(0);
    const nonStreamed = await client.messages.create(request('Stream to me'));
    const textOf = (message: Anthropic.Message) => message.content.map((block) => (block.type === 'text' ? block.text : ''));
    expect(textOf(final)).toEqual(textOf(nonStreamed));
  });

  it('streams raw events through create({ stream: true }) with cumulative usage', async () => {
    const stream = await client.messages.create({ ...request('raw', 5), stream: true }, { headers: { 'x-mock-output-tokens': '9' } });
    let lastUsage: Anthropic.MessageDeltaUsage | undefined;
    let text = '';
    for await (const event of stream) {
      if (event.type === 'message_start') expect(event.message.usage.output_tokens).toBe(1);
      if (event.type === 'content_block_delta' && event.delta.type === 'text_delta') text += event.delta.text;
      if (event.type === 'message_delta') {
        lastUsage = event.usage;
        expect(event.delta.stop_reason).toBe('max_tokens');
      }
    }
    expect(lastUsage?.output_tokens).toBe(5);
    expect(text.split(' ')).toHaveLength(5);
  });
});

describe('count_tokens', () => {
  it('matches the input tokens create reports and charges', async () => {
    const params = {
      model: MODEL,
      system: 'You are terse.',
      messages: [{ role: 'user' as const, content: [{ type: 'text' as const, text: 'How many tokens is this sentence?' }] }],
      tools: [{ name: 'lookup', description: 'Looks things up', input_schema: { type: 'object' as const, properties: {} } }],
    };
    const counted = await client.messages.countTokens(params);
    const created = await client.messages.create({ ...params, max_tokens: 16 });
    expect(counted.input_tokens).toBeGreaterThan(0);
    expect(created.usage.input_tokens).toBe(counted.input_tokens);
    const before = mock.stats().tokens.input_tokens.admitted;
    await client.messages.create({ ...params, max_tokens: 16 });
    expect(mock.stats().tokens.input_tokens.admitted - before).toBe(counted.input_tokens);
  });
});
