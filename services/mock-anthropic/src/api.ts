import type { FastifyReply, FastifyRequest } from 'fastify';
import {
  notFound,
  CONFLICT,
  errorEnvelope,
  GATEWAY_TIMEOUT,
  INTERNAL_SERVER_ERROR,
  invalidRequest,
  OVERLOADED,
  PERMISSION_DENIED,
  rateLimitMessage,
  REQUEST_TIMEOUT,
  CONCURRENCY_MESSAGE,
  spendCapMessage,
  type ApiErrorSpec,
} from './errors.js';
import { FAULT_HEADER, parseFaultHeader } from './faults.js';
import {
  admitMessage,
  isRejection,
  rateLimitHeaders,
  type Admission,
  type KeyLimits,
  type LimitDimension,
  type MessageCost,
  type PoolBuckets,
  type RateLimitKind,
  type Rejection,
} from './limits.js';
import { InvalidConfigError } from '@tollgate/limiter';
import type { FaultKind } from './options.js';
import { randomId } from './random.js';
import type { MockState } from './state.js';
import type { Metered } from './stats.js';
import { planOutput, type OutputPlan } from './text.js';
import { plannedToolUse, type ToolUse } from './tool-use.js';
import { inputUsage, parseTokenOverrides, type InputUsage } from './tokens.js';
import { authenticate, checkVersion, isApiError, parseJsonBody, usesBetas, validateRequest, type ApiRoute, type ValidRequest } from './validate.js';
import { streamAnswer, jsonAnswer, type Generation } from './generate.js';
import { MODELS_PAGE_LIMIT_DEFAULT, MODELS_PAGE_LIMIT_MAX, modelInfo, modelsPage } from './models.js';

/** Faults answered at once, before any latency: the request is refunded and never counts as in flight. */
const IMMEDIATE_FAULTS = new Set<FaultKind>(['403', '408', '409', '429', '529', '500', '504', 'reset', 'spend_cap', 'ramp']);
const RETRY_COUNT_HEADER = 'x-stainless-retry-count';
/** Admin routes live under this prefix only and are not counted. */
export const ADMIN_PREFIX = '/_mock/';

/** Units of the 429 message per bucket: "50 requests per minute". */
const LIMIT_UNITS: Record<LimitDimension, string> = { requests: 'requests', input_tokens: 'input tokens', output_tokens: 'output tokens' };

/** Everything one keyed request carries from check to check. */
interface KeyedContext {
  state: MockState;
  reply: FastifyReply;
  requestId: string;
  keyId: string;
  key: KeyLimits;
  /** The pool of the request's model once it is known; pool `default` before that. */
  pool: PoolBuckets;
}

/** Sends a JSON error; keyed requests also get the rate-limit headers. */
export function sendError(state: MockState, reply: FastifyReply, requestId: string, spec: ApiErrorSpec, headers: Record<string, string> = {}): FastifyReply {
  state.stats.answered(spec.status, spec.type);
  return reply
    .code(spec.status)
    .headers({ ...headers, ...spec.headers, 'request-id': requestId })
    .type('application/json')
    .send(JSON.stringify(errorEnvelope(spec, requestId)));
}

function keyedHeaders(ctx: KeyedContext, exceeded?: RateLimitKind): Record<string, string> {
  return {
    'anthropic-organization-id': ctx.state.organizationId,
    ...rateLimitHeaders(ctx.pool, ctx.key.limits, ctx.state.nowMs(), Date.now(), exceeded),
  };
}

function sendKeyedError(ctx: KeyedContext, spec: ApiErrorSpec, exceeded?: RateLimitKind): FastifyReply {
  return sendError(ctx.state, ctx.reply, ctx.requestId, spec, keyedHeaders(ctx, exceeded));
}

