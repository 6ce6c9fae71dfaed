/**
 * Issue 13, several accounts in one fleet, at the producer: a job that names no account goes on the plain queue, which
 * a worker serves only for its default account (`TOLLGATE_NAME`, or the document's only account). With several
 * accounts in the fleet's document nothing promises that queue a worker, so such a job is refused at enqueue, naming
 * the accounts to choose from; nothing is queued.
 */
import { storeLimitsDocument, validateLimitsDocument } from '@tollgate/config';
import { startRedis, uniqueName, type TestRedis } from '@tollgate/test-support';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidRequestError, createProducer, type Producer } from '../src/index.js';
import { queueKeys } from '../src/internal.js';
import { request, thrown } from './support.js';

/** The producers here look for a new revision of the fleet's document this often, in ms. */
const DOCUMENT_POLL_MS = 50;

const account = (apiKeyEnv: string) => ({ apiKeyEnv, concurrency: 2, pools: { all: { models: ['*'], rpm: 1_000 } } });
const oneAccount = validateLimitsDocument({ accounts: { main: account('MAIN_KEY') }, tenants: { search: { tokenEnv: 'SEARCH_TOKEN', account: 'main' } } });
const twoAccounts = validateLimitsDocument({
  accounts: { main: account('MAIN_KEY'), batch: account('BATCH_KEY') },
  tenants: { search: { tokenEnv: 'SEARCH_TOKEN', account: 'main' } },
});

let redis: TestRedis;
let client: Redis;
const producers: Producer[] = [];
const producer = (options: { queue: string; account?: string }) => {
  const made = createProducer({ redis: redis.url, documentPollMs: DOCUMENT_POLL_MS, ...options });
  producers.push(made);
  return made;
};
/** Jobs of queue `name` (its own keys only), whatever their state. */
const jobsOn = async (name: string) => (await client.keys(`${queueKeys(name).jobPrefix}job_*`)).length;

beforeAll(async () => {
  redis = await startRedis();
  client = new Redis(redis.url);
});
afterAll(async () => {
  await Promise.all(producers.map((made) => made.close()));
  client.disconnect();
  await redis.close();
});

describe('a producer without an account', () => {
  it("with one account in the fleet's document: its jobs go on the plain queue (that account's workers serve it)", async () => {
    await storeLimitsDocument(client, oneAccount);
    const queue = uniqueName('one-account');
    const plain = producer({ queue });
    const id = await plain.enqueue(request('plain'));
    expect(await jobsOn(queue)).toBe(1);
    expect((await plain.getJob(id))?.state).toBe('prioritized');
  });

  it('with several: a job that names no account is refused, naming the accounts; a tenant of the document, or a producer with { account }, is served', async () => {
    await storeLimitsDocument(client, twoAccounts);
    const queue = uniqueName('two-accounts');
    const plain = producer({ queue });
    const untenanted = await thrown(() => plain.enqueue(request('no account')));
    expect(untenanted).toBeInstanceOf(InvalidRequestError);
    expect((untenanted as InvalidRequestError).status).toBe(400);
    expect((untenanted as Error).message).toBe(
      "this job names no account and the fleet's limits document has several (accounts: batch, main), so no worker is sure to run it: create the producer with { account } naming one of them",
    );
    // a tenant the document does not name gets no account either
    expect(((await thrown(() => plain.enqueue(request('legacy'), { tenant: 'legacy' }))) as Error).message).toMatch(
      /several \(accounts: batch, main\).*or give tenant legacy an account in the document$/,
    );
    expect(await jobsOn(queue)).toBe(0);
    // a tenant of the document has its account: its own queue there
    await plain.enqueue(request('search'), { tenant: 'search' });
    expect(await jobsOn(`${queue}@main#search`)).toBe(1);
    // a producer that names its account: that account's queue
    await producer({ queue, account: 'batch' }).enqueue(request('batch'));
    expect(await jobsOn(`${queue}@batch`)).toBe(1);
    expect(await jobsOn(queue)).toBe(0);
  });

  it('an apply that adds a second account refuses its next job (within a poll), never queues it where no worker is sure to look', async () => {
    await storeLimitsDocument(client, oneAccount);
    const queue = uniqueName('added-account');
    const plain = producer({ queue });
    await plain.enqueue(request('before'));
    await storeLimitsDocument(client, twoAccounts);
    await expect.poll(async () => ((await thrown(() => plain.enqueue(request('after')))) as Error).message, { timeout: 5_000 }).toMatch(/names no account/);
    // the jobs enqueued before the apply stay (one of each attempt that raced the poll at most); none after
    const onPlain = await jobsOn(queue);
    await expect(plain.enqueue(request('later'))).rejects.toThrow(InvalidRequestError);
    expect(await jobsOn(queue)).toBe(onPlain);
  });
});
