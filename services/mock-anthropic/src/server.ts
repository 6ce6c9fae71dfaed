import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { z } from 'zod';
import { ADMIN_PREFIX, countArrival, handleApiRequest, handleModelsRequest, sendError } from './api.js';
import { errorEnvelope, invalidRequest, notFound, REQUEST_TOO_LARGE_BODY, INTERNAL_SERVER_ERROR } from './errors.js';
import { mockOptionsSchema, type MockConfig, type MockConfigPatch, type MockOptions } from './options.js';
import { randomId } from './random.js';
import type { LoggedRequest } from './request-log.js';
import { MockState } from './state.js';
import type { MockStats } from './stats.js';
import { parseJsonBody, isApiError } from './validate.js';

const HTTP_PAYLOAD_TOO_LARGE = 413;
const HTTP_CLIENT_ERROR_MIN = 400;
const HTTP_SERVER_ERROR_MIN = 500;

/** A running mock; see {@link startMockAnthropic}. */
export interface MockAnthropic {
  /** Base URL for the SDK's `baseURL`, e.g. `http://127.0.0.1:40123`. */
  url: string;
  /** What the mock saw since the last reset (also `GET /_mock/stats`). */
  stats(): MockStats;
  /** Replaces the given top-level config sections (also `POST /_mock/config`); throws a ZodError when invalid. */
  setConfig(patch: MockConfigPatch): MockConfig;
  /** The last requests as received (also `GET /_mock/requests`), oldest first. */
  requests(): LoggedRequest[];
  /** Clears stats, the request log, refills all buckets, restarts the fault schedule and random sequences (also `POST /_mock/reset`). */
  reset(): void;
  /** Stops the server: open streams and pending answers are cut. Idempotent. */
  close(): Promise<void>;
}

function configureRoutes(app: FastifyInstance, state: MockState): void {
  // Bodies arrive as strings so that auth and version are checked before the JSON (anthropic-api.md §1.1).
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, (_request, body, done) => done(null, body));

  app.addHook('onRequest', (request, _reply, done) => {
    countArrival(state, request);
    done();
  });
  // Every API request is logged as it arrived (after the body is read, before any check), for `GET /_mock/requests`.
  app.addHook('preHandler', (request, _reply, done) => {
    if (!request.url.startsWith(ADMIN_PREFIX)) state.requestLog.record(request.method, request.url, request.headers, request.body);
    done();
  });
  app.post('/v1/messages', (request, reply) => handleApiRequest(state, 'messages', request, reply));
  app.post('/v1/messages/count_tokens', (request, reply) => handleApiRequest(state, 'count_tokens', request, reply));
  app.get('/v1/models', (request, reply) => handleModelsRequest(state, request, reply, undefined));
  app.get<{ Params: { id: string } }>('/v1/models/:id', (request, reply) => handleModelsRequest(state, request, reply, request.params.id));

  app.get('/_mock/requests', (_request, reply) => reply.send({ requests: state.requestLog.list() }));
  app.get('/_mock/stats', (_request, reply) => reply.send(state.stats.snapshot(state.nowMs())));
  app.post('/_mock/reset', (_request, reply) => {
    state.reset();
    return reply.send({ reset: true });
  });
  app.post('/_mock/config', (request, reply) => {
    const requestId = randomId('req_');
    const body = parseJsonBody(request.body);
    if (isApiError(body)) return sendError(state, reply, requestId, body);
    try {
      return reply.send(state.setConfig(body));
    } catch (error) {
      if (!(error instanceof z.ZodError)) throw error;
      return sendError(state, reply, requestId, invalidRequest(z.prettifyError(error)));
    }
  });

  app.setNotFoundHandler((_request, reply) => sendError(state, reply, randomId('req_'), notFound('Not found')));
  app.setErrorHandler((error: FastifyError, request, reply) => {
    const requestId = randomId('req_');
    const status = error.statusCode ?? HTTP_SERVER_ERROR_MIN;
    if (status === HTTP_PAYLOAD_TOO_LARGE) {
      state.stats.answered(status, REQUEST_TOO_LARGE_BODY.error.type);
      return reply.code(status).header('request-id', requestId).type('application/json').send(JSON.stringify(REQUEST_TOO_LARGE_BODY));
    }
    if (status >= HTTP_CLIENT_ERROR_MIN && status < HTTP_SERVER_ERROR_MIN) {
      return sendError(state, reply, requestId, { ...invalidRequest(error.message), status });
    }
    request.log.error({ err: error, url: request.url }, 'mock-anthropic handler failed');
    return reply
      .code(INTERNAL_SERVER_ERROR.status)
      .type('application/json')
      .send(JSON.stringify(errorEnvelope(INTERNAL_SERVER_ERROR, requestId)));
  });
}

/**
 * Starts a fake of Anthropic's Messages API over HTTP that enforces per-key limits, sends the real headers and error
 * bodies, and injects latency and faults. Every option is optional; limits and faults are off by default.
 * @example
 * const mock = await startMockAnthropic({ limits: { concurrency: 3, rpm: 60 } });
 * const client = new Anthropic({ baseURL: mock.url, apiKey: 'test', maxRetries: 0 });
 * // …
 * await mock.close();
 */
export async function startMockAnthropic(options: MockOptions = {}): Promise<MockAnthropic> {
  const { port, host, bodyLimitBytes, logLevel, ...config } = mockOptionsSchema.parse(options);
  const logger = pino({ name: 'mock-anthropic', level: logLevel, redact: ['req.headers.authorization', 'req.headers["x-api-key"]'] });
  const state = new MockState(config, logger);
  const app = Fastify({
    loggerInstance: logger as FastifyBaseLogger, // an upcast: pino's Logger is a FastifyBaseLogger
    bodyLimit: bodyLimitBytes,
    logController: new LogController({ disableRequestLogging: true }), // per-request logs would dominate at hundreds of requests per second
    forceCloseConnections: true, // close() must not wait for open streams or keep-alive sockets
    return503OnClosing: false,
  });
  configureRoutes(app, state);
  const address = await app.listen({ port, host });
  const url = address.replace(/\/$/, '');
  let closing: Promise<void> | undefined;
  return {
    url,
    stats: () => state.stats.snapshot(state.nowMs()),
    requests: () => state.requestLog.list(),
    setConfig: (patch) => state.setConfig(patch),
    reset: () => state.reset(),
    close: () => {
      closing ??= (async () => {
        for (const controller of state.active) controller.abort();
        await app.close();
      })();
      return closing;
    },
  };
}
