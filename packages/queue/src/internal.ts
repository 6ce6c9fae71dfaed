/**
 * `@tollgate/queue/internal`: what the Tollgate services (gateway, worker) and the CLI share beyond the public API —
 * environment parsing, connection helpers, the key layout, job event streams, fleet metrics, the job encodings. Not
 * part of the public API: it may change in any release.
 */
export {
  COUNT_TOKENS_LIMITER_SUFFIX,
  EnvError,
  MINUTE_MS,
  PORT_MAX,
  SECRET_ENV_VARIABLES,
  countTokensLimiterOptionsFromEnv,
  envInt,
  joinFleetDocument,
  joinFleetDocumentLogged,
  limiterOptionsFromDocument,
  limiterOptionsFromEnv,
  parseEnv,
  configuredDocumentFromEnv,
  processDocumentFromEnv,
  type ConfiguredDocument,
  redisFromEnv,
  requireLimit,
  tollgateEnvSchema,
  type DocumentJoin,
  type DocumentJoinLog,
  type EnvRedis,
  type ProcessDocument,
  type TollgateEnv,
} from './env.js';
export { blockingConnection, commandConnection, deadlineOf, isConnectionError, withDeadline, type Deadline, type OwnedRedis } from './redis.js';
export { fleetStatsKey, queueKeys, type QueueKeys } from './keys.js';
export { JOB_EVENTS_BLOCK_MS, JOB_EVENTS_TTL_MS, JOB_FAILED_EVENT, JobEventPublisher, readJobEvents, toJobEvent, type JobEvent } from './job-events.js';
export { JOB_UPSTREAM_EVENT, setQueueConcurrency } from './worker.js';
export { RELAYED_HEADER_PATTERN, decodeResult, jobResultSchema, relayedHeaders, upstreamMetaSchema } from './upstream.js';
export { NON_RETRYABLE_STATUSES, anthropicError, decodeFailure, describeFailure, encodeFailure, jobFailureSchema, statusType } from './failure.js';
export {
  JOB_DATA_VERSION,
  apiHeadersSchema,
  countTokensParamsSchema,
  jobDataSchema,
  messageParamsSchema,
  modelsParamsSchema,
  parseJobData,
  type JobData,
  type ParsedJob,
} from './schema.js';
export { errorBodySchema } from './errors.js';
export { idempotentJobId, randomJobId } from './job-ids.js';
export { RESERVE_GRACE_MS } from './tenant-cap.js';
export { bullmqPriority } from './priority.js';
export { DeltaTracker, addFleetStats, readFleetStats, type FleetStats } from './fleet-stats.js';
export {
  ACCOUNT_LABELS,
  ALL_POOLS,
  DEFAULT_POOL,
  FleetGauges,
  OTHER_TENANTS_LABEL,
  TENANT_SERIES_MAX,
  TenantLabels,
  accountPool,
  bucketPool,
  poolViews,
  type FleetMetricsScope,
  type PoolView,
} from './fleet-metrics.js';
export {
  NO_TENANT_LABEL,
  TENANT_SWEEP_BATCH,
  TENANT_SWEEP_INTERVAL_MS,
  mergeTenantCounts,
  pruneTenantJobs,
  readTenantCounts,
  sweepAllTenantJobs,
  sweepTenantJobs,
  trackRetriedTenantJobs,
  trackTenantJob,
  type TenantCount,
  type TenantCountKeys,
} from './tenant-counts.js';
