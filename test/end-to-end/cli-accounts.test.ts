/**
 * Issue 13, several accounts in one fleet, through the `tollgate` CLI as a process: `--account` and `--tenant` (or
 * `--queue <queue>@<account>`) name an account's or a tenant's queue for the queue commands, and `status` shows every
 * account of the fleet's limits document, each with its queue and its fleet-wide counters. A real worker process runs
 * both accounts against the mock; Redis is real.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startMockAnthropic, type MockAnthropic } from '@tollgate/mock-anthropic';
import { createProducer, type Producer } from '@tollgate/queue';
import { startRedis, uniqueName, type TestRedis } from '@tollgate/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jsonOf, runTollgate } from '../support/cli.js';
import { MODEL, settle, startWithEnv } from '../support/fleet.js';
import { WORKER_ENTRY, stopAllServices, type ServiceProcess } from '../support/processes.js';

const KEY_A = 'sk-ant-cli-account-a';
const KEY_B = 'sk-ant-cli-account-b';
/** Jobs each account completes first (its counters), then jobs that wait while both accounts are paused. */
const DONE = { 'team-a': 2, 'team-b': 3 } as const;
const WAITING = { 'team-a': 1, 'team-b': 4, search: 2 } as const;
/** Polls of fleet state; a deadline, not a measurement. */
const EVENTUALLY_MS = 20_000;

let redis: TestRedis;
let mock: MockAnthropic;
let dir: string;
let worker: ServiceProcess | undefined;
const producers: Producer[] = [];

interface StatusJson {
  limiters: Array<{ name: string }>;
  accounts: Array<{
    account: string;
    queue: string;
    queuedPools?: string[];
    counts: Record<string, number>;
    totals: Record<string, number>;
    tenants: Array<{ tenant: string; waiting: number }>;
  }>;
}

beforeAll(async () => {
  redis = await startRedis();
  mock = await startMockAnthropic({ apiKeys: [KEY_A, KEY_B] });
  dir = await mkdtemp(join(tmpdir(), 'tollgate-cli-accounts-'));
});
afterAll(async () => {
  await Promise.all(producers.map((producer) => producer.close()));
  await worker?.stop();
  await stopAllServices();
  await mock.close();
  await redis.close();
  await rm(dir, { recursive: true, force: true });
});

