import { InvalidArgumentError, InvalidConfigError, createLimiter, type Limiter } from '@tollgate/limiter';
import { cutText, formatValue, toError } from '@tollgate/limiter/internal';
import {
  IDEMPOTENCY_KEY_LENGTH_MAX,
  IdempotencyConflictError,
  InvalidRequestError,
  JobLostError,
  RequestBody,
  JobWaitTimeoutError,
  TenantQueueFullError,
  QueueUnavailableError,
  UpstreamError,
  createProducer,
  type ApiHeaders,
  type EnqueueOptions,
  type JobRoute,
  type Producer,
  type UpstreamMeta,
} from '@tollgate/queue';
import {
  anthropicError,
  commandConnection,
  FleetGauges,
  fleetStatsKey,
  isConnectionError,
  joinFleetDocumentLogged,
  EnvError,
  configuredDocumentFromEnv,
  idempotentJobId,
  limiterOptionsFromDocument,
  limiterOptionsFromEnv,
  queueKeys,
  redisFromEnv,
  withDeadline,
  type ProcessDocument,
  type QueueKeys,
} from '@tollgate/queue/internal';
import { performance } from 'node:perf_hooks';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest, type RawServerDefault } from 'fastify';
import { Cluster, Redis } from 'ioredis';
import type { Logger } from 'pino';
import { Counter, Registry } from 'prom-client';
import { ADMIN_COOKIE, TokenTable, cookieOf, tokenOf, type Access } from './auth.js';
import { dashboardHtml } from './dashboard.js';
import { tenantTokens, type GatewayEnv } from './env.js';
import { FleetMonitor, type FleetFrame } from './fleet.js';
import { JSON_TOO_DEEP, clientError, describeFastifyError, failedJobBody, frameworkError, nestsDeeperThan, newRequestId, sendError } from './http-errors.js';
import { StreamReaders } from './stream-readers.js';
import { relayJobEvents } from './relay.js';

/** Header carrying a request's priority, 0 (first) … 9 (last); in an answer, the priority it was served with. */
export const PRIORITY_HEADER = 'tollgate-priority';
/** Header making `POST /v1/jobs` idempotent within the tenant (hashed into the job id, never used raw). */
export const IDEMPOTENCY_HEADER = 'idempotency-key';
/** Header carrying the job id of every answer. */
export const JOB_ID_HEADER = 'tollgate-job-id';

/** The gateway's own id of a request, beside the upstream's `request-id`. */
export const REQUEST_ID_HEADER = 'tollgate-request-id';
/** Milliseconds the request waited for capacity before its upstream call was sent (queue, permit, retries). */
export const WAITED_MS_HEADER = 'tollgate-waited-ms';
/** The account (limiter) whose permit the upstream call took. */
export const ACCOUNT_HEADER = 'tollgate-account';
/** `hit` when a models answer came from the gateway's cache. */
export const CACHE_HEADER = 'tollgate-cache';
/** Cached models answers at most (one per distinct query). */
export const MODELS_CACHE_ENTRIES_MAX = 256;

/** The API paths the gateway serves and their methods: another method gets a 405 (the rest a 404). */
const API_ROUTES: ReadonlyArray<{ path: RegExp; methods: readonly string[] }> = [
  { path: /^\/v1\/messages$/, methods: ['POST'] },
  { path: /^\/v1\/messages\/count_tokens$/, methods: ['POST'] },
  { path: /^\/v1\/models$/, methods: ['GET', 'HEAD'] },
  { path: /^\/v1\/models\/[^/]+$/, methods: ['GET', 'HEAD'] },
  { path: /^\/v1\/jobs$/, methods: ['POST'] },
  { path: /^\/v1\/jobs\/[^/]+$/, methods: ['GET', 'HEAD', 'DELETE'] },
];

declare module 'fastify' {
  interface FastifyRequest {
    tenant: string | undefined;
    /** A JSON body's text exactly as received (what the upstream gets). */
    bodyText: string | undefined;
  }
}

/** The request's API headers, carried to the upstream call (`anthropic-beta` lists may arrive as several headers). */
function apiHeaders(request: FastifyRequest): ApiHeaders {
  const headers: ApiHeaders = {};
  for (const name of ['anthropic-beta', 'anthropic-version'] as const) {
    const value = request.headers[name];
    if (typeof value === 'string' && value !== '') headers[name] = value;
    else if (Array.isArray(value) && value.length > 0) headers[name] = value.join(',');
  }
  return headers;
}

/** A JSON body as a queue request: its text kept byte for byte. @throws {@link InvalidRequestError}. */
function requestBody(request: FastifyRequest, route: JobRoute): RequestBody {
  if (request.bodyText === undefined) throw new InvalidRequestError('body: expected a JSON object');
  return RequestBody.fromParsed(request.bodyText, request.body, route);
}

