import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { Queue } from 'bullmq';
import { DATASETS_KEY } from '@tollgate/limiter';
import type { Redis } from 'ioredis';
import type { OverlapServer, OverlapStats } from '@tollgate/test-support';
import type { ForkedWorker, WorkerPool } from './fleet.js';
import { firstLine } from './format.js';
import type { TrialSpec, WorkerResult } from './protocol.js';
import { commandsExecuted, redisCommandStats, redisCpuUs, resetRedisStats, type CommandStat } from './redis-stats.js';

/** A trial that takes longer than this is broken (a lost wake-up, a dead worker); it is abandoned. */
const TRIAL_TIMEOUT_MS = 120_000;
/** addBulk batch size: one round trip per batch while filling the queue before a run. */
const ENQUEUE_BATCH_SIZE = 500;

/** What every trial shares: the Redis server, an admin connection, the worker pool, the upstream. */
export interface TrialContext {
  redisUrl: string;
  admin: Redis;
  pool: WorkerPool;
}

/** The upstream the workers call, seen from the coordinator: its counters are zeroed at `go` and read at the end. */
export interface UpstreamProbe<S> {
  reset(): void;
  stats(): S;
}

/** The overlap server as a probe, its stats measured against the fleet `limit` (scenarios 1–3). */
export function overlapProbe(server: OverlapServer, limit: number): UpstreamProbe<OverlapStats> {
  return { reset: () => server.reset(), stats: () => server.stats({ limit }) };
}

export interface TrialPlan<S = OverlapStats> {
  /** One spec per worker process taking part. */
  specs: TrialSpec[];
  /** The upstream the workers call: the overlap server (direct and queue trials) or the mock Anthropic API (tokens). */
  upstream: UpstreamProbe<S> | undefined;
  /** queue: the jobs to enqueue before the run; the run ends when all have finished. */
  jobs: number;
  /** queue: BullMQ's queue-wide concurrency (`setGlobalConcurrency`), when this contender uses it. */
  globalConcurrency: number | undefined;
}

export interface TrialMeasurement<S = OverlapStats> {
  workers: WorkerResult[];
  /** From `go` to the last worker's report. */
  wallMs: number;
  /** Commands Redis executed during the run, scripts' inner commands included. */
  redisCommands: number;
  /** The same per command (`INFO commandstats`): calls and Redis µs. */
  redisCommandStats: Map<string, CommandStat>;
  /** CPU time the Redis server used during the run (user + system). */
  redisCpuUs: number;
  upstream: S | undefined;
}

