import { createLimiter, cutText, formatValue, type Limiter } from '@tollgate/limiter';
import {
  IDEMPOTENCY_KEY_LENGTH_MAX,
  IdempotencyConflictError,
  InvalidRequestError,
  JobLostError,
  JobWaitTimeoutError,
  TenantQueueFullError,
  QueueUnavailableError,
  UpstreamError,
  anthropicError,
  commandConnection,
  createProducer,
  isConnectionError,
  limiterOptionsFromEnv,
  queueKeys,
  redisFromEnv,
  validateMessageParams,
  withDeadline,
  type EnqueueOptions,
  type Producer,
} from '@tollgate/queue';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest, type RawServerDefault } from 'fastify';
import { Cluster, Redis } from 'ioredis';
import type { Logger } from 'pino';
import { Counter, Gauge, Registry } from 'prom-client';
import { ADMIN_COOKIE, TokenTable, cookieOf, tokenOf, type Access } from './auth.js';
import { dashboardHtml } from './dashboard.js';
import type { GatewayEnv } from './env.js';
import { FleetMonitor, type FleetFrame } from './fleet.js';
import { JSON_TOO_DEEP, clientError, describeFastifyError, frameworkError, nestsDeeperThan, newRequestId, sendError } from './http-errors.js';
import { StreamReaders } from './stream-readers.js';
import { relayJobEvents } from './relay.js';

/** Header carrying a request's priority, 0 (first) … 9 (last). */
export const PRIORITY_HEADER = 'tollgate-priority';
/** Header making `POST /v1/jobs` idempotent within the tenant (hashed into the job id, never used raw). */
export const IDEMPOTENCY_HEADER = 'idempotency-key';
/** Header carrying the job id of every answer. */
export const JOB_ID_HEADER = 'tollgate-job-id';

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
  /** Listens on `PORT`/`HOST` (and `METRICS_PORT`/`METRICS_HOST` when set); returns the URLs. */
  listen(): Promise<{ url: string; metricsUrl?: string }>;
  /** Stops the server and closes every connection. Idempotent. */
  close(): Promise<void>;
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
  };
}

