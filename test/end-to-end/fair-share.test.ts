import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { applyLimitsDocument, DOCUMENT_KEY, parseLimitsDocument } from '@tollgate/config';
import { startMockAnthropic, type MockAnthropic } from '@tollgate/mock-anthropic';
import { createProducer, type Producer } from '@tollgate/queue';
import { startRedis, uniqueName, type TestRedis } from '@tollgate/test-support';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODEL, startWithEnv } from '../support/fleet.js';
import { WORKER_ENTRY, stopAllServices, type ServiceProcess } from '../support/processes.js';

/**
 * Issue 15, tenants with real worker processes: each tenant of the limits document has a queue of its own on its
 * account (its backlog holds only its own worker slots; its cap is that queue's global concurrency), and the account's
 * limiter shares the account between the tenants that wait by their weights (start-time fair queuing, DESIGN §9).
 */
const KEY = 'sk-ant-tenants-e2e';
const CALL_MS = 100;
const CONCURRENCY = 4;
const WORKERS = 2;

let redis: TestRedis;
let client: Redis;
let mock: MockAnthropic;
let dir: string;
let queue: string;
let producer: Producer;
const workers: ServiceProcess[] = [];

const documentText = () =>
  [
    'accounts:',
    '  fair:',
    '    apiKeyEnv: FAIR_ANTHROPIC_KEY',
    `    baseUrl: ${mock.url}`,
    `    concurrency: ${CONCURRENCY}`,
    '    leaseTtlMs: 3000',
    '    pools:',
    "      all: { models: ['*'] }",
    'tenants:',
    '  flood: { tokenEnv: T_FLOOD, account: fair }',
    '  light: { tokenEnv: T_LIGHT, account: fair }',
    '  heavy: { tokenEnv: T_HEAVY, account: fair, weight: 3 }',
    '  slight: { tokenEnv: T_SLIGHT, account: fair, weight: 1 }',
    '  capped: { tokenEnv: T_CAPPED, account: fair, concurrency: 2 }',
    '  solo: { tokenEnv: T_SOLO, account: fair }',
    '',
  ].join('\n');

const request = (tag: string) => ({ model: MODEL, max_tokens: 8, messages: [{ role: 'user', content: `tenant job ${tag}` }] });

/** Enqueues `count` jobs of `tenant` at once; their ids. */
const enqueue = (tenant: string, count: number) => Promise.all(Array.from({ length: count }, (_, i) => producer.enqueue(request(`${tenant} ${i}`), { tenant })));

/** Each job's wait from its enqueue to its end, in ms (BullMQ's timestamps, one clock), once all have ended. */
async function waits(ids: readonly string[]): Promise<number[]> {
  await Promise.all(ids.map((id) => producer.wait(id, { timeoutMs: 120_000 })));
  const views = await Promise.all(ids.map((id) => producer.getJob(id)));
  return views.map((view) => (view?.finishedAtMs ?? Number.NaN) - (view?.createdAtMs ?? Number.NaN));
}