/**
 * The headers of an answer: the upstream's (`request-id`, `anthropic-ratelimit-*`), and Tollgate's own. `waited` is
 * skew-free: both elapsed times end at the same moment (the answer, or a stream's first event), each on its own clock.
 */
function answerHeaders(request: FastifyRequest, job: EnqueuedJob, upstream: UpstreamMeta, gatewayElapsedMs: number): Record<string, string> {
  const waitedMs = Math.max(0, Math.round(gatewayElapsedMs - upstream.elapsedMs + upstream.waitedMs));
  return {
    ...upstream.headers,
    'request-id': upstream.headers['request-id'] ?? request.id,
    [REQUEST_ID_HEADER]: request.id,
    [JOB_ID_HEADER]: job.id,
    [PRIORITY_HEADER]: String(job.priority), // as served: a tenant's maxPriority may have clamped the one asked for
    [WAITED_MS_HEADER]: String(waitedMs),
    ...(upstream.account === null ? {} : { [ACCOUNT_HEADER]: upstream.account }),
  };
}

/** A gateway ready to `listen`, and everything it opened. */
export interface Gateway {
  app: FastifyInstance<RawServerDefault, IncomingMessage, ServerResponse, Logger>;
  producer: Producer;
  limiter: Limiter;
  monitor: FleetMonitor;
  /** Listens on `PORT`/`HOST` (and `METRICS_PORT`/`METRICS_HOST` when set); returns the URLs. */
  listen(): Promise<{ url: string; metricsUrl?: string }>;
  /** Stops the server and closes every connection. Idempotent. */
  close(): Promise<void>;
}

type EnqueuedJob = Awaited<ReturnType<Producer['enqueueJob']>>;

/** The queue one account's jobs go on, as the gateway uses it: its producer (which puts a document tenant's jobs on that tenant's queue) and its keys. */
interface Lane {
  producer: Producer;
  keys: QueueKeys;
}

/** Reads the priority header, if any. @throws {@link InvalidRequestError} naming the header. */
function priorityOf(request: FastifyRequest): number | undefined {
  const raw = request.headers[PRIORITY_HEADER];
  if (raw === undefined) return undefined;
  const priority = Number(raw);
  if (typeof raw !== 'string' || !/^\d$/.test(raw)) throw new InvalidRequestError(`${PRIORITY_HEADER}: expected an integer from 0 to 9 (got ${formatValue(raw)})`);
  return priority;
}

function enqueueOptions(request: FastifyRequest, withIdempotency: boolean): EnqueueOptions {
  const priority = priorityOf(request);
  const key = withIdempotency ? request.headers[IDEMPOTENCY_HEADER] : undefined;
  if (key !== undefined && (typeof key !== 'string' || key.length < 1 || key.length > IDEMPOTENCY_KEY_LENGTH_MAX)) {
    throw new InvalidRequestError(`${IDEMPOTENCY_HEADER}: 1 to ${IDEMPOTENCY_KEY_LENGTH_MAX} characters (got ${formatValue(key)})`);
  }
  return {
    ...(priority === undefined ? {} : { priority }),
    ...(request.tenant === undefined ? {} : { tenant: request.tenant }),
    ...(typeof key === 'string' ? { idempotencyKey: key } : {}),
    headers: apiHeaders(request),
  };
}

/** Maps what enqueue or a wait threw onto an HTTP answer in Anthropic's envelope. */
function sendFailure(request: FastifyRequest, reply: FastifyReply, error: unknown): FastifyReply {
  if (error instanceof InvalidRequestError || error instanceof InvalidArgumentError) return sendError(request, reply, 400, error.message); // a bad field or enqueue option from the caller
  if (error instanceof IdempotencyConflictError) return sendError(request, reply, 409, error.message, error.type);
  if (error instanceof TenantQueueFullError) return sendError(request, reply, 429, `${error.message} (GATEWAY_TENANT_QUEUED_MAX)`);
  if (error instanceof JobLostError) {
    void reply.header(JOB_ID_HEADER, error.jobId);
    return sendError(request, reply, 503, error.message);
  }
  if (error instanceof UpstreamError) {
    // the upstream's answer as it sent it: status, body, request id and rate-limit headers
    return reply
      .code(error.status)
      .headers({ 'request-id': request.id, ...error.headers, [REQUEST_ID_HEADER]: request.id, [JOB_ID_HEADER]: error.jobId })
      .send(failedJobBody(error, request));
  }
  if (error instanceof JobWaitTimeoutError) {
    void reply.header(JOB_ID_HEADER, error.jobId);
    return sendError(request, reply, 504, error.message);
  }
  // the fleet's limits document in Redis cannot be read (an invalid value there): an operator's fault, not the caller's;
  // nothing was enqueued, and the message says what to fix
  if (error instanceof InvalidConfigError) return sendError(request, reply, 503, `Nothing was enqueued: ${error.message}. Apply a valid document with \`tollgate limits apply\`.`);
  if (error instanceof QueueUnavailableError || isConnectionError(error))
    return sendError(request, reply, 503, 'The queue is unavailable: Redis is unreachable. Nothing was enqueued; retry later.');
  request.log.error({ err: { name: toError(error).name, message: toError(error).message } }, 'unexpected error');
  return sendError(request, reply, 500, 'Internal server error');
}

