import { EnvError } from '@tollgate/queue/internal';
import { toError } from '@tollgate/limiter/internal';
import { parseWorkerEnv } from './env.js';
import { CLOSE_GRACE_MS, createLogger, startWorkerService } from './service.js';

/** The process entry: validate the environment, start, print a ready line, drain on SIGTERM/SIGINT. */
async function main(): Promise<void> {
  let env;
  try {
    env = parseWorkerEnv(process.env);
  } catch (error) {
    if (!(error instanceof EnvError)) throw error;
    process.stderr.write(`tollgate-worker: invalid environment: ${error.message}\n`);
    process.exit(1);
  }
  const logger = createLogger(env.LOG_LEVEL);
  const service = await startWorkerService(env, logger);
  // One JSON line a supervisor or test can wait for, whatever the log level.
  process.stdout.write(`${JSON.stringify({ event: 'ready', service: 'tollgate-worker', pid: process.pid, metricsUrl: service.metricsUrl })}\n`);
  const stop = (signal: NodeJS.Signals) => {
    logger.info({ signal }, 'shutting down');
    // a close that hangs (Redis gone for good) must not keep the process alive past the drain window
    setTimeout(() => process.exit(1), env.WORKER_DRAIN_TIMEOUT_MS + CLOSE_GRACE_MS).unref();
    service.close().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: { name: toError(error).name, message: toError(error).message } }, 'close failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((error: unknown) => {
  process.stderr.write(`tollgate-worker: failed to start: ${toError(error).message}\n`);
  process.exit(1);
});