const median = (values: readonly number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? Number.NaN;

/** Removes what is still queued of `ids`, and waits for the running ones to end. */
async function drain(ids: readonly string[]): Promise<void> {
  const outcomes = await Promise.all(ids.map((id) => producer.cancel(id)));
  await Promise.all(ids.filter((_, i) => outcomes[i] === 'active').map((id) => producer.wait(id, { timeoutMs: 60_000 }).catch(() => {})));
}

beforeAll(async () => {
  redis = await startRedis();
  client = new Redis(redis.url);
  mock = await startMockAnthropic({ apiKeys: [KEY], limits: { concurrency: CONCURRENCY }, latency: { timeToFirstTokenMs: CALL_MS } });
  dir = await mkdtemp(join(tmpdir(), 'tollgate-tenants-'));
  const path = join(dir, 'tollgate.yaml');
  await writeFile(path, documentText());
  await applyLimitsDocument(client, parseLimitsDocument(documentText(), path));
  queue = uniqueName('tenants');
  const env = { REDIS_URL: redis.url, TOLLGATE_QUEUE: queue, TOLLGATE_CONFIG: path, FAIR_ANTHROPIC_KEY: KEY, METRICS_PORT: '0', LOG_LEVEL: 'warn', WORKER_CONCURRENCY: '16' };
  workers.push(...(await Promise.all(Array.from({ length: WORKERS }, (_, i) => startWithEnv(`worker-tenants-${i}`, WORKER_ENTRY, env)))));
  producer = createProducer({ redis: redis.url, queue });
  await producer.ready();
  await waits(await enqueue('solo', 8)); // warm: connections, the tenants' queues
}, 60_000);
afterAll(async () => {
  await producer?.close();
  await Promise.all(workers.map((worker) => worker.stop()));
  await stopAllServices();
  await mock?.close();
  client?.disconnect();
  await redis?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('tenants: fair share, caps (issue 15)', () => {
  it("a tenant's 1,000-job flood delays a light tenant's 20 jobs by little: their median wait within 3× of the light tenant alone", async () => {
    const alone = median(await waits(await enqueue('light', 20)));
    const flood = await enqueue('flood', 1_000);
    await expect.poll(async () => (await producer.tenantCounts()).find((row) => row.tenant === 'flood')?.inFlight ?? 0, { timeout: 10_000 }).toBeGreaterThan(16);
    const lightIds = await enqueue('light', 20);
    const behind = median(await waits(lightIds));
    const permitWaits = await Promise.all(lightIds.map(async (id) => (await producer.waitForResult(id)).upstream.waitedMs));
    console.log(`tenants: light's permit waits behind the flood, median ${Math.round(median(permitWaits))} ms`);
    const floodDone = (await Promise.all(flood.map((id) => producer.getJob(id)))).filter((view) => view?.state === 'completed').length;
    console.log(`tenants: light alone median ${Math.round(alone)} ms; behind a 1,000-job flood ${Math.round(behind)} ms (the flood had ${floodDone} done then)`);
    await drain(flood);
    expect(floodDone).toBeLessThan(500); // the light tenant did not wait for the flood
    expect(behind).toBeLessThanOrEqual(3 * Math.max(alone, CALL_MS));
  }, 120_000);

  it('weights 3:1, both saturating: 75% ± 5% / 25% ± 5% of the grants', async () => {
    const [heavy, slight] = await Promise.all([enqueue('heavy', 300), enqueue('slight', 300)]);
    await Promise.all([...heavy, ...slight].map((id) => producer.wait(id, { timeoutMs: 120_000 })));
    const views = await Promise.all([...heavy, ...slight].map(async (id) => ({ id, view: await producer.getJob(id) })));
    const heavySet = new Set(heavy);
    // while both had work queued: the first 300 jobs to end (the slight tenant alone runs the rest)
    const ended = views.sort((a, b) => (a.view?.finishedAtMs ?? 0) - (b.view?.finishedAtMs ?? 0)).slice(0, 300);
    const share = ended.filter((entry) => heavySet.has(entry.id)).length / ended.length;
    console.log(`tenants: weights 3:1, heavy's share of the first 300 ends ${(share * 100).toFixed(1)}%`);
    expect(share).toBeGreaterThanOrEqual(0.7);
    expect(share).toBeLessThanOrEqual(0.8);
  }, 120_000);

  it("a tenant capped at 2 with 100 jobs queued waits for its own releases; another tenant's job is granted at once", async () => {
    const capped = await enqueue('capped', 100);
    let cappedMax = 0;
    const sampler = setInterval(() => {
      void producer.tenantCounts().then((rows) => (cappedMax = Math.max(cappedMax, rows.find((row) => row.tenant === 'capped')?.inFlight ?? 0)));
    }, 20);
    try {
      await expect.poll(async () => (await producer.tenantCounts()).find((row) => row.tenant === 'capped')?.inFlight ?? 0, { timeout: 10_000 }).toBe(2);
      const solo = await producer.enqueue(request('solo while capped'), { tenant: 'solo' });
      const result = await producer.waitForResult(solo, { timeoutMs: 30_000 });
      const cappedLeft = (await producer.tenantCounts()).find((row) => row.tenant === 'capped');
      console.log(`tenants: solo waited ${result.upstream.waitedMs} ms for its permit; capped had ${cappedLeft?.waiting ?? 0} waiting, at most ${cappedMax} in flight`);
      expect(result.upstream.waitedMs).toBeLessThan(CALL_MS * 2); // not behind the capped tenant's 100 (2 at a time: 2.5 s)
      expect(cappedLeft?.waiting ?? 0).toBeGreaterThan(50);
      await waits(capped);
      expect(cappedMax).toBeLessThanOrEqual(2);
      expect(mock.stats().maxConcurrent).toBeLessThanOrEqual(CONCURRENCY);
      expect(mock.stats().byStatus['429'] ?? 0).toBe(0);
    } finally {
      clearInterval(sampler);
    }
  }, 120_000);

  it("Redis loses its data (FLUSHALL): the fleet's document comes back, and with it the capped tenant's cap", async () => {
    await client.flushall();
    // the workers' followers store the document they followed again (a limiter does the same with its limits)
    await expect.poll(() => client.exists(DOCUMENT_KEY), { timeout: 10_000 }).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 2_500)); // a poll period or two after the document is back
    let atMock = 0;
    const sampler = setInterval(() => (atMock = Math.max(atMock, mock.stats().inFlight)), 5);
    try {
      const capped = await enqueue('capped', 30);
      await waits(capped);
      console.log(`tenants: after FLUSHALL, the capped tenant (cap 2) had at most ${atMock} calls in flight at the mock (account concurrency ${CONCURRENCY})`);
      expect(atMock).toBeGreaterThan(0);
      expect(atMock).toBeLessThanOrEqual(2);
    } finally {
      clearInterval(sampler);
    }
  }, 120_000);
});
