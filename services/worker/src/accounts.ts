import { createHash } from 'node:crypto';
import type { LimiterOptions } from '@tollgate/limiter';
import { accountQueueName } from '@tollgate/queue';
import {
  EnvError,
  countTokensLimiterOptionsFromEnv,
  limiterOptionsFromDocument,
  limiterOptionsFromEnv,
  type ConfiguredDocument,
  type ProcessDocument,
} from '@tollgate/queue/internal';
import type { RedisInput } from '@tollgate/queue';
import type { WorkerEnv } from './env.js';

/** One account a worker process runs: its key, its upstream, its limiters and the queues whose jobs it takes. */
export interface AccountPlan {
  name: string;
  apiKey: string;
  baseURL: string;
  messages: LimiterOptions;
  countTokens: LimiterOptions | undefined;
  /**
   * The account's own queue (`<queue>@<account>`: jobs that name it), and first the plain queue when this is the
   * process's default account (jobs that name none).
   */
  queues: string[];
  /** The account in this process's document (for its model pools); undefined for the environment's shorthand. */
  source: ProcessDocument | undefined;
}

/** What {@link planAccounts} decided: the accounts to run, and those of the document it leaves to other processes. */
export interface AccountsPlan {
  accounts: AccountPlan[];
  /** Accounts of the document not run here, each with the key variable that is unset (WORKER_ACCOUNTS unset). */
  skipped: Array<{ account: string; apiKeyEnv: string }>;
  /** The account that runs the plain queue's jobs; undefined: none here (the document has several and TOLLGATE_NAME names none of them). */
  defaultAccount: string | undefined;
}

/**
 * The accounts this worker runs (issue 13: several accounts in one fleet). Without a document: the environment's one
 * account (`TOLLGATE_NAME`, `ANTHROPIC_API_KEY`). With one: `WORKER_ACCOUNTS`, or every account whose key variable
 * is set; keys are read from the variables the document names and never leave the process.
 * @throws {@link EnvError} naming the variable: an account in WORKER_ACCOUNTS that the document lacks or whose key is
 * unset, or no account to run at all.
 */
export function planAccounts(
  env: WorkerEnv,
  configured: ConfiguredDocument | undefined,
  processEnv: Readonly<Record<string, string | undefined>>,
  redis: RedisInput,
): AccountsPlan {
  if (configured === undefined) {
    const apiKey = env.ANTHROPIC_API_KEY;
    if (apiKey === undefined) throw new EnvError(`ANTHROPIC_API_KEY=unset is invalid: the API key of account ${env.TOLLGATE_NAME} (required)`);
    return {
      accounts: [
        {
          name: env.TOLLGATE_NAME,
          apiKey,
          baseURL: env.ANTHROPIC_BASE_URL,
          messages: limiterOptionsFromEnv(env, redis),
          countTokens: countTokensLimiterOptionsFromEnv(env, redis),
          queues: [env.TOLLGATE_QUEUE, accountQueueName(env.TOLLGATE_QUEUE, env.TOLLGATE_NAME)],
          source: undefined,
        },
      ],
      skipped: [],
      defaultAccount: env.TOLLGATE_NAME,
    };
  }
  const { document, path, defaultAccount } = configured;
  const names = Object.keys(document.accounts);
  const named = env.WORKER_ACCOUNTS;
  for (const name of named ?? []) {
    if (!Object.hasOwn(document.accounts, name))
      throw new EnvError(`WORKER_ACCOUNTS=${JSON.stringify(named?.join(','))} is invalid: ${name} is not an account of ${path} (accounts: ${names.join(', ')})`);
  }
  const keyOf = (name: string) => {
    const value = processEnv[document.accounts[name]?.apiKeyEnv ?? ''];
    return value === undefined || value === '' ? undefined : value;
  };
  const chosen = named ?? names.filter((name) => keyOf(name) !== undefined);
  const skipped = names.filter((name) => !chosen.includes(name)).map((account) => ({ account, apiKeyEnv: document.accounts[account]?.apiKeyEnv ?? '' }));
  if (chosen.length === 0) {
    const variables = names.map((name) => document.accounts[name]?.apiKeyEnv).join(', ');
    throw new EnvError(`${variables}=unset is invalid: no account of ${path} to run (set the API key variable of at least one account)`);
  }
  const accounts = chosen.map((name): AccountPlan => {
    const account = document.accounts[name];
    const apiKey = keyOf(name);
    if (account === undefined || apiKey === undefined)
      throw new EnvError(`${account?.apiKeyEnv ?? name}=unset is invalid: the API key of account ${name} (required: WORKER_ACCOUNTS names it)`);
    const source: ProcessDocument = { document, account: name, path };
    const limiters = limiterOptionsFromDocument(source, env, redis);
    const own = accountQueueName(env.TOLLGATE_QUEUE, name);
    return {
      name,
      apiKey,
      baseURL: account.baseUrl,
      messages: limiters.messages,
      countTokens: limiters.countTokens,
      queues: name === defaultAccount ? [env.TOLLGATE_QUEUE, own] : [own],
      source,
    };
  });
  // one key at one upstream is one set of limits: two accounts holding it would each spend all of it
  const seen = new Map<string, string>();
  for (const account of accounts) {
    const fingerprint = createHash('sha256')
      .update(`${account.apiKey}\n${new URL(account.baseURL).href}`)
      .digest('hex');
    const first = seen.get(fingerprint);
    if (first !== undefined) {
      throw new EnvError(
        `${document.accounts[account.name]?.apiKeyEnv ?? account.name} is invalid: it holds the same key as ${document.accounts[first]?.apiKeyEnv ?? first} (account ${first}) at the same baseUrl; one key is one account`,
      );
    }
    seen.set(fingerprint, account.name);
  }
  return { accounts, skipped, defaultAccount: chosen.includes(defaultAccount ?? '') ? defaultAccount : undefined };
}
