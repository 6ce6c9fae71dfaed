import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import { applyLimitsDocument, parseLimitsDocument } from '@tollgate/config';
import { startMockAnthropic, type MockAnthropic } from '@tollgate/mock-anthropic';
import { createProducer, type Producer } from '@tollgate/queue';
import { startRedis, uniqueName, type TestRedis } from '@tollgate/test-support';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jsonOf, runTollgate } from '../support/cli.js';
import { MODEL, startWithEnv } from '../support/fleet.js';
import { GATEWAY_ENTRY, WORKER_ENTRY, stopAllServices, type ServiceProcess } from '../support/processes.js';

/**
 * Issue 15, tenant budgets with real processes: the gateway, a worker and the mock. A tenant with a budget of 5,000
 * output tokens a day makes calls of max_tokens 2,000 (the mock answers each with exactly 2,000): two go through; the
 * third, which the budget (1,000 left) cannot cover, is answered 429 `rate_limit_error` with the Tollgate code
 * `tenant_budget_exceeded` and a retry-after, and never reaches the mock; another tenant's calls are unaffected.
 */
const KEY = 'sk-ant-budgets-e2e';
const BUDGET = 5_000;
const MAX_TOKENS = 2_000;
const CAPPED_TOKEN = 'tollgate-budgets-capped-token';
const FREE_TOKEN = 'tollgate-budgets-free-token';
const DAY_S = 24 * 60 * 60;

let redis: TestRedis;
let client: Redis;
let mock: MockAnthropic;
let dir: string;
let queue: string;
let producer: Producer;
let gatewayUrl: string;
const services: ServiceProcess[] = [];

const documentText = () =>
  [
    'accounts:',
    '  budgeted:',
    '    apiKeyEnv: BUDGETED_ANTHROPIC_KEY',
    `    baseUrl: ${mock.url}`,
    '    concurrency: 4',
    '    leaseTtlMs: 3000',
    '    pools:',
    "      all: { models: ['*'] }", // no output-token rate: the budget alone counts them
    'tenants:',
    `  capped: { tokenEnv: T_CAPPED, account: budgeted, budgets: { outputTokensPerDay: ${BUDGET} } }`,
    '  free: { tokenEnv: T_FREE, account: budgeted }',
    '',
  ].join('\n');

const sdk = (token: string) => new Anthropic({ baseURL: gatewayUrl, apiKey: token, maxRetries: 0 });
const call = (token: string, tag: string) => sdk(token).messages.create({ model: MODEL, max_tokens: MAX_TOKENS, messages: [{ role: 'user', content: `budget call ${tag}` }] });
/** The Messages calls that reached the mock, by their tag. */
const reachedMock = () =>
  mock
    .requests()
    .filter((entry) => entry.url.startsWith('/v1/messages'))
    .map((entry) => /budget call ([a-z0-9]+)/.exec(entry.body ?? '')?.[1]);