describe('tollgate CLI with two accounts in the fleet', () => {
  it('--account / --tenant / --queue <queue>@<account> select the queue; status shows every account of the document with its queue and counters', async () => {
    const queue = uniqueName('cli-accounts');
    const path = join(dir, 'tollgate.yaml');
    await writeFile(
      path,
      [
        'accounts:',
        ...['team-a', 'team-b'].flatMap((account) => [
          `  ${account}:`,
          `    apiKeyEnv: ${account === 'team-a' ? 'A_KEY' : 'B_KEY'}`,
          `    baseUrl: ${mock.url}`,
          '    concurrency: 2',
          "    pools: { all: { models: ['*'], rpm: 100000 } }",
        ]),
        'tenants:',
        '  search: { tokenEnv: SEARCH_TOKEN, account: team-b }',
        '',
      ].join('\n'),
    );
    const env = { REDIS_URL: redis.url, TOLLGATE_QUEUE: queue }; // no TOLLGATE_NAME: neither account is the CLI's default
    const applied = await runTollgate(['limits', 'apply', path, '--json'], env);
    expect(applied.code).toBe(0);
    worker = await startWithEnv('worker-cli-accounts', WORKER_ENTRY, {
      ...env,
      TOLLGATE_CONFIG: path,
      A_KEY: KEY_A,
      B_KEY: KEY_B,
      WORKER_CONCURRENCY: '2',
      METRICS_PORT: '0',
      LOG_LEVEL: 'info',
    });
    const producer = (account: 'team-a' | 'team-b') => {
      const made = createProducer({ redis: redis.url, queue, account });
      producers.push(made);
      return made;
    };
    const [a, b] = [producer('team-a'), producer('team-b')];
    const request = (i: number) => ({ model: MODEL, max_tokens: 8, messages: [{ role: 'user' as const, content: `cli accounts ${i}` }] });
    const enqueue = (on: Producer, count: number, tenant?: string) =>
      Promise.all(Array.from({ length: count }, (_, i) => on.enqueue(request(i), tenant === undefined ? {} : { tenant })));
    // some jobs done on each account: its fleet-wide counters
    await settle(a, await enqueue(a, DONE['team-a']));
    await settle(b, await enqueue(b, DONE['team-b']));
    // then both paused: what is enqueued now waits (a worker holds at most its slots of each queue, active)
    for (const account of ['team-a', 'team-b']) expect((await runTollgate(['pause', '5m', '--name', account], env)).code).toBe(0);
    const waitingB = await enqueue(b, WAITING['team-b']);
    await enqueue(a, WAITING['team-a']);
    await enqueue(b, WAITING.search, 'search');

    const counts = async (args: string[]) => {
      const run = await runTollgate(['queue', 'counts', ...args, '--json'], env);
      expect(run.code, run.stderr).toBe(0);
      const { queue: name, counts: byState } = jsonOf<{ queue: string; counts: Record<string, number> }>(run);
      return { name, unfinished: byState.waiting! + byState.prioritized! + byState.active!, completed: byState.completed };
    };
    expect(await counts(['--account', 'team-b'])).toEqual({ name: `${queue}@team-b`, unfinished: WAITING['team-b'], completed: DONE['team-b'] });
    expect(await counts(['--queue', `${queue}@team-b`])).toEqual({ name: `${queue}@team-b`, unfinished: WAITING['team-b'], completed: DONE['team-b'] });
    expect(await counts(['--account', 'team-a'])).toEqual({ name: `${queue}@team-a`, unfinished: WAITING['team-a'], completed: DONE['team-a'] });
    // a tenant's queue: its account from the fleet's document, or given
    expect(await counts(['--tenant', 'search'])).toMatchObject({ name: `${queue}@team-b#search`, unfinished: WAITING.search });
    expect(await counts(['--account', 'team-b', '--tenant', 'search'])).toMatchObject({ name: `${queue}@team-b#search`, unfinished: WAITING.search });

    // jobs show finds a job on its account's queue, and says where it looked otherwise
    const shown = await runTollgate(['jobs', 'show', waitingB[0]!, '--account', 'team-b', '--json'], env);
    expect(shown.code, shown.stderr).toBe(0);
    expect(jsonOf(shown)).toMatchObject({ id: waitingB[0], queue: `${queue}@team-b` });
    const elsewhere = await runTollgate(['jobs', 'show', waitingB[0]!, '--account', 'team-a'], env);
    expect(elsewhere.code).toBe(3);
    expect(elsewhere.stderr).toContain(`no job "${waitingB[0]}" in queue "${queue}@team-a"`);

    // status: every account of the document, each its queue (with its tenants' queues) and its own counters
    await expect
      .poll(
        async () => {
          const status = jsonOf<StatusJson>(await runTollgate(['status', '--json'], env));
          return status.accounts.map(({ account, totals }) => [account, totals.completed ?? 0]);
        },
        { timeout: EVENTUALLY_MS },
      )
      .toEqual([
        ['team-a', DONE['team-a']],
        ['team-b', DONE['team-b']],
      ]); // the worker adds its counters once a second
    const status = jsonOf<StatusJson>(await runTollgate(['status', '--json'], env));
    console.log(
      `status accounts: ${JSON.stringify(status.accounts.map(({ account, queue: name, counts: c, totals }) => ({ account, name, waiting: c.waiting! + c.prioritized! + c.active!, completed: totals.completed })))}`,
    );
    expect(status.limiters.map(({ name }) => name)).toEqual(['team-a', 'team-b']);
    const byAccount = Object.fromEntries(status.accounts.map((account) => [account.account, account]));
    expect(byAccount['team-a']).toMatchObject({ queue: `${queue}@team-a`, counts: { completed: DONE['team-a'] } });
    expect(byAccount['team-b']).toMatchObject({ queue: `${queue}@team-b`, counts: { completed: DONE['team-b'] } });
    const unfinishedOf = (account: string) => ['waiting', 'prioritized', 'active'].reduce((sum, state) => sum + (byAccount[account]?.counts[state] ?? 0), 0);
    expect(unfinishedOf('team-a')).toBe(WAITING['team-a']);
    expect(unfinishedOf('team-b')).toBe(WAITING['team-b'] + WAITING.search); // its tenant's queue counted with it
    expect(byAccount['team-b']?.tenants.find((row) => row.tenant === 'search')).toBeDefined();
    expect(byAccount['team-a']?.tenants.find((row) => row.tenant === 'search')).toBeUndefined();
    const text = await runTollgate(['status'], env);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain('limiter team-a');
    expect(text.stdout).toContain('limiter team-b');
    expect(text.stdout).toContain(`account team-b (queue ${queue}@team-b, with its tenants' queues)`);
    // --name: only that limiter, and only its account
    const named = jsonOf<StatusJson>(await runTollgate(['status', '--name', 'team-b', '--json'], env));
    expect(named.limiters.map(({ name }) => name)).toEqual(['team-b']);
    expect(named.accounts.map(({ account }) => account)).toEqual(['team-b']);

    // a queue command acts on the account's queue only
    const drained = await runTollgate(['queue', 'drain', '--yes', '--account', 'team-a', '--json'], env);
    expect(drained.code, drained.stderr).toBe(0);
    expect((await counts(['--account', 'team-b'])).unfinished).toBe(WAITING['team-b']);

    // wrong usage is exit 2, naming the option
    const twice = await runTollgate(['queue', 'counts', '--queue', `${queue}@team-b`, '--account', 'team-b'], env);
    expect(twice.code).toBe(2);
    expect(twice.stderr).toContain(`--queue "${queue}@team-b" names an account's queue already`);
    const unknownTenant = await runTollgate(['queue', 'counts', '--tenant', 'nobody'], env);
    expect(unknownTenant.code).toBe(2);
    expect(unknownTenant.stderr).toContain('--tenant "nobody": the fleet\'s limits document names no such tenant; pass its --account too');
    const badQueue = await runTollgate(['queue', 'counts', '--queue', 'no spaces'], env);
    expect(badQueue.code).toBe(2);
    expect(badQueue.stderr).toContain('--queue "no spaces": a queue name');
    for (const account of ['team-a', 'team-b']) expect((await runTollgate(['resume', '--name', account], env)).code).toBe(0);
  });
});

