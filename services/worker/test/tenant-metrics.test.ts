/**
 * Per-tenant metrics of a worker process (issue 15, "Visible"): the tokens settled for each tenant's completed jobs
 * (`tollgate_tenant_granted_tokens_total`, input and output, by pool) and the upstream 429s its calls met by kind
 * (`tollgate_tenant_rate_limited_total`), scraped from the /metrics of a real worker process after real jobs through
 * the real SDK to the mock, on a real Redis. The worker's limiter holds concurrency only, so the mock's own ITPM and
 * OTPM answer 429 (the wrapper waits out each `retry-after` and the job completes).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type Anthropic from '@anthropic-ai/sdk';
import { applyLimitsDocument, parseLimitsDocument } from '@tollgate/config';
import { startMockAnthropic, type MockAnthropic } from '@tollgate/mock-anthropic';
import { createProducer, type Producer } from '@tollgate/queue';
import { startRedis, uniqueName, type TestRedis } from '@tollgate/test-support';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { WORKER_ENTRY, spawnService, type ServiceProcess } from './processes.js';

const API_KEY = 'sk-ant-worker-tenant-metrics';
const MODEL = 'claude-haiku-4-5';
const SONNET = 'claude-sonnet-4-6';
/**
 * The mock's per-minute limits, with small buckets so that the second call of a kind finds its bucket short and the
 * refill behind the `retry-after` is about a second: ITPM 6,000 (100 a second) in a bucket of 150, OTPM 600 (10 a
 * second) in a bucket of 20 (`max_tokens` mode: admission needs `max_tokens` of balance).
 */
const MOCK_LIMITS = { itpm: 6_000, otpm: 600, burst: { itpm: 150, otpm: 20 }, otpmMode: 'max_tokens' } as const;
/** alpha's calls: 100 input tokens each (ceil(chars / 4)), one output token: the second finds 50 of ITPM left. */
const ALPHA = { tenant: 'alpha', promptChars: 400, maxTokens: 1 } as const;
/** beta's calls: a few input tokens, 15 output tokens each: the second finds at most 5 + refill of OTPM left. */
const BETA = { tenant: 'beta', promptChars: 8, maxTokens: 15 } as const;
const WAIT_MS = 60_000;
/** The settings every worker here runs with: one call at a time, so which call meets which empty bucket is fixed. */
const WORKER_SETTINGS = { ANTHROPIC_API_KEY: API_KEY, WORKER_CONCURRENCY: '1', METRICS_PORT: '0', METRICS_HOST: '127.0.0.1' };

let redis: TestRedis;
let mock: MockAnthropic;
let producer: Producer;
let worker: ServiceProcess;

beforeAll(async () => {
  redis = await startRedis();
});
afterEach(async () => {
  worker?.signal('SIGKILL');
  await worker?.exited;
  await producer?.close();
  await mock?.close();
});
afterAll(async () => {
  await redis?.close();
});

/** Two jobs of `spec`'s tenant (or none) and model, one after the other; their answers. */
async function twoJobs(spec: { tenant?: string; promptChars: number; maxTokens: number; model?: string }, tag: string): Promise<Anthropic.Message[]> {
  const answers: Anthropic.Message[] = [];
  for (let i = 0; i < 2; i++) {
    const content = `${tag}${i}`.padEnd(spec.promptChars, 'x');
    const params = { model: spec.model ?? MODEL, max_tokens: spec.maxTokens, messages: [{ role: 'user' as const, content }] };
    const id = await producer.enqueue(params, spec.tenant === undefined ? {} : { tenant: spec.tenant });
    answers.push(await producer.wait(id, { timeoutMs: WAIT_MS }));
  }
  return answers;
}

const sum = (answers: readonly Anthropic.Message[], pick: (usage: Anthropic.Usage) => number): number => answers.reduce((total, answer) => total + pick(answer.usage), 0);
const settledInput = (usage: Anthropic.Usage): number => usage.input_tokens + (usage.cache_creation_input_tokens ?? 0);

