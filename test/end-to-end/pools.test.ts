import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { poolRates } from '@tollgate/config';
import { createLimiter, type Limiter } from '@tollgate/limiter';
import type { KeyStats, MockStats, StatsWindow } from '@tollgate/mock-anthropic';
import { RequestBody, accountQueueName, createProducer, poolQueueName, type Producer } from '@tollgate/queue';
import { queueKeys } from '@tollgate/queue/internal';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { startRedis, uniqueName, type TestRedis } from '@tollgate/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jobRecord, settle, startWithEnv } from '../support/fleet.js';
import { MOCK_ENTRY, WORKER_ENTRY, stopAllServices, type ServiceProcess } from '../support/processes.js';

/**
 * Issue 13 / DESIGN §9 with real processes: three worker processes started with TOLLGATE_CONFIG (a document whose
 * account has two pools, Sonnet-like and Haiku-like, and a count_tokens limit), the mock upstream as a process with
 * the same limits per pool. Per-minute limits are made quick with small bursts (as in
 * packages/anthropic/test/token-rates.test.ts): the refill rate, not the initial bucket, carries each run.
 */
const KEY = 'sk-ant-pools-e2e';
const MS_PER_MINUTE = 60_000;
const WINDOW_MS = 1_000;
const WORKERS = 3;
/**
 * The workers run at their default slots (WORKER_CONCURRENCY 16) on each queue. A job waiting for its permit holds a
 * worker slot; with the account's jobs on one BullMQ queue, 300 Sonnet jobs waiting on Sonnet's ITPM filled every slot
 * and Haiku jobs waited behind them (measured at 16 slots × 3 workers: 5.5 s, while the limiter granted Haiku at
 * once). With a queue per pool (`<queue>@<account>~<pool>`), each pool has its own slots.
 */
const WORKER_SLOTS = 16;
/** Each Haiku job enqueued behind the Sonnet backlog finishes within this, enqueue to finish, in ms. */
const HAIKU_JOB_MS_MAX = 500;
/** …of which at most this in its queue, before a worker starts it (behind one queue of the account's jobs: seconds), in ms. */
const HAIKU_QUEUED_MS_MAX = 250;
/**
 * The account's concurrency, shared by its pools: high enough not to bind. While 300 jobs are being taken, the
 * workers' event loops are busy and a granted call may hold its permit for most of a second: at 32, in flight
 * reached 31 of 32 just before a Haiku acquire once (it then waited 54 ms for a slot, not for a pool).
 */
const CONCURRENCY = 64;
/** The limiter's bucket capacities (the document's `burst`): small, so that a run lasts seconds, not minutes. */
const BURST = { rpm: 20, itpm: 2_500, otpm: 2_000, countTokensRpm: 5 };
/**
 * The mock's buckets are larger by what refills during this much dispatch jitter: a permit granted at t reaches the
 * mock at t + d, so calls granted in order may arrive bunched (token-rates.test.ts explains the figure).
 */
const DISPATCH_JITTER_MS = 1_000;
const SONNET = 'claude-sonnet-4-5';
const HAIKU = 'claude-haiku-4-5';
/**
 * Sonnet-like: ITPM-bound (1,000-char prompts = 250 input tokens, 16 output tokens); Haiku-like: OTPM-bound
 * (200-char prompts, 200 output tokens). Both run about 40 jobs/s at their limits, so neither pool's jobs pile up in
 * the workers' slots while the other's drain. RPM is within both limits and not binding.
 */
const POOLS = {
  sonnet: { models: ['claude-sonnet-4*'], model: SONNET, rpm: 4_000, itpm: 600_000, otpm: 200_000, promptChars: 1_000, maxTokens: 16, bound: 'inputTokens' },
  haiku: { models: ['claude-haiku-4*'], model: HAIKU, rpm: 3_500, itpm: 1_000_000, otpm: 480_000, promptChars: 200, maxTokens: 200, bound: 'outputTokens' },
} as const;
type PoolName = keyof typeof POOLS;
const COUNT_TOKENS_RPM = 900;
const JOBS_PER_POOL = 300;
/** One Messages job in this many is preceded by a count_tokens job of its request (the caller asks for the estimate). */
const COUNT_TOKENS_EVERY = 5;
const SHARE_MIN = 0.95;
const ENQUEUE_BATCH = 40;
const WARM_UP_JOBS = 120;
/** Every bucket refills from empty within this (the slowest: count_tokens' 5 at 15/s). */
const REFILL_MS = 500;
const TEST_TIMEOUT_MS = 60_000;

