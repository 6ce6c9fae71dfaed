import {
  COUNT_TOKENS_LIMITER_SUFFIX,
  accountLimiters,
  describeDocumentChanges,
  diffLimitsDocuments,
  readLimitsDocument,
  readStoredDocument,
  storeLimitsDocument,
  type LimitsDocument,
} from '@tollgate/config';
import { InvalidConfigError, LIMITER_NAME_PATTERN, limiterOptionsFor, type LimiterOptions } from '@tollgate/limiter';
import { toError } from '@tollgate/limiter/internal';
import { z } from 'zod';
import { Cluster, Redis } from 'ioredis';
import { QUEUE_NAME_PATTERN } from './keys.js';
import type { RedisInput } from './redis.js';

/** One minute: the interval of the RPM / ITPM / OTPM limits. */
export const MINUTE_MS = 60_000;
export const PORT_MAX = 65_535;
/** Variables never echoed in an error message. */
export const SECRET_ENV_VARIABLES: ReadonlySet<string> = new Set(['ANTHROPIC_API_KEY', 'GATEWAY_TOKENS', 'GATEWAY_ADMIN_TOKEN', 'GATEWAY_METRICS_TOKEN']);

/** A whole number in an environment variable. */
export const envInt = (min: number, max: number = Number.MAX_SAFE_INTEGER) => z.coerce.number().int().min(min).max(max);

/**
 * The variables every Tollgate service reads: Redis, the queue, and the limiter's fleet-wide limits (the gateway
 * needs them to read the limiter's state). At least one limit must be set.
 */
export const tollgateEnvSchema = z.object({
  REDIS_URL: z
    .string()
    .regex(/^rediss?:\/\/\S+$/, 'expected a redis:// or rediss:// URL')
    .default('redis://127.0.0.1:6379'),
  /** Redis Cluster seed nodes, `host:port,host:port`; when set it replaces `REDIS_URL`. */
  REDIS_CLUSTER_NODES: z
    .string()
    .regex(/^[^,\s:]+:\d{1,5}(,[^,\s:]+:\d{1,5})*$/, 'expected host:port,host:port')
    .optional(),
  TOLLGATE_NAME: z.string().regex(LIMITER_NAME_PATTERN, 'letters, digits and :._- only, 1 to 200 characters').default('anthropic'),
  TOLLGATE_QUEUE: z.string().regex(QUEUE_NAME_PATTERN, 'letters, digits and ._- only, 1 to 100 characters').default('messages'),
  /** Fleet-wide requests in flight. */
  TOLLGATE_CONCURRENCY: envInt(1, 100_000).optional(),
  /** Requests per minute. */
  TOLLGATE_RPM: envInt(1).optional(),
  /** Input tokens per minute. */
  TOLLGATE_ITPM: envInt(1).optional(),
  /** Output tokens per minute. */
  TOLLGATE_OTPM: envInt(1).optional(),
  /** count_tokens requests per minute, fleet-wide: their own limit, apart from the Messages RPM. Unset: only the upstream limits them. */
  TOLLGATE_COUNT_TOKENS_RPM: envInt(1).optional(),
  /** A dead process's permits come back after this long (small in tests). */
  TOLLGATE_LEASE_TTL_MS: envInt(500, 10 * MINUTE_MS).optional(),
  TOLLGATE_HEARTBEAT_MS: envInt(50, 10 * MINUTE_MS).optional(),
  /**
   * `1`: this process writes its limits as the fleet's at start (DESIGN §8). Unset or `0`: it writes
   * them only when Redis has none (first boot) and otherwise runs with the fleet's, warning about any difference.
   */
  TOLLGATE_APPLY_LIMITS: z.enum(['0', '1'], { message: 'expected 0 or 1' }).optional(),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /**
   * A fleet limits document (DESIGN §8, docs/limits-document.md): this process runs the account named `TOLLGATE_NAME`
   * (or the document's only account) with the document's limits, and the `TOLLGATE_*` limit variables are not read.
   */
  TOLLGATE_CONFIG: z.string().min(1).optional(),
});

