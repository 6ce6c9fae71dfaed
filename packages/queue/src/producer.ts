import type Anthropic from '@anthropic-ai/sdk';
import { DOCUMENT_POLL_MS_DEFAULT, DocumentFollower, resolvePool, servedPriority, type LimitsDocument } from '@tollgate/config';
import { InvalidArgumentError, InvalidConfigError, LIMITER_NAME_PATTERN, PRIORITY_DEFAULT } from '@tollgate/limiter';
import { describeZodError, formatValue, toError } from '@tollgate/limiter/internal';
import { Job, Queue } from 'bullmq';
import { z } from 'zod';
import { IdempotencyConflictError, InvalidRequestError, TenantQueueFullError } from './errors.js';
import { IDEMPOTENCY_KEY_LENGTH_MAX, idempotentJobId, isJobId, randomJobId } from './job-ids.js';
import { JobWaiter, type WaitOptions } from './job-waiter.js';
import { defineTenantReserve, releaseTenantPlace, reserveTenantPlace } from './tenant-cap.js';
import { mergeTenantCounts, pruneTenantJobs, readTenantCounts, trackTenantJob, type TenantCount } from './tenant-counts.js';
import { decodeFailure, type JobFailure } from './failure.js';
import { QUEUE_NAME_PATTERN, accountQueueName, parseQueueName, poolLessQueueName, queueKeys, type QueueKeys } from './keys.js';
import { accountQueueNames, jobQueueName, poolQueueNames, queuedPools, registeredPoolQueues, tenantQueueNames } from './queue-names.js';
import { bullmqPriority } from './priority.js';
import { commandConnection, deadlineOf, REDIS_TIMEOUT_MS_DEFAULT, type Deadline, type OwnedRedis, type RedisInput } from './redis.js';
import { API_HEADER_NAMES, JOB_DATA_VERSION, TENANT_PATTERN, RequestBody, apiHeadersSchema, prioritySchema, type JobData } from './schema.js';
import { decodeResult, type JobResult } from './upstream.js';

export { WAIT_MS_DEFAULT, type WaitOptions } from './job-waiter.js';

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
/** Jobs whose queue a producer remembers for their wait (beyond: looked up on its tenants' queues). */
const JOB_LANES_REMEMBERED = 100_000;
/** The BullMQ job name of every Messages job. */
export const MESSAGES_JOB_NAME = 'messages';
/** The BullMQ job name of a count_tokens job. */
export const COUNT_TOKENS_JOB_NAME = 'count_tokens';