describe('tollgate CLI with an account of two pools', () => {
  it('--pool (or --queue <queue>@<account>~<pool>) selects a pool queue; status counts the pool queues with their account; a bad name is refused', async () => {
    const queue = uniqueName('cli-pools');
    const path = join(dir, 'pools.yaml');
    await writeFile(
      path,
      [
        'accounts:',
        '  main:',
        '    apiKeyEnv: MAIN_KEY',
        `    baseUrl: ${mock.url}`,
        "    pools: { sonnet: { models: ['claude-sonnet-4*'], rpm: 1000 }, haiku: { models: ['claude-haiku-4*'], rpm: 1000 } }",
        'tenants:',
        '  search: { tokenEnv: SEARCH_TOKEN, account: main }',
        '  capped: { tokenEnv: CAPPED_TOKEN, account: main, concurrency: 1 }',
        '',
      ].join('\n'),
    );
    const env = { REDIS_URL: redis.url, TOLLGATE_QUEUE: queue };
    expect((await runTollgate(['limits', 'apply', path, '--json'], env)).code).toBe(0);
    // no worker: every job stays on its queue
    const producer = createProducer({ redis: redis.url, queue, account: 'main' });
    producers.push(producer);
    const ask = (model: string) => ({ model, max_tokens: 8, messages: [{ role: 'user' as const, content: 'cli pools' }] });
    await producer.enqueue(ask('claude-sonnet-4-5'));
    await producer.enqueue(ask('claude-sonnet-4-5'));
    await producer.enqueue(ask('claude-haiku-4-5'));
    const searchJob = await producer.enqueue(ask('claude-haiku-4-5'), { tenant: 'search' });
    await producer.enqueue(ask('claude-sonnet-4-5'), { tenant: 'capped' });
    const counts = async (args: string[]) => {
      const run = await runTollgate(['queue', 'counts', ...args, '--json'], env);
      expect(run.code, run.stderr).toBe(0);
      const { queue: name, counts: byState } = jsonOf<{ queue: string; counts: Record<string, number> }>(run);
      return { name, queued: byState.waiting! + byState.prioritized! };
    };
    expect(await counts(['--account', 'main', '--pool', 'sonnet'])).toEqual({ name: `${queue}@main~sonnet`, queued: 2 });
    expect(await counts(['--queue', `${queue}@main~haiku`])).toEqual({ name: `${queue}@main~haiku`, queued: 1 });
    expect(await counts(['--tenant', 'search', '--pool', 'haiku'])).toEqual({ name: `${queue}@main~haiku#search`, queued: 1 });
    expect(await counts(['--tenant', 'capped'])).toEqual({ name: `${queue}@main#capped`, queued: 1 }); // a capped tenant: one queue
    // a pool-less queue stands for itself and its pool queues
    expect(await counts(['--account', 'main'])).toEqual({ name: `${queue}@main`, queued: 3 });
    const family = await runTollgate(['queue', 'counts', '--account', 'main', '--json'], env);
    expect(jsonOf<{ queues: string[] }>(family).queues).toEqual([`${queue}@main`, `${queue}@main~haiku`, `${queue}@main~sonnet`]);
    expect(await counts(['--tenant', 'search'])).toEqual({ name: `${queue}@main#search`, queued: 1 });
    const shown = await runTollgate(['jobs', 'show', searchJob, '--tenant', 'search', '--pool', 'haiku', '--json'], env);
    expect(shown.code, shown.stderr).toBe(0);
    expect(jsonOf(shown)).toMatchObject({ id: searchJob, queue: `${queue}@main~haiku#search`, tenant: 'search' });

    const status = jsonOf<StatusJson>(await runTollgate(['status', '--json'], env));
    const main = status.accounts.find(({ account }) => account === 'main');
    expect(main).toMatchObject({ queue: `${queue}@main`, queuedPools: ['haiku', 'sonnet'] }); // the stored document's order
    expect((main?.counts.waiting ?? 0) + (main?.counts.prioritized ?? 0)).toBe(5);
    expect((await runTollgate(['status'], env)).stdout).toContain(`account main (queue ${queue}@main, with its pools' (haiku, sonnet) and its tenants' queues)`);

    // wrong usage is exit 2, naming the option
    for (const [args, message] of [
      [['--pool', 'sonnet'], '--pool selects a pool of an account: pass --account or --tenant too'],
      [['--account', 'main', '--pool', 'a~b'], '--pool "a~b"'],
      [['--queue', `${queue}@main~sonnet`, '--pool', 'sonnet'], "names an account's queue already"],
      [['--queue', `${queue}@main~sonnet~haiku`], `--queue "${queue}@main~sonnet~haiku": a queue name`],
      [['--queue', `${queue}@main#search~haiku`], `--queue "${queue}@main#search~haiku": a queue name`],
      [['--queue', `${queue}@ma%41in`], `--queue "${queue}@ma%41in": a queue name`],
    ] as const) {
      const run = await runTollgate(['queue', 'counts', ...args], env);
      expect(run.code, run.stderr).toBe(2);
      expect(run.stderr).toContain(message);
    }
  });
});
