import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import { startMockAnthropic, type MockAnthropic } from '@tollgate/mock-anthropic';
import { createWorker, type QueueWorker } from '@tollgate/queue';
import { queueKeys } from '@tollgate/queue/internal';
import { startRedis, uniqueName, type TestRedis } from '@tollgate/test-support';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildGateway, parseGatewayEnv, type Gateway } from '../src/index.js';
import { ADMIN_TOKEN } from './support.js';

/**
 * Issue 13, job queues per model pool, through the gateway (DESIGN §9): on an account with two pools a tenant's jobs go
 * on its pool's queue, `<queue>@<account>~<pool>#<tenant>`, and everything that finds a job by id (the wait of
 * `POST /v1/messages`, the SSE relay, `GET` and `DELETE /v1/jobs/:id`) finds it there. A worker in this process, the
 * mock upstream, a real Redis.
 */
const SEARCH_TOKEN = 'search-tenant-token-0123456789';
const API_KEY = 'sk-ant-gateway-pools';
const SONNET = 'claude-sonnet-4-5';
const HAIKU = 'claude-haiku-4-5';

let redis: TestRedis;
let client: Redis;
let mock: MockAnthropic;
let dir: string;
let gateway: Gateway;
let url: string;
let queue: string;
let worker: QueueWorker | undefined;

const ask = (model: string, tag: string, extra: Record<string, unknown> = {}) => ({ model, max_tokens: 16, messages: [{ role: 'user', content: `pools ${tag}` }], ...extra });
const post = (path: string, body: unknown) =>
  fetch(`${url}${path}`, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json', 'x-api-key': SEARCH_TOKEN } });
const jobsOn = async (name: string) => (await client.keys(`${queueKeys(name).jobPrefix}job_*`)).length;

beforeAll(async () => {
  redis = await startRedis();
  client = new Redis(redis.url);
  mock = await startMockAnthropic({ apiKeys: [API_KEY] });
  dir = await mkdtemp(join(tmpdir(), 'tollgate-gateway-pools-'));
  const path = join(dir, 'tollgate.yaml');
  await writeFile(
    path,
    [
      'accounts:',
      `  main: { apiKeyEnv: ANTHROPIC_API_KEY, baseUrl: "${mock.url}", concurrency: 4, pools: { sonnet: { models: ["claude-sonnet-4*"], rpm: 1000 }, haiku: { models: ["claude-haiku-4*"], rpm: 1000 } } }`,
      'tenants:',
      '  search: { tokenEnv: SEARCH_TOKEN_VAR, account: main }',
      '',
    ].join('\n'),
  );
  queue = uniqueName('gateway-pools');
  const env = parseGatewayEnv({ PORT: '0', HOST: '127.0.0.1', REDIS_URL: redis.url, TOLLGATE_QUEUE: queue, TOLLGATE_CONFIG: path, GATEWAY_ADMIN_TOKEN: ADMIN_TOKEN });
  gateway = await buildGateway(env, pino({ level: 'silent' }), { SEARCH_TOKEN_VAR: SEARCH_TOKEN });
  url = await gateway.app.listen({ port: 0, host: '127.0.0.1' });
});
afterAll(async () => {
  await worker?.close({ drainTimeoutMs: 0 });
  await gateway?.close();
  client.disconnect();
  await mock.close();
  await redis.close();
  await rm(dir, { recursive: true, force: true });
});

describe('the gateway on an account with two pools', () => {
  it("puts a tenant's jobs on its pool's queue; GET, DELETE, the wait and the SSE relay find them there", async () => {
    // no worker yet: the job stays queued on its pool's queue, where GET and DELETE find it
    const queued = await post('/v1/jobs', ask(SONNET, 'queued'));
    expect(queued.status).toBe(202);
    const { id } = (await queued.json()) as { id: string };
    expect(await jobsOn(`${queue}@main~sonnet#search`)).toBe(1);
    const shown = await fetch(`${url}/v1/jobs/${id}`, { headers: { 'x-api-key': SEARCH_TOKEN } });
    expect(shown.status).toBe(200);
    expect(await shown.json()).toMatchObject({ id, state: 'prioritized', tenant: 'search' });
    const cancelled = await fetch(`${url}/v1/jobs/${id}`, { method: 'DELETE', headers: { 'x-api-key': SEARCH_TOKEN } });
    expect(await cancelled.json()).toEqual({ id, cancelled: true });
    expect((await fetch(`${url}/v1/jobs/${id}`, { headers: { 'x-api-key': SEARCH_TOKEN } })).status).toBe(404);

    worker = createWorker({
      redis: redis.url,
      queue: `${queue}@main`,
      client: new Anthropic({ baseURL: mock.url, apiKey: API_KEY, maxRetries: 0 }),
      concurrency: 2,
      account: 'main',
    });
    await worker.ready();
    // the wait of a synchronous call
    const sonnet = await post('/v1/messages', ask(SONNET, 'sync'));
    expect(sonnet.status).toBe(200);
    expect(await sonnet.json()).toMatchObject({ type: 'message', model: SONNET });
    // the SSE relay of a streaming call, from the Haiku pool's queue
    const streamed = await post('/v1/messages', ask(HAIKU, 'stream', { stream: true }));
    expect(streamed.status).toBe(200);
    const text = await streamed.text();
    expect(text).toContain('event: message_start');
    expect(text).toContain('event: message_stop');
    expect(await jobsOn(`${queue}@main~sonnet#search`)).toBe(1);
    expect(await jobsOn(`${queue}@main~haiku#search`)).toBe(1);
    // a job run to its end, read back by id
    const later = (await (await post('/v1/jobs', ask(HAIKU, 'later'))).json()) as { id: string };
    await expect
      .poll(async () => ((await (await fetch(`${url}/v1/jobs/${later.id}`, { headers: { 'x-api-key': SEARCH_TOKEN } })).json()) as { state: string }).state, { timeout: 10_000 })
      .toBe('completed');
    expect(await gateway.producer.counts()).toMatchObject({ completed: 3, failed: 0 });
  });
});
