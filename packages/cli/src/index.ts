export { REDIS_TIMEOUT_MS_DEFAULT, WATCH_INTERVAL_MS_DEFAULT, helpText, runCli, type CliIo } from './cli.js';
export { CliError, EXIT, type ExitCode } from './errors.js';
export { DURATION_MS_MAX, durationSchema, formatDuration } from './duration.js';
export { diffLimits, documentOf, limitsFile, limitsFileSchema, type LimitChange, type LimitsFile } from './limits.js';
export { renderStatus, type FleetStatus, type LimiterStatus } from './status.js';
