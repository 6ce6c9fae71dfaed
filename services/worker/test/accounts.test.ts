/** Which accounts a worker process runs (issue 13: several accounts in one fleet), from its environment and document. */
import { parseLimitsDocument } from '@tollgate/config';
import { EnvError, type ConfiguredDocument } from '@tollgate/queue/internal';
import { describe, expect, it } from 'vitest';
import { planAccounts } from '../src/accounts.js';
import { parseWorkerEnv } from '../src/index.js';

const REDIS = 'redis://127.0.0.1:6379';
const document = parseLimitsDocument(
  [
    'accounts:',
    '  team-a: { apiKeyEnv: A_KEY, concurrency: 1, pools: { all: { models: ["*"] } } }',
    '  team-b: { apiKeyEnv: B_KEY, concurrency: 8, baseUrl: "http://127.0.0.1:1", pools: { all: { models: ["*"] } } }',
    '  "org:c": { apiKeyEnv: C_KEY, concurrency: 2, pools: { all: { models: ["*"] } } }',
  ].join('\n'),
  'test.yaml',
);
const configured = (defaultAccount?: string): ConfiguredDocument => ({ document, path: 'test.yaml', defaultAccount });
const env = (extra: Record<string, string> = {}) => parseWorkerEnv({ REDIS_URL: REDIS, TOLLGATE_CONFIG: 'test.yaml', TOLLGATE_QUEUE: 'jobs', ...extra });

describe('planAccounts', () => {
  it('runs every account whose key variable is set, each on its own queue; the default account also takes the plain queue', () => {
    const plan = planAccounts(env({ TOLLGATE_NAME: 'team-b' }), configured('team-b'), { A_KEY: 'sk-a', B_KEY: 'sk-b' }, REDIS);
    expect(plan.accounts.map(({ name, apiKey, baseURL, queues }) => ({ name, apiKey, baseURL, queues }))).toEqual([
      { name: 'team-a', apiKey: 'sk-a', baseURL: 'https://api.anthropic.com', queues: ['jobs@team-a'] },
      { name: 'team-b', apiKey: 'sk-b', baseURL: 'http://127.0.0.1:1', queues: ['jobs', 'jobs@team-b'] },
    ]);
    expect(plan.accounts.map((account) => [account.messages.name, account.messages.concurrency])).toEqual([
      ['team-a', 1],
      ['team-b', 8],
    ]);
    expect(plan.skipped).toEqual([{ account: 'org:c', apiKeyEnv: 'C_KEY' }]);
    expect(plan.defaultAccount).toBe('team-b');
  });

  it("writes an account's ':' as %3A in its queue name (BullMQ splits keys on ':'), and runs no plain queue without a default account", () => {
    const plan = planAccounts(env(), configured(undefined), { C_KEY: 'sk-c' }, REDIS);
    expect(plan.accounts.map((account) => account.queues)).toEqual([['jobs@org%3Ac']]);
    expect(plan.defaultAccount).toBeUndefined();
  });

  it('WORKER_ACCOUNTS chooses the accounts; one the document lacks, or whose key is unset, fails naming it', () => {
    expect(planAccounts(env({ WORKER_ACCOUNTS: 'team-a' }), configured('team-a'), { A_KEY: 'sk-a', B_KEY: 'sk-b' }, REDIS).accounts.map((account) => account.name)).toEqual([
      'team-a',
    ]);
    expect(() => planAccounts(env({ WORKER_ACCOUNTS: 'team-a,team-x' }), configured(), { A_KEY: 'sk-a' }, REDIS)).toThrow(
      new EnvError('WORKER_ACCOUNTS="team-a,team-x" is invalid: team-x is not an account of test.yaml (accounts: team-a, team-b, org:c)'),
    );
    expect(() => planAccounts(env({ WORKER_ACCOUNTS: 'team-b' }), configured(), { A_KEY: 'sk-a' }, REDIS)).toThrow(/^B_KEY=unset is invalid: the API key of account team-b/);
  });

  it('fails naming the key variables when no account has its key here; never echoes a key', () => {
    expect(() => planAccounts(env(), configured(), {}, REDIS)).toThrow(/^A_KEY, B_KEY, C_KEY=unset is invalid: no account of test.yaml to run/);
    const failure = (() => {
      try {
        planAccounts(env({ WORKER_ACCOUNTS: 'team-b' }), configured(), { A_KEY: 'sk-ant-secret' }, REDIS);
      } catch (error) {
        return String(error);
      }
      return 'no error';
    })();
    expect(failure).toMatch(/B_KEY=unset is invalid/);
    expect(failure).not.toContain('sk-ant-secret');
  });

  it('without a document: the environment account, on the plain queue and its own', () => {
    const plan = planAccounts(parseWorkerEnv({ REDIS_URL: REDIS, ANTHROPIC_API_KEY: 'sk-x', TOLLGATE_CONCURRENCY: '3', TOLLGATE_NAME: 'acct' }), undefined, {}, REDIS);
    expect(plan.accounts.map(({ name, queues }) => ({ name, queues }))).toEqual([{ name: 'acct', queues: ['messages', 'messages@acct'] }]);
  });

  it('refuses two accounts that hold the same key at the same baseUrl (one key is one set of limits), naming the variables, never the key', () => {
    const twins = parseLimitsDocument(
      [
        'accounts:',
        '  one: { apiKeyEnv: ONE_KEY, concurrency: 4, pools: { all: { models: ["*"] } } }',
        '  two: { apiKeyEnv: TWO_KEY, concurrency: 4, pools: { all: { models: ["*"] } } }',
      ].join('\n'),
      'twins.yaml',
    );
    const start = () => planAccounts(env(), { document: twins, path: 'twins.yaml', defaultAccount: undefined }, { ONE_KEY: 'sk-ant-same', TWO_KEY: 'sk-ant-same' }, REDIS);
    expect(start).toThrow(/^TWO_KEY is invalid: it holds the same key as ONE_KEY \(account one\) at the same baseUrl/);
    expect(start).not.toThrow(/sk-ant-same/);
    expect(planAccounts(env(), { document: twins, path: 'twins.yaml', defaultAccount: undefined }, { ONE_KEY: 'sk-ant-a', TWO_KEY: 'sk-ant-b' }, REDIS).accounts).toHaveLength(2);
  });

  it('WORKER_ACCOUNTS needs TOLLGATE_CONFIG', () => {
    expect(() => parseWorkerEnv({ REDIS_URL: REDIS, ANTHROPIC_API_KEY: 'sk-x', TOLLGATE_CONCURRENCY: '3', WORKER_ACCOUNTS: 'a' })).toThrow(
      /WORKER_ACCOUNTS="a" is invalid: names accounts of a limits document: set TOLLGATE_CONFIG too/,
    );
  });
});
