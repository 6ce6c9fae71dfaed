import { startRedis, uniqueName, type TestRedis } from '@tollgate/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '@tollgate/limiter';
import { IdempotencyConflictError, InvalidRequestError, JOB_ID_PATTERN, JobLostError, RequestBody, createProducer, type Producer } from '../src/index.js';
import { randomJobId, bullmqPriority, queueKeys } from '../src/internal.js';
import { MODEL, rawJob, request, thrown } from './support.js';

let redis: TestRedis;
let producer: Producer;

beforeAll(async () => {
  redis = await startRedis();
  producer = createProducer({ redis: redis.url, queue: uniqueName('producer') });
});
afterAll(async () => {
  await producer.close();
  await redis.close();
});

async function totalJobs(): Promise<number> {
  const counts = await producer.counts();
  return Object.values(counts).reduce((sum, count) => sum + count, 0);
}

describe('enqueue validates the Messages request; nothing invalid enters the queue', () => {
  const cases: Array<[string, unknown, RegExp]> = [
    ['max_tokens missing', { model: MODEL, messages: [{ role: 'user', content: 'hi' }] }, /^max_tokens: .*\(got undefined\)/],
    ['max_tokens zero', { ...request(1), max_tokens: 0 }, /^max_tokens: .*>=1 \(got 0\)/],
    ['no messages', { ...request(1), messages: [] }, /^messages: .*\(got \[\]\)/],
    ['messages not a list', { ...request(1), messages: 'hi' }, /^messages: /],
    ['stream not a boolean', { ...request(1), stream: 'yes' }, /^stream: /],
    ['not an object', 'hello', /^\(root\): /],
  ];
  it.each(cases)('%s → InvalidRequestError naming the field, queue unchanged', async (_name, params, message) => {
    const before = await totalJobs();
    const error = await thrown(() => producer.enqueue(params));
    expect(error).toBeInstanceOf(InvalidRequestError);
    expect((error as InvalidRequestError).message).toMatch(message);
    expect((error as InvalidRequestError).status).toBe(400);
    expect(await totalJobs()).toBe(before);
  });

  it('bad options name the option, and nothing is enqueued', async () => {
    const before = await totalJobs();
    for (const [options, field] of [
      [{ priority: 10 }, /^priority: /],
      [{ tenant: 'has space' }, /^tenant: /],
      [{ idempotencyKey: '' }, /^idempotencyKey: /],
      [{ idempotencyKey: 'k'.repeat(257) }, /^idempotencyKey: /],
      [{ attempts: 0 }, /^attempts: /],
    ] as const) {
      const error = await thrown(() => producer.enqueue(request(1), options));
      expect((error as Error).message.replace('invalid enqueue options: ', '')).toMatch(field);
    }
    expect(await totalJobs()).toBe(before);
  });
});

