export { InvalidConfigError } from '@tollgate/limiter';
export {
  COUNT_TOKENS_LIMITER_SUFFIX,
  ENV_NAME_PATTERN,
  LIMIT_MAX,
  POOLS_MAX,
  POOL_MODELS_MAX,
  POOL_NAME_PATTERN,
  TENANT_NAME_PATTERN,
  WEIGHT_MAX,
  WEIGHT_MIN,
  accountOf,
  limitsDocumentSchema,
  validateLimitsDocument,
  type AccountLimits,
  type LimitsDocument,
  type LimitsDocumentInput,
  type PoolLimits,
  type TenantPolicy,
} from './document.js';
export { CONFIG_ENV, DOCUMENT_BYTES_MAX, DOCUMENT_FILE_NAME, documentSource, parseLimitsDocument, readLimitsDocument, type DocumentSource } from './load.js';
export { ENV_API_KEY_VARIABLE, ENV_POOL_NAME, countTokensRates, documentFromEnv, poolRates, type LimiterRate, type LimitsEnv } from './env.js';
export {
  MODEL_PATTERN_PATTERN,
  matchPool,
  patternConflicts,
  patternMatches,
  patternSpecificity,
  resolvePool,
  type PatternConflict,
  type PoolMatch,
  type PoolsSpec,
} from './pools.js';
export { canonicalDocument, describeDocumentChanges, diffLimitsDocuments, type DocumentChange } from './diff.js';
export {
  DOCUMENT_KEY,
  DOCUMENT_POLL_MS_DEFAULT,
  DocumentFollower,
  UNNAMED_TENANT_PRIORITY,
  readStoredDocument,
  servedPriority,
  storeLimitsDocument,
  type StoredDocument,
} from './store.js';
export { APPLY_LOCK_KEY, accountLimiters, applyLimitsDocument, type AccountLimiter, type AppliedDocument } from './apply.js';
