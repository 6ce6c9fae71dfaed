/**
 * Issue 13, several accounts in one fleet, with a real worker process on a real Redis: its metrics count every queue
 * it serves (the default account's own queue beside the plain one; another account's tenants under that account
 * only), and an account that a later apply adds is named in one warning (it is run only after a restart).
 */
import { applyLimitsDocument, validateLimitsDocument } from '@tollgate/config';
import { createLimiter, limiterOptionsFor, readFleetLimits, type Limiter } from '@tollgate/limiter';
import { createProducer, type Producer } from '@tollgate/queue';
import { startRedis, uniqueName, type TestRedis } from '@tollgate/test-support';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WORKER_ENTRY, spawnService, type ServiceProcess } from './processes.js';

const MODEL = 'claude-haiku-4-5';
/** Longer than the test: the jobs the worker takes wait for their permit meanwhile (they stay active, not done). */
const PAUSE_MS = 120_000;
/** How long to watch the log for a second warning after the first: several of the worker's document polls (1 s). */
const QUIET_MS = 3_500;

const account = (apiKeyEnv: string) => ({ apiKeyEnv, baseUrl: 'http://127.0.0.1:9', concurrency: 2, pools: { all: { models: ['*'], rpm: 1_000 } } });
const twoAccounts = { accounts: { main: account('MAIN_KEY'), batch: account('BATCH_KEY') }, tenants: { search: { tokenEnv: 'SEARCH_TOKEN', account: 'batch' } } };

let redis: TestRedis;
let client: Redis;
let dir: string;
let worker: ServiceProcess | undefined;
const closers: Array<() => Promise<unknown>> = [];

beforeAll(async () => {
  redis = await startRedis();
  client = new Redis(redis.url);
  dir = await mkdtemp(join(tmpdir(), 'tollgate-worker-accounts-'));
});
afterAll(async () => {
  worker?.signal('SIGKILL'); // its jobs wait on a paused limiter: nothing to drain
  await worker?.exited;
  for (const close of closers) await close();
  client.disconnect();
  await redis.close();
  await rm(dir, { recursive: true, force: true });
});

/** A limiter joined with the fleet's own limits (as `tollgate pause` opens one), paused for the test. */
async function pausedLimiter(name: string): Promise<Limiter> {
  const reading = await readFleetLimits(client, name);
  if (reading === undefined) throw new Error(`no limiter ${name} in Redis`);
  const limiter = createLimiter({ ...limiterOptionsFor(reading.limits, client, name), redis: redis.url });
  closers.push(() => limiter.close());
  await limiter.ready();
  await limiter.pause(PAUSE_MS, 'test: hold every grant');
  return limiter;
}

