import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import type Anthropic from '@anthropic-ai/sdk';
import type { Middleware } from '@anthropic-ai/sdk';
import { InvalidConfigError, type Limiter } from '@tollgate/limiter';
import { describeZodError, toError } from '@tollgate/limiter/internal';
import { Queue, UnrecoverableError, WaitingError, Worker, type Job } from 'bullmq';
import type { Cluster, Redis } from 'ioredis';
import type { Logger } from 'pino';
import { z } from 'zod';
import { InvalidRequestError } from './errors.js';
import { anthropicError, describeFailure, encodeFailure, type JobFailure } from './failure.js';
import { JOB_FAILED_EVENT, JobEventPublisher } from './job-events.js';
import { DOCUMENT_POLL_MS_DEFAULT, DocumentFollower, type LimitsDocument } from '@tollgate/config';
import { accountQueueName, isQueueName, parseQueueName, queueKeys, tenantQueueName, type QueueKeys } from './keys.js';
import { accountQueueNames, knownAccountQueueNames } from './queue-names.js';
import { blockingConnection, type OwnedRedis, type RedisInput } from './redis.js';
import { TENANT_SWEEP_INTERVAL_MS, pruneTenantJobs, sweepTenantJobs, trackTenantJob } from './tenant-counts.js';
import { parseJobData, type ApiHeaders, type ModelsParams, type ParsedJob } from './schema.js';
import { relayedHeaders, type JobResult, type UpstreamMeta } from './upstream.js';

/** The event a streaming job writes before the upstream's first SSE event: its {@link UpstreamMeta}. */
export const JOB_UPSTREAM_EVENT = 'tollgate_upstream';

/** BullMQ's default lock: a job whose worker stops renewing it for this long is stalled, in ms. */
export const LOCK_DURATION_MS_DEFAULT = 30_000;
/** How often each worker looks for stalled jobs (those of dead workers), in ms. */
export const STALLED_INTERVAL_MS_DEFAULT = 30_000;
/** A job may stall this many times before it fails ("job stalled more than allowable limit"). */
export const MAX_STALLED_COUNT_DEFAULT = 2;
/** On close, running calls get this long to finish before they are aborted and handed back, in ms. */
export const DRAIN_TIMEOUT_MS_DEFAULT = 30_000;
export const WORKER_CONCURRENCY_MAX = 10_000;
/** `signal.reason` of a call aborted by shutdown: the job goes back to the queue, not to the failed set. */
export const SHUTDOWN_REASON = 'tollgate: worker shutting down';
/** `signal.reason` of a call aborted because its caller went away (the gateway's client disconnected). */
export const CALLER_GONE_REASON = 'tollgate: the caller went away';
/** Status of a job failed because its caller went away (nginx's "client closed request"; nobody reads the answer). */
export const CALLER_GONE_STATUS = 499;
/** `signal.reason` of a call aborted because this worker lost the job's lock (another worker may run it). */
export const LOCK_LOST_REASON = 'tollgate: job lock renewal failed';

/** The part of an Anthropic client the worker calls: the SDK's `messages.create`, `messages.stream` and `messages.countTokens`. */
export interface MessagesClient {
  messages: Pick<Anthropic['messages'], 'create' | 'stream' | 'countTokens'>;
}

/**
 * Picks the client for a job's priority (0 = first … 9 = last) and tenant (null: none), so that its permit waits at
 * that priority, in that tenant's share (a limited client's `withPriority(p).withTenant(t)`).
 */
export type ClientForPriority = (priority: number, tenant: string | null) => MessagesClient;

const isClient = (value: unknown): value is MessagesClient =>
  typeof value === 'object' && value !== null && typeof (value as { messages?: { create?: unknown } }).messages?.create === 'function';