/** Maps what enqueue or a wait threw onto an HTTP answer in Anthropic's envelope. */
function sendFailure(request: FastifyRequest, reply: FastifyReply, error: unknown): FastifyReply {
  if (error instanceof InvalidRequestError) return sendError(request, reply, 400, error.message);
  if (error instanceof IdempotencyConflictError) return sendError(request, reply, 409, error.message, error.type);
  if (error instanceof TenantQueueFullError) return sendError(request, reply, 429, `${error.message} (GATEWAY_TENANT_QUEUED_MAX)`);
  if (error instanceof JobLostError) {
    void reply.header(JOB_ID_HEADER, error.jobId);
    return sendError(request, reply, 503, error.message);
  }
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
 * Builds the gateway: `POST /v1/messages` (Messages API, JSON or SSE), `POST /v1/jobs`, `GET|DELETE /v1/jobs/:id`,
 * `GET /health`, `GET /metrics`, and the dashboard at `GET /`.
 */
export async function buildGateway(env: GatewayEnv, logger: Logger): Promise<Gateway> {
  const source = redisFromEnv(env); // REDIS_URL, or a Cluster client for REDIS_CLUSTER_NODES
  const redis = commandConnection(source.input, env.GATEWAY_REDIS_OP_TIMEOUT_MS);
  redis.client.on('error', () => {}); // every call that needs Redis answers 503 on its own
  const keys = queueKeys(env.TOLLGATE_QUEUE);
  const producer = createProducer({
    redis: redis.client,
    queue: env.TOLLGATE_QUEUE,
    redisTimeoutMs: env.GATEWAY_REDIS_OP_TIMEOUT_MS,
    tenantQueuedMax: env.GATEWAY_TENANT_QUEUED_MAX,
    retention: { completedSeconds: env.GATEWAY_KEEP_COMPLETED_SECONDS, completedJobs: env.GATEWAY_KEEP_COMPLETED_JOBS, failedSeconds: env.GATEWAY_KEEP_FAILED_SECONDS, failedJobs: env.GATEWAY_KEEP_FAILED_JOBS },
  });
  const limiter = createLimiter({ ...limiterOptionsFromEnv(env, source.input), redisTimeoutMs: env.GATEWAY_REDIS_TIMEOUT_MS });
  limiter.on('redisError', () => {}); // the dashboard shows Redis as down; no log line per retry
  // Redis may be down at start: both retry on use, and the dashboard and /health say so meanwhile
  await Promise.all([limiter.ready().catch(() => {}), producer.ready().catch(() => {})]);
  const monitor = new FleetMonitor({ limiter, producer, redis: redis.client, statsKey: keys.fleetStats, redisTimeoutMs: env.GATEWAY_REDIS_TIMEOUT_MS });
  const tokens = new TokenTable(env.GATEWAY_TOKENS);
  const readers = new StreamReaders(
    () => {
      const reader = source.input instanceof Cluster ? source.input.duplicate() : new Redis(env.REDIS_URL, { maxRetriesPerRequest: null }); // the job's event stream key is hash-tagged: one slot
      reader.on('error', () => {}); // a failed read is retried; each relay's deadline is its own
      return reader;
    },
    redis.client,
    keys.relayWakePrefix,
  );
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
    if (nestsDeeperThan(text, env.GATEWAY_JSON_DEPTH_MAX)) {
      done(Object.assign(new Error(`JSON nests deeper than ${env.GATEWAY_JSON_DEPTH_MAX} levels (GATEWAY_JSON_DEPTH_MAX)`), { code: JSON_TOO_DEEP, statusCode: 400 }), undefined);
      return;
    }
    parseJson(request, text, done);
  });
  app.decorateRequest('tenant', undefined);
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
      return sendError(request, reply, 401, token === undefined ? 'x-api-key header is required' : 'Invalid bearer token');
    }
    const query = request.query as Record<string, unknown> | undefined;
    const queryToken = request.routeOptions.config.queryToken === true && typeof query?.token === 'string' ? query.token : undefined;
    const role = admins.lookup(token ?? queryToken ?? cookieOf(request.headers, ADMIN_COOKIE));
    if (role === 'admin' || (role === 'metrics' && access === 'metrics')) return;
    return sendError(request, reply, 401, access === 'metrics' ? 'GET /metrics needs GATEWAY_ADMIN_TOKEN or GATEWAY_METRICS_TOKEN' : 'the dashboard needs GATEWAY_ADMIN_TOKEN');
  });
  app.setErrorHandler((error: { code?: string; statusCode?: number; message: string }, request, reply) => {
    const { status, message } = describeFastifyError(error);
    return sendError(request, reply, status, message);
  });
  app.setNotFoundHandler((request, reply) => sendError(request, reply, 404, `Not found: ${request.method} ${cutText(request.url.split('?')[0] ?? '')}`));

  const metrics = gatewayMetrics();
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
        if (error instanceof UpstreamError || error instanceof JobWaitTimeoutError || error instanceof JobLostError) return sendFailure(request, reply, error);
        return sendError(request, reply, 503, `Enqueued as job ${jobId}, but its result could not be read: Redis is unreachable. Poll GET /v1/jobs/${jobId}.`);
      }
    }
    // caps first, so that a refused stream enqueues nothing
    const tenant = request.tenant ?? '';
    const ofTenant = openStreams.get(tenant) ?? 0;
    if (openStreamsTotal >= env.GATEWAY_STREAMS_MAX) return sendError(request, reply, 529, `the gateway relays ${env.GATEWAY_STREAMS_MAX} streams already (GATEWAY_STREAMS_MAX); retry shortly`);
    if (ofTenant >= env.GATEWAY_TENANT_STREAMS_MAX) return sendError(request, reply, 429, `tenant ${tenant} has ${env.GATEWAY_TENANT_STREAMS_MAX} streams open, the most it may (GATEWAY_TENANT_STREAMS_MAX); retry when one ends`);
    openStreams.set(tenant, ofTenant + 1);
    openStreamsTotal += 1;
    try {
      let jobId: string;
      try {
        jobId = await producer.enqueue(params, options);
      } catch (error) {
        return sendFailure(request, reply, error);
      }
      const streamKey = keys.jobEvents(jobId);
      await relayJobEvents({ request, reply, producer, jobId, follow: (signal) => readers.follow(streamKey, signal), waitMs: env.GATEWAY_WAIT_MS });
      return reply;
    } finally {
      openStreamsTotal -= 1;
      const left = (openStreams.get(tenant) ?? 1) - 1;
      if (left === 0) openStreams.delete(tenant);
      else openStreams.set(tenant, left);
    }
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
      if (job === undefined) return sendError(request, reply, 404, `job ${cutText(request.params.id)} not found`);
      return reply.send(job);
    } catch (error) {
      return sendFailure(request, reply, error);
    }
  });

  app.delete<{ Params: { id: string } }>('/v1/jobs/:id', async (request, reply) => {
    try {
      if ((await ownJob(request)) === undefined) return sendError(request, reply, 404, `job ${cutText(request.params.id)} not found`);
      const outcome = await producer.cancel(request.params.id);
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
    const page = dashboardHtml({ limiterName: env.TOLLGATE_NAME, queueName: env.TOLLGATE_QUEUE });
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
        logger.warn({ err: error instanceof Error ? error.message : String(error) }, 'metrics failed');
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

/** The gateway's Prometheus metrics: the fleet gauges of DESIGN §5 (from the limiter), queue counts, HTTP answers. */
function gatewayMetrics() {
  const registry = new Registry();
  const inFlight = new Gauge({ name: 'tollgate_permits_in_flight', help: 'Permits in flight fleet-wide', registers: [registry] });
  const limit = new Gauge({ name: 'tollgate_concurrency_limit', help: 'Effective fleet-wide concurrency limit', registers: [registry] });
  const waiting = new Gauge({ name: 'tollgate_waiting', help: 'Waiters for a permit, fleet-wide', registers: [registry] });
  const bucketTokens = new Gauge({ name: 'tollgate_bucket_tokens', help: 'Tokens in each bucket (negative: debt)', labelNames: ['dimension'], registers: [registry] });
  const queueJobs = new Gauge({ name: 'tollgate_queue_jobs', help: 'Jobs in the queue by state', labelNames: ['state'], registers: [registry] });
  const redisUp = new Gauge({ name: 'tollgate_redis_up', help: '1 when the gateway reached Redis at the last scrape', registers: [registry] });
  const requests = new Counter({ name: 'tollgate_gateway_requests_total', help: 'HTTP answers by route and status', labelNames: ['route', 'status'], registers: [registry] });
  return {
    registry,
    requests,
    update(frame: FleetFrame): void {
      redisUp.set(frame.redis === 'up' ? 1 : 0);
      if (frame.limiter !== null) {
        inFlight.set(frame.limiter.inFlight);
        limit.set(frame.limiter.concurrency ?? Number.NaN);
        waiting.set(frame.limiter.waiting);
        for (const [dimension, bucket] of Object.entries(frame.limiter.buckets)) bucketTokens.set({ dimension }, bucket.tokens);
      }
      for (const [state, count] of Object.entries(frame.queue ?? {})) queueJobs.set({ state }, count);
    },
  };
}

