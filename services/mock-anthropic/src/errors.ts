/** The `error.type` values of Anthropic's error envelope (anthropic-api.md §2). */
export type ApiErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'permission_error'
  | 'not_found_error'
  | 'request_too_large'
  | 'rate_limit_error'
  | 'api_error'
  | 'timeout_error'
  | 'overloaded_error';

/** An error answer before the body is built: status, type, message and optional extras. */
export interface ApiErrorSpec {
  status: number;
  type: ApiErrorType;
  message: string;
  details?: { error_code: string };
  headers?: Record<string, string>;
}

/** The envelope every JSON error uses: `{"type":"error","error":{…},"request_id":"req_…"}`. */
export function errorEnvelope(spec: ApiErrorSpec, requestId: string): Record<string, unknown> {
  const error: Record<string, unknown> = { type: spec.type, message: spec.message };
  if (spec.details !== undefined) error.details = spec.details;
  return { type: 'error', error, request_id: requestId };
}

/** Cloudflare answers an oversized body before the API sees it: no `type`, no `request_id` [OBS]. */
export const REQUEST_TOO_LARGE_BODY = {
  error: { type: 'request_too_large', message: 'Request exceeds the maximum size' },
} as const;

/** Longest error message, in characters: messages echo a caller's field names and values, which can be huge. */
export const MESSAGE_CHARS_MAX = 400;

const bounded = (message: string) => (message.length <= MESSAGE_CHARS_MAX ? message : `${message.slice(0, MESSAGE_CHARS_MAX)}…`);

export function invalidRequest(message: string): ApiErrorSpec {
  return { status: 400, type: 'invalid_request_error', message: bounded(message) };
}

export function authenticationError(message: string): ApiErrorSpec {
  return { status: 401, type: 'authentication_error', message: bounded(message) };
}

export function notFound(message: string): ApiErrorSpec {
  return { status: 404, type: 'not_found_error', message: bounded(message) };
}

/** Documented [DOC] message of Anthropic's 403. */
export const PERMISSION_DENIED: ApiErrorSpec = { status: 403, type: 'permission_error', message: 'Your API key does not have permission to use the specified resource.' };
/** 408 and 409 are not in Anthropic's error table; the SDK retries both, so the mock can send them. Type and message [INF]. */
export const REQUEST_TIMEOUT: ApiErrorSpec = { status: 408, type: 'timeout_error', message: 'Request timed out before it was processed' };
export const CONFLICT: ApiErrorSpec = { status: 409, type: 'api_error', message: 'Conflict with a concurrent request' };
export const OVERLOADED: ApiErrorSpec = { status: 529, type: 'overloaded_error', message: 'Overloaded' };
export const INTERNAL_SERVER_ERROR: ApiErrorSpec = { status: 500, type: 'api_error', message: 'Internal server error' };
export const GATEWAY_TIMEOUT: ApiErrorSpec = { status: 504, type: 'timeout_error', message: 'Request timed out' };

export const CONCURRENCY_MESSAGE =
  'Number of concurrent connections has exceeded your rate limit. Please try again later or contact sales at ' +
  'https://www.anthropic.com/contact-sales to discuss your options for a rate limit increase.';

const RATE_LIMIT_TAIL =
  'For details, refer to: https://docs.claude.com/en/api/rate-limits. You can see the response headers for current usage. ' +
  'Please reduce the prompt length or the maximum tokens requested, or try again later. You may also contact sales at ' +
  'https://www.anthropic.com/contact-sales to discuss your options for a rate limit increase.';

/** `This request would exceed your organization's rate limit of 30,000 input tokens per minute (org: …, model: …). …` */
export function rateLimitMessage(limit: number, unit: string, organizationId: string, model: string): string {
  return (
    `This request would exceed your organization's rate limit of ${limit.toLocaleString('en-US')} ${unit} per minute ` +
    `(org: ${organizationId}, model: ${model}). ${RATE_LIMIT_TAIL}`
  );
}

/** Access returns on the 1st of next month at 00:00 UTC [DOC]. */
export function spendCapMessage(nowMs: number): string {
  const now = new Date(nowMs);
  const firstOfNextMonth = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1));
  const day = firstOfNextMonth.toISOString().slice(0, '2026-01-01'.length);
  return `You have reached your specified API usage limits. You will regain access on ${day} at 00:00 UTC.`;
}
