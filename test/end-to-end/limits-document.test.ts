import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { applyLimitsDocument, parseLimitsDocument, readStoredDocument } from '@tollgate/config';
import { readFleetLimits } from '@tollgate/limiter';
import { startMockAnthropic, type MockAnthropic } from '@tollgate/mock-anthropic';
import { createProducer } from '@tollgate/queue';
import { startRedis, uniqueName, type TestRedis } from '@tollgate/test-support';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODEL, settle, startWithEnv } from '../support/fleet.js';
import { WORKER_ENTRY, stopAllServices, type ServiceProcess } from '../support/processes.js';

/**
 * Issue 13 / DESIGN §8, with real worker processes: a worker started with TOLLGATE_CONFIG runs the document's account
 * (its key variable, its upstream, its limits) and, on first boot, stores the document; a worker started later with a
 * stale document (concurrency 20) joins a fleet whose document says 4: the fleet stays at 4 and the worker logs the
 * difference.
 */
const KEY = 'sk-ant-document-key';
const CONCURRENCY = 4;
const JOBS = 40;

let redis: TestRedis;
let client: Redis;
let mock: MockAnthropic;
let dir: string;
const workers: ServiceProcess[] = [];

const documentText = (concurrency: number, rpm = 100_000, account = 'main') =>
  [
    'accounts:',
    `  ${account}:`,
    '    apiKeyEnv: MAIN_ANTHROPIC_KEY',
    `    baseUrl: ${mock.url}`,
    `    concurrency: ${concurrency}`,
    '    leaseTtlMs: 3000',
    '    pools:',
    `      all: { models: ['*'], rpm: ${rpm} }`,
    '',
  ].join('\n');

beforeAll(async () => {
  redis = await startRedis();
  client = new Redis(redis.url);
  mock = await startMockAnthropic({ apiKeys: [KEY], limits: { concurrency: CONCURRENCY }, latency: { timeToFirstTokenMs: 30 } });
  dir = await mkdtemp(join(tmpdir(), 'tollgate-document-'));
});
afterAll(async () => {
  await Promise.all(workers.map((worker) => worker.stop()));
  await stopAllServices();
  await mock.close();
  client.disconnect();
  await redis.close();
  await rm(dir, { recursive: true, force: true });
});