describe('enqueue', () => {
  it('keeps the request as sent (key order included), the tenant and the priority', async () => {
    const params = { messages: [{ role: 'user', content: 'order' }], max_tokens: 8, model: MODEL };
    const id = await producer.enqueue(params, { tenant: 'web', priority: 2 });
    const job = await rawJob(producer.queue, id);
    expect(job?.data.body).toBe(JSON.stringify(params));
    expect(job?.data).toMatchObject({ v: 2, route: 'messages', headers: {}, tenant: 'web', priority: 2 });
    expect(job?.opts.priority).toBe(bullmqPriority(2));
    const view = await producer.getJob(id);
    expect(view).toMatchObject({ id, state: 'prioritized', tenant: 'web', priority: 2, result: null, error: null });
  });

  it('passes every field Tollgate does not read through untouched: unknown fields, roles, blocks (the upstream judges them)', async () => {
    const params = { zeta: { b: [1, { a: null }] }, ...request('loose'), temperature: 0.5, messages: [{ role: 'robot', content: [{ type: 'hologram', x: 1 }], extra: true }] };
    const id = await producer.enqueue(params, { headers: { 'anthropic-beta': 'b-1,b-2', 'anthropic-version': '2023-06-01' } });
    const job = await rawJob(producer.queue, id);
    expect(job?.data.body).toBe(JSON.stringify(params));
    expect(job?.data.headers).toEqual({ 'anthropic-beta': 'b-1,b-2', 'anthropic-version': '2023-06-01' });
  });

  it("keeps a RequestBody's text byte for byte (spacing, number spelling, escapes, integer-like keys)", async () => {
    const text = '{ "model": "claude-haiku-4-5", "max_tokens": 8,\n "z": {"2": 1.50, "1": "\\u00e9"}, "messages": [{"role": "user", "content": "hi"}] }';
    const id = await producer.enqueue(RequestBody.fromText(text));
    expect((await rawJob(producer.queue, id))?.data.body).toBe(text);
    expect(() => RequestBody.fromText('{"model": ')).toThrow(/^body: invalid JSON/);
    expect(() => RequestBody.fromText(JSON.stringify({ model: 'm', messages: [{}] }), 'count_tokens')).not.toThrow();
    expect(() => RequestBody.fromText(JSON.stringify({ model: 'm' }), 'count_tokens')).toThrow(/^messages: /);
  });

  it('refuses API headers that could split a header line', async () => {
    const error = await thrown(() => producer.enqueue(request(1), { headers: { 'anthropic-beta': 'a\r\nx-evil: 1' } }));
    expect((error as Error).message).toMatch(/^invalid enqueue options: headers\.anthropic-beta: /);
  });

  it('is idempotent by key within a tenant: the same request returns the same job; another body is refused; ids are derived', async () => {
    const before = await totalJobs();
    const first = await producer.enqueue(request('idem'), { idempotencyKey: 'idem-1', tenant: 'web' });
    const second = await producer.enqueue(request('idem'), { idempotencyKey: 'idem-1', tenant: 'web' });
    expect(second).toBe(first);
    expect(first).toMatch(JOB_ID_PATTERN);
    expect(first).not.toContain('idem-1');
    const conflict = await thrown(() => producer.enqueue(request('other text'), { idempotencyKey: 'idem-1', tenant: 'web' }));
    expect(conflict).toBeInstanceOf(IdempotencyConflictError);
    const otherTenant = await producer.enqueue(request('other text'), { idempotencyKey: 'idem-1', tenant: 'batch' });
    expect(otherTenant).not.toBe(first);
    expect(await totalJobs()).toBe(before + 2);
    expect(JSON.parse((await rawJob(producer.queue, first))?.data.body).messages[0].content).toBe('question idem');
    // the same body with other API headers is another request
    const otherHeaders = await thrown(() => producer.enqueue(request('idem'), { idempotencyKey: 'idem-1', tenant: 'web', headers: { 'anthropic-beta': 'b-1' } }));
    expect(otherHeaders).toBeInstanceOf(IdempotencyConflictError);
  });

  it('maps priorities 0..9 onto BullMQ priorities in the same order, all in one ordered set', () => {
    const mapped = Array.from({ length: 10 }, (_, priority) => bullmqPriority(priority));
    expect(mapped).toEqual([...mapped].sort((a, b) => a - b));
    expect(Math.min(...mapped)).toBeGreaterThan(0); // BullMQ's 0 would bypass the prioritized set
    expect(() => bullmqPriority(10)).toThrow(InvalidArgumentError);
  });

  it('uses one hash-tagged prefix, so every key of the queue is in one Cluster slot', async () => {
    const name = uniqueName('tagged');
    const keys = queueKeys(name);
    expect(keys.prefix).toMatch(/^\{[^{}]+\}$/);
    const tagged = createProducer({ redis: redis.url, queue: name });
    expect(keys.queueEvents).toBe(tagged.queue.keys.events); // the stream the producer's waits start reading at its end
    try {
      await tagged.enqueue(request('tag'));
      const { Redis } = await import('ioredis');
      const client = new Redis(redis.url);
      const found = await client.keys(`*${name}*`);
      client.disconnect();
      expect(found.length).toBeGreaterThan(0);
      for (const key of found) expect(key.startsWith(keys.prefix)).toBe(true);
    } finally {
      await tagged.close();
    }
  });

  it('wait on a job that does not exist fails at once as lost (503, retry), not at its deadline; a malformed id is refused', async () => {
    const id = randomJobId();
    const error = await thrown(() => producer.wait(id, { timeoutMs: 60_000 }));
    expect(error).toBeInstanceOf(JobLostError);
    expect(error).toMatchObject({ status: 503, message: `job ${id} was lost with the queue's data; retry` });
    expect(await thrown(() => producer.wait('wait', { timeoutMs: 60_000 }))).toBeInstanceOf(InvalidArgumentError);
  });

  it('cancel removes a waiting job; an unknown one is missing', async () => {
    const id = await producer.enqueue(request('cancel me'));
    expect(await producer.cancel(id)).toBe('cancelled');
    expect(await producer.getJob(id)).toBeUndefined();
    expect(await producer.cancel('no-such-job')).toBe('missing');
  });
});
