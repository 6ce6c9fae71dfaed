import { APIConnectionError, APIError, APIUserAbortError } from '@anthropic-ai/sdk';

/** The start of the concurrency 429's message (anthropic-api.md §2); the API gives it no error code of its own. */
export const CONCURRENCY_MESSAGE_PREFIX = 'Number of concurrent connections';
const SPEND_LIMIT_ERROR_CODE = 'enforced_spend_limit_reached';
const MS_PER_SECOND = 1_000;
/** Longest server-given wait we honour (the SDK's bound: 2^31 − 1 ms). */
const SERVER_WAIT_MS_MAX = 2 ** 31 - 1;
/** Statuses retried with backoff besides every status ≥ 500. */
const RETRYABLE_STATUSES = new Set([408, 409]);
/** `error.type`s of a mid-stream `event: error` that are worth another attempt. */
const RETRYABLE_STREAM_ERROR_TYPES = new Set(['overloaded_error', 'api_error', 'timeout_error']);

/** Socket-level failures (Node's fetch, undici): a reset connection is worth another attempt. */
const NETWORK_ERROR_CODES = new Set(['ECONNRESET', 'EPIPE', 'ECONNREFUSED', 'ETIMEDOUT', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED', 'UND_ERR_CONNECT_TIMEOUT']);
/** Messages of the TypeError fetch throws when the body's socket dies ('terminated') or the request cannot start. */
const NETWORK_ERROR_MESSAGES = new Set(['terminated', 'fetch failed']);
/** How deep a `cause` chain is followed. */
const CAUSE_DEPTH_MAX = 4;

/**
 * A connection reset mid-stream reaches the caller as the raw fetch error (from `create({ stream: true })`) or an
 * `AnthropicError` with it as `cause` (from `messages.stream()`), not as an `APIConnectionError` (anthropic-api.md §5).
 */
export function isNetworkError(error: unknown): boolean {
  let current: unknown = error;
  for (let depth = 0; depth < CAUSE_DEPTH_MAX && current instanceof Error; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && NETWORK_ERROR_CODES.has(code)) return true;
    if (current instanceof TypeError && NETWORK_ERROR_MESSAGES.has(current.message)) return true;
    current = current.cause;
  }
  return false;
}

/** What to do after a failed attempt. */
export type Failure =
  /** Do not retry: the SDK's error goes to the caller as it is. */
  | { kind: 'fatal' }
  /** A rate-limit 429 with `retry-after`: pause the whole fleet that long, then retry. */
  | { kind: 'rate_limited'; pauseMs: number }
  /** A concurrency 429: lower the effective concurrency, then retry with backoff. */
  | { kind: 'concurrency' }
  /** 5xx, 408, 409, connection error, lost lease: retry after `serverWaitMs` if given, else backoff. */
  | { kind: 'transient'; serverWaitMs: number | undefined };

/** `retry-after-ms` (float ms), then `retry-after` (float seconds or an HTTP date), as the SDK reads them. */
export function serverWaitMs(headers: Headers | undefined, nowMs: number = Date.now()): number | undefined {
  if (headers === undefined) return undefined;
  const inRange = (ms: number) => (Number.isFinite(ms) && ms > 0 && ms <= SERVER_WAIT_MS_MAX ? ms : undefined);
  const retryAfterMs = headers.get('retry-after-ms');
  if (retryAfterMs !== null) {
    const ms = inRange(Number.parseFloat(retryAfterMs));
    if (ms !== undefined) return ms;
  }
  const retryAfter = headers.get('retry-after');
  if (retryAfter === null) return undefined;
  const seconds = Number.parseFloat(retryAfter);
  if (!Number.isNaN(seconds)) return inRange(seconds * MS_PER_SECOND);
  return inRange(Date.parse(retryAfter) - nowMs);
}

/**
 * Classifies an attempt's failure. `leaseLost` says the permit's lease was lost, which aborted the call: that
 * attempt is retried with a fresh permit. A caller's abort is always fatal.
 */
export function classifyFailure(error: unknown, leaseLost: boolean): Failure {
  if (error instanceof APIUserAbortError) return leaseLost ? { kind: 'transient', serverWaitMs: undefined } : { kind: 'fatal' };
  if (error instanceof APIConnectionError) return { kind: 'transient', serverWaitMs: undefined };
  if (!(error instanceof APIError)) return leaseLost || isNetworkError(error) ? { kind: 'transient', serverWaitMs: undefined } : { kind: 'fatal' };
  const headers = error.headers;
  if (error.status === undefined) {
    // an `event: error` inside a 200 stream: no status, only the body's type
    return error.type !== null && RETRYABLE_STREAM_ERROR_TYPES.has(error.type) ? { kind: 'transient', serverWaitMs: undefined } : { kind: 'fatal' };
  }
  if (headers?.get('x-should-retry') === 'false' || error.errorCode === SPEND_LIMIT_ERROR_CODE) return { kind: 'fatal' };
  const waitMs = serverWaitMs(headers);
  if (error.status === 429) {
    if (error.apiMessage?.startsWith(CONCURRENCY_MESSAGE_PREFIX) === true) return { kind: 'concurrency' };
    return waitMs === undefined ? { kind: 'transient', serverWaitMs: undefined } : { kind: 'rate_limited', pauseMs: waitMs };
  }
  if (error.status >= 500 || RETRYABLE_STATUSES.has(error.status)) return { kind: 'transient', serverWaitMs: waitMs };
  return { kind: 'fatal' }; // 400, 401, 403, 404, 413, 422, …
}

/** Full jitter: a uniform draw in [0, min(base · 2^(retry − 1), max)] ms, `retry` counting from 1. */
export function backoffMs(retry: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const ceilingMs = Math.min(maxMs, baseMs * 2 ** Math.max(0, retry - 1));
  return Math.floor(random() * ceilingMs);
}
