import type { EventEmitter } from 'node:events';
import type Anthropic from '@anthropic-ai/sdk';
import { PRIORITY_DEFAULT, describeZodError, formatValue } from '@tollgate/limiter';
import { Job, Queue, QueueEvents } from 'bullmq';
import { z } from 'zod';
import { randomBytes } from 'node:crypto';
import { IdempotencyConflictError, InvalidRequestError, JobLostError, JobWaitTimeoutError, QueueUnavailableError, TenantQueueFullError, UpstreamError } from './errors.js';
import { IDEMPOTENCY_KEY_LENGTH_MAX, idempotentJobId, isJobId, randomJobId } from './job-ids.js';
import { defineTenantReserve, releaseTenantPlace, reserveTenantPlace } from './tenant-cap.js';
import { pruneTenantJobs, readTenantCounts, trackTenantJob, type TenantCount } from './tenant-counts.js';
import { decodeFailure, type JobFailure } from './failure.js';
import { queueKeys } from './keys.js';
import { bullmqPriority } from './priority.js';
import { blockingConnection, commandConnection, REDIS_TIMEOUT_MS_DEFAULT, withDeadline, type OwnedRedis, type RedisInput } from './redis.js';
import { API_HEADER_NAMES, JOB_DATA_VERSION, TENANT_PATTERN, RequestBody, apiHeadersSchema, prioritySchema, type JobData } from './schema.js';
import { decodeResult, type JobResult } from './upstream.js';

/** Attempts per job unless the caller says otherwise (the client retries inside each attempt too). */
export const JOB_ATTEMPTS_DEFAULT = 3;
export const JOB_ATTEMPTS_MAX = 20;
/** First BullMQ backoff between attempts, doubled each time. */
export const JOB_BACKOFF_MS = 1_000;
/** Completed jobs (and their answers) are kept this long for `GET /v1/jobs/:id`, in seconds. */
export const COMPLETED_RETENTION_SECONDS = 24 * 60 * 60;
/** At most this many completed jobs are kept (the oldest go first): Redis memory stays bounded under any load. */
export const COMPLETED_RETENTION_JOBS = 10_000;
/** Failed jobs, with their error bodies, are kept this long, in seconds. */
export const FAILED_RETENTION_SECONDS = 7 * 24 * 60 * 60;
/** At most this many failed jobs are kept. */
export const FAILED_RETENTION_JOBS = 10_000;
/** Largest per-tenant cap on unfinished jobs (the cap's script looks at each member when the cap is reached). */
export const TENANT_QUEUED_MAX = 100_000;
/** While calls wait, how often the producer checks that Redis still holds its data, in ms. */
export const DATA_LOSS_CHECK_MS_DEFAULT = 2_000;
/** Bytes per ms a Redis write of a job is given beyond `redisTimeoutMs` (50 MB/s): a 30 MiB body is not an outage. */
export const ENQUEUE_BYTES_PER_MS = 50_000;
/** Default wait of `enqueueAndWait`. */
export const WAIT_MS_DEFAULT = 10 * 60 * 1000;
/** The BullMQ job name of every Messages job. */
export const MESSAGES_JOB_NAME = 'messages';
/** The BullMQ job name of a count_tokens job. */
export const COUNT_TOKENS_JOB_NAME = 'count_tokens';

const producerOptionsSchema = z.strictObject({
  redis: z.custom<RedisInput>((value) => typeof value === 'string' || (typeof value === 'object' && value !== null), 'expected a Redis URL or an ioredis client'),
  queue: z.string().min(1),
  /** Longest wait for Redis per call, in ms; then {@link QueueUnavailableError}. */
  redisTimeoutMs: z.number().int().min(10).max(60_000).default(REDIS_TIMEOUT_MS_DEFAULT),
  /** Most unfinished jobs (waiting, delayed or running) one tenant may have; unset: no cap. */
  tenantQueuedMax: z.number().int().min(1).max(TENANT_QUEUED_MAX).optional(),
  /** How long, and how many, finished jobs are kept with their payloads and answers (BullMQ removeOnComplete/Fail). */
  retention: z
    .strictObject({
      completedSeconds: z.number().int().min(1).default(COMPLETED_RETENTION_SECONDS),
      completedJobs: z.number().int().min(0).default(COMPLETED_RETENTION_JOBS),
      failedSeconds: z.number().int().min(1).default(FAILED_RETENTION_SECONDS),
      failedJobs: z.number().int().min(0).default(FAILED_RETENTION_JOBS),
    })
    .prefault({}),
  /** While calls wait, how often to check that Redis did not lose its data (then they answer {@link JobLostError}). */
  dataLossCheckMs: z.number().int().min(50).max(60_000).default(DATA_LOSS_CHECK_MS_DEFAULT),
});

