export {
  COMPLETED_RETENTION_JOBS,
  COMPLETED_RETENTION_SECONDS,
  DATA_LOSS_CHECK_MS_DEFAULT,
  FAILED_RETENTION_JOBS,
  FAILED_RETENTION_SECONDS,
  TENANT_QUEUED_MAX,
  JOB_ATTEMPTS_DEFAULT,
  JOB_ATTEMPTS_MAX,
  JOB_BACKOFF_MS,
  COUNT_TOKENS_JOB_NAME,
  MESSAGES_JOB_NAME,
  Producer,
  WAIT_MS_DEFAULT,
  createProducer,
  type AbandonOutcome,
  type CancelOutcome,
  type EnqueueOptions,
  type JobState,
  type JobView,
  type ProducerOptions,
  type QueueCounts,
  type WaitOptions,
} from './producer.js';
export {
  CALLER_GONE_REASON,
  CALLER_GONE_STATUS,
  DRAIN_TIMEOUT_MS_DEFAULT,
  JOB_UPSTREAM_EVENT,
  LOCK_DURATION_MS_DEFAULT,
  LOCK_LOST_REASON,
  MAX_STALLED_COUNT_DEFAULT,
  QueueWorker,
  SHUTDOWN_REASON,
  STALLED_INTERVAL_MS_DEFAULT,
  createWorker,
  type ClientForPriority,
  type MessagesClient,
  type WorkerEvents,
  type WorkerOptions,
} from './worker.js';
export {
  API_HEADER_LENGTH_MAX,
  API_HEADER_NAMES,
  JOB_DATA_VERSION,
  JOB_ROUTES,
  MAX_TOKENS_MAX,
  MESSAGES_MAX,
  MODEL_NAME_LENGTH_MAX,
  RequestBody,
  TENANT_PATTERN,
  apiHeadersSchema,
  countTokensParamsSchema,
  jobDataSchema,
  messageParamsSchema,
  modelsParamsSchema,
  parseJobData,
  validateMessageParams,
  type ApiHeaders,
  type CountTokensParams,
  type JobData,
  type JobRoute,
  type MessageParams,
  type ModelsParams,
  type ParsedJob,
} from './schema.js';
export { RELAYED_HEADER_PATTERN, decodeResult, jobResultSchema, relayedHeaders, upstreamMetaSchema, type JobResult, type UpstreamMeta } from './upstream.js';
export { IdempotencyConflictError, InvalidRequestError, JobLostError, JobWaitTimeoutError, QueueUnavailableError, TenantQueueFullError, UpstreamError, errorBodySchema, type ErrorBody } from './errors.js';
export { IDEMPOTENCY_KEY_LENGTH_MAX, JOB_ID_PATTERN, idempotentJobId, isJobId, randomJobId } from './job-ids.js';
export { RESERVE_GRACE_MS } from './tenant-cap.js';
export { NO_TENANT_LABEL, TENANT_SWEEP_BATCH, TENANT_SWEEP_INTERVAL_MS, pruneTenantJobs, readTenantCounts, sweepAllTenantJobs, sweepTenantJobs, trackRetriedTenantJobs, trackTenantJob, type TenantCount, type TenantCountKeys } from './tenant-counts.js';
export { NON_RETRYABLE_STATUSES, anthropicError, decodeFailure, describeFailure, encodeFailure, jobFailureSchema, statusType, type JobFailure } from './failure.js';
export { JOB_EVENTS_BLOCK_MS, JOB_EVENTS_TTL_MS, JOB_FAILED_EVENT, JobEventPublisher, readJobEvents, toJobEvent, type JobEvent } from './job-events.js';
export { QUEUE_NAME_PATTERN, queueKeys, type QueueKeys } from './keys.js';
export { bullmqPriority } from './priority.js';
export { REDIS_TIMEOUT_MS_DEFAULT, blockingConnection, commandConnection, isConnectionError, withDeadline, type OwnedRedis, type RedisInput } from './redis.js';
export { COUNT_TOKENS_LIMITER_SUFFIX, EnvError, MINUTE_MS, countTokensLimiterOptionsFromEnv, PORT_MAX, SECRET_ENV_VARIABLES, envInt, limiterOptionsFromEnv, parseEnv, redisFromEnv, requireLimit, tollgateEnvSchema, type EnvRedis, type TollgateEnv } from './env.js';
export { DeltaTracker, addFleetStats, readFleetStats, type FleetStats } from './fleet-stats.js';
export { ACCOUNT_LABELS, DEFAULT_POOL, FleetGauges, OTHER_TENANTS_LABEL, TENANT_SERIES_MAX, type FleetMetricsScope } from './fleet-metrics.js';