/**
 * Builds the gateway: `POST /v1/messages` (Messages API, JSON or SSE), `POST /v1/jobs`, `GET|DELETE /v1/jobs/:id`,
 * `GET /health`, `GET /metrics`, and the dashboard at `GET /`.
 */
export async function buildGateway(env: GatewayEnv, logger: Logger, processEnv: Readonly<Record<string, string | undefined>> = process.env): Promise<Gateway> {
  // TOLLGATE_CONFIG: the accounts of its tenants, the account this gateway shows (its default: TOLLGATE_NAME, or the
  // document's only or first account), with the document's limits (the fleet's stored ones win), and the tokens of its
  // tenants; read before anything connects, so that a bad document or token leaves nothing open
  const configured = await configuredDocumentFromEnv(env);
  const fromFile: ProcessDocument | undefined =
    configured === undefined
      ? undefined
      : { document: configured.document, path: configured.path, account: configured.defaultAccount ?? Object.keys(configured.document.accounts)[0] ?? '' };
  const tenantsByToken = tenantTokens(env, fromFile, processEnv);
  // each document tenant's jobs go to its account's queue, run by the workers holding that account's key; the other
  // tenants' (GATEWAY_TOKENS) to the plain queue, run by the workers' default account
  const tenantAccounts = new Map(Object.entries(fromFile?.document.tenants ?? {}).map(([tenant, policy]) => [tenant, policy.account]));
  if (configured !== undefined && configured.defaultAccount === undefined && (env.GATEWAY_TOKENS?.size ?? 0) > 0) {
    throw new EnvError(
      `GATEWAY_TOKENS is invalid here: its tenants' jobs name no account, and ${configured.path} has several with none the default: set TOLLGATE_NAME to one of ${Object.keys(configured.document.accounts).join(', ')}`,
    );
  }
  const source = redisFromEnv(env); // REDIS_URL, or a Cluster client for REDIS_CLUSTER_NODES
  const redis = commandConnection(source.input, env.GATEWAY_REDIS_OP_TIMEOUT_MS);
  redis.client.on('error', () => {}); // every call that needs Redis answers 503 on its own
  /** One queue's producer: its own account's (the plain queue's, or the account's), and one per other account its tenants use. */
  const makeLane = (account: string | undefined): Lane => {
    const producer = createProducer({
      redis: redis.client,
      queue: env.TOLLGATE_QUEUE,
      ...(account === undefined ? {} : { account }),
      redisTimeoutMs: env.GATEWAY_REDIS_OP_TIMEOUT_MS,
      tenantQueuedMax: env.GATEWAY_TENANT_QUEUED_MAX,
      retention: {
        completedSeconds: env.GATEWAY_KEEP_COMPLETED_SECONDS,
        completedJobs: env.GATEWAY_KEEP_COMPLETED_JOBS,
        failedSeconds: env.GATEWAY_KEEP_FAILED_SECONDS,
        failedJobs: env.GATEWAY_KEEP_FAILED_JOBS,
      },
    });
    return { producer, keys: queueKeys(producer.name) };
  };
  /** The readers of one queue's job event streams (each queue has its own hash tag: one slot), made on first use. */
  const readersByQueue = new Map<string, StreamReaders>();
  const readersFor = (keys: QueueKeys): StreamReaders => {
    let readers = readersByQueue.get(keys.prefix);
    if (readers === undefined) {
      readers = new StreamReaders(
        () => {
          const reader = source.input instanceof Cluster ? source.input.duplicate() : new Redis(env.REDIS_URL, { maxRetriesPerRequest: null }); // the job's event stream key is hash-tagged: one slot
          reader.on('error', () => {}); // a failed read is retried; each relay's deadline is its own
          return reader;
        },
        redis.client,
        keys.relayWakePrefix,
      );
      readersByQueue.set(keys.prefix, readers);
    }
    return readers;
  };
  /**
   * The account this gateway shows and whose queue takes the jobs that name no other (GATEWAY_TOKENS tenants'): its
   * default (TOLLGATE_NAME, or the document's only or first account), or TOLLGATE_NAME without a document.
   */
  const ownAccount = fromFile?.account ?? env.TOLLGATE_NAME;
  // With several accounts in the document those jobs go on the account's own queue (`<queue>@<account>`), which every
  // worker running the account serves; the plain queue only a worker whose TOLLGATE_NAME names it (and a producer
  // refuses a job for it then). With one account (or none), the plain queue, as every worker of the account serves it.
  const defaultLane = makeLane(fromFile !== undefined && Object.keys(fromFile.document.accounts).length > 1 ? ownAccount : undefined);
  /** The lane of each account this gateway serves: its own account's (the default lane), and each other account of its tenants. */
  const lanes = new Map<string, Lane>([[ownAccount, defaultLane]]);
  for (const account of new Set(tenantAccounts.values())) if (!lanes.has(account)) lanes.set(account, makeLane(account));
  /**
   * The lane of a tenant's jobs: its account's queue, by the fleet's document as the producer follows it (an apply
   * may move a tenant to another account), else by this process's own.
   */
  const accountOf = (tenant: string | undefined): string => {
    if (tenant === undefined) return ownAccount;
    const fleet = defaultLane.producer.fleetDocument;
    const policy = fleet !== undefined && Object.hasOwn(fleet.tenants, tenant) ? fleet.tenants[tenant] : undefined;
    return policy?.account ?? tenantAccounts.get(tenant) ?? ownAccount;
  };
  const laneOf = (tenant: string | undefined): Lane => {
    const account = accountOf(tenant);
    let lane = lanes.get(account);
    if (lane === undefined) {
      lane = makeLane(account); // an account a later apply gave this tenant
      lanes.set(account, lane);
    }
    return lane;
  };
  const { producer } = defaultLane;
  const limiterOptions = fromFile === undefined ? limiterOptionsFromEnv(env, source.input) : limiterOptionsFromDocument(fromFile, env, source.input).messages;
  const limiter = createLimiter({ ...limiterOptions, redisTimeoutMs: env.GATEWAY_REDIS_TIMEOUT_MS });
  limiter.on('redisError', () => {}); // the dashboard shows Redis as down; no log line per retry
  // Redis may be down at start: both retry on use, and the dashboard and /health say so meanwhile
  // first boot stores this process's document; a fleet that has one keeps it (only `tollgate limits apply` changes it).
  // Before the producer's first read of it, so that this gateway's first jobs follow it.
  if (fromFile !== undefined) await joinFleetDocumentLogged(source.input, fromFile, logger);
  await Promise.all([limiter.ready().catch(() => {}), ...[...lanes.values()].map((lane) => lane.producer.ready().catch(() => {}))]);
  /**
   * The limiter of each account the gateway serves, read for the dashboard and /metrics: its own account's, and one
   * per other account, made on first use with that account's limits from the fleet's document (else this process's).
   */
  const limiters = new Map<string, Limiter>([[ownAccount, limiter]]);
  const limiterOf = (account: string): Limiter => {
    let found = limiters.get(account);
    if (found === undefined) {
      const document =
        defaultLane.producer.fleetDocument !== undefined && Object.hasOwn(defaultLane.producer.fleetDocument.accounts, account)
          ? defaultLane.producer.fleetDocument
          : fromFile?.document;
      const { applyLimits: _ignored, ...options } = limiterOptionsFromDocument(
        { document: document ?? { accounts: {}, tenants: {} }, account, path: fromFile?.path ?? 'the fleet' },
        env,
        source.input,
      ).messages;
      found = createLimiter({ ...options, redisTimeoutMs: env.GATEWAY_REDIS_TIMEOUT_MS });
      found.on('redisError', () => {});
      void found.ready().catch(() => {}); // Redis down: its snapshot fails, and the frame says so
      limiters.set(account, found);
    }
    return found;
  };
  const monitor = new FleetMonitor({
    accounts: () => [...lanes].map(([account, lane]) => ({ account, limiter: limiterOf(account), producer: lane.producer, statsKey: fleetStatsKey(env.TOLLGATE_QUEUE, account) })),
    redis: redis.client,
    redisTimeoutMs: env.GATEWAY_REDIS_TIMEOUT_MS,
  });
  const tokens = new TokenTable(tenantsByToken);
  /** Streams relayed now, by tenant and in all. */
  const openStreams = new Map<string, number>();
  let openStreamsTotal = 0;

  const app = Fastify({
    loggerInstance: logger.child({}, { level: 'warn' }), // no line per request; errors and warnings still logged
    bodyLimit: env.GATEWAY_MAX_BODY_BYTES,
    genReqId: newRequestId,
    // slow clients: headers and the whole request each have a deadline, checked every GATEWAY_TIMEOUT_CHECK_INTERVAL_MS
    // (no idle-socket timeout: an answer may take GATEWAY_WAIT_MS to come, with nothing sent meanwhile)
    requestTimeout: env.GATEWAY_REQUEST_TIMEOUT_MS,
    http: { headersTimeout: env.GATEWAY_HEADERS_TIMEOUT_MS, requestTimeout: env.GATEWAY_REQUEST_TIMEOUT_MS, connectionsCheckingInterval: env.GATEWAY_TIMEOUT_CHECK_INTERVAL_MS },
    frameworkErrors: frameworkError,
    clientErrorHandler: clientError,
  });
  // JSON bodies: the nesting depth is bounded on the text, before JSON.parse builds anything (a deep body would
  // overflow the stack later, when the job is written); then fastify's own parser (prototype poisoning refused)
  const parseJson = app.getDefaultJsonParser('error', 'ignore');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    if (text.length === 0 && request.method !== 'POST') return done(null, undefined); // a DELETE with a content-type and no body
    request.bodyText = text;
    if (nestsDeeperThan(text, env.GATEWAY_JSON_DEPTH_MAX)) {
      done(Object.assign(new Error(`JSON nests deeper than ${env.GATEWAY_JSON_DEPTH_MAX} levels (GATEWAY_JSON_DEPTH_MAX)`), { code: JSON_TOO_DEEP, statusCode: 400 }), undefined);
      return;
    }
    parseJson(request, text, done);
  });
  app.decorateRequest('tenant', undefined);
  app.decorateRequest('bodyText', undefined);
  const admins = new TokenTable<'admin' | 'metrics'>(
    new Map([
      ...(env.GATEWAY_ADMIN_TOKEN === undefined ? [] : [[env.GATEWAY_ADMIN_TOKEN, 'admin'] as const]),
      ...(env.GATEWAY_METRICS_TOKEN === undefined ? [] : [[env.GATEWAY_METRICS_TOKEN, 'metrics'] as const]),
    ]),
  );
  // Deny by default, decided on the route the router matched (never on the raw request target, which may be
  // percent-encoded or in absolute form): a route without `config.access` needs a tenant token.
  app.addHook('onRequest', async (request, reply) => {
    void reply.header('request-id', request.id);
    if (request.is404) return; // nothing matched: the not-found handler answers 404 and runs nothing
    const access: Access = request.routeOptions.config.access ?? 'tenant';
    if (access === 'public') return;
    const token = tokenOf(request.headers);
    if (access === 'tenant') {
      request.tenant = tokens.tenantOf(request.headers);
      if (request.tenant !== undefined) return;
      void reply.header('connection', 'close'); // the body (perhaps a slow one) is not read: do not wait for it
      return sendError(request, reply, 401, token === undefined ? 'x-api-key header is required' : 'Invalid bearer token');
    }
    const query = request.query as Record<string, unknown> | undefined;
    const queryToken = request.routeOptions.config.queryToken === true && typeof query?.token === 'string' ? query.token : undefined;
    const role = admins.lookup(token ?? queryToken ?? cookieOf(request.headers, ADMIN_COOKIE));
    if (role === 'admin' || (role === 'metrics' && access === 'metrics')) return;
    void reply.header('connection', 'close');
    return sendError(request, reply, 401, access === 'metrics' ? 'GET /metrics needs GATEWAY_ADMIN_TOKEN or GATEWAY_METRICS_TOKEN' : 'the dashboard needs GATEWAY_ADMIN_TOKEN');
  });
  app.setErrorHandler((error: { code?: string; statusCode?: number; message: string }, request, reply) => {
    const { status, message } = describeFastifyError(error);
    return sendError(request, reply, status, message);
  });
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0] ?? '';
    const known = API_ROUTES.find((route) => route.path.test(path));
    if (known !== undefined) {
      // deny by default here too: only a tenant learns which methods a path has
      if (tokens.tenantOf(request.headers) === undefined)
        return sendError(request, reply, 401, tokenOf(request.headers) === undefined ? 'x-api-key header is required' : 'Invalid bearer token');
      return sendError(request, reply.header('allow', known.methods.join(', ')), 405, `Method not allowed: ${request.method} ${cutText(path)}`);
    }
    return sendError(request, reply, 404, `Not found: ${request.method} ${cutText(path)}`);
  });

  const metrics = gatewayMetrics([...new Set(tenantsByToken.values())], accountOf);
  app.addHook('onResponse', async (request, reply) => {
    metrics.requests.inc({ route: request.routeOptions.url ?? 'unknown', status: String(reply.statusCode) });
  });

  /**
   * Enqueues a job and answers with its result once it ends. A caller that goes away before the answer leaves the
   * job: removed if still queued, else left to finish (its answer is kept for `GET /v1/jobs/:id`).
   */
  const answerJob = async (
    request: FastifyRequest,
    reply: FastifyReply,
    body: RequestBody,
    options: EnqueueOptions,
    answered?: (answer: unknown, headers: Record<string, string>) => void,
  ): Promise<FastifyReply> => {
    // Redis is down (not merely slow): answer at once, without trying to enqueue
    if (redis.client.status !== 'ready') return sendFailure(request, reply, new QueueUnavailableError('Redis connection is down'));
    const startedAt = performance.now();
    const { producer } = laneOf(request.tenant);
    let job: EnqueuedJob;
    try {
      await producer.ready(); // listening for job ends before the job exists
      job = await producer.enqueueJob(body, options);
    } catch (error) {
      return sendFailure(request, reply, error);
    }
    const jobId = job.id;
    void reply.header(JOB_ID_HEADER, jobId);
    const gone = new AbortController();
    const onClose = () => {
      if (reply.raw.writableFinished) return; // the answer was sent
      gone.abort(new Error('the caller went away'));
      void producer.abandon(jobId, { abortRunning: false }).catch(() => {}); // best effort: the job is kept if this fails
    };
    reply.raw.once('close', onClose);
    try {
      const result = await producer.waitForResult(jobId, { timeoutMs: env.GATEWAY_WAIT_MS, signal: gone.signal });
      answered?.(result.answer, result.upstream.headers);
      return reply
        .code(200)
        .headers(answerHeaders(request, job, result.upstream, performance.now() - startedAt))
        .send(result.answer);
    } catch (error) {
      if (gone.signal.aborted) return reply; // nobody left to answer
      if (error instanceof UpstreamError || error instanceof JobWaitTimeoutError || error instanceof JobLostError) return sendFailure(request, reply, error);
      return sendError(request, reply, 503, `Enqueued as job ${jobId}, but its result could not be read: Redis is unreachable. Poll GET /v1/jobs/${jobId}.`);
    }
  };

  // `?beta=true` (the SDK's beta client) is the same route: the query is not part of the path
  app.post('/v1/messages', async (request, reply) => {
    let body;
    let options;
    try {
      body = requestBody(request, 'messages');
      options = enqueueOptions(request, false);
    } catch (error) {
      return sendFailure(request, reply, error);
    }
    if (body.params.stream !== true) return answerJob(request, reply, body, options);
    // Redis is down (not merely slow): answer at once, without trying to enqueue
    if (redis.client.status !== 'ready') return sendFailure(request, reply, new QueueUnavailableError('Redis connection is down'));
    // caps first, so that a refused stream enqueues nothing
    const tenant = request.tenant ?? '';
    const ofTenant = openStreams.get(tenant) ?? 0;
    if (openStreamsTotal >= env.GATEWAY_STREAMS_MAX)
      return sendError(request, reply, 529, `the gateway relays ${env.GATEWAY_STREAMS_MAX} streams already (GATEWAY_STREAMS_MAX); retry shortly`);
    if (ofTenant >= env.GATEWAY_TENANT_STREAMS_MAX)
      return sendError(
        request,
        reply,
        429,
        `tenant ${tenant} has ${env.GATEWAY_TENANT_STREAMS_MAX} streams open, the most it may (GATEWAY_TENANT_STREAMS_MAX); retry when one ends`,
      );
    openStreams.set(tenant, ofTenant + 1);
    openStreamsTotal += 1;
    const { producer } = laneOf(request.tenant);
    try {
      const startedAt = performance.now();
      let job: EnqueuedJob;
      try {
        job = await producer.enqueueJob(body, options);
      } catch (error) {
        return sendFailure(request, reply, error);
      }
      const jobId = job.id;
      const queueKeysOfJob = producer.keysOfJob(jobId); // the tenant's own queue, when the fleet's document gives it one
      const readers = readersFor(queueKeysOfJob);
      const streamKey = queueKeysOfJob.jobEvents(jobId);
      await relayJobEvents({
        request,
        reply,
        producer,
        jobId,
        follow: (signal) => readers.follow(streamKey, signal),
        waitMs: env.GATEWAY_WAIT_MS,
        headers: (upstream) => answerHeaders(request, job, upstream, performance.now() - startedAt),
      });
      return reply;
    } finally {
      openStreamsTotal -= 1;
      const left = (openStreams.get(tenant) ?? 1) - 1;
      if (left === 0) openStreams.delete(tenant);
      else openStreams.set(tenant, left);
    }
  });

  // count_tokens goes through the fleet like a Messages call: a worker answers it under the count_tokens limiter,
  // with the account key (which never leaves the workers)
  app.post('/v1/messages/count_tokens', async (request, reply) => {
    try {
      return await answerJob(request, reply, requestBody(request, 'count_tokens'), enqueueOptions(request, false));
    } catch (error) {
      return sendFailure(request, reply, error);
    }
  });

  // models: answered by a worker from the upstream, then served from memory for GATEWAY_MODELS_CACHE_MS
  const modelsCache = new Map<string, { expiresAtMs: number; body: unknown; headers: Record<string, string> }>();
  const models = async (request: FastifyRequest, reply: FastifyReply, id: string | null): Promise<FastifyReply> => {
    const raw = request.query as Record<string, unknown>;
    const query: Record<string, string> = {};
    for (const name of ['limit', 'after_id', 'before_id'] as const) if (typeof raw[name] === 'string') query[name] = raw[name];
    const options = enqueueOptions(request, false);
    // per queue (account): another account's key may see other models and other rate-limit headers
    const cacheKey = JSON.stringify([laneOf(request.tenant).producer.name, id, query, options.headers]);
    const cached = modelsCache.get(cacheKey);
    if (cached !== undefined && cached.expiresAtMs > performance.now()) {
      return reply
        .code(200)
        .headers({ ...cached.headers, 'request-id': request.id, [REQUEST_ID_HEADER]: request.id, [CACHE_HEADER]: 'hit' })
        .send(cached.body);
    }
    return answerJob(request, reply, RequestBody.fromParams({ id, query }, 'models'), options, (body, upstreamHeaders) => {
      if (env.GATEWAY_MODELS_CACHE_MS === 0) return;
      if (modelsCache.size >= MODELS_CACHE_ENTRIES_MAX) modelsCache.delete(modelsCache.keys().next().value ?? ''); // the oldest
      const headers = Object.fromEntries(Object.entries(upstreamHeaders).filter(([name]) => name.startsWith('anthropic-ratelimit-')));
      modelsCache.set(cacheKey, { expiresAtMs: performance.now() + env.GATEWAY_MODELS_CACHE_MS, body, headers });
    });
  };
  const modelsRoute = async (request: FastifyRequest, reply: FastifyReply, id: string | null) => {
    try {
      return await models(request, reply, id);
    } catch (error) {
      return sendFailure(request, reply, error);
    }
  };
  app.get('/v1/models', (request, reply) => modelsRoute(request, reply, null));
  app.get<{ Params: { id: string } }>('/v1/models/:id', (request, reply) => modelsRoute(request, reply, request.params.id));

  app.post('/v1/jobs', async (request, reply) => {
    try {
      const options = enqueueOptions(request, true);
      // an idempotent retry finds its job wherever it is (an apply may have moved the tenant to another account since)
      const key = options.idempotencyKey;
      const earlier = key === undefined ? undefined : await ownJob(request.tenant, idempotentJobId(request.tenant ?? null, key));
      const { id, priority } =
        earlier === undefined
          ? await laneOf(request.tenant).producer.enqueueJob(requestBody(request, 'messages'), options)
          : await earlier.producer.enqueueJob(requestBody(request, 'messages'), options); // the same id: BullMQ answers the existing job, and a different request is a 409
      return reply
        .code(202)
        .headers({ [JOB_ID_HEADER]: id, [PRIORITY_HEADER]: String(priority) })
        .send({ id, state: 'queued' });
    } catch (error) {
      return sendFailure(request, reply, error);
    }
  });

  /** A job of the caller's own tenant; another tenant's job is reported as missing. */
  /**
   * A job of the caller's own tenant, with the producer whose queues hold it; another tenant's job is reported as
   * missing. Every lane is looked in, its tenant's current one first: an apply may have moved the tenant to another
   * account since the job was enqueued.
   */
  const ownJob = async (tenant: string | undefined, id: string) => {
    for (const lane of new Set([laneOf(tenant), ...lanes.values()])) {
      const job = await lane.producer.getJob(id, { tenant: tenant ?? null });
      if (job !== undefined) return job.tenant === (tenant ?? null) ? { job, producer: lane.producer } : undefined;
    }
    return undefined;
  };

  app.get<{ Params: { id: string } }>('/v1/jobs/:id', async (request, reply) => {
    try {
      const own = await ownJob(request.tenant, request.params.id);
      if (own === undefined) return sendError(request, reply, 404, `job ${cutText(request.params.id)} not found`);
      return reply.send(own.job);
    } catch (error) {
      return sendFailure(request, reply, error);
    }
  });

  app.delete<{ Params: { id: string } }>('/v1/jobs/:id', async (request, reply) => {
    try {
      const own = await ownJob(request.tenant, request.params.id);
      if (own === undefined) return sendError(request, reply, 404, `job ${cutText(request.params.id)} not found`);
      const outcome = await own.producer.cancel(request.params.id, { tenant: request.tenant ?? null });
      if (outcome === 'cancelled') return reply.send({ id: request.params.id, cancelled: true });
      if (outcome === 'missing') return sendError(request, reply, 404, `job ${cutText(request.params.id)} not found`);
      return sendError(request, reply, 409, `job ${request.params.id} is ${outcome === 'active' ? 'running' : 'finished'} and cannot be cancelled`);
    } catch (error) {
      return sendFailure(request, reply, error);
    }
  });

  app.get('/health', { config: { access: 'public' } }, async (request, reply) => {
    try {
      await withDeadline(redis.client.ping(), env.GATEWAY_REDIS_TIMEOUT_MS, 'health');
      return reply.send({ status: 'ok' });
    } catch {
      return sendError(request, reply, 503, 'Redis is unreachable');
    }
  });

  const metricsText = async () => {
    metrics.update(await monitor.sample());
    return { type: metrics.registry.contentType, body: await metrics.registry.metrics() };
  };
  app.get('/metrics', { config: { access: 'metrics' } }, async (_request, reply) => {
    const { type, body } = await metricsText();
    return reply.type(type).send(body);
  });
  const metricsServer = env.METRICS_PORT === undefined ? undefined : metricsListener(metricsText, logger);

  if (env.GATEWAY_DASHBOARD !== 'off') {
    const access: Access = env.GATEWAY_DASHBOARD === 'public' ? 'public' : 'admin';
    const page = dashboardHtml({ limiterName: limiter.name, queueName: env.TOLLGATE_QUEUE });
    app.get('/', { config: { access, queryToken: true } }, async (request, reply) => {
      const query = request.query as Record<string, unknown>;
      if (typeof query.token === 'string') {
        // the sign-in link: keep the token in an HttpOnly cookie (the page's EventSource sends no headers) and take
        // it out of the address bar
        void reply.header('set-cookie', `${ADMIN_COOKIE}=${encodeURIComponent(query.token)}; HttpOnly; SameSite=Strict; Path=/`);
        return reply.code(303).header('location', './').send();
      }
      return reply.type('text/html; charset=utf-8').send(page);
    });

    app.get('/dashboard/events', { config: { access } }, (request, reply) => {
      reply.hijack();
      const raw = reply.raw;
      raw.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive' });
      raw.write(`event: history\ndata: ${JSON.stringify(monitor.history)}\n\n`);
      const unsubscribe = monitor.subscribe((frame) => raw.write(`event: frame\ndata: ${JSON.stringify(frame)}\n\n`));
      request.raw.on('close', unsubscribe);
    });
  }

  let closing: Promise<void> | undefined;
  return {
    app,
    producer,
    limiter,
    monitor,
    listen: async () => {
      const address = await app.listen({ port: env.PORT, host: env.HOST });
      const metricsAddress = metricsServer === undefined ? undefined : await metricsServer.listen(env.METRICS_PORT ?? 0, env.METRICS_HOST);
      return { url: address.replace('0.0.0.0', '127.0.0.1'), ...(metricsAddress === undefined ? {} : { metricsUrl: metricsAddress }) };
    },
    close: () => {
      closing ??= (async () => {
        monitor.stop();
        await app.close();
        await metricsServer?.close();
        for (const readers of readersByQueue.values()) readers.close();
        for (const lane of lanes.values()) await lane.producer.close();
        for (const each of limiters.values()) await each.close();
        if (redis.owned) redis.client.disconnect();
        source.close();
      })();
      return closing;
    },
  };
}