describe('workers started with TOLLGATE_CONFIG (a limits document)', () => {
  it("run the document's account, store the document on first boot, and a stale document joins the fleet's limits with a warning", async () => {
    const queue = uniqueName('document');
    const fresh = join(dir, 'tollgate.yaml');
    const stale = join(dir, 'stale.yaml');
    await writeFile(fresh, documentText(CONCURRENCY));
    await writeFile(stale, documentText(20));
    // no ANTHROPIC_API_KEY, no TOLLGATE_* limit: the document names the key variable and states the limits
    const env = (path: string) => ({ REDIS_URL: redis.url, TOLLGATE_QUEUE: queue, TOLLGATE_CONFIG: path, MAIN_ANTHROPIC_KEY: KEY, METRICS_PORT: '0', LOG_LEVEL: 'info' });
    workers.push(await startWithEnv('worker-fresh', WORKER_ENTRY, env(fresh)));
    expect((await readStoredDocument(client))?.revision).toBe(1);
    expect((await readFleetLimits(client, 'main'))?.limits.concurrency).toBe(CONCURRENCY);

    const staleWorker = await startWithEnv('worker-stale', WORKER_ENTRY, env(stale));
    workers.push(staleWorker);
    const warning = staleWorker.logs.find((line) => typeof line.msg === 'string' && line.msg.includes("differs from the fleet's limits document"));
    expect(warning?.msg).toContain('accounts.main.concurrency: 4 → 20');
    expect((await readStoredDocument(client))?.revision).toBe(1); // the stale document was not stored
    expect((await readFleetLimits(client, 'main'))?.limits.concurrency).toBe(CONCURRENCY);

    const producer = createProducer({ redis: redis.url, queue });
    try {
      const ids = await Promise.all(
        Array.from({ length: JOBS }, (_, i) => producer.enqueue({ model: MODEL, max_tokens: 8, messages: [{ role: 'user', content: `document ${i}` }] })),
      );
      const outcomes = await settle(producer, ids);
      expect([...outcomes.failed.keys(), ...outcomes.lost]).toEqual([]);
      expect(outcomes.completed).toHaveLength(JOBS);
      const stats = mock.stats();
      expect(stats.byStatus['200']).toBe(JOBS); // the key from MAIN_ANTHROPIC_KEY, at the document's baseUrl
      expect(stats.maxConcurrent).toBeLessThanOrEqual(CONCURRENCY); // the fleet stayed at the document's 4, not the stale 20
      expect(stats.rateLimited).toEqual(expect.objectContaining({ concurrency: 0 }));
    } finally {
      await producer.close();
    }
  });

  it('a worker whose document is invalid, or names a key variable that is unset, exits 1 naming it', async () => {
    const bad = join(dir, 'bad.yaml');
    await writeFile(bad, documentText(0));
    const queue = uniqueName('document-bad');
    await expect(
      startWithEnv('worker-bad', WORKER_ENTRY, { REDIS_URL: redis.url, TOLLGATE_QUEUE: queue, TOLLGATE_CONFIG: bad, MAIN_ANTHROPIC_KEY: KEY, METRICS_PORT: '0' }),
    ).rejects.toThrow(/exited \(1\) before ready:[\s\S]*accounts\.main\.concurrency: Too small/);
    const good = join(dir, 'tollgate.yaml');
    await expect(startWithEnv('worker-no-key', WORKER_ENTRY, { REDIS_URL: redis.url, TOLLGATE_QUEUE: queue, TOLLGATE_CONFIG: good, METRICS_PORT: '0' })).rejects.toThrow(
      /exited \(1\) before ready:[\s\S]*MAIN_ANTHROPIC_KEY=unset is invalid/,
    );
  });

  it('an applied document (concurrency 6 → 3, RPM halved) reaches 3 running workers under load without a restart: from 1.1 s after the apply (heartbeat 200 ms) at most 3 in flight at the mock, nothing failed or lost', async () => {
    const queue = uniqueName('document-live');
    const account = uniqueName('live').replace(/[^A-Za-z0-9._-]/g, '-');
    const path = join(dir, 'live.yaml');
    await writeFile(path, documentText(6, 100_000, account));
    mock.setConfig({ limits: { concurrency: 6 }, latency: { timeToFirstTokenMs: 40 } });
    mock.reset();
    const env = {
      REDIS_URL: redis.url,
      TOLLGATE_QUEUE: queue,
      TOLLGATE_NAME: account,
      TOLLGATE_CONFIG: path,
      TOLLGATE_HEARTBEAT_MS: '200',
      MAIN_ANTHROPIC_KEY: KEY,
      METRICS_PORT: '0',
      LOG_LEVEL: 'warn',
    };
    const live = await Promise.all([1, 2, 3].map((i) => startWithEnv(`worker-live-${i}`, WORKER_ENTRY, env)));
    workers.push(...live);
    const producer = createProducer({ redis: redis.url, queue });
    try {
      const ids = await Promise.all(Array.from({ length: 300 }, (_, i) => producer.enqueue({ model: MODEL, max_tokens: 8, messages: [{ role: 'user', content: `live ${i}` }] })));
      await expect.poll(() => mock.stats().maxConcurrent, { timeout: 20_000 }).toBe(6); // the fleet runs at 6
      const applied = await applyLimitsDocument(client, parseLimitsDocument(documentText(3, 50_000, account), 'test'));
      expect(applied).toMatchObject({ changed: true });
      await new Promise((resolve) => setTimeout(resolve, 3 * 200 + 500)); // a heartbeat (200 ms) and the permits granted before it, ended (40 ms calls)
      mock.setConfig({ limits: { concurrency: 3 } }); // from now on a 4th call in flight is a concurrency 429 at the mock
      const rateLimitedBefore = mock.stats().rateLimited.concurrency;
      const outcomes = await settle(producer, ids);
      expect([...outcomes.failed.keys(), ...outcomes.lost]).toEqual([]);
      expect(outcomes.completed).toHaveLength(ids.length);
      expect(mock.stats().rateLimited.concurrency).toBe(rateLimitedBefore);
      expect((await readFleetLimits(client, account))?.limits).toMatchObject({ concurrency: 3, rates: { requests: { limit: 50_000 } } });
    } finally {
      await producer.close();
      await Promise.all(live.map((worker) => worker.stop()));
    }
  });
});
