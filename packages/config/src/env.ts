import { validateLimitsDocument, type AccountLimits, type LimitsDocument, type PoolLimits } from './document.js';

/** The pool of a document built from the environment: every model, one set of limits. */
export const ENV_POOL_NAME = 'default';
/** The variable the worker reads its key from (`services/worker`'s env). */
export const ENV_API_KEY_VARIABLE = 'ANTHROPIC_API_KEY';
const MINUTE_MS = 60_000;

/**
 * The limit variables of `@tollgate/queue`'s `tollgateEnvSchema`, parsed (structurally: the worker's and the gateway's
 * parsed env both fit). `ANTHROPIC_BASE_URL` is the worker's; the gateway has none and gets the default.
 */
export interface LimitsEnv {
  TOLLGATE_NAME: string;
  TOLLGATE_CONCURRENCY?: number | undefined;
  TOLLGATE_RPM?: number | undefined;
  TOLLGATE_ITPM?: number | undefined;
  TOLLGATE_OTPM?: number | undefined;
  TOLLGATE_COUNT_TOKENS_RPM?: number | undefined;
  TOLLGATE_LEASE_TTL_MS?: number | undefined;
  ANTHROPIC_BASE_URL?: string | undefined;
}

/**
 * The environment shorthand as a document: one account named `TOLLGATE_NAME` (so its hash tag stays the one the
 * limiter uses today), one pool `default` for every model (`*`), and no tenants (the gateway's `GATEWAY_TOKENS` stay
 * its own). It states exactly what `limiterOptionsFromEnv` and `countTokensLimiterOptionsFromEnv` state.
 * @throws {@link InvalidConfigError} when the environment states no limit at all.
 */
export function documentFromEnv(env: LimitsEnv): LimitsDocument {
  const pool = {
    models: ['*'],
    ...(env.TOLLGATE_RPM === undefined ? {} : { rpm: env.TOLLGATE_RPM }),
    ...(env.TOLLGATE_ITPM === undefined ? {} : { itpm: env.TOLLGATE_ITPM }),
    ...(env.TOLLGATE_OTPM === undefined ? {} : { otpm: env.TOLLGATE_OTPM }),
  };
  const account = {
    apiKeyEnv: ENV_API_KEY_VARIABLE,
    ...(env.ANTHROPIC_BASE_URL === undefined ? {} : { baseUrl: env.ANTHROPIC_BASE_URL }),
    ...(env.TOLLGATE_CONCURRENCY === undefined ? {} : { concurrency: env.TOLLGATE_CONCURRENCY }),
    pools: { [ENV_POOL_NAME]: pool },
    ...(env.TOLLGATE_COUNT_TOKENS_RPM === undefined ? {} : { countTokens: { rpm: env.TOLLGATE_COUNT_TOKENS_RPM } }),
    ...(env.TOLLGATE_LEASE_TTL_MS === undefined ? {} : { leaseTtlMs: env.TOLLGATE_LEASE_TTL_MS }),
  };
  return validateLimitsDocument({ accounts: { [env.TOLLGATE_NAME]: account } }, 'the environment (TOLLGATE_*)');
}

/** One rate as `@tollgate/limiter`'s options spell it. */
export interface LimiterRate {
  limit: number;
  intervalMs: number;
  burst?: number;
}

/**
 * A pool's limits as limiter rates (`requests`, `inputTokens`, `outputTokens`, per minute, burst as capacity): the
 * buckets a limiter runs for this pool. Absent limits have no bucket.
 */
export function poolRates(pool: PoolLimits): Record<string, LimiterRate> {
  const rates: Record<string, LimiterRate> = {};
  const add = (dimension: string, limit: number | undefined, burst: number | undefined) => {
    if (limit !== undefined) rates[dimension] = { limit, intervalMs: MINUTE_MS, ...(burst === undefined ? {} : { burst }) };
  };
  add('requests', pool.rpm, pool.burst?.rpm);
  add('inputTokens', pool.itpm, pool.burst?.itpm);
  add('outputTokens', pool.otpm, pool.burst?.otpm);
  return rates;
}

/** An account's count_tokens limit as limiter rates (one `requests` rate), empty when it has none. */
export function countTokensRates(account: AccountLimits): Record<string, LimiterRate> {
  return account.countTokens === undefined
    ? {}
    : poolRates({ models: ['*'], rpm: account.countTokens.rpm, ...(account.countTokens.burst === undefined ? {} : { burst: { rpm: account.countTokens.burst } }) });
}