/** The `METRICS_PORT` listener: `GET /metrics` without a token, for a scraper on a private network; nothing else. */
function metricsListener(text: () => Promise<{ type: string; body: string }>, logger: Logger) {
  const server = createServer((request, response) => {
    const path = (request.url ?? '').split('?')[0];
    if (request.method !== 'GET' || path !== '/metrics') {
      response.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify(anthropicError(404, 'only GET /metrics is served here')));
      return;
    }
    text().then(
      ({ type, body }) => response.writeHead(200, { 'content-type': type }).end(body),
      (error: unknown) => {
        logger.warn({ err: toError(error).message }, 'metrics failed');
        response.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify(anthropicError(500, 'metrics failed')));
      },
    );
  });
  return {
    listen: (port: number, host: string) =>
      new Promise<string>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          const address = server.address() as AddressInfo;
          resolve(`http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}/metrics`);
        });
      }),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/**
 * The gateway's Prometheus metrics: the fleet gauges every process shows (limiter and queue), for every account the
 * gateway serves, each labelled with its account; and its HTTP answers. `tenants` (its tokens' tenants) have series
 * from the start, at 0, under the account `accountOf` gives them.
 */
function gatewayMetrics(tenants: readonly string[], accountOf: (tenant: string) => string) {
  const registry = new Registry();
  const fleet = new Map<string, FleetGauges>();
  const gaugesOf = (account: string, queue: string): FleetGauges => {
    let gauges = fleet.get(account);
    if (gauges === undefined) {
      gauges = new FleetGauges(registry, { account, queue, tenants: tenants.filter((tenant) => accountOf(tenant) === account) });
      fleet.set(account, gauges);
    }
    return gauges;
  };
  // `route` is the route's pattern (or "unknown" for a 404), never the raw URL: a bounded label
  const requests = new Counter({ name: 'tollgate_gateway_requests_total', help: 'HTTP answers by route and status', labelNames: ['route', 'status'], registers: [registry] });
  return {
    registry,
    requests,
    update(frame: FleetFrame): void {
      for (const account of frame.accounts) gaugesOf(account.account, account.queueName).update(account.limiter, account.queue, account.tenants);
      fleet
        .values()
        .next()
        .value?.setRedisUp(frame.redis === 'up'); // one series for the process, from every account
    },
  };
}