const workerOptionsSchema = z.strictObject({
  redis: z.custom<RedisInput>((value) => typeof value === 'string' || (typeof value === 'object' && value !== null), 'expected a Redis URL or an ioredis client'),
  /** A queue name, or an account's queue (`accountQueueName(queue, account)`): the jobs that name that account. */
  queue: z
    .string()
    .refine(isQueueName, 'a queue name (letters, digits and ._-, 1 to 100 characters), or an account queue from accountQueueName() (or poolQueueName(), tenantQueueName())'),
  /** A client, or one per priority (a limited client takes its permits at one priority). */
  client: z.custom<MessagesClient | ClientForPriority>((value) => typeof value === 'function' || isClient(value), 'expected an Anthropic client or a function of priority'),
  /** Jobs this process runs at once; the fleet-wide limit is the limiter's. */
  concurrency: z.number().int().min(1).max(WORKER_CONCURRENCY_MAX),
  lockDurationMs: z
    .number()
    .int()
    .min(100)
    .max(10 * 60 * 1000)
    .default(LOCK_DURATION_MS_DEFAULT),
  stalledIntervalMs: z
    .number()
    .int()
    .min(100)
    .max(10 * 60 * 1000)
    .default(STALLED_INTERVAL_MS_DEFAULT),
  maxStalledCount: z.number().int().min(0).max(100).default(MAX_STALLED_COUNT_DEFAULT),
  drainTimeoutMs: z
    .number()
    .int()
    .min(0)
    .max(60 * 60 * 1000)
    .default(DRAIN_TIMEOUT_MS_DEFAULT),
  logger: z
    .custom<Logger>((value) => typeof value === 'object' && value !== null && typeof (value as { child?: unknown }).child === 'function', 'expected a pino logger')
    .optional(),
  /** Answers models jobs (`GET /v1/models…` through the SDK's `get`); absent: models jobs fail with a 404. */
  modelsClient: z
    .custom<Pick<Anthropic, 'get'>>(
      (value) => typeof value === 'object' && value !== null && typeof (value as { get?: unknown }).get === 'function',
      'expected an Anthropic client',
    )
    .optional(),
  /** Named in each answer's `tollgate-account` (the Messages limiter's name). */
  account: z.string().min(1).optional(),
  /**
   * `fleet`: this worker also runs every other queue of its account (`account`, or the document's only account) under
   * the fleet's limits document (queue-names.ts, DESIGN §9): one per pool, `<queue>@<account>~<pool>`, when the account
   * has several; each tenant's, `<queue>@<account>#<tenant>` (with the tenant's cap as that queue's global concurrency)
   * and, for a tenant without a cap, one per pool, `<queue>@<account>~<pool>#<tenant>`. Each has `concurrency` slots. A
   * pool or tenant added by an apply is run from then on, a removed one's queue still (to drain it); the pool-less
   * queues are run whatever the document says (an older producer's jobs, or those of before an apply added pools).
   * `none`: only `queue`.
   */
  tenantQueues: z.enum(['fleet', 'none']).default('fleet'),
  /** count_tokens jobs take one `requests` token from this limiter before their call (its own RPM); absent: not limited here. */
  countTokensLimiter: z
    .custom<Limiter>((value) => typeof value === 'object' && value !== null && typeof (value as { acquire?: unknown }).acquire === 'function', 'expected a limiter')
    .optional(),
});

export type WorkerOptions = z.input<typeof workerOptionsSchema>;

/** Typed events: listen with `worker.on('completed', (event) => …)`. */
export interface WorkerEvents {
  /**
   * `usage`: the answer's token counts, for metrics (absent for answers without usage: count_tokens, models); `tenant`
   * and `model`: the job's (null: none), so that its tokens can be counted per tenant and per pool.
   */
  completed: [{ jobId: string; durationMs: number; streamed: boolean; tenant: string | null; model: string | null; usage?: Anthropic.Usage }];
  /** An attempt failed; `final` says the job went to the failed set (else BullMQ retries it). */
  failed: [{ jobId: string; failure: JobFailure; final: boolean; tenant: string | null; model: string | null }];
  /** Shutdown aborted the job's call and put the job back in the queue. */
  handedBack: [{ jobId: string }];
  lockLost: [{ jobId: string }];
  error: [Error];
}

/**
 * Caps the jobs of queue `name` held by workers at once, fleet-wide (BullMQ's global concurrency; undefined: no cap).
 * A tenant's queue gets the tenant's `concurrency` (DESIGN §9): the tenant's other jobs wait in its own queue.
 */
export async function setQueueConcurrency(connection: Redis | Cluster, name: string, concurrency: number | undefined): Promise<void> {
  const queue = capQueue(connection, name);
  try {
    await keepQueueConcurrency(queue, concurrency);
  } finally {
    await queue.close().catch(() => {});
  }
}