export type ProducerOptions = z.input<typeof producerOptionsSchema>;

const enqueueOptionsSchema = z.strictObject({
  /** 0 = first … 9 = last, in the queue and for the permit. */
  priority: prioritySchema.default(PRIORITY_DEFAULT),
  /** Who asked; kept on the job, shown in logs and used by the gateway to scope job lookups. */
  tenant: z.string().regex(TENANT_PATTERN, 'letters, digits and ._- only, 1 to 64 characters').optional(),
  /**
   * Makes enqueue idempotent within the tenant: the same key with the same request returns the existing job; with a
   * different request it throws {@link IdempotencyConflictError}. The key is hashed into the job id, never used raw.
   */
  idempotencyKey: z.string().min(1).max(IDEMPOTENCY_KEY_LENGTH_MAX).optional(),
  attempts: z.number().int().min(1).max(JOB_ATTEMPTS_MAX).default(JOB_ATTEMPTS_DEFAULT),
  /** `anthropic-beta` / `anthropic-version` for the upstream call (the SDK's `betas` become `anthropic-beta`). */
  headers: apiHeadersSchema.default({}),
});

export type EnqueueOptions = z.input<typeof enqueueOptionsSchema>;

export interface WaitOptions {
  /** Longest wait for the job to finish, in ms. */
  timeoutMs?: number;
  /** Stops waiting (rejects with the signal's reason); the job itself goes on. */
  signal?: AbortSignal;
}

/** What `abandon` did: removed a queued job, asked the worker running it to abort, or found it done or gone. */
export type AbandonOutcome = 'cancelled' | 'aborting' | 'running' | 'finished' | 'missing';

/** BullMQ's job states plus `missing`. */
export type JobState = 'waiting' | 'prioritized' | 'delayed' | 'active' | 'completed' | 'failed' | 'waiting-children' | 'unknown';

/** One job as `GET /v1/jobs/:id` shows it. */
export interface JobView {
  id: string;
  state: JobState;
  tenant: string | null;
  priority: number;
  attemptsMade: number;
  createdAtMs: number;
  finishedAtMs: number | null;
  /** The answer, once completed: a Message (or `{ input_tokens }` for a count_tokens job). */
  result: Anthropic.Message | null;
  /** The final error, once failed: status and Anthropic's error body. */
  error: JobFailure | null;
}

export type QueueCounts = Record<'waiting' | 'prioritized' | 'delayed' | 'active' | 'completed' | 'failed', number>;

/** What `cancel` did. */
export type CancelOutcome = 'cancelled' | 'active' | 'finished' | 'missing';

/** The producer's one reader of job events, created on the first wait. */
interface QueueEventsEntry {
  owned: OwnedRedis;
  events: QueueEvents | undefined;
  ready: Promise<void>;
}

/**
 * Puts Messages requests on the queue. Every request is validated before it is sent: an invalid one throws
 * {@link InvalidRequestError} and nothing enters the queue.
 */
export class Producer {
  readonly queue: Queue;
  readonly name: string;
  readonly #options: z.output<typeof producerOptionsSchema>;
  readonly #redis: OwnedRedis;
  readonly #keys: ReturnType<typeof queueKeys>;
  #events: QueueEventsEntry | undefined;
  /** The dataset's epoch as this producer last saw it, and the timer that checks it while calls wait. */
  #epoch: string | undefined;
  #lossTimer: NodeJS.Timeout | undefined;
  /**
   * State checks of the calls waiting now. Events emitted while the event reader was cut off (a Redis restart) are
   * not replayed to it, so every waiting call reads its job's state again when the reader's connection is back.
   */
  readonly #recheckOnReconnect = new Set<() => void>();

