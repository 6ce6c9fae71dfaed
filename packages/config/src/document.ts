import { CONCURRENCY_MAX, InvalidConfigError, LEASE_TTL_MS_DEFAULT, LIMITER_NAME_PATTERN, PRIORITY_MAX, PRIORITY_MIN } from '@tollgate/limiter';
import { describeZodError, formatValue } from '@tollgate/limiter/internal';
import { z } from 'zod';
import { MODEL_PATTERN_PATTERN, patternConflicts } from './pools.js';

/** Largest limit the document accepts (a per-minute rate, a capacity, a budget). */
export const LIMIT_MAX = 1_000_000_000_000;
/** Largest tenant weight: a share is weight / (sum of weights), so a wider range says nothing more. */
export const WEIGHT_MAX = 1_000;
/** The limiter of an account's count_tokens calls: the account's name and this suffix (its own hash tag). */
export const COUNT_TOKENS_LIMITER_SUFFIX = ':count-tokens';
/** An account with `countTokens` runs that second limiter, whose name is a limiter name too (200 characters at most). */
const ACCOUNT_NAME_WITH_COUNT_TOKENS_MAX = 200 - COUNT_TOKENS_LIMITER_SUFFIX.length;
/** Smallest tenant weight: with {@link WEIGHT_MAX}, shares from 1 to 10^6 apart; a weight such as 5e-324 would make a fair-queuing tag step (cost / weight) infinite. */
export const WEIGHT_MIN = 0.001;
/** Model patterns one pool may list. */
export const POOL_MODELS_MAX = 100;
/** Pools one account may have: the pump looks at every pool's head on each call (DESIGN §9), so keep it a handful. */
export const POOLS_MAX = 32;
/** The limiter's own lease bounds (its options schema; not exported by `@tollgate/limiter`). */
export const LEASE_TTL_MS_MIN = 500;
export const LEASE_TTL_MS_MAX = 10 * 60 * 1000;
/**
 * A pool name goes into Redis keys after the account's hash tag (`{tollgate:<account>}:pool:<pool>:…`): letters,
 * digits, `._-` only (no `:`, no braces), 1 to 64 characters.
 */
