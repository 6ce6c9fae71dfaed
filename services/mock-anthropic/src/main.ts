#!/usr/bin/env node
import { pino } from 'pino';
import { MockEnvError, parseMockEnv } from './env.js';
import type { MockOptions } from './options.js';
import { startMockAnthropic } from './server.js';

/** Longest wait for open streams to close on SIGTERM/SIGINT before the process exits anyway. */
const SHUTDOWN_DEADLINE_MS = 5_000;
const EXIT_CODE_BAD_CONFIG = 1;
const EXIT_CODE_SHUTDOWN_TIMEOUT = 1;

function readEnv(): MockOptions {
  try {
    return parseMockEnv(process.env);
  } catch (error) {
    if (!(error instanceof MockEnvError)) throw error;
    process.stderr.write(`mock-anthropic: ${error.message}\n`);
    process.exit(EXIT_CODE_BAD_CONFIG);
  }
}

const options = readEnv();
const logger = pino({ name: 'mock-anthropic', level: options.logLevel ?? 'info' });
// The server's own per-request logger stays quiet unless debugging was asked for.
const serverLogLevel = options.logLevel === 'debug' || options.logLevel === 'trace' ? options.logLevel : 'warn';
const mock = await startMockAnthropic({ ...options, logLevel: serverLogLevel });
logger.info({ url: mock.url, limits: options.limits ?? {}, faults: options.faults ?? {} }, 'mock-anthropic listening');
process.stdout.write(`listening on ${mock.url}\n`); // parent processes parse this line

function shutdown(signal: NodeJS.Signals): void {
  logger.info({ signal }, 'mock-anthropic shutting down');
  setTimeout(() => process.exit(EXIT_CODE_SHUTDOWN_TIMEOUT), SHUTDOWN_DEADLINE_MS).unref();
  void mock.close().then(() => process.exit(0));
}
process.once('SIGTERM', shutdown);
process.once('SIGINT', shutdown);
