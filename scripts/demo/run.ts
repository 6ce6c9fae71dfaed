// `npm run demo`: the same 400 jobs through 4 worker processes, with Tollgate and without, against a mock API account
// with a concurrency limit of 5 and per-minute limits. Every number shown is read from the mock upstream or the queue.
// `npm run demo -- --pools`: a mixed Sonnet/Haiku load against an account with two model pools (scripts/demo/pools.ts).
import { execFileSync } from 'node:child_process';
import { createLimiter } from '@tollgate/limiter';
import type { MockStats } from '@tollgate/mock-anthropic';
import { createProducer } from '@tollgate/queue';
import { RedisServerProcess } from '@tollgate/test-support';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { runPoolsDemo } from './pools.js';
import { MOCK_ENTRY, WORKER_ENTRY, entryCommand, spawnService, stopAllServices, type ServiceProcess } from '../../test/support/processes.js';

const POOLS_DEMO = process.argv.includes('--pools');
const JOBS = Number(process.env.DEMO_JOBS ?? 400);
const WORKERS = 4;
/** The mock account's limits; Tollgate is told the same. */
const ACCOUNT = { concurrency: 5, rpm: 1_200, itpm: 400_000, otpm: 80_000 } as const;
const MOCK_LATENCY_MS = 100;
const MOCK_PER_TOKEN_MS = 3;
/** Each phase stops after this long whatever is left, so the demo stays under 90 s; unfinished jobs are counted. */
const PHASE_DEADLINE_MS = Number(process.env.DEMO_PHASE_DEADLINE_MS ?? 35_000);
const TICK_MS = 200;
const MAX_TOKENS = [16, 32, 48, 64] as const;
const MODEL = 'claude-haiku-4-5';
const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';
const JOB_ATTEMPTS = 3;
const JOB_BACKOFF_MS = 1_000;

const tty = process.stdout.isTTY === true;
const color = (code: number) => (text: string | number) => (tty ? `\x1b[${code}m${text}\x1b[0m` : String(text));
const bold = color(1);
const dim = color(2);
const green = color(32);
const red = color(31);
const cyan = color(36);

interface PhaseResult {
  name: string;
  completed: number;
  failed: number;
  unfinished: number;
  calls: number;
  rateLimited: number;
  maxConcurrent: number;
  wallMs: number;
  utilization: number;
}

const cleanups: Array<() => Promise<unknown>> = [];
async function cleanup(): Promise<void> {
  await stopAllServices();
  for (const step of cleanups.reverse()) await step().catch(() => undefined);
}

async function redisAnswers(url: string): Promise<boolean> {
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 500 });
  client.on('error', () => {});
  try {
    await client.connect();
    return (await client.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    client.disconnect();
  }
}

async function chooseRedis(): Promise<{ url: string; how: string }> {
  if (process.env.REDIS_URL) return { url: process.env.REDIS_URL, how: 'REDIS_URL' };
  if (await redisAnswers(DEFAULT_REDIS_URL)) return { url: DEFAULT_REDIS_URL, how: 'local Redis on 127.0.0.1:6379' };
  try {
    execFileSync('redis-server', ['--version'], { stdio: 'ignore' });
  } catch {
    console.error(red('No Redis found.') + ' Set REDIS_URL, start Redis on 127.0.0.1:6379, or install redis-server:');
    console.error('  Debian/Ubuntu: sudo apt-get install -y redis-server    macOS: brew install redis    Docker: docker run -p 6379:6379 redis:7');
    process.exit(1);
  }
  const server = await RedisServerProcess.start();
  cleanups.push(() => server.close());
  return { url: server.url, how: `redis-server started by the demo on port ${server.port}` };
}

function jobParams(i: number) {
  return {
    model: MODEL,
    max_tokens: MAX_TOKENS[i % MAX_TOKENS.length] ?? 16,
    messages: [{ role: 'user' as const, content: `Demo job ${i}: ${'some context '.repeat(1 + (i % 50))}` }],
  };
}

const bar = (value: number, limit: number, width = 20) => {
  const filled = Math.min(width, Math.round((value / limit) * width));
  const text = '█'.repeat(filled) + '░'.repeat(width - filled);
  return value > limit ? red(text) : green(text);
};