/** The value of one series of the scrape, or undefined when it is absent. */
function series(text: string, name: string, labels: string): number | undefined {
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${name}{${labels}} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

/** The worker's /metrics as text. */
const scrape = async (): Promise<string> => (await fetch(String(worker.ready.metricsUrl))).text();

/** One scrape's tenant counters of `account` (read at the scrape itself), its series that are not 0 printed. */
async function scrapeTenants(account: string) {
  const text = await scrape();
  console.log(
    text
      .split('\n')
      .filter((line) => line.startsWith('tollgate_tenant_') && !line.endsWith(' 0'))
      .join('\n'),
  ); // what was measured
  const labels = (pool: string, tenant: string) => `account="${account}",pool="${pool}",tenant="${tenant}"`;
  return {
    tokens: (pool: string, tenant: string, dimension: string) => series(text, 'tollgate_tenant_granted_tokens_total', `${labels(pool, tenant)},dimension="${dimension}"`),
    limited: (pool: string, tenant: string, kind: string) => series(text, 'tollgate_tenant_rate_limited_total', `${labels(pool, tenant)},kind="${kind}"`),
  };
}

describe('per-tenant metrics of a worker process', () => {
  it("counts each tenant's settled tokens and its 429s by kind; a job without a tenant counts under '-'", async () => {
    mock = await startMockAnthropic({ apiKeys: [API_KEY], limits: MOCK_LIMITS });
    const queue = uniqueName('tenant-metrics');
    const account = `${queue}-limiter`;
    producer = createProducer({ redis: redis.url, queue });
    worker = await spawnService(WORKER_ENTRY, {
      ...WORKER_SETTINGS,
      REDIS_URL: redis.url,
      ANTHROPIC_BASE_URL: mock.url,
      TOLLGATE_NAME: account,
      TOLLGATE_QUEUE: queue,
      TOLLGATE_CONCURRENCY: '4',
    });
    const alpha = await twoJobs(ALPHA, 'a');
    const beta = await twoJobs(BETA, 'b');
    const none = await twoJobs({ promptChars: 8, maxTokens: 1 }, 'n');
    const seen = mock.stats().rateLimited;
    expect(seen).toMatchObject({ input_tokens: 1, output_tokens: 1, requests: 0, concurrency: 0 }); // one 429 of each, as planned

    const scraped = await scrapeTenants(account);
    const tokens = (tenant: string, dimension: string) => scraped.tokens('default', tenant, dimension);
    const limited = (tenant: string, kind: string) => scraped.limited('default', tenant, kind);
    for (const [tenant, answers] of [
      ['alpha', alpha],
      ['beta', beta],
      ['-', none],
    ] as const) {
      expect(tokens(tenant, 'inputTokens'), `${tenant} input`).toBe(sum(answers, settledInput));
      expect(tokens(tenant, 'outputTokens'), `${tenant} output`).toBe(sum(answers, (usage) => usage.output_tokens));
    }
    expect(sum(alpha, settledInput)).toBeGreaterThanOrEqual(2 * 100); // the prompts' size as planned
    // the 429s, each under the tenant whose call met it; every kind's series is there, at 0 where none came
    expect([limited('alpha', 'itpm'), limited('alpha', 'otpm'), limited('alpha', 'rpm'), limited('alpha', 'concurrency'), limited('alpha', 'other')]).toEqual([1, 0, 0, 0, 0]);
    expect([limited('beta', 'itpm'), limited('beta', 'otpm'), limited('beta', 'rpm')]).toEqual([0, 1, 0]);
    expect([limited('-', 'itpm'), limited('-', 'otpm')]).toEqual([0, 0]);
    // the account's own counter has them too, as before (rate: a 429 with retry-after; added once a second)
    await expect.poll(async () => series(await scrape(), 'tollgate_upstream_rate_limited_total', `account="${account}",pool="default",kind="rate"`)).toBe(2);
  });

  it("with the limits document's pools and tenants (each tenant's own queue), each series carries the pool of the job's model", async () => {
    mock = await startMockAnthropic({
      apiKeys: [API_KEY],
      limits: { otpmMode: 'max_tokens', pools: { sonnet: { models: ['claude-sonnet-4*'], itpm: MOCK_LIMITS.itpm, burst: { itpm: MOCK_LIMITS.burst.itpm } } } },
    });
    const dir = await mkdtemp(join(tmpdir(), 'tollgate-tenant-metrics-'));
    const admin = new Redis(redis.url);
    try {
      const account = 'tm';
      const document = [
        'accounts:',
        `  ${account}:`,
        '    apiKeyEnv: ANTHROPIC_API_KEY',
        `    baseUrl: ${mock.url}`,
        '    concurrency: 4',
        '    pools:',
        "      sonnet: { models: ['claude-sonnet-4*'] }",
        "      haiku: { models: ['claude-haiku-4*'] }",
        'tenants:',
        `  alpha: { tokenEnv: T_ALPHA, account: ${account} }`,
        `  beta: { tokenEnv: T_BETA, account: ${account} }`,
        '',
      ].join('\n');
      const path = join(dir, 'tollgate.yaml');
      await writeFile(path, document);
      await applyLimitsDocument(admin, parseLimitsDocument(document, path)); // the fleet's document before any worker: its tenants' queues from the start
      const queue = uniqueName('tenant-metrics-pools');
      producer = createProducer({ redis: redis.url, queue });
      worker = await spawnService(WORKER_ENTRY, { ...WORKER_SETTINGS, REDIS_URL: redis.url, TOLLGATE_CONFIG: path, TOLLGATE_QUEUE: queue });
      const alpha = await twoJobs({ ...ALPHA, model: SONNET }, 'a'); // Sonnet's ITPM answers the second with a 429
      const beta = await twoJobs({ tenant: 'beta', promptChars: 8, maxTokens: 1 }, 'b'); // Haiku: no limits at the mock
      expect(mock.stats().rateLimited).toMatchObject({ input_tokens: 1, output_tokens: 0 });

      const { tokens, limited } = await scrapeTenants(account);
      expect([tokens('sonnet', 'alpha', 'inputTokens'), tokens('sonnet', 'alpha', 'outputTokens')]).toEqual([sum(alpha, settledInput), sum(alpha, (usage) => usage.output_tokens)]);
      expect([tokens('haiku', 'beta', 'inputTokens'), tokens('haiku', 'beta', 'outputTokens')]).toEqual([sum(beta, settledInput), sum(beta, (usage) => usage.output_tokens)]);
      expect(tokens('haiku', 'alpha', 'inputTokens')).toBeUndefined(); // alpha sent no Haiku call: no series of it
      expect(limited('sonnet', 'alpha', 'itpm')).toBe(1);
      expect(limited('haiku', 'beta', 'itpm')).toBe(0);
    } finally {
      admin.disconnect();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