/** The 429 for a rejection, with the documented message (the limit of the model's pool), `retry-after` and `x-should-retry`. */
function rateLimitError(ctx: KeyedContext, rejection: Rejection, modelId: string): ApiErrorSpec {
  const { state, key, pool } = ctx;
  const headers: Record<string, string> = { 'x-should-retry': rejection.kind === 'spend' ? 'false' : 'true' };
  if (rejection.retryAfterS !== undefined) headers['retry-after'] = String(rejection.retryAfterS);
  const spec = (message: string, errorCode?: string): ApiErrorSpec => ({
    status: 429,
    type: 'rate_limit_error',
    message,
    headers,
    ...(errorCode === undefined ? {} : { details: { error_code: errorCode } }),
  });
  switch (rejection.kind) {
    case 'spend':
      return spec(spendCapMessage(Date.now()), 'enforced_spend_limit_reached');
    case 'concurrency':
      return spec(CONCURRENCY_MESSAGE);
    case 'injected':
      return spec(rateLimitMessage(pool.spec.rpm ?? 1, 'requests', state.organizationId, modelId));
    case 'count_tokens':
      return spec(rateLimitMessage(key.limits.countTokensRpm ?? 1, 'count_tokens requests', state.organizationId, modelId));
    default:
      return spec(rateLimitMessage(pool.perMinute(rejection.kind) ?? 0, LIMIT_UNITS[rejection.kind], state.organizationId, modelId));
  }
}

/** Counts every non-admin request on arrival, retries (`X-Stainless-Retry-Count` > 0) separately. */
export function countArrival(state: MockState, request: FastifyRequest): void {
  if (request.url.startsWith(ADMIN_PREFIX)) return;
  const retryCount = request.headers[RETRY_COUNT_HEADER];
  state.stats.request(typeof retryCount === 'string' && Number(retryCount) > 0);
}

type Query = Record<string, string | string[] | undefined>;

function queryString(query: Query, name: string): string | undefined {
  const value = query[name];
  return typeof value === 'string' ? value : undefined;
}

/**
 * Serves `GET /v1/models` (`id` undefined) and `GET /v1/models/{id}`: the configured models, after the key and
 * `anthropic-version` checks. They use none of the Messages limits [INF].
 */
export function handleModelsRequest(state: MockState, request: FastifyRequest, reply: FastifyReply, id: string | undefined): FastifyReply {
  const requestId = randomId('req_');
  state.stats.route('models');
  const auth = authenticate(request.headers, state.apiKeys);
  if (isApiError(auth)) return sendError(state, reply, requestId, auth);
  const version = checkVersion(request.headers);
  if (isApiError(version)) return sendError(state, reply, requestId, version);
  const models = state.config.models;
  let body: unknown;
  if (id !== undefined) {
    const spec = Object.hasOwn(models, id) ? models[id] : undefined;
    if (spec === undefined) return sendError(state, reply, requestId, notFound(`model: ${id}`));
    body = modelInfo(id, spec);
  } else {
    const query = request.query as Query;
    const rawLimit = queryString(query, 'limit');
    const limit = rawLimit === undefined ? MODELS_PAGE_LIMIT_DEFAULT : Number(rawLimit);
    if (!Number.isInteger(limit) || limit < 1 || limit > MODELS_PAGE_LIMIT_MAX) {
      return sendError(state, reply, requestId, invalidRequest(`limit: Input should be an integer from 1 to ${MODELS_PAGE_LIMIT_MAX}`));
    }
    body = modelsPage(models, { limit, afterId: queryString(query, 'after_id'), beforeId: queryString(query, 'before_id') });
  }
  state.stats.answered(200);
  return reply.code(200).header('request-id', requestId).type('application/json').send(JSON.stringify(body));
}

/**
 * Serves `POST /v1/messages` and `POST /v1/messages/count_tokens`: the checks of anthropic-api.md §1.1 in order,
 * then the limits, then faults, then the answer.
 */