const producerOptionsSchema = z.strictObject({
  redis: z.custom<RedisInput>((value) => typeof value === 'string' || (typeof value === 'object' && value !== null), 'expected a Redis URL or an ioredis client'),
  queue: z.string().regex(QUEUE_NAME_PATTERN, 'a queue name: letters, digits and ._-, 1 to 100 characters'),
  /**
   * The account of the fleet's limits document whose key and limits run these jobs: they go on that account's own
   * queue (`<queue>@<account>`), which the workers holding its key serve. Absent: the plain queue, run by each
   * worker's default account (`TOLLGATE_NAME`, or the document's only account). When the fleet's document has several
   * accounts, a job that names none (and whose tenant the document does not map to one) is refused at enqueue: a
   * worker takes the plain queue only when its `TOLLGATE_NAME` names an account, so nothing promises it a worker.
   */
  account: z.string().regex(LIMITER_NAME_PATTERN, 'an account name: letters, digits and :._-, 1 to 200 characters').optional(),
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
  /**
   * `fleet`: every job of a tenant that the fleet's limits document names follows that tenant's policy (its priority
   * clamped to its `maxPriority`), read from Redis and followed live; `none`: jobs are enqueued as asked.
   */
  tenantPolicy: z.enum(['fleet', 'none']).default('fleet'),
  /** How often to look for a new revision of the fleet's document, in ms. */
  documentPollMs: z.number().int().min(10).max(60_000).default(DOCUMENT_POLL_MS_DEFAULT),
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

/** One BullMQ queue a producer writes to: its own (plain or the account's), or a tenant's. */
interface QueueLane {
  readonly name: string;
  readonly queue: Queue;
  readonly keys: QueueKeys;
  readonly waiter: JobWaiter;
  /** A pool queue: whether it is in its pool-less queue's `poolQueues` set already (by this producer). */
  registered: boolean;
}

/**
 * Puts Messages requests on the queue. Every request is validated before it is sent: an invalid one throws
 * {@link InvalidRequestError} and nothing enters the queue. Waits for answers go through its {@link JobWaiter}.
 */
/** An account's or a tenant's queue without a pool: the pool queues of it register on it (`…:pool-queues`). */
function isPoolLessAccountQueue(name: string): boolean {
  const parts = parseQueueName(name);
  return parts?.account !== undefined && parts.pool === undefined;
}

export class Producer {
  readonly queue: Queue;
  /** The BullMQ queue's name: `queue`, or `<queue>@<account>` with `account`. */
  readonly name: string;
  /** The account these jobs name; undefined: the plain queue's. */
  readonly account: string | undefined;
  readonly #options: z.output<typeof producerOptionsSchema>;
  readonly #redis: OwnedRedis;
  /** Every Redis call of this producer (and its waiter) under `redisTimeoutMs`. */
  readonly #within: Deadline;
  readonly #waiter: JobWaiter;
  /** This producer's own queue, and the queues of the tenants it has enqueued for (by queue name). */
  readonly #own: QueueLane;
  readonly #lanes = new Map<string, QueueLane>();
  /** The lane of each job this producer enqueued lately (the oldest forgotten first), for its wait. */
  readonly #jobLanes = new Map<string, QueueLane>();
  /** The fleet's limits document, for tenant policy; undefined with `tenantPolicy: 'none'`. */
  readonly #document: DocumentFollower | undefined;

  /** @throws {@link InvalidConfigError} naming each bad option and its value. */
  constructor(options: ProducerOptions) {
    const parsed = producerOptionsSchema.safeParse(options);
    if (!parsed.success) throw new InvalidConfigError(`invalid producer options: ${describeZodError(parsed.error, options)}`, { cause: parsed.error });
    this.#options = parsed.data;
    this.account = parsed.data.account;
    this.name = this.account === undefined ? parsed.data.queue : accountQueueName(parsed.data.queue, this.account);
    const keys = queueKeys(this.name);
    this.#within = deadlineOf(parsed.data.redisTimeoutMs);
    this.#redis = commandConnection(parsed.data.redis, parsed.data.redisTimeoutMs);
    defineTenantReserve(this.#redis.client);
    this.#redis.client.on('error', () => {}); // connection errors surface as rejected calls; ioredis reconnects by itself
    this.queue = new Queue(this.name, { connection: this.#redis.client, prefix: keys.prefix, skipVersionCheck: true });
    this.queue.on('error', () => {}); // same: every call that needs Redis rejects on its own
    this.#waiter = new JobWaiter({ queue: this.queue, keys, redis: parsed.data.redis, commands: this.#redis, within: this.#within, dataLossCheckMs: parsed.data.dataLossCheckMs });
    this.#own = { name: this.name, queue: this.queue, keys, waiter: this.#waiter, registered: true };
    this.#lanes.set(this.name, this.#own);
    this.#document = parsed.data.tenantPolicy === 'fleet' ? new DocumentFollower({ redis: this.#redis.client, pollMs: parsed.data.documentPollMs }) : undefined;
  }

  /**
   * The queue a job of `tenant` whose model is of `pool` goes on (DESIGN §9, queue-names.ts): a tenant that the fleet's
   * document names has queues of its own on its account, `<queue>@<account>[~<pool>]#<tenant>`, so that its backlog
   * holds only its own worker slots and its cap (BullMQ's global concurrency on its pool-less queue) holds only its own
   * jobs; every other job goes on this producer's queue, or on its pool's queue when the account has several pools.
   * @throws {@link InvalidRequestError} when this producer names an account and the tenant's is another.
   */
  #laneFor(tenant: string | undefined, pool: string | undefined): { lane: QueueLane; account: string | undefined } {
    const document = this.#document?.current?.document;
    const policy = tenant !== undefined && document !== undefined && Object.hasOwn(document.tenants, tenant) ? document.tenants[tenant] : undefined;
    if (tenant === undefined || policy === undefined) {
      const account = this.#poolAccount();
      if (account === undefined) return { lane: this.#own, account: this.account };
      // a producer without an account keeps the plain queue unless its account has a queue per pool: then each of its
      // jobs goes on one of the account's queues (a pool's, or <queue>@<account> for a job of no pool: count_tokens,
      // models), so that a tenant's jobs share one tenantQueuedMax set, the account queue's
      if (this.account === undefined && queuedPools(document, account).length === 0) return { lane: this.#own, account: this.account };
      return { lane: this.#lane(jobQueueName(document, this.#options.queue, account, pool, undefined)), account: this.account };
    }
    if (this.account !== undefined && policy.account !== this.account) {
      throw new InvalidRequestError(`tenant ${tenant} uses account ${policy.account} in the fleet's limits document; this producer enqueues for account ${this.account}`);
    }
    return { lane: this.#lane(jobQueueName(document, this.#options.queue, policy.account, pool, tenant)), account: policy.account };
  }

  /**
   * The account whose pool queues this producer's own jobs (those of no tenant of the document) go on: its own, or the
   * document's only account (whose workers serve the plain queue too); undefined without one.
   */
  #poolAccount(): string | undefined {
    if (this.account !== undefined) return this.account;
    const accounts = Object.keys(this.#document?.current?.document.accounts ?? {});
    return accounts.length === 1 ? accounts[0] : undefined;
  }

  /** The lane of queue `name`, made on first use. */
  #lane(name: string): QueueLane {
    let lane = this.#lanes.get(name);
    if (lane === undefined) {
      const keys = queueKeys(name);
      const queue = new Queue(name, { connection: this.#redis.client, prefix: keys.prefix, skipVersionCheck: true });
      queue.on('error', () => {});
      const waiter = new JobWaiter({ queue, keys, redis: this.#options.redis, commands: this.#redis, within: this.#within, dataLossCheckMs: this.#options.dataLossCheckMs });
      lane = { name, queue, keys, waiter, registered: parseQueueName(name)?.pool === undefined };
      this.#lanes.set(name, lane);
    }
    return lane;
  }

  /**
   * The lanes a job id may be on: with `tenant`, that tenant's queues first (each of its pools'); then this producer's
   * queue and its pools' queues, every queue of the fleet's document that belongs to its account (or the tenants' queues
   * of any account, for a producer without one), and any other it has used (a tenant's queue before an apply moved it).
   */
  #candidateLanes(tenant?: string | null): QueueLane[] {
    const document = this.#document?.current?.document;
    const queue = this.#options.queue;
    const first: string[] = [];
    if (tenant !== undefined && tenant !== null && document !== undefined && Object.hasOwn(document.tenants, tenant)) {
      const account = document.tenants[tenant]?.account ?? '';
      first.push(...tenantQueueNames(document, queue, account, tenant)); // a lookup: the tenant's queues, whichever account they are on
    }
    const own = this.#poolAccount();
    if (own !== undefined) first.push(...poolQueueNames(document, accountQueueName(queue, own)));
    const names = [...first.map((name) => this.#lane(name)), this.#own];
    if (tenant === undefined || tenant === null) {
      if (this.account !== undefined) names.push(...accountQueueNames(document, queue, this.account).map((name) => this.#lane(name)));
      else
        for (const [name, policy] of Object.entries(document?.tenants ?? {}))
          names.push(...tenantQueueNames(document, queue, policy.account, name).map((lane) => this.#lane(lane)));
    }
    return [...new Set([...names, ...this.#lanes.values()])];
  }

  /** Reads the fleet's document once (after the connection is up: it queues no command offline); the tenant queues are its. */
  async #documentLoaded(what: string, strict = false): Promise<void> {
    const document = this.#document;
    if (document === undefined || document.loaded) return;
    const reading = this.#within(
      this.queue.waitUntilReady().then(() => document.ready()),
      what,
    );
    // only an enqueue must not go on without it (it would miss the tenant's policy); a read looks where it can
    if (strict) await reading;
    else await reading.catch(() => {});
  }

  /** The lane that holds job `jobId` (undefined: none), and the job. */
  async #find(jobId: string, tenant: string | null | undefined, what: string): Promise<{ lane: QueueLane; job: Job } | undefined> {
    await this.#documentLoaded(what);
    const candidates = this.#candidateLanes(tenant);
    for (const lane of candidates) {
      const job = await this.#within(Job.fromId(lane.queue, jobId), what);
      if (job !== undefined) return { lane, job };
    }
    // not there: a pool queue that the document no longer names (an apply removed its pool since)
    for (const lane of await this.#registeredLanes(candidates, what)) {
      const job = await this.#within(Job.fromId(lane.queue, jobId), what);
      if (job !== undefined) return { lane, job };
    }
    return undefined;
  }

  /**
   * The lanes of the pool queues that producers registered on the pool-less queues among `lanes` and that `lanes` lack:
   * queues the fleet's document no longer names (an apply removed their pool), still holding jobs.
   */
  async #registeredLanes(lanes: readonly QueueLane[], what: string): Promise<QueueLane[]> {
    const names = new Set(lanes.map((lane) => lane.name));
    const poolLess = [...names].filter(isPoolLessAccountQueue);
    const registered = await this.#within(registeredPoolQueues(this.#redis.client, poolLess), what);
    return registered.filter((name) => !names.has(name)).map((name) => this.#lane(name));
  }

  /** Every lane of this producer's queues: those a job may be on, and the registered pool queues the document no longer names. */
  async #allLanes(what: string): Promise<QueueLane[]> {
    const candidates = this.#candidateLanes();
    return [...candidates, ...(await this.#registeredLanes(candidates, what))];
  }

  #remember(jobId: string, lane: QueueLane): void {
    if (lane === this.#own) return; // the default
    this.#jobLanes.delete(jobId);
    this.#jobLanes.set(jobId, lane);
    if (this.#jobLanes.size > JOB_LANES_REMEMBERED) this.#jobLanes.delete(this.#jobLanes.keys().next().value ?? '');
  }

  /** The lane of a job: where this producer put it, else where it is found (this producer's queue when nowhere). */
  async #laneOfJob(jobId: string, what: string): Promise<QueueLane> {
    const known = this.#jobLanes.get(jobId);
    if (known !== undefined) return known;
    if (!isJobId(jobId)) return this.#own;
    await this.#documentLoaded(what);
    const candidates = this.#candidateLanes();
    // one queue, and none that pool queues register on (a plain queue, the environment's shorthand): nothing to look up
    if (candidates.length === 1 && !candidates.some((lane) => isPoolLessAccountQueue(lane.name))) return this.#own;
    try {
      // which queue holds its hash (one EXISTS each, never the job's payload): its pool's, its tenant's or this one's,
      // then a registered pool queue the document no longer names (an apply removed its pool)
      for (const lane of candidates) if ((await this.#within(this.#redis.client.exists(lane.keys.job(jobId)), what)) === 1) return lane;
      for (const lane of await this.#registeredLanes(candidates, what)) if ((await this.#within(this.#redis.client.exists(lane.keys.job(jobId)), what)) === 1) return lane;
    } catch {
      // Redis away or loading (a restart): this producer's queue, whose waiter waits out the outage
    }
    return this.#own;
  }

  /** The keys of the queue this producer put job `jobId` on (its event stream, its abort channel); its own queue's for a job it does not know. */
  keysOfJob(jobId: string): QueueKeys {
    return (this.#jobLanes.get(jobId) ?? this.#own).keys;
  }

  /** The BullMQ queue this producer put job `jobId` on (a tenant's own, or its own queue); its own for a job it does not know. */
  queueOfJob(jobId: string): Queue {
    return (this.#jobLanes.get(jobId) ?? this.#own).queue;
  }

  /**
   * The lane of a new job: its account's (checked against the fleet's document, with its model's pool) and its pool's.
   * @throws {@link InvalidRequestError} as {@link checkAccount}, or for a tenant of another account.
   */
  #route(body: RequestBody, tenant: string | undefined): { lane: QueueLane } {
    const document = this.#document?.current?.document;
    const { account } = this.#laneFor(tenant, undefined);
    const pool = this.#document === undefined ? undefined : checkAccount(document, account, body.route === 'messages' ? body.params.model : undefined, tenant);
    return { lane: this.#laneFor(tenant, pool).lane };
  }

  /** The fleet's limits document as this producer last read it (`tenantPolicy: 'fleet'`); undefined before that, or with 'none'. */
  get fleetDocument(): LimitsDocument | undefined {
    return this.#document?.current?.document;
  }

  /**
   * The priority a job of `tenant` asking for `requested` is served with under the fleet's document (DESIGN §9: a
   * tenant may not ask for more than its `maxPriority`); as asked before the document was first read.
   */
  servedPriority(tenant: string | null | undefined, requested: number): number {
    return servedPriority(this.#document?.current?.document, tenant, requested);
  }

  /**
   * Validates and enqueues one Messages request; returns the job id. `params` is the request object (sent upstream
   * as `JSON.stringify` writes it, in its own key order) or a {@link RequestBody} (its text is sent byte for byte).
   * Only what Tollgate reads is checked (`model`, `max_tokens`, `messages`, `stream`); any other field is the
   * upstream's to judge.
   * @throws {@link InvalidRequestError} naming the field; nothing is enqueued.
   * @throws {@link InvalidArgumentError} naming the first bad option (the message names each); nothing is enqueued.
   * @throws {@link QueueUnavailableError} when Redis does not answer within `redisTimeoutMs`; BullMQ adds a job in one
   * script, so the job then either exists whole or not at all.
   */
  async enqueue(params: unknown, options: EnqueueOptions = {}): Promise<string> {
    return (await this.enqueueJob(params, options)).id;
  }

  /**
   * {@link Producer.enqueue}, returning the job id and the priority the job is served with (the tenant's policy may
   * have clamped the one asked for; see {@link Producer.servedPriority}). Same errors.
   */
  async enqueueJob(params: unknown, options: EnqueueOptions = {}): Promise<{ id: string; priority: number }> {
    const body = params instanceof RequestBody ? params : RequestBody.fromParams(params);
    const parsed = enqueueOptionsSchema.safeParse(options);
    if (!parsed.success) throw InvalidArgumentError.fromZod('enqueue options', parsed.error, options);
    const { tenant, idempotencyKey, attempts, headers } = parsed.data;
    // once: later calls find it read (no deadline timer per enqueue then: the usual enqueue waits for nothing here)
    await this.#documentLoaded('enqueue', true);
    const { lane } = this.#route(body, tenant);
    const priority = this.servedPriority(tenant, parsed.data.priority);
    const data: JobData = { v: JOB_DATA_VERSION, route: body.route, body: body.text, headers, tenant: tenant ?? null, priority };
    const jobId = idempotencyKey === undefined ? randomJobId() : idempotentJobId(tenant ?? null, idempotencyKey);
    // an idempotent job may be on another queue of its account (enqueued before its tenant had a queue of its own, or
    // had another one, or before an apply changed the pools; or another request's, a count_tokens beside a pool's
    // Messages job): that job is the answer, or a conflict, never a second one. Looked up even by a producer with one
    // lane so far: the other queues come from the document and the registered pool queues
    if (idempotencyKey !== undefined) {
      const elsewhere = await this.#find(jobId, tenant ?? null, 'enqueue');
      if (elsewhere !== undefined && elsewhere.lane !== lane) {
        const existing = elsewhere.job.data as Partial<JobData>;
        if (!sameRequest(existing, data)) throw new IdempotencyConflictError(jobId);
        this.#remember(jobId, elsewhere.lane);
        return { id: jobId, priority: typeof existing.priority === 'number' ? existing.priority : priority };
      }
    }
    const { tenantQueuedMax, retention } = this.#options;
    if (tenant !== undefined && tenantQueuedMax !== undefined) {
      // one set per (account, tenant), on the pool-less queue, counting the tenant's jobs on every pool queue of it
      const home = poolLessQueueName(lane.name);
      const prefixes = [home, ...poolQueueNames(this.#document?.current?.document, home)].map((name) => queueKeys(name).jobPrefix);
      const reserved = await this.#within(reserveTenantPlace(this.#redis.client, queueKeys(home).tenantOpen(tenant), jobId, tenantQueuedMax, prefixes), 'enqueue');
      if (!reserved) throw new TenantQueueFullError(tenant, tenantQueuedMax);
    }
    if (!lane.registered) {
      // before its first job: the workers and `tollgate` find a pool queue by this set, whatever the document says later
      await this.#within(this.#redis.client.sadd(queueKeys(poolLessQueueName(lane.name)).poolQueues, lane.name), 'enqueue');
      lane.registered = true;
    }
    await this.#within(
      lane.queue.add(body.route === 'messages' ? MESSAGES_JOB_NAME : COUNT_TOKENS_JOB_NAME, data, {
        jobId, // never BullMQ's incrementing ids: they would tell one tenant how many jobs the others sent
        priority: bullmqPriority(priority),
        attempts,
        backoff: { type: 'exponential', delay: JOB_BACKOFF_MS },
        removeOnComplete: { age: retention.completedSeconds, count: retention.completedJobs },
        removeOnFail: { age: retention.failedSeconds, count: retention.failedJobs },
      }),
      'enqueue',
      Math.ceil(body.text.length / ENQUEUE_BYTES_PER_MS),
    );
    this.#remember(jobId, lane);
    // the per-tenant view; the job exists whole already, so a failure here must not fail the enqueue (the caller would
    // send it again): the job is then counted only while active, under no tenant
    await this.#within(trackTenantJob(this.#redis.client, lane.keys, jobId, tenant ?? null), 'enqueue').catch(() => {});
    // BullMQ answers an existing id with that job, untouched: it must carry this very request
    if (idempotencyKey !== undefined) {
      const stored = await this.#within(this.#redis.client.hget(lane.keys.job(jobId), 'data'), 'enqueue');
      if (stored !== null) {
        const existing = JSON.parse(stored) as Partial<JobData>;
        if (!sameRequest(existing, data)) throw new IdempotencyConflictError(jobId);
        // the existing job, as it is served (the policy may have changed since it was enqueued)
        if (typeof existing.priority === 'number') return { id: jobId, priority: existing.priority };
      }
    }
    return { id: jobId, priority };
  }

  /**
   * Enqueues and waits for the answer.
   * @returns the `Message` the upstream sent.
   * @throws {@link UpstreamError} with the upstream status, `error.type`, message and body when the job failed.
   * @throws {@link JobWaitTimeoutError} when it did not finish within `timeoutMs` (the job goes on).
   */
  async enqueueAndWait(params: unknown, options: EnqueueOptions & WaitOptions = {}): Promise<Anthropic.Message> {
    const { timeoutMs, ...enqueueOptions } = options;
    await this.#documentLoaded('enqueue', true);
    const body = params instanceof RequestBody ? params : RequestBody.fromParams(params);
    await this.#route(body, enqueueOptions.tenant).lane.waiter.ready(); // listening before the job exists, so its end cannot be missed
    const jobId = await this.enqueue(body, enqueueOptions);
    return this.wait(jobId, timeoutMs === undefined ? {} : { timeoutMs });
  }

  /** Waits for a job already enqueued. Same results and errors as {@link Producer.enqueueAndWait}. */
  async wait(jobId: string, options: WaitOptions = {}): Promise<Anthropic.Message> {
    return (await this.waitForResult(jobId, options)).answer as Anthropic.Message;
  }

  /**
   * Waits for a job already enqueued and returns the whole result: the upstream's answer, its relayed headers and
   * the worker's timings. Errors as {@link Producer.enqueueAndWait}, and {@link InvalidArgumentError} for a malformed
   * job id or `timeoutMs`.
   */
  async waitForResult(jobId: string, options: WaitOptions = {}): Promise<JobResult> {
    return (await this.#laneOfJob(jobId, 'wait')).waiter.wait(jobId, options);
  }

  /** Connects the queue and the reader of job events now, so that the first `enqueueAndWait` does not pay for it. */
  async ready(): Promise<void> {
    await this.#within(this.queue.waitUntilReady(), 'ready');
    if (this.#document !== undefined) await this.#within(this.#document.ready(), 'ready');
    await this.#waiter.ready();
  }

  /**
   * The job's state, tenant, answer or error; undefined when there is no such job. `tenant`: look where that tenant's
   * jobs go (its own queue, then this producer's); else on every queue of this producer's tenants.
   */
  async getJob(jobId: string, options: { tenant?: string | null } = {}): Promise<JobView | undefined> {
    if (!isJobId(jobId)) return undefined; // a caller's string never reaches Redis as a key
    const found = await this.#find(jobId, options.tenant, 'getJob');
    if (found === undefined) return undefined;
    const job = found.job as Job<JobData, unknown>;
    const state = (await this.#within(job.getState(), 'getJob')) as JobState;
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

  /** Removes a job that has not started. An active job is left running (`active`); a finished one is kept (`finished`). `tenant` as {@link Producer.getJob}. */
  async cancel(jobId: string, options: { tenant?: string | null } = {}): Promise<CancelOutcome> {
    return (await this.#cancel(jobId, options.tenant)).outcome;
  }

  async #cancel(jobId: string, tenantHint: string | null | undefined): Promise<{ outcome: CancelOutcome; lane: QueueLane }> {
    if (!isJobId(jobId)) return { outcome: 'missing', lane: this.#own };
    const known = this.#jobLanes.get(jobId);
    const found =
      known === undefined
        ? await this.#find(jobId, tenantHint, 'cancel')
        : await this.#within(Job.fromId(known.queue, jobId), 'cancel').then((job) => (job === undefined ? undefined : { lane: known, job }));
    if (found === undefined) return { outcome: 'missing', lane: known ?? this.#own };
    const { lane, job } = found;
    const outcome = await this.#removeQueued(lane, job);
    return { outcome, lane };
  }

  async #removeQueued(lane: QueueLane, job: Job): Promise<CancelOutcome> {
    const jobId = job.id ?? '';
    const state = await this.#within(job.getState(), 'cancel');
    if (state === 'completed' || state === 'failed') return 'finished';
    if (state === 'active') return 'active';
    try {
      await this.#within(job.remove(), 'cancel');
      const tenant = (job.data as Partial<JobData>).tenant;
      if (typeof tenant === 'string') await this.#within(releaseTenantPlace(this.#redis.client, queueKeys(poolLessQueueName(lane.name)).tenantOpen(tenant), jobId), 'cancel');
      await this.#within(pruneTenantJobs(this.#redis.client, lane.keys, [jobId]), 'cancel').catch(() => {}); // else the workers' sweep does it
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
    const { outcome, lane } = await this.#cancel(jobId, undefined);
    if (outcome !== 'active') return outcome;
    if (!options.abortRunning) return 'running'; // left to finish: its answer is kept for GET /v1/jobs/:id
    await this.#within(this.#redis.client.publish(lane.keys.abortChannel, jobId), 'abandon');
    return 'aborting';
  }

  /** Jobs per state, fleet-wide: this producer's queue, its pools' and its tenants' queues together (and any registered pool queue). */
  async counts(): Promise<QueueCounts> {
    await this.#documentLoaded('counts');
    const all = await Promise.all(
      (await this.#allLanes('counts')).map((lane) => this.#within(lane.queue.getJobCounts('waiting', 'prioritized', 'delayed', 'active', 'completed', 'failed'), 'counts')),
    );
    const sum = (state: keyof QueueCounts) => all.reduce((total, counts) => total + (counts[state] ?? 0), 0);
    return { waiting: sum('waiting'), prioritized: sum('prioritized'), delayed: sum('delayed'), active: sum('active'), completed: sum('completed'), failed: sum('failed') };
  }

  /** Jobs per tenant, fleet-wide: in flight (held by a worker) and waiting, on every queue of this producer; see tenant-counts.ts. */
  async tenantCounts(): Promise<TenantCount[]> {
    await this.#documentLoaded('tenant counts');
    const all = await Promise.all((await this.#allLanes('tenant counts')).map((lane) => this.#within(readTenantCounts(this.#redis.client, lane.keys), 'tenant counts')));
    return mergeTenantCounts(all);
  }

  /** Closes the queues and the connections this producer opened. Idempotent. */
  async close(): Promise<void> {
    this.#document?.close();
    for (const lane of this.#lanes.values()) {
      await lane.waiter.close();
      await lane.queue.close().catch(() => {});
    }
    if (this.#redis.owned) this.#redis.client.disconnect();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/**
 * A job's account must be one of the fleet's document (else no worker holds its key: it would wait forever), and a
 * Messages job's model must belong to a pool of that account (DESIGN §8): refused at enqueue, never queued. A job that
 * names no account is checked against the document's only account; with several, it is refused: it would go on the
 * plain queue, which only a worker whose `TOLLGATE_NAME` names an account serves (the worker's default account, see
 * services/worker accounts.ts), so nothing promises it a worker, and which account's key ran it would depend on the
 * worker that took it.
 * @returns the model's pool (undefined: no document, or a job without a model).
 * @throws {@link InvalidRequestError} naming the account, or the model and the account's patterns, or the accounts to
 * choose from.
 */
function checkAccount(document: LimitsDocument | undefined, account: string | undefined, model: unknown, tenant: string | undefined): string | undefined {
  if (document === undefined) return undefined;
  const names = Object.keys(document.accounts);
  const name = account ?? (names.length === 1 ? names[0] : undefined);
  if (name === undefined) {
    const fix = tenant === undefined ? '' : `, or give tenant ${tenant} an account in the document`;
    throw new InvalidRequestError(
      `this job names no account and the fleet's limits document has several (accounts: ${names.join(', ')}), so no worker is sure to run it: create the producer with { account } naming one of them${fix}`,
    );
  }
  const limits = Object.hasOwn(document.accounts, name) ? document.accounts[name] : undefined;
  if (limits === undefined) throw new InvalidRequestError(`account ${formatValue(name)} is not in the fleet's limits document (accounts: ${names.join(', ')})`);
  if (typeof model !== 'string') return undefined;
  try {
    return resolvePool(limits, model, name).pool;
  } catch (error) {
    throw new InvalidRequestError(toError(error).message, { cause: error });
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
