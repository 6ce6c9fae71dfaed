import Anthropic from '@anthropic-ai/sdk';
import { once } from 'node:events';
import { performance } from 'node:perf_hooks';
import { toError } from '@tollgate/limiter/internal';
import { REDACTED_LOG_PATHS, limitAnthropic, type LimitedAnthropic } from '@tollgate/anthropic';
import { LimiterUnavailableError, createLimiter } from '@tollgate/limiter';
import { createProducer, createWorker } from '@tollgate/queue';
import { resolvePool } from '@tollgate/config';
import {
  DeltaTracker,
  addFleetStats,
  commandConnection,
  EnvError,
  countTokensLimiterOptionsFromEnv,
  joinFleetDocumentLogged,
  limiterOptionsFromDocument,
  limiterOptionsFromEnv,
  processDocumentFromEnv,
  queueKeys,
  redisFromEnv,
  withDeadline,
  type FleetStats,
} from '@tollgate/queue/internal';
import { pino, type Logger } from 'pino';
import type { WorkerEnv } from './env.js';
import { ServiceMetrics } from './metrics.js';
import { startMetricsServer, type Readiness } from './metrics-server.js';

/** How often this process adds its counters to the fleet-wide stats hash, in ms. */
export const FLEET_STATS_INTERVAL_MS = 1_000;
/** Extra time after the drain timeout for releasing permits and closing connections, in ms. */
export const CLOSE_GRACE_MS = 5_000;

/** A running worker process. */
export interface WorkerService {
  metricsUrl: string;
  logger: Logger;
  /** Drains (up to `WORKER_DRAIN_TIMEOUT_MS`), releases every permit, closes connections. Idempotent. */
  close(): Promise<void>;
}

/** The process's logger: JSON lines on stdout, secrets redacted, never prompt text (nothing logs it). */
export function createLogger(level: WorkerEnv['LOG_LEVEL']): Logger {
  return pino({ level, base: { service: 'tollgate-worker', pid: process.pid }, redact: [...REDACTED_LOG_PATHS, 'ANTHROPIC_API_KEY'] });
}

/** Counts every upstream answer by status, and failed connections, around the SDK's fetch. */
function countingFetch(metrics: ServiceMetrics, totals: FleetStats): typeof fetch {
  const count = (status: string) => {
    metrics.upstreamAnswered(status);
    totals[`upstream:${status}`] = (totals[`upstream:${status}`] ?? 0) + 1;
  };
  return async (input, init) => {
    try {
      const response = await fetch(input, init);
      count(String(response.status));
      return response;
    } catch (error) {
      if (!(init?.signal?.aborted ?? false)) count('connection');
      throw error;
    }
  };
}

/** The first wait between start attempts, doubled after each failure up to {@link START_RETRY_MS_MAX}, in ms. */
export const START_RETRY_MS_MIN = 250;
export const START_RETRY_MS_MAX = 5_000;

/**
 * Runs `attempt` until it succeeds, waiting with backoff between failures that `retryable` accepts, each logged at
 * warn; after `timeoutMs` the last failure is thrown, and any other failure at once. A worker started before Redis (a
 * deploy, a Redis failover, a slow Redis under load) thus waits for it instead of exiting.
 */
export async function retryAtStart(
  attempt: () => Promise<void>,
  options: { timeoutMs: number; logger: Logger; retryable: (error: unknown) => boolean; onFailure?: (message: string) => void },
): Promise<void> {
  const deadline = performance.now() + options.timeoutMs;
  for (let delayMs = START_RETRY_MS_MIN, attempts = 1; ; delayMs = Math.min(START_RETRY_MS_MAX, delayMs * 2), attempts += 1) {
    try {
      await attempt();
      return;
    } catch (error) {
      const message = toError(error).message;
      options.onFailure?.(message);
      if (!options.retryable(error)) throw error; // a refused configuration is not cured by waiting
      const leftMs = deadline - performance.now();
      if (leftMs <= 0) throw new Error(`gave up after ${attempts} attempts in WORKER_START_TIMEOUT_MS=${options.timeoutMs}: ${message}`, { cause: error });
      options.logger.warn(
        { attempt: attempts, retryInMs: Math.round(Math.min(delayMs, leftMs)), err: { name: toError(error).name, message } },
        'start: the limiter is not ready yet; retrying',
      );
      await new Promise((resolve) => setTimeout(resolve, Math.min(delayMs, leftMs)));
    }
  }
}

