export { METRICS_PORT_DEFAULT, WORKER_CONCURRENCY_DEFAULT, parseWorkerEnv, workerEnvSchema, type WorkerEnv } from './env.js';
export { CLOSE_GRACE_MS, FLEET_STATS_INTERVAL_MS, createLogger, startWorkerService, type WorkerService } from './service.js';
export { ServiceMetrics } from './metrics.js';
export { startMetricsServer, type MetricsServerOptions, type Readiness } from './metrics-server.js';
