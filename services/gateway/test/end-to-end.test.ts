import Anthropic from '@anthropic-ai/sdk';
import { startMockAnthropic, type MockAnthropic } from '@tollgate/mock-anthropic';
import { createProducer, type Producer } from '@tollgate/queue';
import { startRedis, uniqueName, type TestRedis } from '@tollgate/test-support';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WORKER_ENTRY, killAll, spawnGateway, spawnService, type ServiceProcess } from './processes.js';
import { TOKENS, TOKEN_A, request } from './support.js';

const API_KEY = 'sk-ant-e2e-secret';
const SEED = 7;
const FLEET_CONCURRENCY = 4;
const WORKERS = 3;
const PRODUCER_JOBS = 300;
const GATEWAY_REQUESTS = 100;
/** Upstream time to first token: long enough that the fleet is always at its limit. */
const CALL_MS = 15;
const WAIT_MS = 120_000;
const SEQUENTIAL_STREAMS = 10;

let redis: TestRedis;
let mock: MockAnthropic;
/** Same seed, no limits: tells what the upstream answers to a request. */
let reference: MockAnthropic;
let producer: Producer;
let gatewayUrl: string;
const processes: ServiceProcess[] = [];

beforeAll(async () => {
  redis = await startRedis();
  mock = await startMockAnthropic({ seed: SEED, limits: { concurrency: FLEET_CONCURRENCY }, latency: { timeToFirstTokenMs: CALL_MS }, apiKeys: [API_KEY] });
  reference = await startMockAnthropic({ seed: SEED });
  const queue = uniqueName('e2e');
  const shared = {
    REDIS_URL: redis.url,
    TOLLGATE_QUEUE: queue,
    TOLLGATE_NAME: `${queue}-limiter`,
    TOLLGATE_CONCURRENCY: String(FLEET_CONCURRENCY),
    TOLLGATE_RPM: '100000',
    TOLLGATE_OTPM: '10000000',
  };
  const started = await Promise.all([
    ...Array.from({ length: WORKERS }, () =>
      spawnService(WORKER_ENTRY, {
        ...shared,
        ANTHROPIC_API_KEY: API_KEY,
        ANTHROPIC_BASE_URL: mock.url,
        WORKER_CONCURRENCY: '8',
        METRICS_PORT: '0',
        METRICS_HOST: '127.0.0.1',
        LOG_LEVEL: 'warn',
      }),
    ),
    spawnGateway({ ...shared, GATEWAY_TOKENS: TOKENS, GATEWAY_WAIT_MS: String(WAIT_MS), LOG_LEVEL: 'warn' }),
  ]);
  processes.push(...started);
  gatewayUrl = String(started.at(-1)?.ready.url);
  producer = createProducer({ redis: redis.url, queue });
});
afterAll(async () => {
  await killAll(processes);
  await producer?.close();
  await reference?.close();
  await mock?.close();
  await redis?.close();
});

const textOf = (message: Anthropic.Message) => message.content.map((block) => (block.type === 'text' ? block.text : '')).join('');

describe('end to end: producers and the gateway share one fleet limit', () => {
  it(`${PRODUCER_JOBS} queued jobs and ${GATEWAY_REQUESTS} SDK requests (half streamed) all complete within the limit`, async () => {
    const client = new Anthropic({ baseURL: gatewayUrl, apiKey: TOKEN_A, maxRetries: 0 });
    const queued = Promise.all(Array.from({ length: PRODUCER_JOBS }, (_, i) => producer.enqueueAndWait(request(`producer ${i}`), { priority: i % 10, timeoutMs: WAIT_MS })));
    const streamedTexts: string[] = [];
    const viaGateway = Promise.all(
      Array.from({ length: GATEWAY_REQUESTS }, async (_, i) => {
        const params = request(`gateway ${i}`, 48);
        if (i % 2 === 0) return { i, streamed: false, message: await client.messages.create(params) };
        const stream = client.messages.stream(params);
        let text = '';
        for await (const event of stream) if (event.type === 'content_block_delta' && event.delta.type === 'text_delta') text += event.delta.text;
        streamedTexts[i] = text;
        return { i, streamed: true, message: await stream.finalMessage() };
      }),
    );
    const [producerAnswers, gatewayAnswers] = await Promise.all([queued, viaGateway]);

    expect(producerAnswers).toHaveLength(PRODUCER_JOBS);
    expect(gatewayAnswers).toHaveLength(GATEWAY_REQUESTS);
    for (const answer of [...producerAnswers, ...gatewayAnswers.map((a) => a.message)]) expect(answer).toMatchObject({ type: 'message', role: 'assistant' });
    expect(await producer.counts()).toMatchObject({ completed: PRODUCER_JOBS + GATEWAY_REQUESTS, failed: 0, active: 0 });

    const stats = mock.stats();
    expect(stats.maxConcurrent).toBeLessThanOrEqual(FLEET_CONCURRENCY);
    expect(Object.values(stats.rateLimited).reduce((sum, n) => sum + n, 0)).toBe(0);
    expect(stats.byStatus['429']).toBeUndefined();
    expect(stats.byStatus['200']).toBe(PRODUCER_JOBS + GATEWAY_REQUESTS);

    // every streamed answer is the one the upstream generates for that request (same seed, same body → same text)
    const direct = new Anthropic({ baseURL: reference.url, apiKey: 'reference', maxRetries: 0 });
    let compared = 0;
    for (const { i, streamed, message } of gatewayAnswers) {
      const expected = textOf(await direct.messages.create(request(`gateway ${i}`, 48)));
      expect(textOf(message)).toBe(expected);
      if (streamed) {
        expect(streamedTexts[i]).toBe(expected);
        compared += 1;
      }
    }
    expect(compared).toBe(GATEWAY_REQUESTS / 2);
  });

  it('streaming requests one after another reuse the relay connection: no new Redis connection per stream', async () => {
    const client = new Anthropic({ baseURL: gatewayUrl, apiKey: TOKEN_A, maxRetries: 0 });
    const admin = new Redis(redis.url);
    try {
      const connections = async () => Number(/total_connections_received:(\d+)/.exec(await admin.info('stats'))?.[1]);
      await client.messages.stream(request('warm', 16)).finalMessage(); // the pool has a reader now
      const before = await connections();
      for (let i = 0; i < SEQUENTIAL_STREAMS; i += 1) {
        const message = await client.messages.stream(request(`sequential ${i}`, 16)).finalMessage();
        expect(message.stop_reason).toMatch(/^(end_turn|max_tokens)$/);
      }
      expect((await connections()) - before).toBe(0);
    } finally {
      admin.disconnect();
    }
  });
});
