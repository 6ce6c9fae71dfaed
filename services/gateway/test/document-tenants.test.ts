import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DOCUMENT_KEY, readStoredDocument } from '@tollgate/config';
import { startRedis, uniqueName, type TestRedis } from '@tollgate/test-support';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildGateway, parseGatewayEnv, type Gateway } from '../src/index.js';
import { ADMIN_TOKEN, request } from './support.js';

/** A gateway started with TOLLGATE_CONFIG takes its tenants from the document: each tenant's token from the variable its `tokenEnv` names. */
const SEARCH_TOKEN = 'search-tenant-token-0123456789';
const BATCH_TOKEN = 'batch-tenant-token-0123456789';
let redis: TestRedis;
let client: Redis;
let dir: string;
let path: string;

beforeAll(async () => {
  redis = await startRedis();
  client = new Redis(redis.url);
  dir = await mkdtemp(join(tmpdir(), 'tollgate-gateway-document-'));
  path = join(dir, 'tollgate.yaml');
  await writeFile(
    path,
    [
      'accounts:',
      '  main: { apiKeyEnv: ANTHROPIC_API_KEY, concurrency: 4, pools: { all: { models: ["*"], rpm: 1000 } } }',
      'tenants:',
      '  search: { tokenEnv: SEARCH_TOKEN_VAR, account: main, maxPriority: 0 }',
      '  batch: { tokenEnv: BATCH_TOKEN_VAR, account: main, maxPriority: 6 }',
      '',
    ].join('\n'),
  );
});
afterAll(async () => {
  client.disconnect();
  await redis.close();
  await rm(dir, { recursive: true, force: true });
});

const envFor = (queue: string) =>
  parseGatewayEnv({ PORT: '0', HOST: '127.0.0.1', REDIS_URL: redis.url, TOLLGATE_QUEUE: queue, TOLLGATE_CONFIG: path, GATEWAY_ADMIN_TOKEN: ADMIN_TOKEN });

describe('a gateway with TOLLGATE_CONFIG', () => {
  it("needs no GATEWAY_TOKENS: the document's tenants sign in with the tokens their variables hold, under their policy", async () => {
    const gateway: Gateway = await buildGateway(envFor(uniqueName('doc-tenants')), pino({ level: 'silent' }), { SEARCH_TOKEN_VAR: SEARCH_TOKEN, BATCH_TOKEN_VAR: BATCH_TOKEN });
    try {
      const url = await gateway.app.listen({ port: 0, host: '127.0.0.1' });
      expect((await readStoredDocument(client))?.document.tenants.batch?.maxPriority).toBe(6); // first boot stored it
      const post = (token: string) =>
        fetch(`${url}/v1/jobs`, {
          method: 'POST',
          body: JSON.stringify(request('doc')),
          headers: { 'content-type': 'application/json', 'x-api-key': token, 'tollgate-priority': '0' },
        });
      const batch = await post(BATCH_TOKEN);
      expect(batch.status).toBe(202);
      expect(batch.headers.get('tollgate-priority')).toBe('6');
      const search = await post(SEARCH_TOKEN);
      expect(search.status).toBe(202);
      expect(search.headers.get('tollgate-priority')).toBe('0');
      const id = ((await search.json()) as { id: string }).id;
      expect((await gateway.producer.getJob(id))?.tenant).toBe('search');
      expect((await post('not-a-tenant-token-0123456789')).status).toBe(401);
    } finally {
      await gateway.close();
    }
  });

  it('refuses to start when a tenant token variable is unset, too short, or holds the admin token, naming the variable and never the value', async () => {
    const queue = uniqueName('doc-tenants-bad');
    const start = (processEnv: Record<string, string>) => buildGateway(envFor(queue), pino({ level: 'silent' }), processEnv);
    await expect(start({ SEARCH_TOKEN_VAR: SEARCH_TOKEN })).rejects.toThrow(/BATCH_TOKEN_VAR \(the token of tenant batch in .*tollgate\.yaml\) is invalid: unset/);
    await expect(start({ SEARCH_TOKEN_VAR: SEARCH_TOKEN, BATCH_TOKEN_VAR: 'short' })).rejects.toThrow(/BATCH_TOKEN_VAR .* is invalid: shorter than 16 characters/);
    const adminAsTenant = start({ SEARCH_TOKEN_VAR: SEARCH_TOKEN, BATCH_TOKEN_VAR: ADMIN_TOKEN });
    await expect(adminAsTenant).rejects.toThrow(/BATCH_TOKEN_VAR .* is invalid: the admin or metrics token/);
    await expect(adminAsTenant).rejects.not.toThrow(ADMIN_TOKEN);
    await expect(start({ SEARCH_TOKEN_VAR: SEARCH_TOKEN, BATCH_TOKEN_VAR: SEARCH_TOKEN })).rejects.toThrow(/BATCH_TOKEN_VAR .* is invalid: tenant search's token/);
    // a document naming one of the gateway's own variables would make its value (a Redis URL with its password) a token
    const redisAsToken = join(dir, 'redis-as-token.yaml');
    await writeFile(redisAsToken, (await readFile(path, 'utf8')).replace('tokenEnv: BATCH_TOKEN_VAR', 'tokenEnv: REDIS_URL'));
    const env = parseGatewayEnv({ PORT: '0', REDIS_URL: redis.url, TOLLGATE_QUEUE: queue, TOLLGATE_CONFIG: redisAsToken });
    await expect(buildGateway(env, pino({ level: 'silent' }), { SEARCH_TOKEN_VAR: SEARCH_TOKEN, REDIS_URL: 'redis://:s3cretpassword@10.0.0.5:6379' })).rejects.toThrow(
      /REDIS_URL \(the token of tenant batch .*\) is invalid: a variable of the gateway's own/,
    );
  });

  it('answers 503 naming the key, never 500, while the stored document cannot be read, and enqueues nothing', async () => {
    await client.hset(DOCUMENT_KEY, { json: '{"accounts":', hash: 'broken', revision: '7' });
    const queue = uniqueName('doc-broken');
    const gateway: Gateway = await buildGateway(envFor(queue), pino({ level: 'silent' }), { SEARCH_TOKEN_VAR: SEARCH_TOKEN, BATCH_TOKEN_VAR: BATCH_TOKEN });
    try {
      const url = await gateway.app.listen({ port: 0, host: '127.0.0.1' });
      const response = await fetch(`${url}/v1/jobs`, {
        method: 'POST',
        body: JSON.stringify(request('broken')),
        headers: { 'content-type': 'application/json', 'x-api-key': SEARCH_TOKEN },
      });
      expect(response.status).toBe(503);
      expect(((await response.json()) as { error: { message: string } }).error.message).toMatch(
        /^Nothing was enqueued: the limits document in Redis \(tollgate:document\) is not JSON/,
      );
      expect(Object.values(await gateway.producer.counts()).reduce((sum, count) => sum + count, 0)).toBe(0);
    } finally {
      await gateway.close();
      await client.del(DOCUMENT_KEY);
    }
  });
});