export async function handleApiRequest(state: MockState, route: ApiRoute, request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
  const requestId = randomId('req_');
  const headers = request.headers;
  state.stats.route(route);
  const auth = authenticate(headers, state.apiKeys);
  if (isApiError(auth)) return sendError(state, reply, requestId, auth);
  const keyId = state.fingerprint(auth.apiKey);
  const key = state.keyLimits(keyId);
  const ctx: KeyedContext = { state, reply, requestId, keyId, key, pool: key.defaultPool() };
  state.stats.keyRequest(keyId);
  const version = checkVersion(headers);
  if (isApiError(version)) return sendKeyedError(ctx, version);
  const body = parseJsonBody(request.body);
  if (isApiError(body)) return sendKeyedError(ctx, body);
  const valid = validateRequest(body, route, version, state.config.models, usesBetas(headers));
  if (isApiError(valid)) return sendKeyedError(ctx, valid);
  try {
    ctx.pool = key.poolFor(valid.modelId);
  } catch (error) {
    if (!(error instanceof InvalidConfigError)) throw error;
    return sendKeyedError(ctx, { ...INTERNAL_SERVER_ERROR, message: `mock configuration: ${error.message}` }); // two pools match the model equally
  }
  const overrides = parseTokenOverrides(headers);
  if (isApiError(overrides)) return sendKeyedError(ctx, overrides);
  const forcedFault = parseFaultHeader(headers[FAULT_HEADER]);
  if (isApiError(forcedFault)) return sendKeyedError(ctx, forcedFault);
  const input = inputUsage(body, overrides);
  if (input.totalTokens > valid.model.contextWindowTokens) {
    return sendKeyedError(ctx, invalidRequest(`prompt is too long: ${input.totalTokens} tokens > ${valid.model.contextWindowTokens} maximum`));
  }
  if (route === 'count_tokens') return countTokens(ctx, valid, input);
  const cost: MessageCost = { inputTokens: input.totalTokens, maxTokens: valid.maxTokens };
  const nowMs = state.nowMs();
  const admission = admitMessage(ctx.key, ctx.pool, cost, nowMs);
  if (isRejection(admission)) {
    state.stats.rateLimited(admission.kind, keyId, ctx.pool.name);
    return sendKeyedError(ctx, rateLimitError(ctx, admission, valid.modelId), admission.kind);
  }
  const fault = state.faults.pick(state.config.faults, forcedFault);
  if (fault !== undefined) state.stats.fault(fault);
  if (fault !== undefined && (IMMEDIATE_FAULTS.has(fault) || (!valid.stream && (fault === 'mid_stream_error' || fault === 'reset_mid_stream')))) {
    refund(ctx.pool, cost, admission, nowMs);
    return answerImmediateFault(ctx, fault, valid, request);
  }
  const plan = planOutput({
    seed: state.config.seed,
    requestText: JSON.stringify({ ...body, stream: undefined }), // streamed or not, the same request gets the same text
    maxTokens: valid.maxTokens,
    forcedTokens: overrides.outputTokens,
    tokensMin: state.config.output.tokensMin,
    tokensMax: state.config.output.tokensMax,
  });
  return runAdmitted(ctx, request, { valid, input, plan, fault, cost, admission, toolUse: plannedToolUse(body) });
}

/** Undoes an admission: a request answered by an injected fault before its headers consumes nothing. */
function refund(pool: PoolBuckets, cost: MessageCost, admission: Admission, nowMs: number): void {
  pool.buckets.requests?.charge(nowMs, -1);
  pool.buckets.input_tokens?.charge(nowMs, -cost.inputTokens);
  pool.buckets.output_tokens?.charge(nowMs, -admission.outputChargedTokens);
}

function answerImmediateFault(ctx: KeyedContext, fault: FaultKind, valid: ValidRequest, request: FastifyRequest): FastifyReply {
  const { state } = ctx;
  const faults = state.config.faults;
  switch (fault) {
    case '429':
      state.stats.rateLimited('injected', ctx.keyId, ctx.pool.name);
      return sendKeyedError(ctx, rateLimitError(ctx, { kind: 'injected', retryAfterS: faults.retryAfterS }, valid.modelId));
    case 'spend_cap':
      state.stats.rateLimited('spend', ctx.keyId, ctx.pool.name);
      return sendKeyedError(ctx, rateLimitError(ctx, { kind: 'spend' }, valid.modelId));
    case 'ramp': {
      state.stats.rateLimited('injected', ctx.keyId, ctx.pool.name);
      const spec = rateLimitError(ctx, { kind: 'injected', retryAfterS: faults.retryAfterS }, valid.modelId);
      return sendKeyedError(ctx, { ...spec, details: { error_code: 'ramp_limit_exceeded' } });
    }
    case '403':
      return sendKeyedError(ctx, PERMISSION_DENIED);
    case '408':
      return sendKeyedError(ctx, REQUEST_TIMEOUT);
    case '409':
      return sendKeyedError(ctx, CONFLICT);
    case '500':
      return sendKeyedError(ctx, INTERNAL_SERVER_ERROR);
    case '504':
      return sendKeyedError(ctx, GATEWAY_TIMEOUT);
    case 'reset':
    case 'reset_mid_stream':
      return resetConnection(state, ctx.reply, request);
    default: {
      const retryAfterS = faults.overloadedRetryAfterS;
      return sendKeyedError(ctx, retryAfterS === undefined ? OVERLOADED : { ...OVERLOADED, headers: { 'retry-after': String(retryAfterS) } });
    }
  }
}

