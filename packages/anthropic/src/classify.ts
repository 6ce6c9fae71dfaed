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

/**
 * What an upstream 429 ran out of: the account's concurrency, one of a pool's per-minute limits (requests, input
 * tokens, output tokens), or `other` (a spend limit, an injected 429, one that names no limit).
 */
export const UPSTREAM_RATE_LIMIT_KINDS = ['concurrency', 'rpm', 'itpm', 'otpm', 'other'] as const;
export type UpstreamRateLimitKind = (typeof UPSTREAM_RATE_LIMIT_KINDS)[number];

/** `… rate limit of 30,000 input tokens per minute …` (anthropic-api.md §2): the unit names the limit. */
const RATE_LIMIT_MESSAGE = /rate limit of [\d,.]+ (requests|input tokens|output tokens) per minute/;
const KIND_BY_UNIT: Record<string, UpstreamRateLimitKind> = { requests: 'rpm', 'input tokens': 'itpm', 'output tokens': 'otpm' };
/** Without a message that names it, the `anthropic-ratelimit-*-remaining` header that reads 0 does (first one wins). */
const KIND_BY_EMPTY_HEADER: ReadonlyArray<[string, UpstreamRateLimitKind]> = [
  ['anthropic-ratelimit-requests-remaining', 'rpm'],
  ['anthropic-ratelimit-input-tokens-remaining', 'itpm'],
  ['anthropic-ratelimit-output-tokens-remaining', 'otpm'],
];

/** The kind of an upstream 429, from either build of the SDK alike; undefined for any other error. */
export function rateLimitKind(error: unknown): UpstreamRateLimitKind | undefined {
  const sdk = sdkError(error);
  if (sdk?.status !== 429) return undefined;
  if (sdk.apiMessage?.startsWith(CONCURRENCY_MESSAGE_PREFIX) === true) return 'concurrency'; // the message is all it has
  const unit = sdk.apiMessage === null ? undefined : RATE_LIMIT_MESSAGE.exec(sdk.apiMessage)?.[1];
  if (unit !== undefined) return KIND_BY_UNIT[unit] ?? 'other';
  if (sdk.errorCode === SPEND_LIMIT_ERROR_CODE) return 'other'; // a spend limit is no per-minute limit, whatever the headers say
  return KIND_BY_EMPTY_HEADER.find(([header]) => sdk.headers?.get(header) === '0')?.[1] ?? 'other';
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

/** What the classifier reads off an error of the SDK. */
export interface SdkErrorShape {
  /** `api`: an answer (a status) or a mid-stream `event: error` (no status); `abort`: the request was aborted. */
  kind: 'api' | 'abort' | 'connection';
  status: number | undefined;
  headers: Headers | undefined;
  /** The body's `error.type`, e.g. `overloaded_error`. */
  type: string | null;
  /** The body's `error.details.error_code`, e.g. `enforced_spend_limit_reached`. */
  errorCode: string | null;
  /** The body's `error.message`. */
  apiMessage: string | null;
}

/** Names of the classes an error was built from, most derived first (`StreamIdleTimeoutError`, …, `APIError`, `Error`). */
function classNames(error: object): Set<string> {
  const names = new Set<string>();
  for (let proto: unknown = Object.getPrototypeOf(error); proto !== null && proto !== Object.prototype; proto = Object.getPrototypeOf(proto)) {
    const constructor = (proto as { constructor?: unknown }).constructor;
    if (typeof constructor === 'function') names.add(constructor.name);
  }
  return names;
}

function isHeaders(value: unknown): value is Headers {
  return typeof value === 'object' && value !== null && typeof (value as { get?: unknown }).get === 'function';
}

const stringOrNull = (value: unknown): string | null => (typeof value === 'string' ? value : null);

/**
 * Reads an SDK error by its shape, not its class: the SDK ships an ESM and a CommonJS build, each with its own copy
 * of every class, and a client made from the one throws errors that fail `instanceof` against the other (STYLE 19).
 * Undefined when `error` is not an `APIError` of either build.
 */
export function sdkError(error: unknown): SdkErrorShape | undefined {
  if (!(error instanceof Error)) return undefined;
  // every APIError sets these own fields, undefined where there is no answer (abort, connection error)
  if (!('status' in error && 'headers' in error && 'error' in error)) return undefined;
  const { status, headers } = error as { status: unknown; headers: unknown };
  const names = classNames(error);
  const fields = error as { type?: unknown; errorCode?: unknown; apiMessage?: unknown };
  return {
    kind: status === undefined && names.has('APIUserAbortError') ? 'abort' : status === undefined && names.has('APIConnectionError') ? 'connection' : 'api',
    status: typeof status === 'number' ? status : undefined,
    headers: isHeaders(headers) ? headers : undefined,
    type: stringOrNull(fields.type),
    errorCode: stringOrNull(fields.errorCode),
    apiMessage: stringOrNull(fields.apiMessage),
  };
}

/**
 * Classifies an attempt's failure, from either build of the SDK alike. `leaseLost` says the permit's lease was lost,
 * which aborted the call: that attempt is retried with a fresh permit. A caller's abort is always fatal.
 */
export function classifyFailure(error: unknown, leaseLost: boolean): Failure {
  const sdk = sdkError(error);
  if (sdk === undefined) return leaseLost || isNetworkError(error) ? { kind: 'transient', serverWaitMs: undefined } : { kind: 'fatal' };
  if (sdk.kind === 'abort') return leaseLost ? { kind: 'transient', serverWaitMs: undefined } : { kind: 'fatal' }; // ours: retry; the caller's: stop
  if (sdk.kind === 'connection') return { kind: 'transient', serverWaitMs: undefined }; // no answer: worth another attempt
  if (sdk.status === undefined) {
    // an `event: error` inside a 200 stream: no status, only the body's type
    return sdk.type !== null && RETRYABLE_STREAM_ERROR_TYPES.has(sdk.type) ? { kind: 'transient', serverWaitMs: undefined } : { kind: 'fatal' };
  }
  if (sdk.headers?.get('x-should-retry') === 'false' || sdk.errorCode === SPEND_LIMIT_ERROR_CODE) return { kind: 'fatal' }; // the server said so
  const waitMs = serverWaitMs(sdk.headers);
  if (sdk.status === 429) {
    if (sdk.apiMessage?.startsWith(CONCURRENCY_MESSAGE_PREFIX) === true) return { kind: 'concurrency' }; // too many in flight: shrink
    // a bucket is empty: the whole fleet waits; without retry-after we cannot tell how long, so back off alone
    return waitMs === undefined ? { kind: 'transient', serverWaitMs: undefined } : { kind: 'rate_limited', pauseMs: waitMs };
  }
  if (sdk.status >= 500 || RETRYABLE_STATUSES.has(sdk.status)) return { kind: 'transient', serverWaitMs: waitMs }; // transient on their side
  return { kind: 'fatal' }; // 400, 401, 403, 404, 413, 422, …: the request itself is wrong
}

/** Full jitter: a uniform draw in [0, min(base · 2^(retry − 1), max)] ms, `retry` counting from 1. */
export function backoffMs(retry: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const ceilingMs = Math.min(maxMs, baseMs * 2 ** Math.max(0, retry - 1));
  return Math.floor(random() * ceilingMs);
}
