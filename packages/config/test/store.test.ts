import { afterEach, describe, expect, it } from 'vitest';
import {
  DOCUMENT_KEY,
  DocumentFollower,
  UNNAMED_TENANT_PRIORITY,
  InvalidConfigError,
  readStoredDocument,
  servedPriority,
  storeLimitsDocument,
  validateLimitsDocument,
} from '../src/index.js';
import { useRedis } from './support.js';

const redis = useRedis();
afterEach(async () => {
  await redis.client.del(DOCUMENT_KEY);
});

const documentWith = (maxPriority: number) =>
  validateLimitsDocument(
    {
      accounts: { main: { apiKeyEnv: 'ANTHROPIC_API_KEY', concurrency: 4, pools: { all: { models: ['*'], rpm: 100 } } } },
      tenants: { batch: { tokenEnv: 'TOKEN_BATCH', account: 'main', maxPriority } },
    },
    'test',
  );

describe('the fleet limits document in Redis', () => {
  it('stores a document with a rising revision, and storing the same document again changes nothing', async () => {
    expect(await readStoredDocument(redis.client)).toBeUndefined();
    const first = await storeLimitsDocument(redis.client, documentWith(5));
    expect(first).toMatchObject({ revision: 1, changed: true });
    expect(await storeLimitsDocument(redis.client, documentWith(5))).toEqual({ ...first, changed: false });
    const second = await storeLimitsDocument(redis.client, documentWith(3));
    expect(second).toMatchObject({ revision: 2, changed: true });
    const stored = await readStoredDocument(redis.client);
    expect(stored?.revision).toBe(2);
    expect(stored?.hash).toBe(second.hash);
    expect(stored?.document.tenants.batch?.maxPriority).toBe(3);
  });

  it('refuses what Redis holds when it is not a valid document, naming the key', async () => {
    await redis.client.hset(DOCUMENT_KEY, { json: '{"accounts":{}}', hash: 'x', revision: '1' });
    await expect(readStoredDocument(redis.client)).rejects.toThrow(InvalidConfigError);
    await expect(readStoredDocument(redis.client)).rejects.toThrow(/tollgate:document.*accounts/);
    await redis.client.hset(DOCUMENT_KEY, { json: 'not json' });
    await expect(readStoredDocument(redis.client)).rejects.toThrow(/not JSON/);
  });

  it('a follower runs with a newly applied revision within its poll interval, keeps the last document while Redis fails, and stores it again after FLUSHALL', async () => {
    const changes: Array<number | undefined> = [];
    const errors: Error[] = [];
    const follower = new DocumentFollower({ redis: redis.client, pollMs: 50, onChange: (stored) => changes.push(stored?.revision), onError: (error) => errors.push(error) });
    try {
      await follower.ready();
      expect(follower.current).toBeUndefined();
      await storeLimitsDocument(redis.client, documentWith(5));
      await expect.poll(() => follower.current?.revision, { timeout: 2_000 }).toBe(1);
      await storeLimitsDocument(redis.client, documentWith(2));
      await expect.poll(() => follower.current?.document.tenants.batch?.maxPriority, { timeout: 2_000 }).toBe(2);
      await redis.client.hset(DOCUMENT_KEY, { json: 'broken', revision: '99' }); // a bad write: the follower keeps what it had
      await expect.poll(() => errors.length, { timeout: 2_000 }).toBeGreaterThan(0);
      expect(follower.current?.revision).toBe(2);
      await redis.client.flushall(); // data loss: the follower stores the document it followed again, revision kept
      await expect.poll(() => redis.client.hget(DOCUMENT_KEY, 'revision'), { timeout: 2_000 }).toBe('2');
      expect((await readStoredDocument(redis.client))?.document.tenants.batch?.maxPriority).toBe(2);
      expect(follower.current?.revision).toBe(2);
      expect(changes).toEqual([1, 2]);
    } finally {
      follower.close();
    }
  });
});

describe('a follower that cannot read the document at first', () => {
  it('rejects ready() and reads again on the next call, rather than run as if there were no document', async () => {
    await redis.client.hset(DOCUMENT_KEY, { json: 'broken', hash: 'x', revision: '1' });
    const follower = new DocumentFollower({ redis: redis.client, pollMs: 50 });
    try {
      await expect(follower.ready()).rejects.toThrow(/not JSON/);
      await storeLimitsDocument(redis.client, documentWith(4));
      await follower.ready();
      expect(follower.current?.document.tenants.batch?.maxPriority).toBe(4);
    } finally {
      follower.close();
    }
  });
});

describe('servedPriority', () => {
  it("clamps a tenant's priority to its maxPriority; a tenant a document with tenants does not name gets the least urgent; no document, or none with tenants, leaves it as asked", () => {
    const document = documentWith(5);
    expect(servedPriority(document, 'batch', 0)).toBe(5);
    expect(servedPriority(document, 'batch', 7)).toBe(7);
    expect(servedPriority(document, 'other', 0)).toBe(UNNAMED_TENANT_PRIORITY); // named by no document with tenants: least urgent
    expect(servedPriority(document, '__proto__', 0)).toBe(UNNAMED_TENANT_PRIORITY);
    expect(servedPriority(document, null, 0)).toBe(0); // no tenant, no policy
    expect(servedPriority(undefined, 'batch', 0)).toBe(0);
    expect(servedPriority({ ...document, tenants: {} }, 'other', 0)).toBe(0); // a document without tenants has no tenant policy
  });
});
