export { createLimiter, Limiter, TIMEOUT_MS_MAX, type AcquireOptions, type BucketSnapshot, type LimiterEvents, type LimiterSnapshot } from './limiter.js';
export { Permit, type Cost, type ReleaseOptions, type ReleaseResult } from './permit.js';
export {
  AcquireAbortedError,
  AcquireTimeoutError,
  BudgetExceededError,
  CostExceedsCapacityError,
  InvalidArgumentError,
  InvalidConfigError,
  InvalidCostError,
  LeaseLostError,
  LimiterClosedError,
  LimiterUnavailableError,
  TollgateError,
  isBudgetExceededError,
  type TollgateErrorCode,
} from './errors.js';
export {
  CONCURRENCY_MAX,
  HEARTBEAT_MS_DEFAULT,
  LEASE_TTL_MS_DEFAULT,
  PRIORITY_DEFAULT,
  PRIORITY_MAX,
  PRIORITY_MIN,
  POOL_NAME_PATTERN,
  POOLS_MAX,
  REDIS_TIMEOUT_MS_DEFAULT,
  GROUP_BUCKET_INTERVAL_MS_MAX,
  GROUP_BUCKETS_MAX,
  limiterOptionsSchema,
  type LimiterOptions,
  type RateOptions,
  type ResolvedLimiterOptions,
} from './options.js';
export { DATASETS_KEY, LIMITER_NAME_PATTERN, limiterKeys } from './keys.js';
export { limiterOptionsFor, limitsAsOptions, readFleetLimits, type FleetLimitsReading } from './fleet-limits.js';
export { fleetLimitsSchema, type FleetLimits, type FleetLimitsState } from './limits.js';
