// The public API of @tollgate/queue: what a user needs to enqueue, wait for and run Messages jobs. What only the
// Tollgate services share (env parsing, connections, key layout, event streams, metrics) is in './internal.ts'.
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
  LOCK_DURATION_MS_DEFAULT,
  LOCK_LOST_REASON,
  MAX_STALLED_COUNT_DEFAULT,
  QueueWorker,
  SHUTDOWN_REASON,
  STALLED_INTERVAL_MS_DEFAULT,
  WORKER_CONCURRENCY_MAX,
  createWorker,
  type ClientForPriority,
  type MessagesClient,
  type WorkerEvents,
  type WorkerOptions,
} from './worker.js';
export {
  API_HEADER_LENGTH_MAX,
  API_HEADER_NAMES,
  JOB_ROUTES,
  MAX_TOKENS_MAX,
  MESSAGES_MAX,
  MODEL_NAME_LENGTH_MAX,
  RequestBody,
  TENANT_PATTERN,
  validateMessageParams,
  type ApiHeaders,
  type CountTokensParams,
  type JobRoute,
  type MessageParams,
  type ModelsParams,
} from './schema.js';
export type { JobResult, UpstreamMeta } from './upstream.js';
export {
  IdempotencyConflictError,
  InvalidRequestError,
  JobLostError,
  JobWaitTimeoutError,
  QueueUnavailableError,
  TenantQueueFullError,
  UpstreamError,
  type ErrorBody,
} from './errors.js';
export { IDEMPOTENCY_KEY_LENGTH_MAX, JOB_ID_PATTERN, isJobId } from './job-ids.js';
export { errorCode, TENANT_BUDGET_EXCEEDED_CODE, type JobFailure } from './failure.js';
export {
  ACCOUNT_QUEUE_PATTERN,
  POOL_SEPARATOR,
  QUEUE_NAME_PATTERN,
  accountQueueName,
  isQueueName,
  parseQueueName,
  poolLessQueueName,
  poolQueueName,
  tenantQueueName,
  type QueueNameParts,
} from './keys.js';
export { accountQueueNames, jobQueueName, poolQueueNames, knownAccountQueueNames, queueFamily, queuedPools, registeredPoolQueues, tenantQueueNames } from './queue-names.js';
export { REDIS_TIMEOUT_MS_DEFAULT, type RedisInput } from './redis.js';