async function withTimeout<T>(work: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  const controller = new AbortController();
  const timeout = sleep(timeoutMs, undefined, { signal: controller.signal }).then(() => {
    throw new Error(`${what} did not finish within ${timeoutMs} ms`);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    controller.abort();
    timeout.catch(() => {}); // the aborted sleep rejects; that is how the timer is cleared
  }
}

async function fillQueue<S>(redisUrl: string, plan: TrialPlan<S>, queueName: string): Promise<Queue> {
  const { hostname, port } = new URL(redisUrl);
  const queue = new Queue(queueName, { connection: { host: hostname, port: Number(port) } });
  if (plan.globalConcurrency !== undefined) await queue.setGlobalConcurrency(plan.globalConcurrency);
  for (let first = 0; first < plan.jobs; first += ENQUEUE_BATCH_SIZE) {
    const count = Math.min(ENQUEUE_BATCH_SIZE, plan.jobs - first);
    await queue.addBulk(
      Array.from({ length: count }, (_, offset) => ({
        name: 'call',
        data: {},
        opts: { jobId: `call-${first + offset}`, removeOnComplete: true, removeOnFail: false }, // fixed ids: reproducible
      })),
    );
  }
  return queue;
}

/** Starts every worker at once and waits for their reports (direct, micro) or for every job (queue). */
async function measure<S>(workers: ForkedWorker[], plan: TrialPlan<S>): Promise<WorkerResult[]> {
  const kind = plan.specs[0]?.kind;
  if (kind !== 'queue') {
    const done = workers.map((worker) => worker.request({ type: 'go' }, 'done'));
    return (await Promise.all(done)).map((message) => message.result);
  }
  let finished = 0;
  const allFinished = new Promise<void>((resolve) => {
    for (const worker of workers) {
      worker.onTick = () => {
        finished += 1;
        if (finished === plan.jobs) resolve();
      };
    }
  });
  const failure = Promise.race(workers.map((worker) => worker.failed));
  for (const worker of workers) worker.send({ type: 'go' });
  await Promise.race([allFinished, failure]);
  for (const worker of workers) worker.onTick = () => {};
  return (await Promise.all(workers.map((worker) => worker.request({ type: 'stop' }, 'done')))).map((message) => message.result);
}

/**
 * Runs one contender through one trial on fresh Redis state: set up every worker, reset the counters
 * (Redis commandstats, the upstream's overlap stats), start them together, collect what they measured.
 */
export async function runTrial<S = OverlapStats>(context: TrialContext, plan: TrialPlan<S>): Promise<TrialMeasurement<S>> {
  const workers = await context.pool.take(plan.specs.length);
  await context.admin.flushall();
  // no process of an earlier trial holds permits: mark the database as one that lost nothing, so that
  // Tollgate's first configure does not pause grants for the re-registration window of a lost dataset
  await context.admin.set(DATASETS_KEY, 'bench');
  const queueName = plan.specs[0]?.queueName ?? 'bench';
  const queue = plan.jobs > 0 ? await fillQueue(context.redisUrl, plan, queueName) : undefined;
  try {
    const run = async (): Promise<TrialMeasurement<S>> => {
      await Promise.all(workers.map((worker, index) => worker.request({ type: 'setup', spec: plan.specs[index] as TrialSpec }, 'ready')));
      await resetRedisStats(context.admin);
      plan.upstream?.reset();
      const cpuBeforeUs = await redisCpuUs(context.admin);
      const startedAtMs = performance.now();
      const results = await measure(workers, plan);
      const wallMs = performance.now() - startedAtMs;
      const commandStats = await redisCommandStats(context.admin);
      const cpuUsedUs = (await redisCpuUs(context.admin)) - cpuBeforeUs;
      const upstream = plan.upstream?.stats();
      await Promise.all(workers.map((worker) => worker.request({ type: 'teardown' }, 'tornDown')));
      return { workers: results, wallMs, redisCommands: commandsExecuted(commandStats), redisCommandStats: commandStats, redisCpuUs: cpuUsedUs, upstream };
    };
    return await withTimeout(run(), TRIAL_TIMEOUT_MS, `${plan.specs[0]?.contender ?? 'a'} trial`);
  } catch (error) {
    await context.pool.close(); // a worker in an unknown state is replaced before the next trial
    throw error;
  } finally {
    await queue?.close();
  }
}

/**
 * Runs every variant (a row of a scenario against the mock Anthropic API: 4-pools, fairness) as one trial, in order:
 * each its figures, or a failure naming it (no row). `line` is the progress line of a row.
 */
export async function runVariants<V extends { label: string }, S, R>(
  context: TrialContext,
  settings: { log: (line: string) => void; signal: AbortSignal; scenario: string },
  upstream: UpstreamProbe<S>,
  variants: readonly V[],
  plan: { specs: (variant: V) => TrialSpec[]; figures: (variant: V, measurement: TrialMeasurement<S>) => R; line: (row: R) => string },
): Promise<{ rows: R[]; failures: string[] }> {
  const rows: R[] = [];
  const failures: string[] = [];
  for (const variant of variants) {
    settings.signal.throwIfAborted();
    try {
      const measurement = await runTrial<S>(context, { specs: plan.specs(variant), upstream, jobs: 0, globalConcurrency: undefined });
      const row = plan.figures(variant, measurement);
      rows.push(row);
      settings.log(`scenario ${settings.scenario}: ${variant.label}: ${plan.line(row)}`);
    } catch (error) {
      failures.push(`${variant.label}: ${firstLine(error)}`);
      settings.log(`scenario ${settings.scenario}: ${variant.label} failed: ${String(error)}`);
    }
  }
  return { rows, failures };
}