/**
 * Starts the worker: limiter, one limited client (a view per priority), the BullMQ worker, metrics and fleet stats.
 * @throws when Redis cannot be reached within `WORKER_START_TIMEOUT_MS` (retried with backoff meanwhile, /readyz not ready).
 */
export async function startWorkerService(
  env: WorkerEnv,
  logger: Logger = createLogger(env.LOG_LEVEL),
  processEnv: Readonly<Record<string, string | undefined>> = process.env,
): Promise<WorkerService> {
  // TOLLGATE_CONFIG: the account, its limits, its key variable and its upstream come from the document
  const fromFile = await processDocumentFromEnv(env);
  const account = fromFile === undefined ? undefined : fromFile.document.accounts[fromFile.account];
  const apiKey = account === undefined ? env.ANTHROPIC_API_KEY : processEnv[account.apiKeyEnv];
  if (apiKey === undefined || apiKey === '') {
    throw new EnvError(`${account?.apiKeyEnv ?? 'ANTHROPIC_API_KEY'}=unset is invalid: the API key of account ${fromFile?.account ?? env.TOLLGATE_NAME} (required)`);
  }
  const baseURL = account === undefined ? env.ANTHROPIC_BASE_URL : account.baseUrl;
  const redis = redisFromEnv(env);
  const fromDocument = fromFile === undefined ? undefined : limiterOptionsFromDocument(fromFile, env, redis.input);
  const limiter = createLimiter(fromDocument?.messages ?? limiterOptionsFromEnv(env, redis.input));
  // count_tokens has its own fleet-wide RPM, apart from the Messages limits (DESIGN §8)
  const countTokensOptions = fromDocument === undefined ? countTokensLimiterOptionsFromEnv(env, redis.input) : fromDocument.countTokens;
  const countTokensLimiter = countTokensOptions === undefined ? undefined : createLimiter(countTokensOptions);
  // reads the queue's counts for the metrics (it opens its event reader only for waits, which this never does)
  const counter = createProducer({ redis: redis.input, queue: env.TOLLGATE_QUEUE, redisTimeoutMs: limiter.options.redisTimeoutMs });
  const metrics = new ServiceMetrics(limiter, counter);

  // /healthz and /readyz answer from the start: not ready while the limiter cannot be readied (Redis away or slow)
  let starting: string | undefined = 'starting';
  let closing: Promise<void> | undefined;
  let readiness = async (): Promise<Readiness> => ({ ready: false, reasons: [`starting: ${starting}`] });
  const server = await startMetricsServer(metrics, { port: env.METRICS_PORT, host: env.METRICS_HOST, readiness: () => readiness() });
  try {
    await retryAtStart(
      async () => {
        await limiter.ready();
        await countTokensLimiter?.ready();
      },
      // only Redis away or too slow (LimiterUnavailableError) is worth a retry
      { timeoutMs: env.WORKER_START_TIMEOUT_MS, logger, retryable: (error) => error instanceof LimiterUnavailableError, onFailure: (message) => (starting = message) },
    );
  } catch (error) {
    await server.close();
    await Promise.allSettled([limiter.close(), countTokensLimiter?.close(), counter.close()]);
    redis.close();
    throw error;
  }
  // first boot stores this process's document; a fleet that has one keeps it (only `tollgate limits apply` changes it)
  if (fromFile !== undefined) await joinFleetDocumentLogged(redis.input, fromFile, logger);
  const totals: FleetStats = {};
  const sdk = new Anthropic({ baseURL, apiKey, maxRetries: 0, fetch: countingFetch(metrics, totals) });
  // one limited client (one adaptive-concurrency state for the process), one view per job priority
  // an account with several pools: each call takes its permit from its model's pool (the document's patterns)
  const pools = account === undefined || Object.keys(account.pools).length < 2 ? undefined : account;
  const poolFor = pools === undefined ? undefined : (model: string) => resolvePool(pools, model, fromFile?.account ?? env.TOLLGATE_NAME).pool;
  const limited = limitAnthropic(sdk, limiter, {
    logger,
    estimate: env.WORKER_ESTIMATE,
    ...(countTokensLimiter === undefined ? {} : { countTokensLimiter }),
    ...(poolFor === undefined ? {} : { poolFor }),
  });
  const views = new Map<number, LimitedAnthropic>();
  const clientFor = (priority: number): LimitedAnthropic => {
    let view = views.get(priority);
    if (view === undefined) {
      view = limited.withPriority(priority);
      views.set(priority, view);
    }
    return view;
  };

  const worker = createWorker({
    redis: redis.input,
    queue: env.TOLLGATE_QUEUE,
    client: clientFor,
    concurrency: env.WORKER_CONCURRENCY,
    drainTimeoutMs: env.WORKER_DRAIN_TIMEOUT_MS,
    lockDurationMs: env.WORKER_LOCK_DURATION_MS,
    stalledIntervalMs: env.WORKER_STALLED_INTERVAL_MS,
    logger,
    account: limiter.name,
    modelsClient: sdk, // GET /v1/models…: not limited by the fleet (the gateway caches the answers)
    ...(countTokensLimiter === undefined ? {} : { countTokensLimiter }),
  });
  const bump = (field: string) => {
    totals[field] = (totals[field] ?? 0) + 1;
    metrics.job(field);
  };
  worker.on('completed', ({ usage }) => {
    bump('completed');
    if (usage !== undefined) metrics.completed(usage);
  });
  worker.on('failed', ({ final }) => bump(final ? 'failed' : 'retried'));
  worker.on('handedBack', () => bump('handed_back'));
  worker.on('error', (error) => logger.warn({ err: { name: error.name, message: error.message } }, 'worker connection error'));
  limiter.on('leaseLost', ({ permitId }) => logger.warn({ permitId }, 'lease lost'));
  await worker.ready();

  // Fleet-wide stats for the dashboard: this process's deltas, one pipelined HINCRBY batch per interval at most.
  const fleet = commandConnection(redis.input, limiter.options.redisTimeoutMs);
  fleet.client.on('error', () => {}); // a failed flush is retried at the next tick with the deltas it missed
  const tracker = new DeltaTracker();
  const rateLimitedSeen = new DeltaTracker();
  let pending: FleetStats = {};
  const flush = async () => {
    const rateLimited: FleetStats = { ...limited.stats().rateLimited }; // the views share the client's stats
    for (const [kind, delta] of Object.entries(rateLimitedSeen.deltas(rateLimited))) {
      if (delta > 0) metrics.rateLimited(kind, delta);
      totals[`rate_limited:${kind}`] = (totals[`rate_limited:${kind}`] ?? 0) + delta;
    }
    for (const [field, delta] of Object.entries(tracker.deltas(totals))) pending[field] = (pending[field] ?? 0) + delta;
    const sending = pending;
    pending = {};
    try {
      await addFleetStats(fleet.client, queueKeys(env.TOLLGATE_QUEUE).fleetStats, sending);
    } catch {
      for (const [field, delta] of Object.entries(sending)) pending[field] = (pending[field] ?? 0) + delta; // Redis down: keep them for later
    }
  };
  const flushTimer = setInterval(() => void flush(), FLEET_STATS_INTERVAL_MS);

  readiness = async (): Promise<Readiness> => {
    if (closing !== undefined) return { ready: false, reasons: ['draining'] };
    const checks = await Promise.allSettled([
      withDeadline(fleet.client.ping(), limiter.options.redisTimeoutMs, 'ping'),
      limiter.snapshot(), // the limiter's own connection and its functions
    ]);
    const reasons = checks.flatMap((check, i) => (check.status === 'rejected' ? [`${i === 0 ? 'redis' : 'limiter'}: ${toError(check.reason).message}`] : []));
    return { ready: reasons.length === 0, reasons };
  };
  // the ready line and /readyz say the same: the fail-fast connection of the ping is up too (else the next check says why)
  if (fleet.client.status !== 'ready') await withDeadline(once(fleet.client, 'ready'), limiter.options.redisTimeoutMs, 'fleet connection').catch(() => {});
  starting = undefined;
  return {
    metricsUrl: server.url,
    logger,
    close: () => {
      closing ??= (async () => {
        logger.info({ drainTimeoutMs: env.WORKER_DRAIN_TIMEOUT_MS }, 'draining');
        await worker.close();
        clearInterval(flushTimer);
        await flush();
        await limiter.close(); // releases any permit still held
        await countTokensLimiter?.close();
        await server.close(); // last: /readyz answers 503 ("draining") while the drain runs
        await counter.close();
        if (fleet.owned) fleet.client.disconnect();
        redis.close();
        logger.info('closed');
      })();
      return closing;
    },
  };
}
