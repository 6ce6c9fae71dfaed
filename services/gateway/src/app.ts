import { randomBytes } from 'node:crypto';
import { createLimiter, type Limiter } from '@tollgate/limiter';
import {
  InvalidRequestError,
  JOB_ID_PATTERN,
  JobWaitTimeoutError,
  QueueUnavailableError,
  UpstreamError,
  commandConnection,
  FleetGauges,
  createProducer,
  isConnectionError,
  limiterOptionsFromEnv,
  queueKeys,
  redisFromEnv,
  validateMessageParams,
  withDeadline,
  type EnqueueOptions,
  type FleetMetricsScope,
  type Producer,
} from '@tollgate/queue';
import type { IncomingMessage, ServerResponse } from 'node:http';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest, type RawServerDefault } from 'fastify';
import { Cluster, Redis } from 'ioredis';
import type { Logger } from 'pino';
import { Counter, Registry } from 'prom-client';
import { TokenTable } from './auth.js';
import { dashboardHtml } from './dashboard.js';
import type { GatewayEnv } from './env.js';
import { FleetMonitor, type FleetFrame } from './fleet.js';
import { describeFastifyError, sendError } from './http-errors.js';
import { ReaderPool } from './readers.js';
import { relayJobEvents } from './relay.js';

/** Header carrying a request's priority, 0 (first) … 9 (last). */
export const PRIORITY_HEADER = 'tollgate-priority';
/** Header making `POST /v1/jobs` idempotent: it becomes the job id. */
export const IDEMPOTENCY_HEADER = 'idempotency-key';
/** Header carrying the job id of every answer. */
export const JOB_ID_HEADER = 'tollgate-job-id';
/** Bytes of randomness in a request id. */
const REQUEST_ID_BYTES = 12;

declare module 'fastify' {
  interface FastifyRequest {
    tenant: string | undefined;
  }
}

/** A gateway ready to `listen`, and everything it opened. */
export interface Gateway {
  app: FastifyInstance<RawServerDefault, IncomingMessage, ServerResponse, Logger>;
  producer: Producer;
  limiter: Limiter;
  monitor: FleetMonitor;
  /** Stops the server and closes every connection. Idempotent. */
  close(): Promise<void>;
}

/** Reads the priority header, if any. @throws {@link InvalidRequestError} naming the header. */
function priorityOf(request: FastifyRequest): number | undefined {
  const raw = request.headers[PRIORITY_HEADER];
  if (raw === undefined) return undefined;
  const priority = Number(raw);
  if (typeof raw !== 'string' || !/^\d$/.test(raw)) throw new InvalidRequestError(`${PRIORITY_HEADER}: expected an integer from 0 to 9 (got ${JSON.stringify(raw)})`);
  return priority;
}

function enqueueOptions(request: FastifyRequest, withIdempotency: boolean): EnqueueOptions {
  const priority = priorityOf(request);
  const jobId = withIdempotency ? request.headers[IDEMPOTENCY_HEADER] : undefined;
  if (jobId !== undefined && (typeof jobId !== 'string' || !JOB_ID_PATTERN.test(jobId))) {
    throw new InvalidRequestError(`${IDEMPOTENCY_HEADER}: letters, digits and ._- only, 1 to 128 characters, not all digits (got ${JSON.stringify(jobId)})`);
  }
  return {
    ...(priority === undefined ? {} : { priority }),
    ...(request.tenant === undefined ? {} : { tenant: request.tenant }),
    ...(typeof jobId === 'string' ? { jobId } : {}),
  };
}

/** Maps what enqueue or a wait threw onto an HTTP answer in Anthropic's envelope. */
function sendFailure(request: FastifyRequest, reply: FastifyReply, error: unknown): FastifyReply {
  if (error instanceof InvalidRequestError) return sendError(request, reply, 400, error.message);
  if (error instanceof UpstreamError) return reply.code(error.status).header(JOB_ID_HEADER, error.jobId).send(error.body);
  if (error instanceof JobWaitTimeoutError) {
    void reply.header(JOB_ID_HEADER, error.jobId);
    return sendError(request, reply, 504, error.message);
  }
  if (error instanceof QueueUnavailableError || isConnectionError(error)) return sendError(request, reply, 503, 'The queue is unavailable: Redis is unreachable. Nothing was enqueued; retry later.');
  request.log.error({ err: error instanceof Error ? { name: error.name, message: error.message } : String(error) }, 'unexpected error');
  return sendError(request, reply, 500, 'Internal server error');
}

/**
 * Deadline for opening a stream relay's connection. It is opened right after a successful enqueue, so Redis is up:
 * the short outage deadlines (`GATEWAY_REDIS_*`) would turn a burst of new streams on a busy machine into 503s.
 */