/** A BullMQ Queue of `name` on `connection`, for its global concurrency only. */
function capQueue(connection: Redis | Cluster, name: string): Queue {
  const queue = new Queue(name, { connection, prefix: queueKeys(name).prefix, skipVersionCheck: true });
  queue.on('error', () => {});
  return queue;
}

/**
 * Makes `queue`'s global concurrency `concurrency` (undefined: none) unless it is that already: one HGET when nothing
 * changed, so a worker can keep its tenants' caps every poll period (Redis may have lost them: FLUSHALL, a restart
 * without persistence, a failover to a replica that had not received them).
 */
async function keepQueueConcurrency(queue: Queue, concurrency: number | undefined): Promise<void> {
  const current = await queue.getGlobalConcurrency();
  if ((current ?? undefined) === concurrency) return;
  if (concurrency === undefined) await queue.removeGlobalConcurrency();
  else await queue.setGlobalConcurrency(concurrency);
}

/**
 * One subscriber connection for the abort channels of every queue a worker runs (its account's pools and tenants):
 * a message on a channel goes to that queue's worker.
 */
class AbortChannels {
  readonly connection: OwnedRedis;
  readonly #handlers = new Map<string, (jobId: string) => void>();
  readonly #onError: (error: Error) => void;

  constructor(connection: OwnedRedis, onError: (error: Error) => void) {
    this.connection = connection;
    this.#onError = onError;
    connection.client.on('message', (channel: string, jobId: string) => this.#handlers.get(channel)?.(jobId));
  }

  /** Subscribes to `channel` (ioredis subscribes again after a reconnect). */
  add(channel: string, handler: (jobId: string) => void): void {
    this.#handlers.set(channel, handler);
    void this.connection.client.subscribe(channel).catch((error: unknown) => this.#onError(toError(error)));
  }
}

/** Runs queued Messages jobs through a (limited) Anthropic client. Create with {@link createWorker}. */
export class QueueWorker extends EventEmitter<WorkerEvents> {
  readonly bullmq: Worker;
  readonly #options: z.output<typeof workerOptionsSchema>;
  readonly #keys: QueueKeys;
  /** Event writes, the per-tenant view, the document: shared with the workers of the account's other queues. */
  readonly #commands: OwnedRedis;
  /** One subscriber for the abort channel of each queue the worker runs (shared likewise). */
  readonly #aborts: AbortChannels;
  /** Whether `#commands` and `#aborts` are this worker's own (else its parent's, which closes them). */
  readonly #ownsShared: boolean;
  #closing: Promise<void> | undefined;
  /** The per-tenant view's sweep: its timer and HSCAN cursor. */
  #sweepTimer: NodeJS.Timeout | undefined;
  #sweepCursor = '0';
  #sweeping = false;
  /** The options as given, for the workers of the tenant queues. */
  readonly #input: WorkerOptions;
  /** The fleet's document (tenantQueues 'fleet'), and the worker of each other queue of the account run so far. */
  #document: DocumentFollower | undefined;
  readonly #tenantWorkers = new Map<string, QueueWorker>();
  #tenantSync: Promise<void> = Promise.resolve();
  #documentRetry: NodeJS.Timeout | undefined;
  /** Settles once the tenant queues of the first document read (or its failure) are running. */
  #firstSync: Promise<void> = Promise.resolve();
  /** Each tenant queue's BullMQ Queue, for its cap; and the timer that keeps the caps. */
  readonly #capQueues = new Map<string, Queue>();
  #capTimer: NodeJS.Timeout | undefined;
  #capsPending = false;

  /** `shared`: the connections of the worker that runs this one as one of its account's queues. */
  constructor(input: WorkerOptions, shared?: { commands: OwnedRedis; aborts: AbortChannels }) {
    super();
    const parsed = workerOptionsSchema.safeParse(input);
    if (!parsed.success) throw new InvalidConfigError(`invalid worker options: ${describeZodError(parsed.error, input)}`, { cause: parsed.error });
    this.#options = parsed.data;
    this.#input = input;
    this.#keys = queueKeys(parsed.data.queue);
    this.#ownsShared = shared === undefined;
    // event writes wait out a Redis restart instead of failing the job; BullMQ's commands share it, and each BullMQ
    // Worker makes its own blocking connection from it (a duplicate)
    this.#commands = shared?.commands ?? blockingConnection(parsed.data.redis);
    this.#aborts = shared?.aborts ?? new AbortChannels(blockingConnection(parsed.data.redis), (error) => this.#error(error));
    if (shared === undefined) for (const { client } of [this.#commands, this.#aborts.connection]) client.on('error', (error: Error) => this.#error(error));
    // one subscription per process and queue: a caller that went away names its job, and the worker running it aborts
    // the call (its permit is released as the call ends); other workers ignore the id
    this.#aborts.add(this.#keys.abortChannel, (jobId) => this.bullmq.cancelJob(jobId, CALLER_GONE_REASON));
    const processor = (job: Job, token: string | undefined, signal: AbortSignal | undefined) => this.#process(job, token, signal);
    this.bullmq = new Worker(parsed.data.queue, processor, {
      connection: this.#commands.client,
      prefix: this.#keys.prefix,
      concurrency: parsed.data.concurrency,
      lockDuration: parsed.data.lockDurationMs,
      stalledInterval: parsed.data.stalledIntervalMs,
      maxStalledCount: parsed.data.maxStalledCount,
      skipVersionCheck: true,
    });
    this.bullmq.on('error', (error) => this.#error(error));
    // the per-tenant view: a finished job stops counting at once; the sweep catches what this misses (a crash in
    // between, a job failed by the stalled check, jobs removed by `queue drain`)
    const prune = (job: Job | undefined) => {
      if (job?.id !== undefined) void pruneTenantJobs(this.#commands.client, this.#keys, [job.id]).catch((error: unknown) => this.#error(toError(error)));
    };
    this.bullmq.on('completed', prune);
    this.bullmq.on('failed', prune);
    this.#sweepTimer = setInterval(() => void this.#sweep(), TENANT_SWEEP_INTERVAL_MS);
    this.#sweepTimer.unref();
    this.bullmq.on('lockRenewalFailed', (jobIds) => {
      for (const jobId of jobIds) {
        this.emit('lockLost', { jobId });
        this.bullmq.cancelJob(jobId, LOCK_LOST_REASON); // another worker may take the job: stop our call now
      }
    });
    const parts = parseQueueName(parsed.data.queue);
    if (parsed.data.tenantQueues === 'fleet' && parts?.tenant === undefined && parts?.pool === undefined) {
      const document = new DocumentFollower({ redis: this.#commands.client, onError: () => {}, onChange: (stored) => this.#syncTenants(stored?.document) });
      this.#document = document;
      this.#firstSync = this.#readDocument(document);
      // a cap lives in Redis: data loss removes it while the document comes back unchanged (the same revision, so
      // no change to follow); each poll period the worker puts back what the document says
      this.#capTimer = setInterval(() => {
        if (!document.loaded || this.#capsPending) return; // one at a time: a Redis that is away holds it, not a pile
        this.#capsPending = true;
        void this.#syncTenants(document.current?.document).finally(() => (this.#capsPending = false));
      }, DOCUMENT_POLL_MS_DEFAULT);
      this.#capTimer.unref();
    }
  }

  /** Reads the fleet's document (again every poll period while it cannot), then runs its tenants' queues. */
  async #readDocument(document: DocumentFollower): Promise<void> {
    try {
      await document.ready();
      await this.#syncTenants(document.current?.document);
    } catch {
      if (this.#closing !== undefined) return;
      this.#documentRetry = setTimeout(() => void this.#readDocument(document), DOCUMENT_POLL_MS_DEFAULT);
      this.#documentRetry.unref();
    }
  }

  /** Runs every queue of this worker's account under `document` (tenants' with their caps); one sync at a time. */
  #syncTenants(document: LimitsDocument | undefined): Promise<void> {
    this.#tenantSync = this.#tenantSync.then(async () => {
      if (document === undefined || this.#closing !== undefined) return;
      const accounts = Object.keys(document.accounts);
      const account = this.#options.account ?? (accounts.length === 1 ? accounts[0] : undefined);
      if (account === undefined || !Object.hasOwn(document.accounts, account)) return;
      const queue = parseQueueName(this.#options.queue)?.queue ?? this.#options.queue;
      for (const [tenant, policy] of Object.entries(document.tenants)) {
        if (policy.account !== account) continue;
        // a tenant's cap is the global concurrency of its pool-less queue, the only one of a capped tenant
        const name = tenantQueueName(accountQueueName(queue, account), tenant);
        let capped = this.#capQueues.get(name);
        if (capped === undefined) this.#capQueues.set(name, (capped = capQueue(this.#commands.client, name)));
        try {
          await keepQueueConcurrency(capped, policy.concurrency);
        } catch (error) {
          this.#error(toError(error)); // the next poll period sets it again
        }
      }
      // with the pool queues producers have used (a pool an apply removed, a stale producer's): drained, not stranded
      const names = await knownAccountQueueNames(this.#commands.client, document, queue, account).catch((error: unknown) => {
        this.#error(toError(error)); // the next poll period reads them again
        return accountQueueNames(document, queue, account);
      });
      for (const name of names) {
        if (name === this.#options.queue || this.#tenantWorkers.has(name) || this.#closing !== undefined) continue;
        const worker = new QueueWorker({ ...this.#input, queue: name, tenantQueues: 'none' }, { commands: this.#commands, aborts: this.#aborts });
        for (const event of ['completed', 'failed', 'handedBack', 'lockLost', 'error'] as const) {
          worker.on(event, (...args: unknown[]) => (this.emit as (name: string, ...rest: unknown[]) => boolean)(event, ...args));
        }
        this.#tenantWorkers.set(name, worker);
        await worker.ready();
      }
    });
    return this.#tenantSync;
  }

  /** The queues this worker runs besides its own (tenantQueues 'fleet'): its account's pools' and tenants'. */
  get tenantQueues(): string[] {
    return [...this.#tenantWorkers.keys()];
  }

  /** Resolves once the worker's connection is ready, and the tenant queues of the fleet's document run. */
  async ready(): Promise<void> {
    await this.bullmq.waitUntilReady();
    await this.#firstSync;
    await this.#tenantSync;
  }

  /**
   * Stops taking jobs, lets running calls finish for up to `drainTimeoutMs`, then aborts the rest through their
   * signals and hands their jobs back to the queue. Idempotent. Permits are released by the client as each call ends.
   */
  close(options: { drainTimeoutMs?: number } = {}): Promise<void> {
    this.#closing ??= this.#close(options.drainTimeoutMs ?? this.#options.drainTimeoutMs);
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #sweep(): Promise<void> {
    if (this.#sweeping) return; // a slow or absent Redis must not stack sweeps
    this.#sweeping = true;
    try {
      this.#sweepCursor = (await sweepTenantJobs(this.#commands.client, this.#keys, this.#sweepCursor)).cursor;
    } catch {
      // Redis away: the next tick tries again from the same cursor
    } finally {
      this.#sweeping = false;
    }
  }

  async #close(drainTimeoutMs: number): Promise<void> {
    clearInterval(this.#sweepTimer);
    clearInterval(this.#capTimer);
    clearTimeout(this.#documentRetry);
    this.#document?.close();
    await this.#tenantSync.catch(() => {}); // no tenant worker starts after this
    const tenants = Promise.all([...this.#tenantWorkers.values()].map((worker) => worker.close({ drainTimeoutMs })));
    const timer = setTimeout(() => this.bullmq.cancelAllJobs(SHUTDOWN_REASON), drainTimeoutMs);
    try {
      await this.bullmq.close();
      await tenants;
      await Promise.all([...this.#capQueues.values()].map((queue) => queue.close().catch(() => {})));
    } finally {
      clearTimeout(timer);
      if (this.#ownsShared) for (const owned of [this.#commands, this.#aborts.connection]) if (owned.owned) owned.client.disconnect();
    }
  }

  /** Connection and lock errors: to 'error' listeners if any, else to the logger (an unheard 'error' would throw). */
  #error(error: Error): void {
    if (this.listenerCount('error') > 0) this.emit('error', error);
    else this.#options.logger?.warn({ err: { name: error.name, message: error.message } }, 'worker error');
  }

  #clientFor(priority: number, tenant: string | null): MessagesClient {
    const client = this.#options.client;
    return typeof client === 'function' ? client(priority, tenant) : client;
  }

  async #process(job: Job, token: string | undefined, signal: AbortSignal | undefined): Promise<JobResult> {
    const jobId = job.id ?? '';
    const startedAt = performance.now();
    const attempt = Math.max(1, job.attemptsStarted);
    let parsed: ParsedJob;
    try {
      parsed = parseJobData(job.data);
    } catch (error) {
      // enqueue validates every job, so this is a job written by something else: never worth a retry
      const failure: JobFailure = { status: 400, retryable: false, body: anthropicError(400, toError(error).message) };
      this.emit('failed', { jobId, failure, final: true, tenant: null, model: null });
      throw new UnrecoverableError(encodeFailure(failure));
    }
    const { priority, tenant, params } = parsed;
    const log = this.#options.logger?.child({ jobId, attempt, priority, tenant, route: parsed.route });
    // counted already by its enqueue (a no-op then); a job `queue retry-failed` brought back is counted again from here
    void trackTenantJob(this.#commands.client, this.#keys, jobId, tenant).catch(() => {});
    const model = typeof params.model === 'string' ? params.model : null;
    const streamed = parsed.route === 'messages' && params.stream === true;
    const publisher = streamed ? new JobEventPublisher(this.#commands.client, this.#keys.jobEvents(jobId), attempt) : undefined;
    log?.debug({ model: params.model, maxTokens: params.max_tokens, streamed }, 'job started');
    try {
      const result = await this.#call(this.#clientFor(priority, tenant), parsed, signal, publisher, startedAt);
      const durationMs = performance.now() - startedAt;
      const usage = (result.answer as Partial<Anthropic.Message>).usage;
      log?.info({ durationMs: Math.round(durationMs), inputTokens: usage?.input_tokens, outputTokens: usage?.output_tokens }, 'job completed');
      this.emit('completed', { jobId, durationMs, streamed, tenant, model, ...(usage === undefined ? {} : { usage }) });
      return result;
    } catch (error) {
      if (signal?.aborted === true && signal.reason === SHUTDOWN_REASON && token !== undefined) {
        await job.moveToWait(token); // back to the queue with its attempts untouched
        log?.info('job handed back on shutdown');
        this.emit('handedBack', { jobId });
        throw new WaitingError();
      }
      const failure: JobFailure =
        signal?.aborted === true && signal.reason === LOCK_LOST_REASON
          ? { status: 503, retryable: true, body: anthropicError(503, 'the worker lost the job lock; the job is retried') }
          : signal?.aborted === true && signal.reason === CALLER_GONE_REASON
            ? { status: CALLER_GONE_STATUS, retryable: false, body: anthropicError(CALLER_GONE_STATUS, 'the caller went away; the call was aborted') }
            : describeFailure(error);
      // output already reached a reader: a retry would repeat it, so the stream ends with the error instead
      const outputSent = publisher !== undefined && publisher.written > 1; // the first event is the upstream's headers
      const retriesLeft = attempt < (job.opts.attempts ?? 1);
      const final = !failure.retryable || outputSent || !retriesLeft;
      if (publisher !== undefined && final) await publisher.publish(JOB_FAILED_EVENT, failure).catch(() => {});
      log?.warn({ status: failure.status, errorType: failure.body.error.type, final, outputSent }, final ? 'job failed' : 'job attempt failed; BullMQ retries it');
      this.emit('failed', { jobId, failure, final, tenant, model });
      const reason = encodeFailure(final ? { ...failure, retryable: false } : failure);
      throw final && retriesLeft ? new UnrecoverableError(reason) : new Error(reason);
    }
  }

  /**
   * Makes the job's upstream call through the SDK: the body's exact bytes (`body` request option, with its
   * content-type) and its API headers, so that nothing the caller sent is rebuilt or dropped. The parsed params still
   * go to the client for what it reads itself (the estimate, `max_tokens`, `stream`).
   */
  async #call(client: MessagesClient, job: ParsedJob, signal: AbortSignal | undefined, publisher: JobEventPublisher | undefined, startedAt: number): Promise<JobResult> {
    let sentAt = startedAt;
    // runs for every attempt the limited client makes; the last one is the one that answered
    const stamp: Middleware = (request, next) => {
      sentAt = performance.now();
      return next(request);
    };
    const meta = (headers: Headers | null | undefined): UpstreamMeta => {
      const now = performance.now();
      return { headers: relayedHeaders(headers), account: this.#options.account ?? null, elapsedMs: now - startedAt, waitedMs: Math.max(0, sentAt - startedAt) };
    };
    const requestOptions = { ...(signal === undefined ? {} : { signal }), body: job.body, headers: sdkHeaders(job.headers), middleware: [stamp] };
    // The params are the caller's; the SDK's params type is narrower than what the API (and so the gateway) accepts.
    if (job.route === 'count_tokens') return this.#countTokens(client, job, requestOptions, signal, meta);
    if (job.route === 'models') return this.#models(job, signal, meta);
    if (publisher === undefined) {
      const { data, response } = await client.messages.create(job.params as unknown as Anthropic.MessageCreateParamsNonStreaming, requestOptions).withResponse();
      return { v: 2, answer: data, upstream: meta(response.headers) };
    }
    const stream = client.messages.stream(job.params as unknown as Anthropic.MessageStreamParams, requestOptions);
    let upstream: UpstreamMeta | undefined;
    let published: Promise<void> = Promise.resolve();
    stream.on('streamEvent', (event) => {
      // Serialized now, in the stream's own emit: its message snapshot shares this event's objects (message_start's
      // message, a block's start), and the events after it change them before a slower reader would get to them.
      const json = JSON.stringify(event);
      if (upstream === undefined) {
        const first = (upstream = meta(stream.response?.headers));
        published = published.then(() => publisher.publish(JOB_UPSTREAM_EVENT, first));
      }
      published = published.then(() => publisher.publishJson(event.type, json));
    });
    let message: Anthropic.Message;
    try {
      message = await stream.finalMessage();
    } finally {
      await published; // every event the stream emitted is written (in order) before the job ends or fails
    }
    if (signal?.aborted === true) throw signal.reason;
    await publisher.finish();
    return { v: 2, answer: message, upstream: upstream ?? meta(stream.response?.headers) };
  }

  /** `GET /v1/models` or `/v1/models/{id}` through the SDK; the upstream's JSON as it is. */
  async #models(job: ParsedJob, signal: AbortSignal | undefined, meta: (headers: Headers | null | undefined) => UpstreamMeta): Promise<JobResult> {
    const models = this.#options.modelsClient;
    if (models === undefined) throw new InvalidRequestError('this worker has no models client');
    const { id, query } = job.params as ModelsParams;
    const path = id === null ? '/v1/models' : `/v1/models/${encodeURIComponent(id)}`;
    const options = { query, headers: sdkHeaders(job.headers), ...(signal === undefined ? {} : { signal }) };
    const { data, response } = await models.get<unknown>(path, options).withResponse();
    return { v: 2, answer: data, upstream: meta(response.headers) };
  }

  /** A count_tokens call: one token of the count_tokens limiter (if any) first; a 429 with `retry-after` pauses it fleet-wide. */
  async #countTokens(
    client: MessagesClient,
    job: ParsedJob,
    requestOptions: Parameters<MessagesClient['messages']['countTokens']>[1],
    signal: AbortSignal | undefined,
    meta: (headers: Headers | null | undefined) => UpstreamMeta,
  ): Promise<JobResult> {
    const limiter = this.#options.countTokensLimiter;
    const permit = await limiter?.acquire({ priority: job.priority, ...(signal === undefined ? {} : { signal }) });
    try {
      const { data, response } = await client.messages.countTokens(job.params as unknown as Anthropic.MessageCountTokensParams, requestOptions).withResponse();
      return { v: 2, answer: data, upstream: meta(response.headers) };
    } catch (error) {
      const retryAfterS = Number((error as { status?: unknown; headers?: Headers }).headers?.get?.('retry-after'));
      if ((error as { status?: unknown }).status === 429 && retryAfterS > 0) await limiter?.pause(retryAfterS * 1_000, 'count_tokens 429 with retry-after').catch(() => {});
      throw error;
    } finally {
      await permit?.release().catch(() => {}); // a rate only: nothing to settle, and a failed release expires by itself
    }
  }
}

/** The job's API headers as SDK request headers, with the content-type that makes the SDK send a string body as it is. */
function sdkHeaders(headers: ApiHeaders): Record<string, string> {
  const out: Record<string, string> = { 'content-type': 'application/json' };
  for (const [name, value] of Object.entries(headers)) if (value !== undefined) out[name] = value;
  return out;
}

/**
 * Creates a worker that runs Messages jobs from `queue` through `client` (use a `limitAnthropic` client, or a function
 * giving one per priority). Streaming jobs publish each SSE event to the job's Redis stream for the gateway.
 * @example
 * const worker = createWorker({ redis: process.env.REDIS_URL!, queue: 'messages', client: (p) => clients[p], concurrency: 16 });
 * process.once('SIGTERM', () => void worker.close());
 */
export function createWorker(options: WorkerOptions): QueueWorker {
  return new QueueWorker(options);
}
