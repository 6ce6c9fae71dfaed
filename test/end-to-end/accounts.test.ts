import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { apiKeyFingerprint, startMockAnthropic, type MockAnthropic } from '@tollgate/mock-anthropic';
import { InvalidRequestError, createProducer, type Producer } from '@tollgate/queue';
import { startRedis, uniqueName, type TestRedis } from '@tollgate/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODEL, startWithEnv } from '../support/fleet.js';
import { WORKER_ENTRY, stopAllServices, type ServiceProcess } from '../support/processes.js';

/**
 * Issue 13, several accounts in one fleet, with real worker processes: two API keys at the mock with limits of their
 * own (account a: 1 in flight; account b: 8), one limits document naming both, two workers that each hold both keys.
 * Each job names its account; each account's jobs go on that account's own queue, so a's backlog (40 calls one at a
 * time) never holds the worker slots b's calls need.
 */
const KEY_A = 'sk-ant-account-a';
const KEY_B = 'sk-ant-account-b';
const LATENCY_MS = 200;
const JOBS_A = 40;
const JOBS_B = 80;
const WORKERS = 2;
/** Each worker's slots per queue: fewer than a's backlog, so that one shared queue would make b wait behind a. */
const WORKER_CONCURRENCY = 16;

let redis: TestRedis;
let mock: MockAnthropic;
let dir: string;
const workers: ServiceProcess[] = [];

const documentText = () =>
  [
    'accounts:',
    '  team-a:',
    '    apiKeyEnv: A_ANTHROPIC_KEY',
    `    baseUrl: ${mock.url}`,
    '    concurrency: 1',
    '    leaseTtlMs: 3000',
    '    pools:',
    "      all: { models: ['*'], rpm: 100000 }",
    '  team-b:',
    '    apiKeyEnv: B_ANTHROPIC_KEY',
    `    baseUrl: ${mock.url}`,
    '    concurrency: 8',
    '    leaseTtlMs: 3000',
    '    pools:',
    "      all: { models: ['*'], rpm: 100000 }",
    '',
  ].join('\n');

const request = (i: number) => ({ model: MODEL, max_tokens: 8, messages: [{ role: 'user', content: `account job ${i}` }] });

beforeAll(async () => {
  redis = await startRedis();
  mock = await startMockAnthropic({
    apiKeys: [KEY_A, KEY_B],
    keyLimits: { [KEY_A]: { concurrency: 1 }, [KEY_B]: { concurrency: 8 } },
    latency: { timeToFirstTokenMs: LATENCY_MS },
  });
  dir = await mkdtemp(join(tmpdir(), 'tollgate-accounts-'));
});
afterAll(async () => {
  await Promise.all(workers.map((worker) => worker.stop()));
  await stopAllServices();
  await mock.close();
  await redis.close();
  await rm(dir, { recursive: true, force: true });
});

describe('several accounts in one fleet (issue 13)', () => {
  it("two accounts, two keys with different limits: each key's limits held with 0 429s, and b's load is not held behind a's backlog", async () => {
    const queue = uniqueName('accounts');
    const path = join(dir, 'tollgate.yaml');
    await writeFile(path, documentText());
    const env = {
      REDIS_URL: redis.url,
      TOLLGATE_QUEUE: queue,
      TOLLGATE_CONFIG: path,
      A_ANTHROPIC_KEY: KEY_A,
      B_ANTHROPIC_KEY: KEY_B,
      WORKER_CONCURRENCY: String(WORKER_CONCURRENCY),
      METRICS_PORT: '0',
      LOG_LEVEL: 'info',
    };
    const started = await Promise.all(Array.from({ length: WORKERS }, (_, i) => startWithEnv(`worker-accounts-${i}`, WORKER_ENTRY, env)));
    workers.push(...started);
    // each worker says which accounts and queues it runs (a document with two accounts and no TOLLGATE_NAME: no default)
    for (const worker of started) {
      const running = () => worker.logs.find((line) => line.msg === 'accounts running') as { accounts?: Array<{ account: string; queues: string[] }> } | undefined;
      await expect.poll(() => running(), { timeout: 5_000 }).toBeDefined(); // a line of its stdout, read as it comes
      expect(running()?.accounts).toEqual([
        { account: 'team-a', queues: [`${queue}@team-a`] },
        { account: 'team-b', queues: [`${queue}@team-b`] },
      ]);
    }

    const a = createProducer({ redis: redis.url, queue, account: 'team-a' });
    const b = createProducer({ redis: redis.url, queue, account: 'team-b' });
    try {
      await Promise.all([a.ready(), b.ready()]);
      const aIds = await Promise.all(Array.from({ length: JOBS_A }, (_, i) => a.enqueue(request(i))));
      const startedAt = performance.now();
      const bIds = await Promise.all(Array.from({ length: JOBS_B }, (_, i) => b.enqueue(request(JOBS_A + i))));
      const bResults = await Promise.all(bIds.map((id) => b.waitForResult(id, { timeoutMs: 60_000 })));
      const bDoneMs = performance.now() - startedAt;
      const aLeft = await a.counts();
      // b alone needs 80 / 8 × 200 ms = 2 s; behind a's 40 calls one at a time it would need 8 s more
      expect(bDoneMs).toBeLessThan(6_000);
      expect(aLeft.waiting + aLeft.prioritized + aLeft.active).toBeGreaterThan(0); // a still had work: b was not waiting for it
      for (const result of bResults) expect(result.upstream.account).toBe('team-b');
      const aResults = await Promise.all(aIds.map((id) => a.waitForResult(id, { timeoutMs: 60_000 })));
      for (const result of aResults) expect(result.upstream.account).toBe('team-a');

      const stats = mock.stats();
      const keyA = stats.byKey[apiKeyFingerprint(KEY_A)];
      const keyB = stats.byKey[apiKeyFingerprint(KEY_B)];
      console.log(
        `accounts: b's ${JOBS_B} jobs done in ${Math.round(bDoneMs)} ms while a had ${aLeft.waiting + aLeft.prioritized + aLeft.active} left; ` +
          `key a: ${keyA?.requests} requests, max ${keyA?.maxConcurrent} in flight; key b: ${keyB?.requests} requests, max ${keyB?.maxConcurrent} in flight; 429s ${stats.byStatus['429'] ?? 0}`,
      );
      expect(stats.byStatus['429'] ?? 0).toBe(0);
      expect(keyA).toMatchObject({ requests: JOBS_A, maxConcurrent: 1 });
      expect(keyB?.requests).toBe(JOBS_B);
      expect(keyB?.maxConcurrent).toBeLessThanOrEqual(8);
      expect(keyB?.maxConcurrent).toBeGreaterThanOrEqual(6); // b ran at its own limit, not at a's
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('a job naming an account that the fleet document lacks is refused at enqueue, nothing queued', async () => {
    const queue = uniqueName('accounts-refused');
    let producer: Producer | undefined;
    try {
      producer = createProducer({ redis: redis.url, queue, account: 'team-c' });
      await producer.ready();
      await expect(producer.enqueue(request(0))).rejects.toThrow(InvalidRequestError);
      await expect(producer.enqueue(request(0))).rejects.toThrow(/account "team-c" is not in the fleet's limits document \(accounts: team-a, team-b\)/);
      expect(await producer.counts()).toMatchObject({ waiting: 0, prioritized: 0, active: 0 });
    } finally {
      await producer?.close();
    }
  });
});