export const POOL_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** Tenant names as the gateway and the queue spell them (`@tollgate/queue`'s TENANT_PATTERN). */
export const TENANT_NAME_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;
/** A variable name a key or token is read from (never the key or token itself). */
export const ENV_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;

const perMinute = z.number().int().min(1).max(LIMIT_MAX);
const tokens = perMinute; // a budget: the same bounds, tokens per day or month
const envName = z.string().regex(ENV_NAME_PATTERN, 'expected the name of an environment variable (letters, digits, _), not its value');

/** A bucket's capacity per dimension (the largest burst); each defaults to its per-minute limit [INF]. */
const burstSchema = z.strictObject({ rpm: perMinute.optional(), itpm: perMinute.optional(), otpm: perMinute.optional() });

/** One model pool: Anthropic meters RPM, ITPM and OTPM per pool (anthropic-api.md §3). Each limit is off when absent. */
export const poolSchema = z.strictObject({
  /** Glob patterns of model ids (`*` matches any run of characters, nothing else is special). */
  models: z
    .array(z.string().regex(MODEL_PATTERN_PATTERN, 'a model pattern is letters, digits, ._:@/- and * (any run of characters), 1 to 200 characters'))
    .min(1)
    .max(POOL_MODELS_MAX),
  /** Messages requests per minute. */
  rpm: perMinute.optional(),
  /** Input tokens per minute (`input_tokens + cache_creation_input_tokens`). */
  itpm: perMinute.optional(),
  /** Output tokens per minute. */
  otpm: perMinute.optional(),
  burst: burstSchema.optional(),
});

const recordError = (what: string, pattern: string) => (issue: { code: string }) => (issue.code === 'invalid_key' ? `${what} must match ${pattern}` : undefined);

export const accountSchema = z.strictObject({
  /** The variable holding the API key on the workers; the key itself is never in the document or in Redis. */
  apiKeyEnv: envName,
  baseUrl: z.url({ protocol: /^https?$/ }).default('https://api.anthropic.com'),
  /** Requests in flight across every pool of the account; absent: no limit. */
  concurrency: z.number().int().min(1).max(CONCURRENCY_MAX).optional(),
  pools: z
    .record(z.string().regex(POOL_NAME_PATTERN), poolSchema, { error: recordError('a pool name', 'letters, digits and ._- (no ":" or braces), 1 to 64 characters') })
    .refine((pools) => Object.keys(pools).length >= 1, 'at least one pool')
    .refine((pools) => Object.keys(pools).length <= POOLS_MAX, `at most ${POOLS_MAX} pools`),
  /** A model that matches no pattern goes to this pool; absent: such a model is refused. */
  defaultPool: z.string().optional(),
  /** count_tokens has its own RPM, apart from every Messages limit; absent: only the upstream limits it. */
  countTokens: z.strictObject({ rpm: perMinute, burst: perMinute.optional() }).optional(),
  /** Redis expires a dead process's permits after this long; every process heartbeats by it (DESIGN §8). */
  leaseTtlMs: z.number().int().min(LEASE_TTL_MS_MIN).max(LEASE_TTL_MS_MAX).default(LEASE_TTL_MS_DEFAULT),
});

/**
 * A tenant's budgets (DESIGN §9): each a bucket of the account limiter's group for the tenant, of capacity the budget,
 * refilled continuously at the budget per day (per 30 days for a month's), checked in the same decision as the account's
 * concurrency and the pool's buckets; a call it cannot cover fails at once (HTTP 429, `tenant_budget_exceeded`).
 */
const budgetsSchema = z.strictObject({
  inputTokensPerDay: tokens.optional(),
  outputTokensPerDay: tokens.optional(),
  inputTokensPerMonth: tokens.optional(),
  outputTokensPerMonth: tokens.optional(),
  /** Messages calls per day (every attempt that takes a permit counts). */
  requestsPerDay: tokens.optional(),
});

export const tenantSchema = z.strictObject({
  /** The variable holding this tenant's gateway token. */
  tokenEnv: envName,
  /** The account its calls use. */
  account: z.string(),
  /** Its share of what is free, against the other tenants of the account (start-time fair queuing, DESIGN §9). */
  weight: z.number().min(WEIGHT_MIN).max(WEIGHT_MAX).default(1),
  /** The most urgent priority it may ask for (0 is the most urgent); asking for more is clamped. */
  maxPriority: z.number().int().min(PRIORITY_MIN).max(PRIORITY_MAX).default(PRIORITY_MIN),
  /** Its own cap on requests in flight. */
  concurrency: z.number().int().min(1).max(CONCURRENCY_MAX).optional(),
  budgets: budgetsSchema.optional(),
});

/** The fleet limits document (DESIGN §8), after defaults. */
export const limitsDocumentSchema = z
  .strictObject({
    accounts: z
      .record(z.string().regex(LIMITER_NAME_PATTERN), accountSchema, { error: recordError('an account name', 'letters, digits and :._-, 1 to 200 characters') })
      .refine((accounts) => Object.keys(accounts).length >= 1, 'at least one account'),
    tenants: z.record(z.string().regex(TENANT_NAME_PATTERN), tenantSchema, { error: recordError('a tenant name', 'letters, digits and ._-, 1 to 64 characters') }).default({}),
  })
  .superRefine((document, context) => {
    const apiKeyEnvs = new Set<string>();
    const keyOwner = new Map<string, string>(); // key variable + upstream -> account
    for (const [accountName, account] of Object.entries(document.accounts)) {
      const at = ['accounts', accountName];
      apiKeyEnvs.add(account.apiKeyEnv);
      // one key at one upstream is one set of limits: two accounts for it would each spend all of it
      const upstreamKey = `${account.apiKeyEnv} ${new URL(account.baseUrl).href}`; // href: `https://x` and `https://x/` are one upstream
      const sameKey = keyOwner.get(upstreamKey);
      if (sameKey !== undefined)
        context.addIssue({ code: 'custom', path: [...at, 'apiKeyEnv'], message: `account ${sameKey} uses the same key at the same baseUrl; one key is one account` });
      else keyOwner.set(upstreamKey, accountName);
      for (const conflict of patternConflicts(account.pools)) {
        const where = conflict.firstPool === conflict.pool ? 'twice in this pool' : `also in pool ${conflict.firstPool}`;
        context.addIssue({
          code: 'custom',
          path: [...at, 'pools', conflict.pool, 'models', conflict.index],
          message: `a model pattern belongs to one pool of an account; it is ${where}`,
        });
      }
      let limited = account.concurrency !== undefined;
      for (const [poolName, pool] of Object.entries(account.pools)) {
        for (const dimension of ['rpm', 'itpm', 'otpm'] as const) {
          if (pool.burst?.[dimension] !== undefined && pool[dimension] === undefined) {
            context.addIssue({ code: 'custom', path: [...at, 'pools', poolName, 'burst', dimension], message: `a burst needs the pool's ${dimension}` });
          }
        }
        if (pool.rpm !== undefined || pool.itpm !== undefined || pool.otpm !== undefined) limited = true;
      }
      if (account.defaultPool !== undefined && !Object.hasOwn(account.pools, account.defaultPool)) {
        context.addIssue({ code: 'custom', path: [...at, 'defaultPool'], message: `not a pool of account ${accountName} (pools: ${Object.keys(account.pools).join(', ')})` });
      }
      if (!limited) context.addIssue({ code: 'custom', path: [...at, 'concurrency'], message: 'set concurrency, a pool limit (rpm, itpm, otpm), or both' });
      // another account's count_tokens limiter is named `<account>:count-tokens`: an account of that name would share its Redis keys
      if (accountName.endsWith(COUNT_TOKENS_LIMITER_SUFFIX))
        context.addIssue({
          code: 'custom',
          path: [...at],
          message: `an account name may not end in ${COUNT_TOKENS_LIMITER_SUFFIX} (the name of an account's count_tokens limiter)`,
        });
      // its count_tokens limiter is named `<account>:count-tokens`, which must still be a limiter name
      if (account.countTokens !== undefined && accountName.length > ACCOUNT_NAME_WITH_COUNT_TOKENS_MAX)
        context.addIssue({
          code: 'custom',
          path: [...at, 'countTokens'],
          message: `needs an account name of at most ${ACCOUNT_NAME_WITH_COUNT_TOKENS_MAX} characters (its limiter is named <account>:count-tokens)`,
        });
    }
    const tokenOwner = new Map<string, string>();
    for (const [tenantName, tenant] of Object.entries(document.tenants)) {
      const at = ['tenants', tenantName];
      if (!Object.hasOwn(document.accounts, tenant.account)) {
        context.addIssue({ code: 'custom', path: [...at, 'account'], message: `not an account of this document (accounts: ${Object.keys(document.accounts).join(', ')})` });
      }
      const first = tokenOwner.get(tenant.tokenEnv);
      if (first !== undefined) context.addIssue({ code: 'custom', path: [...at, 'tokenEnv'], message: `tenant ${first} reads its token from the same variable` });
      else tokenOwner.set(tenant.tokenEnv, tenantName);
      // a tenant token in an API key's variable would hand the tenant the key
      if (apiKeyEnvs.has(tenant.tokenEnv))
        context.addIssue({ code: 'custom', path: [...at, 'tokenEnv'], message: "is an account's apiKeyEnv; a tenant token and an API key never share a variable" });
    }
  });

/** What a `tollgate.yaml` may say (defaults omitted). */
export type LimitsDocumentInput = z.input<typeof limitsDocumentSchema>;
/** A validated document, after defaults. */
export type LimitsDocument = z.output<typeof limitsDocumentSchema>;
export type AccountLimits = LimitsDocument['accounts'][string];
export type PoolLimits = z.output<typeof poolSchema>;
export type TenantPolicy = LimitsDocument['tenants'][string];

/**
 * Validates a whole document: every bad field is named with its path and value (values cut, passwords in URLs
 * masked), unknown keys are refused, and nothing of a bad document is used.
 * @param source - where it came from, for the message (a path, `TOLLGATE_CONFIG`, `the environment`).
 * @throws {@link InvalidConfigError} e.g. `tollgate.yaml is invalid: accounts.main.pools.haiku.rpm: Too small: expected number to be >=1 (got 0)`.
 */
export function validateLimitsDocument(value: unknown, source = 'the limits document'): LimitsDocument {
  const result = limitsDocumentSchema.safeParse(value);
  const named = prototypeKeys(value).map((path) => `${path}: "__proto__" is not a name (got ${formatValue(valueAt(value, path.split('.')))})`);
  if (!result.success) throw new InvalidConfigError(`${source} is invalid: ${[...named, describeZodError(result.error, value)].join('; ')}`, { cause: result.error });
  if (named.length > 0) throw new InvalidConfigError(`${source} is invalid: ${named.join('; ')}`);
  return result.data;
}

const ownValue = (value: unknown, key: string): unknown =>
  value !== null && typeof value === 'object' && Object.hasOwn(value, key) ? (value as Record<string, unknown>)[key] : undefined;
const valueAt = (value: unknown, path: readonly string[]): unknown => path.reduce(ownValue, value);

/**
 * Where the document names an account, a pool or a tenant `__proto__`: zod drops such a key from a record without
 * checking it (a plain object cannot hold it), so that account, pool or tenant would vanish, its references unchecked.
 */
function prototypeKeys(value: unknown): string[] {
  const accounts = ownValue(value, 'accounts');
  const paths = ['accounts', 'tenants'].filter((section) => Object.hasOwn(Object(ownValue(value, section)), '__proto__')).map((section) => `${section}.__proto__`);
  for (const name of accounts !== null && typeof accounts === 'object' ? Object.keys(accounts) : []) {
    if (Object.hasOwn(Object(ownValue(ownValue(accounts, name), 'pools')), '__proto__')) paths.push(`accounts.${name}.pools.__proto__`);
  }
  return paths;
}

/** The account a caller names, or the only account when it names none. */
export function accountOf(document: LimitsDocument, name?: string): { name: string; account: AccountLimits } {
  const names = Object.keys(document.accounts);
  const chosen = name ?? (names.length === 1 ? names[0] : undefined);
  if (chosen === undefined) throw new InvalidConfigError(`the limits document has ${names.length} accounts (${names.join(', ')}); name one`);
  const account = Object.hasOwn(document.accounts, chosen) ? document.accounts[chosen] : undefined;
  if (account === undefined) throw new InvalidConfigError(`account ${formatValue(chosen)} is not in the limits document (accounts: ${names.join(', ')})`);
  return { name: chosen, account };
}