beforeAll(async () => {
  redis = await startRedis();
  client = new Redis(redis.url);
  mock = await startMockAnthropic({ apiKeys: [KEY], output: { tokensMin: MAX_TOKENS, tokensMax: MAX_TOKENS } });
  dir = await mkdtemp(join(tmpdir(), 'tollgate-budgets-'));
  const path = join(dir, 'tollgate.yaml');
  await writeFile(path, documentText());
  await applyLimitsDocument(client, parseLimitsDocument(documentText(), path));
  queue = uniqueName('budgets');
  const common = { REDIS_URL: redis.url, TOLLGATE_QUEUE: queue, TOLLGATE_CONFIG: path, LOG_LEVEL: 'warn' };
  services.push(await startWithEnv('worker-budgets', WORKER_ENTRY, { ...common, BUDGETED_ANTHROPIC_KEY: KEY, METRICS_PORT: '0' }));
  const gateway = await startWithEnv('gateway-budgets', GATEWAY_ENTRY, { ...common, PORT: '0', HOST: '127.0.0.1', T_CAPPED: CAPPED_TOKEN, T_FREE: FREE_TOKEN });
  services.push(gateway);
  gatewayUrl = gateway.ready.url ?? '';
  producer = createProducer({ redis: redis.url, queue, account: 'budgeted' });
  await producer.ready();
}, 60_000);
afterAll(async () => {
  await producer?.close();
  await Promise.all(services.map((service) => service.stop()));
  await stopAllServices();
  await mock?.close();
  client?.disconnect();
  await redis?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('tenant budgets through the gateway, a worker and the mock (issue 15)', () => {
  it('the call the budget cannot cover gets a 429 tenant_budget_exceeded with retry-after, and nothing of it reaches the mock; another tenant is unaffected', async () => {
    for (const tag of ['c1', 'c2']) expect((await call(CAPPED_TOKEN, tag)).usage.output_tokens).toBe(MAX_TOKENS);
    expect(reachedMock()).toEqual(['c1', 'c2']);

    const refused = await call(CAPPED_TOKEN, 'c3').then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(refused).toBeInstanceOf(Anthropic.RateLimitError);
    const error = refused as InstanceType<typeof Anthropic.RateLimitError>;
    expect(error.status).toBe(429);
    expect(error.error).toMatchObject({ type: 'error', error: { type: 'rate_limit_error', details: { error_code: 'tenant_budget_exceeded' } } });
    // a request id, as the API always gives one (the gateway's: nothing reached the upstream), in the body and the header
    expect((error.error as { request_id?: unknown }).request_id).toEqual(expect.any(String));
    expect(error.requestID).toBe((error.error as { request_id?: unknown }).request_id);
    const retryAfterS = Number(error.headers?.get('retry-after'));
    // 1,000 tokens left, 2,000 asked: 1,000 more at 5,000 a day is 17,280 s, rounded up (less what refilled since)
    console.log(`budgets e2e: third call refused, retry-after ${retryAfterS} s; body ${JSON.stringify(error.error)}`);
    expect(retryAfterS).toBeGreaterThan(((MAX_TOKENS - (BUDGET - 2 * MAX_TOKENS)) / BUDGET) * DAY_S - 60);
    expect(retryAfterS).toBeLessThanOrEqual(((MAX_TOKENS - (BUDGET - 2 * MAX_TOKENS)) / BUDGET) * DAY_S + 1);
    // the job failed for good at once: one attempt, no retries that would spin
    const jobId = error.headers?.get('tollgate-job-id') ?? '';
    const job = await producer.getJob(jobId);
    expect(job).toMatchObject({ state: 'failed', attemptsMade: 1 });

    // another tenant of the same account goes through; the refused call never reached the mock
    expect((await call(FREE_TOKEN, 'f1')).usage.output_tokens).toBe(MAX_TOKENS);
    expect(reachedMock()).toEqual(['c1', 'c2', 'f1']);
    // the tenant's smaller calls still fit what is left (1,000 tokens)
    const small = await sdk(CAPPED_TOKEN).messages.create({ model: MODEL, max_tokens: 500, messages: [{ role: 'user', content: 'budget call c4' }] });
    expect(small.usage.output_tokens).toBe(500);
    expect(reachedMock()).toEqual(['c1', 'c2', 'f1', 'c4']);

    // the worker's /metrics show what is left of the budget: 5,000 − 2 × 2,000 − 500 (+ a little refill)
    const metrics = await (await fetch(services[0]?.ready.url ?? '')).text();
    const remaining = /tollgate_tenant_budget_remaining_tokens\{account="budgeted",tenant="capped",dimension="outputTokensPerDay"\} (\S+)/.exec(metrics)?.[1];
    console.log(`budgets e2e: tollgate_tenant_budget_remaining_tokens of capped ${remaining}`);
    expect(Number(remaining)).toBeGreaterThanOrEqual(500);
    expect(Number(remaining)).toBeLessThan(520);
    // the refusal counts as the tenant's 429 of kind budget (the other tenant has none)
    const refusals = (tenant: string) =>
      [...metrics.matchAll(new RegExp(`tollgate_tenant_rate_limited_total\\{[^}]*tenant="${tenant}"[^}]*kind="budget"[^}]*\\} (\\S+)`, 'g'))].reduce(
        (sum, match) => sum + Number(match[1]),
        0,
      );
    console.log(`budgets e2e: tollgate_tenant_rate_limited_total kind budget: capped ${refusals('capped')}, free ${refusals('free')}`);
    expect(refusals('capped')).toBe(1);
    expect(refusals('free')).toBe(0);
    // and `tollgate status` beside its tenant view
    const env = { REDIS_URL: redis.url, TOLLGATE_NAME: 'budgeted', TOLLGATE_QUEUE: queue };
    const status = jsonOf<{ budgets: Record<string, Record<string, { tokens: number; capacity: number }>> }>(await runTollgate(['status', '--json'], env));
    expect(status.budgets.capped?.outputTokensPerDay?.capacity).toBe(BUDGET);
    expect(status.budgets.capped?.outputTokensPerDay?.tokens).toBeGreaterThanOrEqual(500);
    const text = await runTollgate(['status'], env);
    console.log(`budgets e2e: tollgate status shows\n${text.stdout.slice(text.stdout.indexOf('tenant budgets'))}`);
    expect(text.stdout).toMatch(/tenant budgets \(account budgeted; left \/ budget\)\n +capped +outputTokensPerDay +50\d(\.\d)? \/ 5000 +refills 5000\/day/);
  }, 60_000);
});