/** Watches one phase: live line from the mock's stats and the job counts, until every job ended or the deadline. */
async function watch(name: string, mockUrl: string, ended: () => Promise<{ completed: number; failed: number }>): Promise<PhaseResult> {
  await fetch(`${mockUrl}/_mock/reset`, { method: 'POST' });
  const startedMs = performance.now();
  let samples = 0;
  let inFlightSum = 0;
  let counts: { completed: number; failed: number };
  let stats: MockStats;
  for (;;) {
    stats = (await (await fetch(`${mockUrl}/_mock/stats`)).json()) as MockStats;
    counts = await ended();
    samples += 1;
    inFlightSum += stats.inFlight;
    const elapsedS = (performance.now() - startedMs) / 1000;
    const done = counts.completed + counts.failed;
    const line =
      `${bold(name.padEnd(16))} ${String(done).padStart(4)}/${JOBS} done  in flight ${bar(stats.inFlight, ACCOUNT.concurrency)} ${String(stats.inFlight).padStart(2)}/${
        ACCOUNT.concurrency
      }` +
      `  ${(counts.completed / Math.max(elapsedS, 0.001)).toFixed(1).padStart(5)} jobs/s  429s ${
        (stats.byStatus['429'] ?? 0) > 0 ? red(stats.byStatus['429'] ?? 0) : green(0)
      }  ${dim(`${elapsedS.toFixed(1)} s`)}`;
    if (tty) process.stdout.write(`\r\x1b[2K${line}`);
    else if (samples % 10 === 1) console.log(line);
    if (done >= JOBS || performance.now() - startedMs > PHASE_DEADLINE_MS) break;
    await new Promise((resolve) => setTimeout(resolve, TICK_MS));
  }
  if (tty) process.stdout.write('\n');
  const wallMs = performance.now() - startedMs;
  return {
    name,
    completed: counts.completed,
    failed: counts.failed,
    unfinished: JOBS - counts.completed - counts.failed,
    calls: stats.messages,
    rateLimited: stats.byStatus['429'] ?? 0,
    maxConcurrent: stats.maxConcurrent,
    wallMs,
    utilization: inFlightSum / samples / ACCOUNT.concurrency,
  };
}

function table(results: readonly PhaseResult[]): void {
  const rows: Array<[string, (result: PhaseResult) => string]> = [
    ['jobs completed', (r) => `${r.completed}/${JOBS}`],
    ['jobs failed', (r) => String(r.failed)],
    ['jobs unfinished at the deadline', (r) => String(r.unfinished)],
    ['upstream 429s', (r) => String(r.rateLimited)],
    ['retries (upstream calls beyond one per job)', (r) => String(Math.max(0, r.calls - r.completed - r.failed))],
    ['max concurrent at the API (limit 5)', (r) => String(r.maxConcurrent)],
    ['wall time', (r) => `${(r.wallMs / 1000).toFixed(1)} s`],
    ['utilization (mean in flight ÷ limit)', (r) => `${Math.round(r.utilization * 100)}%`],
  ];
  const width = Math.max(...rows.map(([label]) => label.length));
  console.log(`\n${' '.repeat(width)}  ${results.map((r) => bold(r.name.padStart(16))).join('  ')}`);
  for (const [label, value] of rows) console.log(`${label.padEnd(width)}  ${results.map((r) => value(r).padStart(16)).join('  ')}`);
}