export type TollgateEnv = z.infer<typeof tollgateEnvSchema>;

/** A variable that is missing or wrong; the message names it (and its value, unless it is a secret). Code `INVALID_CONFIG`. */
export class EnvError extends InvalidConfigError {}

/**
 * Parses the environment with `schema`.
 * @throws {@link EnvError} with one line per bad variable, e.g. `TOLLGATE_RPM="abc" is invalid: expected number, received NaN`.
 */
export function parseEnv<Schema extends z.ZodType>(schema: Schema, env: Readonly<Record<string, string | undefined>>): z.output<Schema> {
  const result = schema.safeParse(env);
  if (result.success) return result.data;
  const lines = result.error.issues.map((issue) => {
    const name = String(issue.path[0] ?? '(environment)');
    const raw = env[name];
    const shown = raw === undefined ? 'unset' : SECRET_ENV_VARIABLES.has(name) ? '"***"' : JSON.stringify(raw.replace(/\/\/[^@/]*@/, '//***@'));
    return `${name}=${shown} is invalid: ${issue.message}`;
  });
  throw new EnvError(lines.join('; '));
}

/** Adds the "at least one limit" rule to a schema built on {@link tollgateEnvSchema}. */
export function requireLimit<Schema extends z.ZodType<TollgateEnv>>(schema: Schema) {
  return schema.superRefine((env, context) => {
    if (env.TOLLGATE_CONFIG !== undefined) return; // the document states the limits
    if ([env.TOLLGATE_CONCURRENCY, env.TOLLGATE_RPM, env.TOLLGATE_ITPM, env.TOLLGATE_OTPM].every((value) => value === undefined)) {
      context.addIssue({ code: 'custom', path: ['TOLLGATE_CONCURRENCY'], message: 'set at least one of TOLLGATE_CONCURRENCY, TOLLGATE_RPM, TOLLGATE_ITPM, TOLLGATE_OTPM' });
    }
  });
}

/** The Redis a service talks to: `REDIS_URL`, or a Cluster client when `REDIS_CLUSTER_NODES` is set. */
export interface EnvRedis {
  /** What to hand to the limiter, the producer and the worker. */
  input: RedisInput;
  /** Closes the Cluster client this opened (a URL opens nothing here). */
  close(): void;
}

/**
 * Opens what the environment names. A Cluster client is shared by the limiter and the queue; its commands wait for a
 * reconnect (`maxRetriesPerRequest: null`, as BullMQ's blocking reads require), so the callers' own deadlines
 * (`redisTimeoutMs`) are what fail fast.
 */
export function redisFromEnv(env: TollgateEnv): EnvRedis {
  if (env.REDIS_CLUSTER_NODES === undefined) return { input: env.REDIS_URL, close: () => {} };
  const nodes = env.REDIS_CLUSTER_NODES.split(',').map((node) => {
    const [host = '', port = ''] = node.split(':');
    return { host, port: Number(port) };
  });
  const cluster = new Cluster(nodes, { redisOptions: { maxRetriesPerRequest: null } });
  cluster.on('error', () => {}); // every caller handles its own failures; an unhandled 'error' would crash the process
  return { input: cluster, close: () => cluster.disconnect() };
}

/**
 * The limiter options the environment describes. They become the fleet's limits only on first boot or
 * with `TOLLGATE_APPLY_LIMITS=1`; a process whose environment differs runs with the fleet's.
 */
