import Anthropic from '@anthropic-ai/sdk';
import { once } from 'node:events';
import { performance } from 'node:perf_hooks';
import { toError } from '@tollgate/limiter/internal';
import { REDACTED_LOG_PATHS, limitAnthropic, type LimitedAnthropic } from '@tollgate/anthropic';
import { LimiterUnavailableError, createLimiter, type Limiter } from '@tollgate/limiter';
import { accountQueueName, createProducer, createWorker, errorCode, TENANT_BUDGET_EXCEEDED_CODE, type Producer, type QueueWorker, type RedisInput } from '@tollgate/queue';
import { DocumentFollower, resolvePool, type StoredDocument } from '@tollgate/config';
import {
  DEFAULT_POOL,
  DeltaTracker,
  addFleetStats,
  commandConnection,
  configuredDocumentFromEnv,
  joinFleetDocumentLogged,
  fleetStatsKey,
  redisFromEnv,
  withDeadline,
  type FleetStats,
} from '@tollgate/queue/internal';
import { pino, type Logger } from 'pino';
import { planAccounts, type AccountPlan } from './accounts.js';
import type { WorkerEnv } from './env.js';
import { ServiceMetrics, type AccountMetrics } from './metrics.js';
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
function countingFetch(metrics: AccountMetrics, totals: FleetStats): typeof fetch {
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

/** One account of this process, running: its limiters, its clients and one queue worker per queue of the account. */
interface AccountRun {
  plan: AccountPlan;
  limiter: Limiter;
  countTokensLimiter: Limiter | undefined;
  /**
   * Read for the metrics' queue counts (they open their event readers only for waits, which these never do): the
   * account's own queue with its tenants' queues, then the plain queue when this is the default account.
   */
  counters: [Producer, ...Producer[]];
  metrics: AccountMetrics;
  /** This account's counters, added to its first queue's fleet-wide stats hash. */
  totals: FleetStats;
  workers: QueueWorker[];
  limited: LimitedAnthropic | undefined;
}

/**
 * Starts the worker: for each account it runs (several accounts in one fleet, see {@link planAccounts}), its limiters,
 * one limited client (a view per priority) and one BullMQ worker per queue; then metrics and fleet stats.
 * @throws when Redis cannot be reached within `WORKER_START_TIMEOUT_MS` (retried with backoff meanwhile, /readyz not ready).
 */
export async function startWorkerService(
  env: WorkerEnv,
  logger: Logger = createLogger(env.LOG_LEVEL),
  processEnv: Readonly<Record<string, string | undefined>> = process.env,
): Promise<WorkerService> {
  // TOLLGATE_CONFIG: the accounts, their limits, their key variables and their upstreams come from the document
  const configured = await configuredDocumentFromEnv(env);
  const redis = redisFromEnv(env);
  const plan = planAccounts(env, configured, processEnv, redis.input);
  for (const { account, apiKeyEnv } of plan.skipped) logger.info({ account, apiKeyEnv }, `account ${account} is not run here: ${apiKeyEnv} is unset`);
  if (configured !== undefined && plan.defaultAccount === undefined)
    logger.info(
      { queue: env.TOLLGATE_QUEUE },
      `no account of this process is the default (TOLLGATE_NAME): jobs that name no account (queue ${env.TOLLGATE_QUEUE}) are left to other processes`,
    );
  const metrics = new ServiceMetrics();
  const runs: AccountRun[] = plan.accounts.map((account) => {
    const limiter = createLimiter(account.messages);
    // count_tokens has its own fleet-wide RPM, apart from the Messages limits (DESIGN §8)
    const countTokensLimiter = account.countTokens === undefined ? undefined : createLimiter(account.countTokens);
    const redisTimeoutMs = limiter.options.redisTimeoutMs;
    // the account's queue counts its tenants' queues too (the fleet's document names them); the plain queue only itself
    const counters: AccountRun['counters'] = [createProducer({ redis: redis.input, queue: env.TOLLGATE_QUEUE, account: account.name, redisTimeoutMs })];
    if (account.queues.includes(env.TOLLGATE_QUEUE)) counters.push(createProducer({ redis: redis.input, queue: env.TOLLGATE_QUEUE, tenantPolicy: 'none', redisTimeoutMs }));
    return { plan: account, limiter, countTokensLimiter, counters, metrics: metrics.addAccount(limiter, counters), totals: {}, workers: [], limited: undefined };
  });
  const limiters = runs.flatMap((run) => (run.countTokensLimiter === undefined ? [run.limiter] : [run.limiter, run.countTokensLimiter]));
  const redisTimeoutMs = Math.max(...runs.map((run) => run.limiter.options.redisTimeoutMs));
  const closeAll = async () => {
    await Promise.allSettled([...limiters.map((limiter) => limiter.close()), ...runs.flatMap((run) => run.counters.map((counter) => counter.close()))]);
  };

  // /healthz and /readyz answer from the start: not ready while a limiter cannot be readied (Redis away or slow)
  let starting: string | undefined = 'starting';
  let closing: Promise<void> | undefined;
  let readiness = async (): Promise<Readiness> => ({ ready: false, reasons: [`starting: ${starting}`] });
  const server = await startMetricsServer(metrics, { port: env.METRICS_PORT, host: env.METRICS_HOST, readiness: () => readiness() });
  try {
    await retryAtStart(
      async () => {
        for (const limiter of limiters) await limiter.ready();
      },
      // only Redis away or too slow (LimiterUnavailableError) is worth a retry
      { timeoutMs: env.WORKER_START_TIMEOUT_MS, logger, retryable: (error) => error instanceof LimiterUnavailableError, onFailure: (message) => (starting = message) },
    );
  } catch (error) {
    await server.close();
    await closeAll();
    redis.close();
    throw error;
  }
  const fleet = commandConnection(redis.input, redisTimeoutMs);
  fleet.client.on('error', () => {}); // a failed flush is retried at the next tick with the deltas it missed
  // first boot stores this process's document; a fleet that has one keeps it (only `tollgate limits apply` changes it)
  const source = runs[0]?.plan.source;
  if (source !== undefined) await joinFleetDocumentLogged(redis.input, source, logger);
  // the fleet's document, followed live: a model's pool is the one the fleet's patterns give (an apply may change them)
  // An account that an apply adds to the fleet's document after this process started is not run here: its key, its
  // client and its queue workers are set up at start, from this process's own document. One warning per account.
  const started = new Set(Object.keys(configured?.document.accounts ?? {}));
  const warnAdded = (stored: StoredDocument | undefined) => {
    for (const [account, limits] of Object.entries(stored?.document.accounts ?? {})) {
      if (started.has(account)) continue;
      started.add(account);
      const keySet = (processEnv[limits.apiKeyEnv] ?? '') !== '';
      logger.warn(
        { account, apiKeyEnv: limits.apiKeyEnv, revision: stored?.revision, config: configured?.path },
        `account ${account} is in the fleet's limits document but not in this worker's ${configured?.path ?? 'TOLLGATE_CONFIG'}: its jobs (queue ${accountQueueName(env.TOLLGATE_QUEUE, account)}) are not run here until the worker is restarted with it there${keySet ? '' : ` and ${limits.apiKeyEnv} set`}`,
      );
    }
  };
  const document = configured === undefined ? undefined : new DocumentFollower({ redis: fleet.client, onError: () => {}, onChange: warnAdded });
  await document?.ready().catch(() => {}); // not read yet: this process's own patterns until it is

  // each queue worker also runs the queue of every tenant the fleet's document gives its account (QueueWorker)
  for (const run of runs) startAccount(run, { env, redis: redis.input, logger, document });
  await Promise.all(runs.flatMap((run) => run.workers.map((worker) => worker.ready())));

  // Fleet-wide stats for the dashboard: this process's deltas, one pipelined HINCRBY batch per account and interval at most.
  const trackers = new Map(runs.map((run) => [run, { totals: new DeltaTracker(), rateLimited: new DeltaTracker(), pending: {} as FleetStats }]));
  const flush = async () => {
    await Promise.all(
      runs.map(async (run) => {
        const tracker = trackers.get(run);
        if (tracker === undefined || run.limited === undefined) return;
        const rateLimited: FleetStats = { ...run.limited.stats().rateLimited }; // the views share the client's stats
        for (const [kind, delta] of Object.entries(tracker.rateLimited.deltas(rateLimited))) {
          if (delta > 0) run.metrics.rateLimited(kind, delta);
          run.totals[`rate_limited:${kind}`] = (run.totals[`rate_limited:${kind}`] ?? 0) + delta;
        }
        for (const [field, delta] of Object.entries(tracker.totals.deltas(run.totals))) tracker.pending[field] = (tracker.pending[field] ?? 0) + delta;
        const sending = tracker.pending;
        tracker.pending = {};
        try {
          await addFleetStats(fleet.client, fleetStatsKey(env.TOLLGATE_QUEUE, run.plan.name), sending);
        } catch {
          for (const [field, delta] of Object.entries(sending)) tracker.pending[field] = (tracker.pending[field] ?? 0) + delta; // Redis down: keep them for later
        }
      }),
    );
  };
  const flushTimer = setInterval(() => void flush(), FLEET_STATS_INTERVAL_MS);

  readiness = async (): Promise<Readiness> => {
    if (closing !== undefined) return { ready: false, reasons: ['draining'] };
    const checks = await Promise.allSettled([
      withDeadline(fleet.client.ping(), redisTimeoutMs, 'ping'),
      ...runs.map((run) => run.limiter.snapshot()), // each limiter's own connection and its functions
    ]);
    const reasons = checks.flatMap((check, i) =>
      check.status === 'rejected' ? [`${i === 0 ? 'redis' : `limiter ${runs[i - 1]?.limiter.name ?? ''}`}: ${toError(check.reason).message}`] : [],
    );
    return { ready: reasons.length === 0, reasons };
  };
  // the ready line and /readyz say the same: the fail-fast connection of the ping is up too (else the next check says why)
  if (fleet.client.status !== 'ready') await withDeadline(once(fleet.client, 'ready'), redisTimeoutMs, 'fleet connection').catch(() => {});
  starting = undefined;
  // with the queues each account's worker runs from the fleet's document (its pools' and tenants')
  logger.info(
    { accounts: runs.map((run) => ({ account: run.plan.name, queues: [...run.plan.queues, ...run.workers.flatMap((worker) => worker.tenantQueues)] })) },
    'accounts running',
  );
  return {
    metricsUrl: server.url,
    logger,
    close: () => {
      closing ??= (async () => {
        logger.info({ drainTimeoutMs: env.WORKER_DRAIN_TIMEOUT_MS }, 'draining');
        await Promise.all(runs.flatMap((run) => run.workers.map((worker) => worker.close())));
        clearInterval(flushTimer);
        await flush();
        document?.close();
        await closeAll(); // releases any permit still held
        await server.close(); // last: /readyz answers 503 ("draining") while the drain runs
        if (fleet.owned) fleet.client.disconnect();
        redis.close();
        logger.info('closed');
      })();
      return closing;
    },
  };
}

/** Starts one account's client and its queue workers (into `run`). */
function startAccount(run: AccountRun, context: { env: WorkerEnv; redis: RedisInput; logger: Logger; document: DocumentFollower | undefined }): void {
  const { env, logger, document } = context;
  const { plan, limiter, countTokensLimiter, metrics, totals } = run;
  const sdk = new Anthropic({ baseURL: plan.baseURL, apiKey: plan.apiKey, maxRetries: 0, fetch: countingFetch(metrics, totals) });
  // each call takes its permit from its model's pool, by the fleet's patterns (this process's own until they are read);
  // a limiter without pools takes none
  const source = plan.source;
  const poolFor =
    source === undefined
      ? undefined
      : (model: string) => {
          const fleetAccount = document?.current?.document.accounts[plan.name];
          return resolvePool(fleetAccount ?? source.document.accounts[plan.name] ?? { pools: {} }, model, plan.name).pool;
        };
  // one limited client (one adaptive-concurrency state per account), one view per job priority
  const limited = limitAnthropic(sdk, limiter, {
    logger,
    estimate: env.WORKER_ESTIMATE,
    ...(countTokensLimiter === undefined ? {} : { countTokensLimiter }),
    ...(poolFor === undefined ? {} : { poolFor }),
  });
  run.limited = limited;
  metrics.follow(() => limited.stats()); // its 429s per tenant, read at each scrape
  // the pool a job's tokens are counted in: its model's, as its permit's (`default` for a limiter without pools)
  const poolOf = (model: string | null): string => (limiter.pools === undefined || poolFor === undefined || model === null ? DEFAULT_POOL : poolFor(model));
  // one view per (priority, tenant): a tenant's permits take its share of the account (the limiter's group)
  const views = new Map<string, LimitedAnthropic>();
  const clientFor = (priority: number, tenant: string | null): LimitedAnthropic => {
    const key = `${priority} ${tenant ?? ''}`;
    let view = views.get(key);
    if (view === undefined) {
      view = limited.withPriority(priority).withTenant(tenant);
      views.set(key, view);
    }
    return view;
  };
  const bump = (queue: string, field: string) => {
    totals[field] = (totals[field] ?? 0) + 1;
    metrics.job(queue, field);
  };
  for (const queue of plan.queues) {
    const worker = createWorker({
      redis: context.redis,
      queue,
      client: clientFor,
      concurrency: env.WORKER_CONCURRENCY,
      drainTimeoutMs: env.WORKER_DRAIN_TIMEOUT_MS,
      lockDurationMs: env.WORKER_LOCK_DURATION_MS,
      stalledIntervalMs: env.WORKER_STALLED_INTERVAL_MS,
      logger,
      account: limiter.name,
      // the account's own queue's worker also runs its tenants' queues (once per account, not again for the plain queue)
      tenantQueues: queue === plan.queues[plan.queues.length - 1] ? 'fleet' : 'none',
      modelsClient: sdk, // GET /v1/models…: not limited by the fleet (the gateway caches the answers)
      ...(countTokensLimiter === undefined ? {} : { countTokensLimiter }),
    });
    worker.on('completed', ({ usage, tenant, model }) => {
      bump(queue, 'completed');
      if (usage === undefined) return;
      metrics.completed(usage);
      metrics.tenantCompleted(tenant, poolOf(model), usage);
    });
    worker.on('failed', ({ final, failure, tenant, model }) => {
      bump(queue, final ? 'failed' : 'retried');
      if (errorCode(failure.body) === TENANT_BUDGET_EXCEEDED_CODE) metrics.tenantBudgetRefused(tenant, poolOf(model));
    });
    worker.on('handedBack', () => bump(queue, 'handed_back'));
    worker.on('error', (error) => logger.warn({ queue, err: { name: error.name, message: error.message } }, 'worker connection error'));
    run.workers.push(worker);
  }
  limiter.on('leaseLost', ({ permitId }) => logger.warn({ account: plan.name, permitId }, 'lease lost'));
}