  constructor(options: ProducerOptions) {
    const parsed = producerOptionsSchema.safeParse(options);
    if (!parsed.success) throw new InvalidRequestError(`invalid producer options: ${describeZodError(parsed.error, options)}`);
    this.#options = parsed.data;
    this.name = parsed.data.queue;
    const keys = queueKeys(this.name);
    this.#keys = keys;
    this.#redis = commandConnection(parsed.data.redis, parsed.data.redisTimeoutMs);
    defineTenantReserve(this.#redis.client);
    this.#redis.client.on('error', () => {}); // connection errors surface as rejected calls; ioredis reconnects by itself
    this.#recheckWhenReconnected(this.#redis.client); // the state reads of waiting calls need this connection back too
    this.queue = new Queue(this.name, { connection: this.#redis.client, prefix: keys.prefix, skipVersionCheck: true });
    this.queue.on('error', () => {}); // same: every call that needs Redis rejects on its own
  }

  /**
   * Validates and enqueues one Messages request; returns the job id. `params` is the request object (sent upstream
   * as `JSON.stringify` writes it, in its own key order) or a {@link RequestBody} (its text is sent byte for byte).
   * Only what Tollgate reads is checked (`model`, `max_tokens`, `messages`, `stream`); any other field is the
   * upstream's to judge.
   * @throws {@link InvalidRequestError} naming the field; nothing is enqueued.
   * @throws {@link QueueUnavailableError} when Redis does not answer within `redisTimeoutMs`; BullMQ adds a job in one
   * script, so the job then either exists whole or not at all.
   */
  async enqueue(params: unknown, options: EnqueueOptions = {}): Promise<string> {
    const body = params instanceof RequestBody ? params : RequestBody.fromParams(params);
    const parsed = enqueueOptionsSchema.safeParse(options);
    if (!parsed.success) throw new InvalidRequestError(`invalid enqueue options: ${describeZodError(parsed.error, options)}`);
    const { priority, tenant, idempotencyKey, attempts, headers } = parsed.data;
    const data: JobData = { v: JOB_DATA_VERSION, route: body.route, body: body.text, headers, tenant: tenant ?? null, priority };
    const jobId = idempotencyKey === undefined ? randomJobId() : idempotentJobId(tenant ?? null, idempotencyKey);
    const { tenantQueuedMax, retention, redisTimeoutMs } = this.#options;
    if (tenant !== undefined && tenantQueuedMax !== undefined) {
      const reserved = await withDeadline(reserveTenantPlace(this.#redis.client, this.#keys.tenantOpen(tenant), jobId, tenantQueuedMax, this.#keys.jobPrefix), redisTimeoutMs, 'enqueue');
      if (!reserved) throw new TenantQueueFullError(tenant, tenantQueuedMax);
    }
    await withDeadline(
      this.queue.add(body.route === 'messages' ? MESSAGES_JOB_NAME : COUNT_TOKENS_JOB_NAME, data, {
        jobId, // never BullMQ's incrementing ids: they would tell one tenant how many jobs the others sent
        priority: bullmqPriority(priority),
        attempts,
        backoff: { type: 'exponential', delay: JOB_BACKOFF_MS },
        removeOnComplete: { age: retention.completedSeconds, count: retention.completedJobs },
        removeOnFail: { age: retention.failedSeconds, count: retention.failedJobs },
      }),
      redisTimeoutMs + Math.ceil(body.text.length / ENQUEUE_BYTES_PER_MS),
      'enqueue',
    );
    // the per-tenant view; the job exists whole already, so a failure here must not fail the enqueue (the caller would
    // send it again): the job is then counted only while active, under no tenant
    await withDeadline(trackTenantJob(this.#redis.client, this.#keys, jobId, tenant ?? null), redisTimeoutMs, 'enqueue').catch(() => {});
    // BullMQ answers an existing id with that job, untouched: it must carry this very request
    if (idempotencyKey !== undefined) {
      const stored = await withDeadline(this.#redis.client.hget(this.#keys.job(jobId), 'data'), redisTimeoutMs, 'enqueue');
      if (stored !== null && !sameRequest(JSON.parse(stored) as Partial<JobData>, data)) throw new IdempotencyConflictError(jobId);
    }
    return jobId;
  }

  /**
   * Enqueues and waits for the answer.
   * @returns the `Message` the upstream sent.
   * @throws {@link UpstreamError} with the upstream status, `error.type`, message and body when the job failed.
   * @throws {@link JobWaitTimeoutError} when it did not finish within `timeoutMs` (the job goes on).
   */
  async enqueueAndWait(params: unknown, options: EnqueueOptions & WaitOptions = {}): Promise<Anthropic.Message> {
    const { timeoutMs, ...enqueueOptions } = options;
    await this.#queueEvents(); // listening before the job exists, so its end cannot be missed
    const jobId = await this.enqueue(params, enqueueOptions);
    return this.wait(jobId, timeoutMs === undefined ? {} : { timeoutMs });
  }

  /** Waits for a job already enqueued. Same results and errors as {@link Producer.enqueueAndWait}. */
  async wait(jobId: string, options: WaitOptions = {}): Promise<Anthropic.Message> {
    return (await this.waitForResult(jobId, options)).answer as Anthropic.Message;
  }

  /**
   * Waits for a job already enqueued and returns the whole result: the upstream's answer, its relayed headers and
   * the worker's timings. Errors as {@link Producer.enqueueAndWait}.
   */
  async waitForResult(jobId: string, options: WaitOptions = {}): Promise<JobResult> {
    const timeoutMs = options.timeoutMs ?? WAIT_MS_DEFAULT;
    if (!isJobId(jobId)) throw new InvalidRequestError(`wait: not a job id of this queue (got ${formatValue(jobId)})`);
    // per-job event names (`completed:<id>`) are emitted by QueueEvents but not in its listener type
    const events = (await this.#queueEvents()) as unknown as EventEmitter;
    return new Promise<JobResult>((resolve, reject) => {
      const onCompleted = (args: { returnvalue: unknown }) => finish(() => resolve(decodeResult(args.returnvalue)));
      const onFailed = (args: { failedReason: string }) => finish(() => reject(this.#upstreamError(jobId, args.failedReason)));
      const timer = setTimeout(() => finish(() => reject(new JobWaitTimeoutError(jobId, timeoutMs))), timeoutMs);
      const onAbort = () => finish(() => reject(options.signal?.reason));
      options.signal?.addEventListener('abort', onAbort, { once: true });
      let done = false;
      // The job may have finished before the listeners were set (or while the reader was cut off): read its state.
      const checkState = () => {
        // the state first, then the job: a finished job's hash no longer changes, while a hash read first could be
        // the active job's, without the answer, followed by a state read that already says completed
        withDeadline(this.queue.getJobState(jobId), this.#options.redisTimeoutMs, 'wait')
          .then(async (state) => {
            // gone before it finished: Redis lost its data (or someone removed it); the SDK retries a 503
            if (state === 'unknown') return finish(() => reject(new JobLostError(jobId)));
            if (state !== 'completed' && state !== 'failed') return;
            const job = await withDeadline(Job.fromId(this.queue, jobId), this.#options.redisTimeoutMs, 'wait');
            if (job === undefined) return; // removed by retention meanwhile: the events decide, or the deadline
            if (state === 'completed') finish(() => resolve(decodeResult(job.returnvalue)));
            else finish(() => reject(this.#upstreamError(jobId, job.failedReason)));
          })
          .catch(() => {
            // the state could not be read in time (Redis slow or briefly away): the listeners stay, the overall deadline holds
          });
      };
      const finish = (settle: () => void) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
        events.off(`completed:${jobId}`, onCompleted);
        events.off(`failed:${jobId}`, onFailed);
        this.#recheckOnReconnect.delete(checkState);
        this.#watchForDataLoss();
        settle();
      };
      events.on(`completed:${jobId}`, onCompleted);
      events.on(`failed:${jobId}`, onFailed);
      this.#recheckOnReconnect.add(checkState);
      this.#watchForDataLoss();
      checkState();
    });
  }

  /** Connects the queue and the reader of job events now, so that the first `enqueueAndWait` does not pay for it. */
  async ready(): Promise<void> {
    await withDeadline(this.queue.waitUntilReady(), this.#options.redisTimeoutMs, 'ready');
    await this.#queueEvents();
  }

  /** The job's state, tenant, answer or error; undefined when there is no such job. */
  async getJob(jobId: string): Promise<JobView | undefined> {
    if (!isJobId(jobId)) return undefined; // a caller's string never reaches Redis as a key
    const job = await withDeadline(Job.fromId<JobData, unknown>(this.queue, jobId), this.#options.redisTimeoutMs, 'getJob');
    if (job === undefined) return undefined;
    const state = (await withDeadline(job.getState(), this.#options.redisTimeoutMs, 'getJob')) as JobState;
    const data = job.data as Partial<JobData>;
    return {
      id: jobId,
      state,
      tenant: data.tenant ?? null,
      priority: data.priority ?? PRIORITY_DEFAULT,
      attemptsMade: job.attemptsMade,
      createdAtMs: job.timestamp,
      finishedAtMs: job.finishedOn ?? null,
      result: state === 'completed' ? (decodeResult(job.returnvalue).answer as Anthropic.Message) : null,
      error: state === 'failed' ? decodeFailure(job.failedReason) : null,
    };
  }

  /** Removes a job that has not started. An active job is left running (`active`); a finished one is kept (`finished`). */
  async cancel(jobId: string): Promise<CancelOutcome> {
    if (!isJobId(jobId)) return 'missing';
    const job = await withDeadline(Job.fromId(this.queue, jobId), this.#options.redisTimeoutMs, 'cancel');
    if (job === undefined) return 'missing';
    const state = await withDeadline(job.getState(), this.#options.redisTimeoutMs, 'cancel');
    if (state === 'completed' || state === 'failed') return 'finished';
    if (state === 'active') return 'active';
    try {
      await withDeadline(job.remove(), this.#options.redisTimeoutMs, 'cancel');
      const tenant = (job.data as Partial<JobData>).tenant;
      if (typeof tenant === 'string') await withDeadline(releaseTenantPlace(this.#redis.client, this.#keys.tenantOpen(tenant), jobId), this.#options.redisTimeoutMs, 'cancel');
      await withDeadline(pruneTenantJobs(this.#redis.client, this.#keys, [jobId]), this.#options.redisTimeoutMs, 'cancel').catch(() => {}); // else the workers' sweep does it
      return 'cancelled';
    } catch (error) {
      // a worker took it between the state read and the removal: BullMQ refuses to remove a locked job
      if (error instanceof Error && /locked/i.test(error.message)) return 'active';
      throw error;
    }
  }

  /**
   * The caller of a job went away: a job still queued is removed; with `abortRunning`, a running one is aborted by
   * its worker (through the queue's abort channel), which releases its permit as the call ends.
   */
  async abandon(jobId: string, options: { abortRunning: boolean }): Promise<AbandonOutcome> {
    const outcome = await this.cancel(jobId);
    if (outcome !== 'active') return outcome;
    if (!options.abortRunning) return 'running'; // left to finish: its answer is kept for GET /v1/jobs/:id
    await withDeadline(this.#redis.client.publish(this.#keys.abortChannel, jobId), this.#options.redisTimeoutMs, 'abandon');
    return 'aborting';
  }

  /** Jobs per state, fleet-wide. */
  async counts(): Promise<QueueCounts> {
    const counts = await withDeadline(this.queue.getJobCounts('waiting', 'prioritized', 'delayed', 'active', 'completed', 'failed'), this.#options.redisTimeoutMs, 'counts');
    return {
      waiting: counts.waiting ?? 0,
      prioritized: counts.prioritized ?? 0,
      delayed: counts.delayed ?? 0,
      active: counts.active ?? 0,
      completed: counts.completed ?? 0,
      failed: counts.failed ?? 0,
    };
  }

  /** Jobs per tenant, fleet-wide: in flight (held by a worker) and waiting; see tenant-counts.ts. */
  async tenantCounts(): Promise<TenantCount[]> {
    return withDeadline(readTenantCounts(this.#redis.client, this.#keys), this.#options.redisTimeoutMs, 'tenant counts');
  }

  /** Closes the queue and the connections this producer opened. Idempotent. */
  async close(): Promise<void> {
    clearInterval(this.#lossTimer);
    this.#lossTimer = undefined;
    const events = this.#events;
    this.#events = undefined;
    await events?.events?.close().catch(() => {});
    if (events?.owned.owned) events.owned.client.disconnect();
    await this.queue.close().catch(() => {});
    if (this.#redis.owned) this.#redis.client.disconnect();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #upstreamError(jobId: string, failedReason: string | undefined): UpstreamError {
    const failure = decodeFailure(failedReason);
    return new UpstreamError(jobId, failure.status, failure.body, failure.headers);
  }

  /**
   * While calls wait, checks every `dataLossCheckMs` that Redis still holds this dataset's epoch (one command,
   * whatever the number of waits). A flush or a restart without persistence drops no connection, so without this a
   * wait for a job that no longer exists would last until its deadline; with it, every waiting call reads its job's
   * state again and a vanished job answers {@link JobLostError}.
   */
  #watchForDataLoss(): void {
    if (this.#recheckOnReconnect.size === 0) {
      clearInterval(this.#lossTimer);
      this.#lossTimer = undefined;
      return;
    }
    if (this.#lossTimer !== undefined) return;
    const check = () => void this.#checkEpoch().catch(() => {}); // Redis away: the reconnect re-check covers it
    this.#lossTimer = setInterval(check, this.#options.dataLossCheckMs);
    this.#lossTimer.unref();
    check();
  }

  async #checkEpoch(): Promise<void> {
    const candidate = randomBytes(8).toString('hex');
    // SET NX GET: creates the epoch if it is missing, and answers the value that was there (null: none was)
    const previous = (await withDeadline(this.#redis.client.call('SET', this.#keys.epoch, candidate, 'NX', 'GET'), this.#options.redisTimeoutMs, 'epoch')) as string | null;
    const current = previous ?? candidate;
    const lost = this.#epoch !== undefined && current !== this.#epoch;
    this.#epoch = current;
    if (lost) for (const checkState of this.#recheckOnReconnect) checkState();
  }

  /** After `client` reconnects (not at its first connect), every waiting call reads its job's state again. */
  #recheckWhenReconnected(client: OwnedRedis['client']): void {
    let connectedBefore = false;
    client.on('ready', () => {
      if (connectedBefore) for (const checkState of this.#recheckOnReconnect) checkState();
      connectedBefore = true;
    });
  }

  async #queueEvents(): Promise<QueueEvents> {
    if (this.#events === undefined) {
      const owned = blockingConnection(this.#options.redis);
      owned.client.on('error', () => {}); // QueueEvents reconnects by itself
      this.#recheckWhenReconnected(owned.client); // events emitted while it was cut off are not replayed
      const entry: QueueEventsEntry = { owned, events: undefined, ready: Promise.resolve() };
      entry.ready = (async () => {
        // Read from the stream's current end, not from '$': QueueEvents sends its first XREAD a round trip after it
        // is ready, and a job that ended in between would be missed by a wait whose state read came just before.
        // The read uses the reader's own connection: it waits out a reconnect and goes before the reader's XREAD.
        const keys = this.#keys;
        const [last] = await owned.client.xrevrange(keys.queueEvents, '+', '-', 'COUNT', 1);
        if (this.#events !== entry) return; // closed meanwhile
        const events = new QueueEvents(this.name, {
          connection: owned.client,
          prefix: keys.prefix,
          skipVersionCheck: true,
          lastEventId: last?.[0] ?? '0-0',
        });
        events.on('error', () => {});
        events.setMaxListeners(0); // one pair of listeners per waiting call
        entry.events = events;
        await events.waitUntilReady();
      })();
      // A reader that failed to start is replaced on the next call; one that is merely slow is kept (it reconnects).
      entry.ready.catch(() => {
        if (this.#events !== entry) return;
        this.#events = undefined;
        void entry.events?.close().catch(() => {});
        if (owned.owned) owned.client.disconnect();
      });
      this.#events = entry;
    }
    const current = this.#events;
    await withDeadline(current.ready, this.#options.redisTimeoutMs, 'wait');
    if (current.events === undefined) throw new QueueUnavailableError('wait: the producer was closed');
    return current.events;
  }

}

/** Whether a stored job carries this very request: the same route, body bytes and API headers. */
function sameRequest(stored: Partial<JobData>, data: JobData): boolean {
  return stored.route === data.route && stored.body === data.body && API_HEADER_NAMES.every((name) => stored.headers?.[name] === data.headers[name]);
}

/**
 * Creates a producer for one queue.
 * @example
 * const producer = createProducer({ redis: 'redis://127.0.0.1:6379', queue: 'messages' });
 * const message = await producer.enqueueAndWait({ model, max_tokens: 256, messages }, { priority: 1, tenant: 'web' });
 */
export function createProducer(options: ProducerOptions): Producer {
  return new Producer(options);
}