export const STREAM_READER_CONNECT_MS = 5_000;

/**
 * Builds the gateway: `POST /v1/messages` (Messages API, JSON or SSE), `POST /v1/jobs`, `GET|DELETE /v1/jobs/:id`,
 * `GET /health`, `GET /metrics`, and the dashboard at `GET /`.
 */
export async function buildGateway(env: GatewayEnv, logger: Logger): Promise<Gateway> {
  const source = redisFromEnv(env); // REDIS_URL, or a Cluster client for REDIS_CLUSTER_NODES
  const redis = commandConnection(source.input, env.GATEWAY_REDIS_OP_TIMEOUT_MS);
  redis.client.on('error', () => {}); // every call that needs Redis answers 503 on its own
  const keys = queueKeys(env.TOLLGATE_QUEUE);
  const producer = createProducer({ redis: redis.client, queue: env.TOLLGATE_QUEUE, redisTimeoutMs: env.GATEWAY_REDIS_OP_TIMEOUT_MS });
  const limiter = createLimiter({ ...limiterOptionsFromEnv(env, source.input), redisTimeoutMs: env.GATEWAY_REDIS_TIMEOUT_MS });
  limiter.on('redisError', () => {}); // the dashboard shows Redis as down; no log line per retry
  // Redis may be down at start: both retry on use, and the dashboard and /health say so meanwhile
  await Promise.all([limiter.ready().catch(() => {}), producer.ready().catch(() => {})]);
  const monitor = new FleetMonitor({ limiter, producer, redis: redis.client, statsKey: keys.fleetStats, redisTimeoutMs: env.GATEWAY_REDIS_TIMEOUT_MS });
  const tokens = new TokenTable(env.GATEWAY_TOKENS);
  const readers = new ReaderPool(() => {
    const reader =
      source.input instanceof Cluster
        ? source.input.duplicate(undefined, { lazyConnect: true }) // the job's event stream key is hash-tagged: one slot
        : new Redis(env.REDIS_URL, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, connectTimeout: STREAM_READER_CONNECT_MS });
    reader.on('error', () => {});
    return reader;
  }, STREAM_READER_CONNECT_MS);

  const app = Fastify({
    loggerInstance: logger.child({}, { level: 'warn' }), // no line per request; errors and warnings still logged
    bodyLimit: env.GATEWAY_MAX_BODY_BYTES,
    genReqId: () => `req_${randomBytes(REQUEST_ID_BYTES).toString('hex')}`,
  });
  app.decorateRequest('tenant', undefined);
  app.addHook('onRequest', async (request, reply) => {
    void reply.header('request-id', request.id);
    if (!request.url.startsWith('/v1/')) return;
    request.tenant = tokens.tenantOf(request.headers);
    if (request.tenant === undefined) {
      const sent = Boolean(request.headers.authorization) || Boolean(request.headers['x-api-key']);
      return sendError(request, reply, 401, sent ? 'Invalid bearer token' : 'x-api-key header is required');
    }
  });
  app.setErrorHandler((error: { code?: string; statusCode?: number; message: string }, request, reply) => {
    const { status, message } = describeFastifyError(error);
    return sendError(request, reply, status, message);
  });
  app.setNotFoundHandler((request, reply) => sendError(request, reply, 404, `Not found: ${request.method} ${request.url.split('?')[0]}`));

  const metrics = gatewayMetrics({ account: env.TOLLGATE_NAME, queue: env.TOLLGATE_QUEUE });
  app.addHook('onResponse', async (request, reply) => {
    metrics.requests.inc({ route: request.routeOptions.url ?? 'unknown', status: String(reply.statusCode) });
  });

  app.post('/v1/messages', async (request, reply) => {
    let params;
    let options;
    try {
      params = validateMessageParams(request.body);
      options = enqueueOptions(request, false);
    } catch (error) {
      return sendFailure(request, reply, error);
    }
    // Redis is down (not merely slow): answer at once, without trying to enqueue
    if (redis.client.status !== 'ready') return sendFailure(request, reply, new QueueUnavailableError('Redis connection is down'));
    if (params.stream !== true) {
      let jobId: string;
      try {
        await producer.ready(); // listening for job ends before the job exists
        jobId = await producer.enqueue(params, options);
      } catch (error) {
        return sendFailure(request, reply, error);
      }
      void reply.header(JOB_ID_HEADER, jobId);
      try {
        return reply.code(200).send(await producer.wait(jobId, { timeoutMs: env.GATEWAY_WAIT_MS }));
      } catch (error) {
        if (error instanceof UpstreamError || error instanceof JobWaitTimeoutError) return sendFailure(request, reply, error);
        return sendError(request, reply, 503, `Enqueued as job ${jobId}, but its result could not be read: Redis is unreachable. Poll GET /v1/jobs/${jobId}.`);
      }
    }
    let jobId: string;
    try {
      jobId = await producer.enqueue(params, options);
    } catch (error) {
      return sendFailure(request, reply, error);
    }
    let reader: Redis | Cluster;
    try {
      // after the enqueue: Redis has just answered, so a slow connect is load (a burst of new streams), not an
      // outage, and it gets STREAM_READER_CONNECT_MS; the job is queued now, so a failure here must say so
      reader = await readers.take();
    } catch {
      void reply.header(JOB_ID_HEADER, jobId);
      return sendError(request, reply, 503, `Enqueued as job ${jobId}, but its events could not be read: Redis is unreachable. Poll GET /v1/jobs/${jobId}.`);
    }
    const streamKey = keys.jobEvents(jobId);
    await relayJobEvents({ request, reply, producer, jobId, streamKey, reader, giveBack: (used, idle) => readers.give(used, idle), waitMs: env.GATEWAY_WAIT_MS });
    return reply;
  });

  app.post('/v1/jobs', async (request, reply) => {
    try {
      const id = await producer.enqueue(validateMessageParams(request.body), enqueueOptions(request, true));
      return reply.code(202).header(JOB_ID_HEADER, id).send({ id, state: 'queued' });
    } catch (error) {
      return sendFailure(request, reply, error);
    }
  });

  /** A job of the caller's own tenant; another tenant's job is reported as missing. */
  const ownJob = async (request: FastifyRequest<{ Params: { id: string } }>) => {
    const job = await producer.getJob(request.params.id);
    return job !== undefined && job.tenant === request.tenant ? job : undefined;
  };

  app.get<{ Params: { id: string } }>('/v1/jobs/:id', async (request, reply) => {
    try {
      const job = await ownJob(request);
      if (job === undefined) return sendError(request, reply, 404, `job ${request.params.id} not found`);
      return reply.send(job);
    } catch (error) {
      return sendFailure(request, reply, error);
    }
  });

  app.delete<{ Params: { id: string } }>('/v1/jobs/:id', async (request, reply) => {
    try {
      if ((await ownJob(request)) === undefined) return sendError(request, reply, 404, `job ${request.params.id} not found`);
      const outcome = await producer.cancel(request.params.id);
      if (outcome === 'cancelled') return reply.send({ id: request.params.id, cancelled: true });
      if (outcome === 'missing') return sendError(request, reply, 404, `job ${request.params.id} not found`);
      return sendError(request, reply, 409, `job ${request.params.id} is ${outcome === 'active' ? 'running' : 'finished'} and cannot be cancelled`);
    } catch (error) {
      return sendFailure(request, reply, error);
    }
  });

  app.get('/health', async (request, reply) => {
    try {
      await withDeadline(redis.client.ping(), env.GATEWAY_REDIS_TIMEOUT_MS, 'health');
      return reply.send({ status: 'ok' });
    } catch {
      return sendError(request, reply, 503, 'Redis is unreachable');
    }
  });

  app.get('/metrics', async (_request, reply) => {
    metrics.update(await monitor.sample());
    return reply.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });

  const page = dashboardHtml({ limiterName: env.TOLLGATE_NAME, queueName: env.TOLLGATE_QUEUE });
  app.get('/', async (_request, reply) => reply.type('text/html; charset=utf-8').send(page));

  app.get('/dashboard/events', (request, reply) => {
    reply.hijack();
    const raw = reply.raw;
    raw.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive' });
    raw.write(`event: history\ndata: ${JSON.stringify(monitor.history)}\n\n`);
    const unsubscribe = monitor.subscribe((frame) => raw.write(`event: frame\ndata: ${JSON.stringify(frame)}\n\n`));
    request.raw.on('close', unsubscribe);
  });

  let closing: Promise<void> | undefined;
  return {
    app,
    producer,
    limiter,
    monitor,
    close: () => {
      closing ??= (async () => {
        monitor.stop();
        await app.close();
        readers.close();
        await producer.close();
        await limiter.close();
        if (redis.owned) redis.client.disconnect();
        source.close();
      })();
      return closing;
    },
  };
}

/** The gateway's Prometheus metrics: the fleet gauges every process shows (limiter and queue), and its HTTP answers. */
function gatewayMetrics(scope: FleetMetricsScope) {
  const registry = new Registry();
  const fleet = new FleetGauges(registry, scope);
  // `route` is the route's pattern (or "unknown" for a 404), never the raw URL: a bounded label
  const requests = new Counter({ name: 'tollgate_gateway_requests_total', help: 'HTTP answers by route and status', labelNames: ['route', 'status'], registers: [registry] });
  return {
    registry,
    requests,
    update(frame: FleetFrame): void {
      fleet.update(frame.limiter, frame.queue);
    },
  };
}
