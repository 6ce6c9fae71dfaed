import { DRAIN_TIMEOUT_MS_DEFAULT, LOCK_DURATION_MS_DEFAULT, STALLED_INTERVAL_MS_DEFAULT } from '@tollgate/queue';
import { PORT_MAX, envInt, parseEnv, requireLimit, tollgateEnvSchema } from '@tollgate/queue/internal';
import { z } from 'zod';

/** Jobs one worker process runs at once unless configured. */
export const WORKER_CONCURRENCY_DEFAULT = 16;
/** Prometheus' conventional exporter port range starts here. */
export const METRICS_PORT_DEFAULT = 9464;
/** At start, how long the worker keeps trying to reach Redis (and ready its limiter) before it gives up, in ms. */
export const WORKER_START_TIMEOUT_MS_DEFAULT = 120_000;

/** The worker's environment: the shared Tollgate variables plus the upstream and this process's knobs. */
export const workerEnvSchema = requireLimit(
  tollgateEnvSchema.extend({
    /** Required unless TOLLGATE_CONFIG names a document, whose account names its own key variable. */
    ANTHROPIC_API_KEY: z.string().min(1, 'required').optional(),
    ANTHROPIC_BASE_URL: z.url({ protocol: /^https?$/ }).default('https://api.anthropic.com'),
    WORKER_CONCURRENCY: envInt(1, 10_000).default(WORKER_CONCURRENCY_DEFAULT),
    /** 0 picks a free port (printed in the ready line). */
    METRICS_PORT: envInt(0, PORT_MAX).default(METRICS_PORT_DEFAULT),
    /** Where the metrics listen: this host only by default (a fleet's business data); compose widens it inside its network. */
    METRICS_HOST: z.string().min(1).default('127.0.0.1'),
    /** On SIGTERM, running calls get this long before they are aborted and handed back. */
    WORKER_DRAIN_TIMEOUT_MS: envInt(0, 60 * 60 * 1000).default(DRAIN_TIMEOUT_MS_DEFAULT),
    /** BullMQ lock of a running job; a dead worker's jobs are retried after about this long. */
    WORKER_LOCK_DURATION_MS: envInt(100, 10 * 60 * 1000).default(LOCK_DURATION_MS_DEFAULT),
    WORKER_STALLED_INTERVAL_MS: envInt(100, 10 * 60 * 1000).default(STALLED_INTERVAL_MS_DEFAULT),
    /** At start, a limiter that cannot be readied (Redis away or slow) is retried with backoff for this long; 0: one try. */
    WORKER_START_TIMEOUT_MS: envInt(0, 60 * 60 * 1000).default(WORKER_START_TIMEOUT_MS_DEFAULT),
    /**
     * How a Messages job's input tokens are reserved: 'local' (an estimate from the request) or 'count_tokens' (the
     * endpoint, each call under the account's count_tokens limiter when it has one; the local estimate when not in time).
     */
    WORKER_ESTIMATE: z.enum(['local', 'count_tokens']).default('local'),
    /**
     * The accounts of `TOLLGATE_CONFIG` this process runs, comma-separated (each key variable must be set). Unset: every
     * account of the document whose key variable is set here.
     */
    WORKER_ACCOUNTS: z
      .string()
      .regex(/^[A-Za-z0-9:._-]{1,200}(,[A-Za-z0-9:._-]{1,200})*$/, 'account names (letters, digits and :._-), comma-separated')
      .transform((list) => [...new Set(list.split(','))])
      .optional(),
  }),
).superRefine((env, context) => {
  if (env.ANTHROPIC_API_KEY === undefined && env.TOLLGATE_CONFIG === undefined) context.addIssue({ code: 'custom', path: ['ANTHROPIC_API_KEY'], message: 'required' });
  if (env.WORKER_ACCOUNTS !== undefined && env.TOLLGATE_CONFIG === undefined)
    context.addIssue({ code: 'custom', path: ['WORKER_ACCOUNTS'], message: 'names accounts of a limits document: set TOLLGATE_CONFIG too' });
});

export type WorkerEnv = z.output<typeof workerEnvSchema>;

/** @throws {@link EnvError} naming each bad variable (the API key's value is never shown). */
export function parseWorkerEnv(env: Readonly<Record<string, string | undefined>>): WorkerEnv {
  return parseEnv(workerEnvSchema, env);
}