export function limiterOptionsFromEnv(env: TollgateEnv, redis: RedisInput = env.REDIS_URL): LimiterOptions {
  const perMinute = (limit: number | undefined) => (limit === undefined ? undefined : { limit, intervalMs: MINUTE_MS });
  const rates = Object.fromEntries(
    Object.entries({ requests: perMinute(env.TOLLGATE_RPM), inputTokens: perMinute(env.TOLLGATE_ITPM), outputTokens: perMinute(env.TOLLGATE_OTPM) }).filter(
      ([, rate]) => rate !== undefined,
    ),
  ) as Record<string, { limit: number; intervalMs: number }>;
  return {
    redis,
    name: env.TOLLGATE_NAME,
    ...(env.TOLLGATE_CONCURRENCY === undefined ? {} : { concurrency: env.TOLLGATE_CONCURRENCY }),
    ...(Object.keys(rates).length === 0 ? {} : { rates }),
    ...(env.TOLLGATE_LEASE_TTL_MS === undefined ? {} : { leaseTtlMs: env.TOLLGATE_LEASE_TTL_MS }),
    ...(env.TOLLGATE_HEARTBEAT_MS === undefined ? {} : { heartbeatMs: env.TOLLGATE_HEARTBEAT_MS }),
    ...(env.TOLLGATE_APPLY_LIMITS === '1' ? { applyLimits: 'force' as const } : {}),
  };
}

/** The count_tokens limiter is a second limiter named after the Messages one, with this suffix (spelled in @tollgate/config). */
export { COUNT_TOKENS_LIMITER_SUFFIX };

/** The count_tokens limiter's options (one `requests` rate, no concurrency), or undefined when `TOLLGATE_COUNT_TOKENS_RPM` is unset. */
export function countTokensLimiterOptionsFromEnv(env: TollgateEnv, redis: RedisInput = env.REDIS_URL): LimiterOptions | undefined {
  if (env.TOLLGATE_COUNT_TOKENS_RPM === undefined) return undefined;
  return {
    redis,
    name: `${env.TOLLGATE_NAME}${COUNT_TOKENS_LIMITER_SUFFIX}`,
    rates: { requests: { limit: env.TOLLGATE_COUNT_TOKENS_RPM, intervalMs: MINUTE_MS } },
    ...(env.TOLLGATE_LEASE_TTL_MS === undefined ? {} : { leaseTtlMs: env.TOLLGATE_LEASE_TTL_MS }),
    ...(env.TOLLGATE_HEARTBEAT_MS === undefined ? {} : { heartbeatMs: env.TOLLGATE_HEARTBEAT_MS }),
  };
}

/** The limits document a process states in `TOLLGATE_CONFIG`, and the account of it that the process runs. */
export interface ProcessDocument {
  document: LimitsDocument;
  account: string;
  path: string;
}

/** `TOLLGATE_CONFIG`'s document, and the account a process runs by default there (undefined: none named, several). */
export interface ConfiguredDocument {
  document: LimitsDocument;
  path: string;
  /** `TOLLGATE_NAME` when the document has that account, else the document's only account. */
  defaultAccount: string | undefined;
}

/**
 * Reads `TOLLGATE_CONFIG`; undefined when it is unset (the `TOLLGATE_*` variables are the shorthand then).
 * @throws {@link InvalidConfigError} naming the file and each bad field.
 */
export async function configuredDocumentFromEnv(env: TollgateEnv): Promise<ConfiguredDocument | undefined> {
  const path = env.TOLLGATE_CONFIG;
  if (path === undefined) return undefined;
  const document = await readLimitsDocument(path);
  const names = Object.keys(document.accounts);
  const defaultAccount = Object.hasOwn(document.accounts, env.TOLLGATE_NAME) ? env.TOLLGATE_NAME : names.length === 1 ? names[0] : undefined;
  return { document, path, defaultAccount };
}

/**
 * Reads `TOLLGATE_CONFIG`; undefined when it is unset (the `TOLLGATE_*` variables are the shorthand then).
 * @throws {@link InvalidConfigError} naming the file and each bad field; {@link EnvError} when `TOLLGATE_NAME` names no
 * account of a document with several.
 */
