export { limitAnthropic, type LimitedAnthropic, type LimitedMessages } from './limit-anthropic.js';
export { REDACTED_LOG_PATHS } from './attempts.js';
export type { LimitedAnthropicStats, TenantRateLimited } from './stats.js';
export { LimitedAPIPromise, type WithResponse } from './api-promise.js';
export {
  BACKOFF_BASE_MS_DEFAULT,
  BACKOFF_MAX_MS_DEFAULT,
  DECREASE_FACTOR_DEFAULT,
  DOCUMENT_TOKENS_DEFAULT,
  IMAGE_TOKENS_DEFAULT,
  MAX_ATTEMPTS_DEFAULT,
  MAX_RETRY_MS_DEFAULT,
  OBSERVE_INTERVAL_MS_DEFAULT,
  RAISE_AFTER_CLEAN_CALLS_DEFAULT,
  STREAM_IDLE_TIMEOUT_MS_DEFAULT,
  limitAnthropicOptionsSchema,
  type EstimateInputTokens,
  type EstimateParams,
  type LimitAnthropicOptions,
  type ResolvedLimitAnthropicOptions,
} from './options.js';
export { StreamIdleTimeoutError } from './stream-idle.js';
export { CHARS_PER_TOKEN, estimateInputTokens, type EstimateFigures } from './estimate.js';
export {
  CONCURRENCY_MESSAGE_PREFIX,
  UPSTREAM_RATE_LIMIT_KINDS,
  backoffMs,
  classifyFailure,
  isNetworkError,
  rateLimitKind,
  serverWaitMs,
  type Failure,
  type UpstreamRateLimitKind,
} from './classify.js';
export { countedInputTokens } from './usage.js';
export { TOKEN_REMAINING_ROUNDING_SLACK, readRateLimitHeaders, type AnthropicDimension, type ObservedRemaining } from './ratelimit-headers.js';