/** Destroys the socket without an answer, as a reset connection would. */
export function resetConnection(state: MockState, reply: FastifyReply, request: FastifyRequest): FastifyReply {
  state.stats.answered('reset');
  reply.hijack();
  request.raw.socket.destroy();
  return reply;
}

function countTokens(ctx: KeyedContext, valid: ValidRequest, input: InputUsage): FastifyReply {
  const { state } = ctx;
  const bucket = ctx.key.countTokensBucket;
  if (bucket !== undefined) {
    const nowMs = state.nowMs();
    const deficit = bucket.deficit(nowMs, 1);
    if (deficit > 0) {
      state.stats.rateLimited('count_tokens', ctx.keyId);
      return sendKeyedError(ctx, rateLimitError(ctx, { kind: 'count_tokens', retryAfterS: bucket.retryAfterS(deficit) }, valid.modelId));
    }
    bucket.charge(nowMs, 1);
  }
  state.stats.countTokensAdmitted(ctx.keyId, state.nowMs());
  state.stats.answered(200);
  return ctx.reply
    .code(200)
    .headers({ ...keyedHeaders(ctx), 'request-id': ctx.requestId })
    .type('application/json')
    .send(JSON.stringify({ input_tokens: input.totalTokens }));
}

interface AdmittedRequest {
  valid: ValidRequest;
  input: InputUsage;
  plan: OutputPlan;
  fault: FaultKind | undefined;
  toolUse: ToolUse | undefined;
  cost: MessageCost;
  admission: Admission;
}

/** Runs an admitted request: in flight until its answer ends, ITPM corrected at once, OTPM settled at the end. */
async function runAdmitted(ctx: KeyedContext, request: FastifyRequest, admitted: AdmittedRequest): Promise<FastifyReply> {
  const { state, key, keyId, pool } = ctx;
  const { valid, input, cost, admission } = admitted;
  const limits = key.limits;
  const at = { keyId, pool: pool.name };
  const controller = new AbortController();
  state.active.add(controller);
  ctx.reply.raw.once('close', () => controller.abort());
  key.inFlight += 1;
  state.stats.started(at);
  let nowMs = state.nowMs();
  // ITPM counts uncached input and cache writes (and cache reads on flagged models); admission charged the whole prompt.
  const countedInput = input.inputTokens + input.cacheWriteTokens + (valid.model.cacheReadsCountForItpm ? input.cacheReadTokens : 0);
  pool.buckets.input_tokens?.charge(nowMs, countedInput - cost.inputTokens);
  recordCharge(state, pool, at, 'requests', 1, 1, nowMs);
  recordCharge(state, pool, at, 'input_tokens', cost.inputTokens, countedInput, nowMs);
  state.stats.admitted('output_tokens', admission.outputChargedTokens, nowMs, at);
  const outputBalance = pool.buckets.output_tokens?.balance(nowMs);
  if (outputBalance !== undefined) state.stats.balance('output_tokens', outputBalance, at);
  const generation: Generation = {
    state,
    key,
    pool,
    metered: at,
    reply: ctx.reply,
    request,
    requestId: ctx.requestId,
    headers: () => ({ ...keyedHeaders(ctx), 'request-id': ctx.requestId }),
    signal: controller.signal,
    modelId: valid.modelId,
    input,
    plan: admitted.plan,
    fault: admitted.fault,
    toolUse: admitted.toolUse,
    producedTokens: 0,
  };
  try {
    if (valid.stream) await streamAnswer(generation);
    else await jsonAnswer(generation);
  } finally {
    nowMs = state.nowMs();
    key.inFlight -= 1;
    state.stats.finished(at);
    state.active.delete(controller);
    if (limits.otpmMode === 'max_tokens') {
      const balance = pool.buckets.output_tokens?.charge(nowMs, generation.producedTokens - admission.outputChargedTokens);
      if (balance !== undefined) state.stats.balance('output_tokens', balance, at);
    }
    key.spentTokens += countedInput + generation.producedTokens;
  }
  return ctx.reply;
}

function recordCharge(state: MockState, pool: PoolBuckets, at: Metered, dimension: LimitDimension, admitted: number, settled: number, nowMs: number): void {
  state.stats.admitted(dimension, admitted, nowMs, at);
  state.stats.settled(dimension, settled, nowMs, at);
  const bucket = pool.buckets[dimension];
  if (bucket !== undefined) state.stats.balance(dimension, bucket.balance(nowMs), at);
}