export async function processDocumentFromEnv(env: TollgateEnv): Promise<ProcessDocument | undefined> {
  const configured = await configuredDocumentFromEnv(env);
  if (configured === undefined) return undefined;
  const { document, path, defaultAccount } = configured;
  if (defaultAccount === undefined) {
    const names = Object.keys(document.accounts);
    throw new EnvError(`TOLLGATE_NAME=${JSON.stringify(env.TOLLGATE_NAME)} names no account of ${path} (accounts: ${names.join(', ')}): set it to the account this process runs`);
  }
  return { document, account: defaultAccount, path };
}

/** The limiters of the process's account (Messages, and count_tokens when the account limits it), from its document. */
export function limiterOptionsFromDocument(
  source: ProcessDocument,
  env: TollgateEnv,
  redis: RedisInput = env.REDIS_URL,
): { messages: LimiterOptions; countTokens: LimiterOptions | undefined } {
  const own = accountLimiters(source.document).filter((limiter) => limiter.account === source.account);
  const options = (name: string): LimiterOptions | undefined => {
    const limiter = own.find((entry) => entry.name === name);
    if (limiter === undefined) return undefined;
    return {
      ...limiterOptionsFor(limiter.limits, redis as never, name),
      redis,
      ...(env.TOLLGATE_HEARTBEAT_MS === undefined ? {} : { heartbeatMs: env.TOLLGATE_HEARTBEAT_MS }),
      ...(env.TOLLGATE_APPLY_LIMITS === '1' ? { applyLimits: 'force' as const } : {}),
    };
  };
  const messages = options(source.account);
  if (messages === undefined) throw new EnvError(`account ${source.account} of ${source.path} has no limiter`);
  return { messages, countTokens: options(`${source.account}${COUNT_TOKENS_LIMITER_SUFFIX}`) };
}

/** How a process's document compares with the fleet's stored one. */
export type DocumentJoin = { kind: 'stored'; revision: number } | { kind: 'same'; revision: number } | { kind: 'differs'; revision: number; differences: string[] };

/**
 * Joins the fleet's limits document (DESIGN §8): on first boot (none stored) stores the process's own; otherwise
 * leaves the stored one alone and says how it differs, for one warning. Only `tollgate limits apply` changes it.
 */
export async function joinFleetDocument(redis: RedisInput, source: ProcessDocument): Promise<DocumentJoin> {
  const client = typeof redis === 'string' ? new Redis(redis, { lazyConnect: true, maxRetriesPerRequest: 1 }) : redis;
  try {
    const stored = await storeLimitsDocument(client, source.document, { ifAbsent: true });
    if (stored.changed) return { kind: 'stored', revision: stored.revision };
    const fleet = await readStoredDocument(client);
    if (fleet === undefined || fleet.hash === stored.hash) return { kind: 'same', revision: stored.revision };
    return { kind: 'differs', revision: fleet.revision, differences: describeDocumentChanges(diffLimitsDocuments(fleet.document, source.document)) };
  } finally {
    if (client !== redis) client.disconnect();
  }
}

/** What {@link joinFleetDocumentLogged} logs through: a pino logger fits. */
export interface DocumentJoinLog {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
}

/**
 * {@link joinFleetDocument} at a process's start, logged: one warning listing the differences when the process's
 * document differs from the fleet's; a failure is logged, not thrown (the limiters run with the fleet limits they have).
 */
export async function joinFleetDocumentLogged(redis: RedisInput, source: ProcessDocument, log: DocumentJoinLog): Promise<void> {
  try {
    const joined = await joinFleetDocument(redis, source);
    if (joined.kind === 'differs') {
      log.warn(
        { revision: joined.revision, differences: joined.differences },
        `TOLLGATE_CONFIG (${source.path}) differs from the fleet's limits document (revision ${joined.revision}); this process runs with the fleet's: ${joined.differences.join('; ')}`,
      );
    } else log.info({ revision: joined.revision, stored: joined.kind === 'stored' }, 'limits document joined');
  } catch (error) {
    const cause = toError(error);
    log.warn({ err: { name: cause.name, message: cause.message } }, 'the fleet limits document could not be read or stored; the limiters run with the fleet limits they have');
  }
}
