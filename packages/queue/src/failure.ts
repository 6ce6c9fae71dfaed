import { TollgateError, isBudgetExceededError } from '@tollgate/limiter';
import { toError } from '@tollgate/limiter/internal';
import { z } from 'zod';
import { errorBodySchema, type ErrorBody } from './errors.js';
import { relayedHeaders } from './upstream.js';

/** Upstream statuses that will fail the same way again: the job fails at once (anthropic-api.md §2). */
export const NON_RETRYABLE_STATUSES: ReadonlySet<number> = new Set([400, 401, 403, 404, 413, 422]);
/** Status for Tollgate's own transient failures (Redis unreachable, lease lost, no permit in time). */
const UNAVAILABLE_STATUS = 503;
/** Status for an error with no HTTP status (a connection error, a bug). */
const INTERNAL_STATUS = 500;
/** Statuses of a mid-stream `event: error`, which arrives without one, by `error.type`. */
const STREAM_ERROR_STATUSES: Readonly<Record<string, number>> = { overloaded_error: 529, api_error: 500, timeout_error: 504, rate_limit_error: 429 };
const SPEND_LIMIT_ERROR_CODE = 'enforced_spend_limit_reached';
/**
 * Tollgate's code in a 429 for a tenant whose budget cannot cover the call (DESIGN §9), where the API puts its own
 * codes (`error.details.error_code`, as in `enforced_spend_limit_reached`): clients read it the same way.
 */
export const TENANT_BUDGET_EXCEEDED_CODE = 'tenant_budget_exceeded';
const MS_PER_SECOND = 1_000;

/** How a job attempt failed, as stored in BullMQ's `failedReason` (JSON): the error body is kept whole. */
export const jobFailureSchema = z.strictObject({
  status: z.number().int().min(100).max(599),
  retryable: z.boolean(),
  body: errorBodySchema,
  /** The upstream's relayed response headers (request id, rate-limit figures), when the upstream answered. */
  headers: z.record(z.string(), z.string()).optional(),
});

export type JobFailure = z.infer<typeof jobFailureSchema>;

function errorBody(type: string, message: string, requestId: string | null = null): ErrorBody {
  return { type: 'error', error: { type, message }, request_id: requestId };
}

/** The SDK's `APIError` fields we read, checked structurally so this package needs the SDK for types only. */
interface ApiErrorLike {
  status: number | undefined;
  error: unknown;
  headers: Headers | undefined;
  requestID: string | null | undefined;
  message: string;
}

function isApiErrorLike(error: unknown): error is ApiErrorLike {
  return error instanceof Error && 'status' in error && 'error' in error && 'headers' in error;
}

/** The code an error body carries in `error.details.error_code` (the API's `enforced_spend_limit_reached`, Tollgate's `tenant_budget_exceeded`), if any. */
export function errorCode(body: ErrorBody): unknown {
  return (body.error as { details?: { error_code?: unknown } | null }).details?.error_code;
}

/**
 * Classifies a failed attempt. Upstream 400/401/403/404/413/422, a spend cap and `x-should-retry: false` are final;
 * 429s and 5xx that outlasted the client's own retries, connection errors and Tollgate's transient errors are
 * retried by BullMQ with backoff.
 */
export function describeFailure(error: unknown): JobFailure {
  if (isApiErrorLike(error)) {
    const parsed = errorBodySchema.safeParse(error.error);
    const requestId = error.requestID ?? null;
    if (error.status === undefined) {
      // a mid-stream `event: error` (no status), or a connection error (no body)
      if (!parsed.success) return { status: INTERNAL_STATUS, retryable: true, body: errorBody('api_error', `upstream connection failed: ${error.message}`, requestId) };
      const status = STREAM_ERROR_STATUSES[parsed.data.error.type] ?? INTERNAL_STATUS;
      return { status, retryable: status !== INTERNAL_STATUS || parsed.data.error.type === 'api_error', body: parsed.data };
    }
    const body: ErrorBody = parsed.success ? parsed.data : errorBody(statusType(error.status), error.message, requestId);
    const final = NON_RETRYABLE_STATUSES.has(error.status) || error.headers?.get('x-should-retry') === 'false' || errorCode(body) === SPEND_LIMIT_ERROR_CODE;
    const headers = relayedHeaders(error.headers);
    return { status: error.status, retryable: !final, body, ...(Object.keys(headers).length === 0 ? {} : { headers }) };
  }
  // a tenant's budget: final (the job fails with it at once; a retry would only spin until the budget refills), a 429
  // with retry-after (whole seconds, rounded up) as the API answers a rate limit; by shape, so either build's error counts
  if (isBudgetExceededError(error)) {
    const body = errorBody('rate_limit_error', `tenant ${error.group} has spent its budget ${error.dimension}; retry after ${Math.ceil(error.retryAfterMs / MS_PER_SECOND)} s`);
    return {
      status: 429,
      retryable: false,
      body: { ...body, error: { ...body.error, details: { error_code: TENANT_BUDGET_EXCEEDED_CODE } } },
      headers: { 'retry-after': String(Math.ceil(error.retryAfterMs / MS_PER_SECOND)) },
    };
  }
  if (error instanceof TollgateError) {
    if (error.code === 'COST_EXCEEDS_CAPACITY' || error.code === 'INVALID_COST' || error.code === 'INVALID_ARGUMENT')
      return { status: 400, retryable: false, body: errorBody('invalid_request_error', error.message) };
    return { status: UNAVAILABLE_STATUS, retryable: true, body: errorBody('api_error', error.message) };
  }
  const failed = toError(error);
  const message = `${failed.name}: ${failed.message}`;
  return { status: INTERNAL_STATUS, retryable: true, body: errorBody('api_error', message) };
}

/** Anthropic's `error.type` for a status (anthropic-api.md §2). */
export function statusType(status: number): string {
  switch (status) {
    case 400:
      return 'invalid_request_error';
    case 401:
      return 'authentication_error';
    case 403:
      return 'permission_error';
    case 404:
      return 'not_found_error';
    case 413:
      return 'request_too_large';
    case 429:
      return 'rate_limit_error';
    case 504:
      return 'timeout_error';
    case 529:
      return 'overloaded_error';
    default:
      return 'api_error';
  }
}

/** Builds an error body in Anthropic's envelope. */
export function anthropicError(status: number, message: string, requestId: string | null = null): ErrorBody {
  return errorBody(statusType(status), message, requestId);
}

/** Serializes a failure into BullMQ's `failedReason`. */
export function encodeFailure(failure: JobFailure): string {
  return JSON.stringify(failure);
}

/** Reads a `failedReason` back; a reason written by BullMQ itself (e.g. "job stalled more than allowable limit") becomes a 500 body. */
export function decodeFailure(reason: string | undefined): JobFailure {
  try {
    const parsed = jobFailureSchema.safeParse(JSON.parse(reason ?? ''));
    if (parsed.success) return parsed.data;
  } catch {
    // not JSON: a reason BullMQ wrote itself; described below
  }
  return { status: INTERNAL_STATUS, retryable: false, body: errorBody('api_error', reason ?? 'job failed') };
}