const perMs = (perMinute: number) => perMinute / MS_PER_MINUTE;
const mockBurst = (perMinute: number, burst: number) => Math.min(perMinute, burst + Math.ceil(perMs(perMinute) * DISPATCH_JITTER_MS));

let redis: TestRedis;
let mock: ServiceProcess;
let mockUrl: string;
let dir: string;
let account: string;
let queue: string;
let producer: Producer;
/** The test's own connection for BullMQ queues it pauses or counts. */
let admin: Redis;
const workers: ServiceProcess[] = [];

function documentText(): string {
  const pool = (name: PoolName) => {
    const p = POOLS[name];
    return `      ${name}: { models: ['${p.models[0]}'], rpm: ${p.rpm}, itpm: ${p.itpm}, otpm: ${p.otpm}, burst: { rpm: ${BURST.rpm}, itpm: ${BURST.itpm}, otpm: ${BURST.otpm} } }`;
  };
  return [
    'accounts:',
    `  ${account}:`,
    '    apiKeyEnv: POOLS_ANTHROPIC_KEY',
    `    baseUrl: ${mockUrl}`,
    `    concurrency: ${CONCURRENCY}`,
    '    leaseTtlMs: 3000',
    '    pools:',
    pool('sonnet'),
    pool('haiku'),
    `    countTokens: { rpm: ${COUNT_TOKENS_RPM}, burst: ${BURST.countTokensRpm} }`,
    '',
  ].join('\n');
}

/** The same limits at the mock, per pool, with the dispatch-jitter slack on each bucket. */
function mockLimits() {
  const pool = (name: PoolName) => {
    const p = POOLS[name];
    return {
      models: [...p.models],
      rpm: p.rpm,
      itpm: p.itpm,
      otpm: p.otpm,
      burst: { rpm: mockBurst(p.rpm, BURST.rpm), itpm: mockBurst(p.itpm, BURST.itpm), otpm: mockBurst(p.otpm, BURST.otpm) },
    };
  };
  return {
    concurrency: CONCURRENCY,
    countTokensRpm: COUNT_TOKENS_RPM,
    burst: { countTokensRpm: mockBurst(COUNT_TOKENS_RPM, BURST.countTokensRpm) },
    pools: { sonnet: pool('sonnet'), haiku: pool('haiku') },
  };
}