/** The value of one series in a Prometheus text, 0 when absent. */
const series = (text: string, name: string, labels: string) =>
  Number(new RegExp(`^${name}\\{${labels.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
/** Jobs of `queue` not finished (waiting for a worker or held by one), as the worker's metrics count them. */
const unfinished = (text: string, queue: string) =>
  ['waiting', 'prioritized', 'delayed', 'active'].reduce((sum, state) => sum + series(text, 'tollgate_queue_jobs', `queue="${queue}",state="${state}"`), 0);

describe('a worker running two accounts, main its default', () => {
  it("counts the default account's own queue beside the plain one, another account's tenants under that account; warns once of an account a later apply adds", async () => {
    const queue = uniqueName('worker-accounts');
    const path = join(dir, 'tollgate.yaml');
    await writeFile(path, JSON.stringify(twoAccounts)); // YAML is a superset of JSON
    worker = await spawnService(WORKER_ENTRY, {
      REDIS_URL: redis.url,
      TOLLGATE_CONFIG: path,
      TOLLGATE_NAME: 'main',
      TOLLGATE_QUEUE: queue,
      MAIN_KEY: 'sk-ant-main',
      BATCH_KEY: 'sk-ant-batch',
      WORKER_CONCURRENCY: '1',
      METRICS_PORT: '0',
      METRICS_HOST: '127.0.0.1',
    });
    // a line of its stdout, read as it comes (pino's writes may reach the pipe after the ready line)
    const started = worker;
    await expect.poll(() => started.logs.find((line) => line.msg === 'accounts running'), { timeout: 5_000 }).toBeDefined();
    expect(worker.logs.find((line) => line.msg === 'accounts running')?.accounts).toEqual([
      { account: 'main', queues: [queue, `${queue}@main`] },
      { account: 'batch', queues: [`${queue}@batch`, `${queue}@batch#search`] }, // with its tenant's queue, from the fleet's document
    ]);
    await pausedLimiter('main');
    await pausedLimiter('batch');
    const producer = (options: { account?: string }): Producer => {
      const made = createProducer({ redis: redis.url, queue, ...options, ...(options.account === undefined ? { tenantPolicy: 'none' as const } : {}) });
      closers.push(() => made.close());
      return made;
    };
    const request = (i: number) => ({ model: MODEL, max_tokens: 8, messages: [{ role: 'user' as const, content: `accounts ${i}` }] });
    const plain = producer({}); // an older producer's jobs on the plain queue (the default account's workers take them)
    for (let i = 0; i < 3; i += 1) await plain.enqueue(request(i));
    const main = producer({ account: 'main' });
    for (let i = 0; i < 2; i += 1) await main.enqueue(request(i));
    const batch = producer({ account: 'batch' });
    for (let i = 0; i < 4; i += 1) await batch.enqueue(request(i));
    await batch.enqueue(request(9), { tenant: 'search' }); // on batch's tenant queue, q@batch#search

    const scrape = async () => (await fetch(String(worker?.ready.metricsUrl))).text();
    const text = await scrape();
    const counts = { plain: unfinished(text, queue), main: unfinished(text, `${queue}@main`), batch: unfinished(text, `${queue}@batch`) };
    // (one pool: a limiter without pools, so pool "default")
    const tenant = (accountName: string) =>
      series(text, 'tollgate_tenant_jobs_waiting', `account="${accountName}",pool="default",tenant="search"`) +
      series(text, 'tollgate_tenant_jobs_in_flight', `account="${accountName}",pool="default",tenant="search"`);
    console.log(`worker metrics: unfinished jobs ${JSON.stringify(counts)}; tenant search under main ${tenant('main')}, under batch ${tenant('batch')}`);
    expect(counts).toEqual({ plain: 3, main: 2, batch: 4 + 1 }); // batch's queue counts its tenant's queue with it
    expect(tenant('batch')).toBe(1);
    expect(tenant('main')).toBe(0);

    // an apply adds account extra: the worker runs it only after a restart, and says so once
    await applyLimitsDocument(client, validateLimitsDocument({ ...twoAccounts, accounts: { ...twoAccounts.accounts, extra: account('EXTRA_KEY') } }));
    const warnings = () => worker?.logs.filter((line) => line.level === 40 && line.account === 'extra') ?? [];
    await expect.poll(() => warnings().length, { timeout: 10_000 }).toBe(1);
    expect(warnings()[0]).toMatchObject({ apiKeyEnv: 'EXTRA_KEY', config: path });
    expect(String(warnings()[0]?.msg)).toBe(
      `account extra is in the fleet's limits document but not in this worker's ${path}: its jobs (queue ${queue}@extra) are not run here until the worker is restarted with it there and EXTRA_KEY set`,
    );
    await new Promise((resolve) => setTimeout(resolve, QUIET_MS));
    // another apply (a new revision, the same accounts) says nothing more
    await applyLimitsDocument(client, validateLimitsDocument({ ...twoAccounts, accounts: { ...twoAccounts.accounts, extra: { ...account('EXTRA_KEY'), concurrency: 3 } } }));
    await new Promise((resolve) => setTimeout(resolve, QUIET_MS));
    expect(warnings()).toHaveLength(1);
    expect(
      worker.logs.filter(
        (line) => line.level === 40 && typeof line.account === 'string' && line.account !== 'extra' && String(line.msg).includes("fleet's limits document but not"),
      ),
    ).toHaveLength(0);
  });
});
