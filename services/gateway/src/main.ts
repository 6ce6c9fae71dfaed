import { EnvError } from '@tollgate/queue/internal';
import { toError } from '@tollgate/limiter/internal';
import { pino } from 'pino';
import { buildGateway } from './app.js';
import { parseGatewayEnv } from './env.js';

/** Time allowed for closing on SIGTERM before the process exits anyway, in ms. */
const CLOSE_TIMEOUT_MS = 10_000;

/** The process entry: validate the environment, listen, print a ready line, close on SIGTERM/SIGINT. */
async function main(): Promise<void> {
  let env;
  try {
    env = parseGatewayEnv(process.env);
  } catch (error) {
    if (!(error instanceof EnvError)) throw error;
    process.stderr.write(`tollgate-gateway: invalid environment: ${error.message}\n`);
    process.exit(1);
  }
  const logger = pino({ level: env.LOG_LEVEL, base: { service: 'tollgate-gateway', pid: process.pid }, redact: ['req.headers.authorization', 'req.headers["x-api-key"]'] });
  const gateway = await buildGateway(env, logger);
  const urls = await gateway.listen();
  process.stdout.write(`${JSON.stringify({ event: 'ready', service: 'tollgate-gateway', pid: process.pid, ...urls })}\n`);
  const stop = (signal: NodeJS.Signals) => {
    logger.info({ signal }, 'shutting down');
    setTimeout(() => process.exit(1), CLOSE_TIMEOUT_MS).unref();
    gateway.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((error: unknown) => {
  process.stderr.write(`tollgate-gateway: failed to start: ${toError(error).message}\n`);
  process.exit(1);
});
