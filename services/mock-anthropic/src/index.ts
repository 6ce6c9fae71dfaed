export { startMockAnthropic, type MockAnthropic } from './server.js';
export { apiKeyFingerprint } from './state.js';
export { REDACTED, type LoggedRequest } from './request-log.js';
export { displayName, modelInfo, type ModelInfo, type ModelsPage } from './models.js';
export type { MockStats, KeyStats, PoolStats, StatsWindow, TokenTotals } from './stats.js';
export type { LimitDimension, RateLimitKind } from './limits.js';
export {
  mockOptionsSchema,
  mockConfigSchema,
  limitsSchema,
  poolLimitsSchema,
  DEFAULT_POOL,
  latencySchema,
  faultsSchema,
  faultKindSchema,
  modelSchema,
  DEFAULT_MODELS,
  BODY_LIMIT_BYTES_DEFAULT,
  REQUEST_LOG_SIZE_DEFAULT,
  REQUEST_LOG_BODY_BYTES_MAX_DEFAULT,
  requestLogSchema,
  type MockOptions,
  type ResolvedMockOptions,
  type MockConfig,
  type MockConfigInput,
  type MockConfigPatch,
  type Limits,
  type PoolLimits,
  type Delay,
  type FaultKind,
  type Faults,
  type ModelSpec,
} from './options.js';
export { FAULT_HEADER } from './faults.js';
export { CHARS_PER_TOKEN, estimateInputTokens } from './tokens.js';
export { parseMockEnv, MockEnvError, MOCK_ENV_VARIABLES } from './env.js';