async function mockAdmin(path: 'config' | 'reset', body: unknown = {}): Promise<void> {
  const response = await fetch(`${mockUrl}/_mock/${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  if (!response.ok) throw new Error(`mock ${path}: ${response.status} ${await response.text()}`);
}
async function mockStats(): Promise<{ all: MockStats; key: KeyStats }> {
  const all = (await (await fetch(`${mockUrl}/_mock/stats`)).json()) as MockStats;
  const keys = Object.values(all.byKey);
  expect(keys).toHaveLength(1);
  return { all, key: keys[0] as KeyStats };
}

function request(pool: PoolName, i: number) {
  const p = POOLS[pool];
  const head = `${pool} job ${i} `;
  return { model: p.model, max_tokens: p.maxTokens, messages: [{ role: 'user' as const, content: head + 'x'.repeat(p.promptChars - head.length) }] };
}

/**
 * The windows of a series while it had work queued: from the one after its first non-empty window (that one holds
 * the initial burst) to the one before its last non-empty window (the last is partial: the work ran out in it).
 */
function busyWindows(windows: StatsWindow[], field: 'requests' | 'countTokens'): StatsWindow[] {
  const first = windows.findIndex((window) => window[field] > 0);
  let last = windows.length - 1;
  while (last >= 0 && (windows[last]?.[field] ?? 0) === 0) last -= 1;
  return windows.slice(first + 1, last);
}

interface Delivered {
  /** Per minute, averaged over the busy windows. */
  perMinute: number;
  share: number;
  windows: number[];
}

function delivered(windows: StatsWindow[], field: 'requests' | 'inputTokens' | 'outputTokens' | 'countTokens', limit: number, burst: number): Delivered {
  const values = windows.map((window) => window[field]);
  const sum = values.reduce((a, b) => a + b, 0);
  // within the limit: what the limiter may grant over these windows (its burst, the refill over them and over the
  // dispatch jitter at their edges); the mock's own bucket is exactly that large, so 0 429s says the same
  expect(sum).toBeLessThanOrEqual(burst + perMs(limit) * (windows.length * WINDOW_MS + DISPATCH_JITTER_MS));
  const perMinute = (sum / windows.length) * (MS_PER_MINUTE / WINDOW_MS);
  return { perMinute, share: perMinute / limit, windows: values };
}

beforeAll(async () => {
  redis = await startRedis();
  dir = await mkdtemp(join(tmpdir(), 'tollgate-pools-'));
  account = uniqueName('pools').replace(/[^A-Za-z0-9._-]/g, '-');
  queue = uniqueName('pools-queue').replace(/:/g, '-');
  mock = await startWithEnv('mock-anthropic', MOCK_ENTRY, { PORT: '0', MOCK_API_KEYS: KEY, LOG_LEVEL: 'warn' });
  mockUrl = mock.ready.url ?? '';
  // every answer is exactly max_tokens long, so the limiter's output reservation is what the mock counts
  await mockAdmin('config', {
    limits: mockLimits(),
    latency: { timeToFirstTokenMs: 5, perTokenMs: 0.01 },
    output: { tokensMin: 10_000, tokensMax: 10_000 },
    statsWindowMs: WINDOW_MS,
  });
  const path = join(dir, 'tollgate.yaml');
  await writeFile(path, documentText());
  const env = {
    REDIS_URL: redis.url,
    TOLLGATE_QUEUE: queue,
    TOLLGATE_CONFIG: path,
    POOLS_ANTHROPIC_KEY: KEY,
    WORKER_DRAIN_TIMEOUT_MS: '3000',
    METRICS_PORT: '0',
    LOG_LEVEL: 'warn',
  };
  // the first stores the document; the others join it
  workers.push(await startWithEnv('worker-1', WORKER_ENTRY, env));
  workers.push(...(await Promise.all(Array.from({ length: WORKERS - 1 }, (_, i) => startWithEnv(`worker-${i + 2}`, WORKER_ENTRY, env)))));
  producer = createProducer({ redis: redis.url, queue });
  admin = new Redis(redis.url, { maxRetriesPerRequest: null });
  await producer.ready();
  // a warm fleet (connections open, code compiled): a cold worker taking its first jobs at once stalls for up to a
  // second on these 2 shared cores, with its permits held (the account's concurrency, not a pool, then binds)
  const warmUp = await Promise.all(
    Array.from({ length: WARM_UP_JOBS }, (_, i) =>
      producer.enqueue(
        i % 6 === 5 ? RequestBody.fromParams({ model: HAIKU, messages: request('haiku', i).messages }, 'count_tokens') : request(i % 2 === 0 ? 'sonnet' : 'haiku', i),
      ),
    ),
  );
  const warmed = await settle(producer, warmUp, 20_000);
  expect(warmed.completed).toHaveLength(WARM_UP_JOBS);
}, TEST_TIMEOUT_MS);

/**
 * The queues this test's jobs go on (DESIGN §9): each pool's, and the account's own for count_tokens jobs (they take
 * no pool's permit). A producer without an account, on a fleet whose only account has several pools, uses that
 * account's queues (the plain queue is paused too: nothing may run before the windows start).
 */
function queues(): { all: Queue[]; sonnet: Queue } {
  const connection = admin;
  const open = (name: string) => new Queue(name, { connection, prefix: queueKeys(name).prefix, skipVersionCheck: true });
  const own = accountQueueName(queue, account);
  const sonnet = open(poolQueueName(own, 'sonnet'));
  return { all: [open(queue), open(own), sonnet, open(poolQueueName(own, 'haiku'))], sonnet };
}

afterAll(async () => {
  await producer?.close();
  admin?.disconnect();
  await Promise.all(workers.map((worker) => worker.stop()));
  await stopAllServices();
  await redis?.close();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

describe('pools with real worker processes (issue 13, DESIGN §9)', () => {
  it(
    `a mixed load (${2 * JOBS_PER_POOL} Messages jobs, half each pool, and count_tokens jobs): 0 429s, each pool at ≥ ${100 * SHARE_MIN}% of its binding limit and within every limit, count_tokens within its RPM`,
    async () => {
      // the buckets full again after the warm-up (or the test before), as the limits' steady state
      await new Promise((resolve) => setTimeout(resolve, REFILL_MS));
      // the whole load is queued before the workers may take any of it: the enqueue is not part of the measure
      const { all: paused } = queues();
      await Promise.all(paused.map((each) => each.pause()));
      // in order the pools alternate (each has its own queue, and so its own slots, anyway)
      const plan: { pool: PoolName; i: number; count: boolean }[] = [];
      for (let i = 0; i < JOBS_PER_POOL; i += 1) {
        for (const pool of ['sonnet', 'haiku'] as const) {
          if (i % COUNT_TOKENS_EVERY === 0) plan.push({ pool, i, count: true });
          plan.push({ pool, i, count: false });
        }
      }
      const messages: string[] = [];
      const counts: { id: string; expected: number }[] = [];
      for (let at = 0; at < plan.length; at += ENQUEUE_BATCH) {
        // a batch's commands go out on one connection in order
        const ids = await Promise.all(
          plan.slice(at, at + ENQUEUE_BATCH).map(({ pool, i, count }) => {
            const params = request(pool, i);
            return producer.enqueue(count ? RequestBody.fromParams({ model: params.model, messages: params.messages }, 'count_tokens') : params);
          }),
        );
        plan.slice(at, at + ENQUEUE_BATCH).forEach(({ pool, count }, k) => {
          const id = ids[k] ?? '';
          if (count) counts.push({ id, expected: Math.ceil(POOLS[pool].promptChars / 4) });
          else messages.push(id);
        });
      }
      await mockAdmin('reset'); // the windows start with the load, and the buckets are full, like the limiter's
      const startedAt = performance.now();
      await Promise.all(paused.map((each) => each.resume()));
      await Promise.all(paused.map((each) => each.close()));
      const outcomes = await settle(producer, [...messages, ...counts.map((count) => count.id)], 50_000);
      const elapsedMs = performance.now() - startedAt;
      expect([...outcomes.failed.values()].map((error) => error.message)).toEqual([]);
      expect(outcomes.lost).toEqual([]);
      // the count_tokens answers are the mock's estimate of each request
      const answers = await Promise.all(counts.map(async (count) => ((await producer.waitForResult(count.id)).answer as { input_tokens: number }).input_tokens));
      expect(answers).toEqual(counts.map((count) => count.expected));

      const { all, key } = await mockStats();
      expect(all.byStatus['429'] ?? 0).toBe(0);
      expect(all.rateLimited).toEqual({ concurrency: 0, requests: 0, input_tokens: 0, output_tokens: 0, spend: 0, injected: 0, count_tokens: 0 });
      expect(all.maxConcurrent).toBeLessThanOrEqual(CONCURRENCY);
      const report: string[] = [];
      const shares: { name: string; share: number }[] = [];
      for (const name of ['sonnet', 'haiku'] as const) {
        const p = POOLS[name];
        const stats = key.pools[name];
        expect(stats?.requests).toBe(JOBS_PER_POOL);
        const busy = busyWindows(stats?.windows ?? [], 'requests');
        expect(busy.length).toBeGreaterThanOrEqual(3);
        const rpm = delivered(busy, 'requests', p.rpm, BURST.rpm);
        const itpm = delivered(busy, 'inputTokens', p.itpm, BURST.itpm);
        const otpm = delivered(busy, 'outputTokens', p.otpm, BURST.otpm);
        const bound = p.bound === 'inputTokens' ? itpm : otpm;
        report.push(
          `${name}: ${p.bound === 'inputTokens' ? 'ITPM' : 'OTPM'} ${Math.round(bound.perMinute)}/min of ${p.bound === 'inputTokens' ? p.itpm : p.otpm} (${(100 * bound.share).toFixed(1)}%), ` +
            `RPM ${(100 * rpm.share).toFixed(1)}%, ITPM ${(100 * itpm.share).toFixed(1)}%, OTPM ${(100 * otpm.share).toFixed(1)}% over ${busy.length} windows ${JSON.stringify(bound.windows)}`,
        );
        shares.push({ name, share: bound.share });
      }
      const countBusy = busyWindows(key.windows, 'countTokens');
      expect(key.countTokens).toBe(counts.length);
      const countRate = delivered(countBusy, 'countTokens', COUNT_TOKENS_RPM, BURST.countTokensRpm);
      report.push(
        `count_tokens: ${Math.round(countRate.perMinute)}/min of ${COUNT_TOKENS_RPM} (${(100 * countRate.share).toFixed(1)}%) over ${countBusy.length} windows ${JSON.stringify(countRate.windows)}`,
      );
      console.log(`pools e2e load: ${outcomes.completed.length} jobs in ${Math.round(elapsedMs)} ms; ${report.join('; ')}`);
      for (const { name, share } of shares) expect(share, `${name}'s binding limit`).toBeGreaterThanOrEqual(SHARE_MIN);
    },
    TEST_TIMEOUT_MS,
  );

  it(
    `${WORKERS} workers at ${WORKER_SLOTS} slots, 300 Sonnet jobs waiting on Sonnet's ITPM: each Haiku job enqueued behind them finishes within ${HAIKU_JOB_MS_MAX} ms, and 20 Haiku acquires are each granted within 50 ms`,
    async () => {
      await mockAdmin('reset');
      // a client of the account's limiter in the test process, with the document's limits
      const limiter: Limiter = createLimiter({
        redis: redis.url,
        name: account,
        concurrency: CONCURRENCY,
        leaseTtlMs: 3_000,
        pools: Object.fromEntries(
          (['haiku', 'sonnet'] as const).map((name) => {
            const p = POOLS[name];
            return [name, poolRates({ models: [...p.models], rpm: p.rpm, itpm: p.itpm, otpm: p.otpm, burst: { rpm: BURST.rpm, itpm: BURST.itpm, otpm: BURST.otpm } })];
          }),
        ),
      });
      const { all, sonnet: sonnetQueue } = queues();
      try {
        await limiter.ready();
        await new Promise((resolve) => setTimeout(resolve, REFILL_MS));
        // one acquire before the measure, so that the measured ones are not this client's first (its code paths cold)
        await (await limiter.acquire({ pool: 'haiku', cost: { inputTokens: 1, outputTokens: 1 } })).release({ used: { inputTokens: 1, outputTokens: 1 } });
        const SONNET_JOBS = 300;
        const sonnet = await Promise.all(Array.from({ length: SONNET_JOBS }, (_, i) => producer.enqueue(request('sonnet', 10_000 + i))));
        /** Sonnet jobs not yet done: in the workers' slots waiting for a permit, or in Sonnet's queue waiting for a slot. */
        const sonnetBacklog = async () => {
          const counts = await sonnetQueue.getJobCounts('waiting', 'prioritized', 'active');
          return { slots: (await limiter.snapshot()).pools?.sonnet?.waiting ?? 0, queued: (counts.waiting ?? 0) + (counts.prioritized ?? 0), active: counts.active ?? 0 };
        };
        // the workers take what their slots hold (16 each); past the first burst each waits for Sonnet's ITPM (about 40
        // grants a second), the rest waits in Sonnet's queue
        await expect.poll(async () => (await sonnetBacklog()).slots, { timeout: 10_000, interval: 20 }).toBeGreaterThanOrEqual(WORKERS * WORKER_SLOTS - 8);
        const before = await sonnetBacklog();
        const HAIKU_ACQUIRES = 20;
        const latencies: number[] = [];
        const inFlight: number[] = [];
        // Haiku jobs through the workers at the same time: their pool's queue and slots are their own, so they run at once
        const haikuJobs: { id: string; enqueuedAt: number }[] = [];
        for (let i = 0; i < HAIKU_ACQUIRES; i += 1) {
          const enqueuedAt = Date.now();
          haikuJobs.push({ id: await producer.enqueue(request('haiku', 20_000 + i)), enqueuedAt });
          inFlight.push((await limiter.snapshot()).inFlight);
          const madeAt = performance.now();
          const permit = await limiter.acquire({ pool: 'haiku', cost: { inputTokens: 50, outputTokens: 20 }, timeoutMs: 5_000 });
          latencies.push(performance.now() - madeAt);
          await permit.release({ used: { inputTokens: 50, outputTokens: 20 } });
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        const after = await sonnetBacklog();
        const haikuOutcomes = await settle(
          producer,
          haikuJobs.map((job) => job.id),
          10_000,
        );
        const haikuRecords = await Promise.all(haikuJobs.map(async (job) => ({ job, record: await jobRecord(producer, job.id) })));
        const haikuMs = haikuRecords.map(({ job, record }) => record.finishedAtMs - job.enqueuedAt);
        /** Enqueue to a worker's start: the time in the queue, waiting for a slot. */
        const haikuQueuedMs = haikuRecords.map(({ job, record }) => record.processedAtMs - job.enqueuedAt);
        const sonnetOutcomes = await settle(producer, sonnet, 30_000);
        const sonnetWaitMs = await Promise.all(
          sonnet.map(async (id) => {
            const record = await jobRecord(producer, id);
            return record.finishedAtMs - record.createdAtMs;
          }),
        );
        const sorted = (values: number[]) => [...values].sort((a, b) => a - b);
        const median = (values: number[]) => sorted(values)[Math.floor(values.length / 2)] ?? Number.NaN;
        console.log(
          `pools e2e head-of-line (${WORKERS} workers × ${WORKER_SLOTS} slots): Sonnet backlog ${JSON.stringify(before)} → ${JSON.stringify(after)}; ` +
            `Haiku grant ms ${JSON.stringify(latencies.map((ms) => Math.round(ms * 10) / 10))} (max ${Math.max(...latencies).toFixed(1)}; in flight before each at most ${Math.max(...inFlight)} of ${CONCURRENCY}); ` +
            `Haiku jobs enqueue→finish ms ${JSON.stringify(haikuMs)} (max ${Math.max(...haikuMs)}, median ${median(haikuMs)}; of it in the queue ${JSON.stringify(haikuQueuedMs)}); ` +
            `Sonnet jobs enqueue→finish ms median ${median(sonnetWaitMs)}, max ${Math.max(...sonnetWaitMs)}`,
        );
        // Sonnet was saturated before the Haiku jobs and stayed so while they ran: its slots full, most of it queued
        expect(before.slots + before.queued).toBeGreaterThanOrEqual(200);
        expect(after.slots + after.queued).toBeGreaterThanOrEqual(100);
        expect(after.slots).toBeGreaterThanOrEqual(WORKERS * WORKER_SLOTS - 8);
        for (const latency of latencies) expect(latency).toBeLessThanOrEqual(50);
        expect([...haikuOutcomes.failed.keys(), ...haikuOutcomes.lost, ...sonnetOutcomes.failed.keys(), ...sonnetOutcomes.lost]).toEqual([]);
        for (const ms of haikuQueuedMs) expect(ms).toBeLessThanOrEqual(HAIKU_QUEUED_MS_MAX); // no Sonnet job ahead of it
        for (const ms of haikuMs) expect(ms).toBeLessThanOrEqual(HAIKU_JOB_MS_MAX);
        expect(Math.max(...haikuMs)).toBeLessThan(median(sonnetWaitMs) / 5); // far below the Sonnet wait
        const { all: stats } = await mockStats();
        expect(stats.byStatus['429'] ?? 0).toBe(0);
      } finally {
        await Promise.all(all.map((each) => each.close()));
        await limiter.close();
      }
    },
    TEST_TIMEOUT_MS,
  );
});