async function main(): Promise<void> {
  const demoStartedMs = performance.now();
  if (POOLS_DEMO) console.log(bold('Tollgate demo, model pools') + dim(': one API account whose Sonnet and Haiku models have separate limits'));
  else
    console.log(
      bold('Tollgate demo') +
        dim(`: ${JOBS} jobs, ${WORKERS} worker processes, one API account (concurrency ${ACCOUNT.concurrency}, ${ACCOUNT.rpm} RPM, ${ACCOUNT.itpm} ITPM, ${ACCOUNT.otpm} OTPM)`),
    );
  const redis = await chooseRedis();
  console.log(dim(`Redis: ${redis.how}`));
  const run = `demo-${process.pid}-${Date.now().toString(36)}`;
  const mockCommand = entryCommand(MOCK_ENTRY);
  const mock = await spawnService({
    name: 'mock-anthropic',
    ...mockCommand,
    env: {
      PORT: '0',
      MOCK_CONCURRENCY: String(ACCOUNT.concurrency),
      MOCK_RPM: String(ACCOUNT.rpm),
      MOCK_ITPM: String(ACCOUNT.itpm),
      MOCK_OTPM: String(ACCOUNT.otpm),
      MOCK_LATENCY_MS: String(MOCK_LATENCY_MS),
      MOCK_PER_TOKEN_MS: String(MOCK_PER_TOKEN_MS),
      LOG_LEVEL: 'warn',
    },
  });
  const mockUrl = mock.ready.url ?? '';
  console.log(dim(`Mock Anthropic API: ${mockUrl}`));
  if (POOLS_DEMO) {
    await runPoolsDemo({ redisUrl: redis.url, mockUrl, run, style: { bold, dim, green, red }, tty });
    console.log(dim(`Demo took ${((performance.now() - demoStartedMs) / 1000).toFixed(1)} s.`));
    return;
  }

  // 1. With Tollgate: the deployable worker, four processes sharing one limiter in Redis.
  const queue = `${run}-tollgate`;
  const fleetEnv = {
    REDIS_URL: redis.url,
    TOLLGATE_NAME: `${run}-limiter`,
    TOLLGATE_QUEUE: queue,
    TOLLGATE_CONCURRENCY: String(ACCOUNT.concurrency),
    TOLLGATE_RPM: String(ACCOUNT.rpm),
    TOLLGATE_ITPM: String(ACCOUNT.itpm),
    TOLLGATE_OTPM: String(ACCOUNT.otpm),
    ANTHROPIC_API_KEY: 'sk-ant-demo',
    ANTHROPIC_BASE_URL: mockUrl,
    WORKER_CONCURRENCY: '16',
    METRICS_PORT: '0',
    METRICS_HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
    WORKER_DRAIN_TIMEOUT_MS: '2000',
  };
  process.stdout.write(dim(`Starting ${WORKERS} Tollgate workers… `));
  const workerCommand = entryCommand(WORKER_ENTRY);
  const workers: ServiceProcess[] = await Promise.all(Array.from({ length: WORKERS }, (_, i) => spawnService({ name: `worker-${i + 1}`, ...workerCommand, env: fleetEnv })));
  console.log(dim('ready.'));
  const producer = createProducer({ redis: redis.url, queue });
  cleanups.push(() => producer.close());
  const limiter = createLimiter({ redis: redis.url, name: `${run}-limiter`, concurrency: ACCOUNT.concurrency });
  cleanups.push(() => limiter.close());
  await Promise.all(Array.from({ length: JOBS }, (_, i) => producer.enqueue(jobParams(i), { priority: i % 10 })));
  const withTollgate = await watch('with Tollgate', mockUrl, async () => {
    const counts = await producer.counts();
    return { completed: counts.completed, failed: counts.failed };
  });
  await Promise.all(workers.map((worker) => worker.stop()));
  await producer.queue.obliterate({ force: true }).catch(() => undefined); // leave no demo keys in a shared Redis

  // 2. Without Tollgate: the same jobs, each worker holding itself to the account's limit only within its own process.
  const naiveQueue = new Queue(`${run}-naive`, { connection: { url: redis.url } });
  cleanups.push(() => naiveQueue.close());
  const naiveCommand = entryCommand('scripts/demo/naive-worker.ts');
  process.stdout.write(dim(`Starting ${WORKERS} workers without Tollgate (local semaphore of ${ACCOUNT.concurrency} each, SDK retries on)… `));
  await Promise.all(
    Array.from({ length: WORKERS }, (_, i) =>
      spawnService({
        name: `naive-${i + 1}`,
        ...naiveCommand,
        env: {
          REDIS_URL: redis.url,
          DEMO_QUEUE: `${run}-naive`,
          DEMO_LOCAL_CONCURRENCY: String(ACCOUNT.concurrency),
          ANTHROPIC_BASE_URL: mockUrl,
          ANTHROPIC_API_KEY: 'sk-ant-demo',
        },
      }),
    ),
  );
  console.log(dim('ready.'));
  await naiveQueue.addBulk(
    Array.from({ length: JOBS }, (_, i) => ({
      name: 'messages',
      data: { params: jobParams(i) },
      opts: { priority: 1 + (i % 10), attempts: JOB_ATTEMPTS, backoff: { type: 'exponential', delay: JOB_BACKOFF_MS } },
    })),
  );
  const without = await watch('without Tollgate', mockUrl, async () => {
    const counts = await naiveQueue.getJobCounts('completed', 'failed');
    return { completed: counts.completed ?? 0, failed: counts.failed ?? 0 };
  });
  await naiveQueue.obliterate({ force: true }).catch(() => undefined);

  table([withTollgate, without]);
  console.log(
    dim(
      `\nSame jobs, same mock account, same 4 processes. Retries count every upstream call beyond one per job (Tollgate's own retries, the SDK's, BullMQ's). ` +
        `Utilization samples the mock's in-flight count every ${TICK_MS} ms. Demo took ${((performance.now() - demoStartedMs) / 1000).toFixed(1)} s.`,
    ),
  );
  console.log(
    `${cyan('Next:')} npm run demo -- --pools for an account with two model pools; docker compose up --build --scale worker=4, then open http://localhost:8080/ for the live dashboard.`,
  );
}

let exiting = false;
const shutdown = (code: number) => {
  if (exiting) return;
  exiting = true;
  void cleanup().finally(() => process.exit(code));
};
process.once('SIGINT', () => shutdown(130));
process.once('SIGTERM', () => shutdown(143));
main().then(
  () => shutdown(0),
  (error: unknown) => {
    console.error(red(`\ndemo failed: ${error instanceof Error ? error.message : String(error)}`));
    shutdown(1);
  },
);
