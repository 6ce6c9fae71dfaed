/**
 * Issue 13, several accounts in one fleet, at the gateway: each tenant of the limits document maps to its account, and
 * its jobs go on that account's own queue (`<queue>@<account>`), where the workers holding that account's key take
 * them; a job is looked up on its tenant's queue only.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseLimitsDocument, storeLimitsDocument } from '@tollgate/config';
import { createProducer } from '@tollgate/queue';
import { queueKeys } from '@tollgate/queue/internal';
import { startRedis, uniqueName, type TestRedis } from '@tollgate/test-support';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildGateway, parseGatewayEnv } from '../src/index.js';
import { ADMIN_TOKEN, request } from './support.js';

const SEARCH_TOKEN = 'search-tenant-token-0123456789';
const BATCH_TOKEN = 'batch-tenant-token-0123456789';
const LEGACY_TOKEN = 'legacy-tenant-token-0123456789';
let redis: TestRedis;
let dir: string;
let path: string;

beforeAll(async () => {
  redis = await startRedis();
  dir = await mkdtemp(join(tmpdir(), 'tollgate-gateway-accounts-'));
  path = join(dir, 'tollgate.yaml');
  await writeFile(
    path,
    [
      'accounts:',
      '  interactive: { apiKeyEnv: INTERACTIVE_KEY, concurrency: 4, pools: { all: { models: ["*"], rpm: 1000 } } }',
      '  "org:batch": { apiKeyEnv: BATCH_KEY, concurrency: 8, pools: { all: { models: ["*"], rpm: 1000 } } }',
      'tenants:',
      '  search: { tokenEnv: SEARCH_TOKEN_VAR, account: interactive }',
      '  batch: { tokenEnv: BATCH_TOKEN_VAR, account: "org:batch" }',
      '',
    ].join('\n'),
  );
});
afterAll(async () => {
  await redis.close();
  await rm(dir, { recursive: true, force: true });
});

describe('a gateway whose document has two accounts', () => {
  it("puts each tenant's jobs on its account's queue; GATEWAY_TOKENS tenants' on TOLLGATE_NAME's account's own queue, not the plain one", async () => {
    const queue = uniqueName('gw-accounts');
    const env = parseGatewayEnv({
      PORT: '0',
      HOST: '127.0.0.1',
      REDIS_URL: redis.url,
      TOLLGATE_QUEUE: queue,
      TOLLGATE_CONFIG: path,
      TOLLGATE_NAME: 'interactive',
      GATEWAY_TOKENS: `legacy:${LEGACY_TOKEN}`,
      GATEWAY_ADMIN_TOKEN: ADMIN_TOKEN,
    });
    const gateway = await buildGateway(env, pino({ level: 'silent' }), { SEARCH_TOKEN_VAR: SEARCH_TOKEN, BATCH_TOKEN_VAR: BATCH_TOKEN });
    const onQueue = (account?: string) => createProducer({ redis: redis.url, queue, ...(account === undefined ? {} : { account }), tenantPolicy: 'none' });
    const plain = onQueue();
    const interactive = onQueue('interactive');
    const batch = onQueue('org:batch');
    const client = new Redis(redis.url);
    /** Whether BullMQ's hash of job `id` is on queue `name`. */
    const isOn = async (name: string, id: string) => (await client.exists(queueKeys(name).job(id))) === 1;
    try {
      const url = await gateway.app.listen({ port: 0, host: '127.0.0.1' });
      const post = async (token: string) => {
        const answer = await fetch(`${url}/v1/jobs`, {
          method: 'POST',
          body: JSON.stringify(request('accounts')),
          headers: { 'content-type': 'application/json', 'x-api-key': token },
        });
        expect(answer.status).toBe(202);
        return ((await answer.json()) as { id: string }).id;
      };
      const batchId = await post(BATCH_TOKEN);
      const searchId = await post(SEARCH_TOKEN);
      const legacyId = await post(LEGACY_TOKEN);
      // a document tenant's jobs go on its own queue on its account (the ':' of the account's name written %3A),
      // the account's workers run it (DESIGN §9: its backlog holds only its own worker slots)
      expect(batch.name).toBe(`${queue}@org%3Abatch`);
      expect(await isOn(`${queue}@org%3Abatch#batch`, batchId)).toBe(true);
      expect(await isOn(queue, batchId)).toBe(false);
      expect(await isOn(`${queue}@interactive#search`, searchId)).toBe(true);
      expect(await isOn(queue, searchId)).toBe(false);
      // a GATEWAY_TOKENS tenant's on the gateway's default account's own queue (TOLLGATE_NAME's), which every worker
      // running that account serves; the plain queue only a worker whose own TOLLGATE_NAME names it (issue 13)
      expect((await interactive.getJob(legacyId))?.tenant).toBe('legacy');
      expect(await isOn(`${queue}@interactive`, legacyId)).toBe(true);
      expect(await plain.getJob(legacyId)).toBeUndefined();
      expect(await isOn(queue, legacyId)).toBe(false);
      // a tenant reads and cancels its own jobs on its own queue; another tenant's id is not found
      const get = (id: string, token: string) => fetch(`${url}/v1/jobs/${id}`, { headers: { 'x-api-key': token } });
      expect(((await (await get(batchId, BATCH_TOKEN)).json()) as { state: string }).state).toBe('prioritized'); // queued (BullMQ's state for a job with a priority)
      expect((await get(batchId, SEARCH_TOKEN)).status).toBe(404);
      expect((await fetch(`${url}/v1/jobs/${batchId}`, { method: 'DELETE', headers: { 'x-api-key': BATCH_TOKEN } })).status).toBe(200);
      expect(await isOn(`${queue}@org%3Abatch#batch`, batchId)).toBe(false);
    } finally {
      await gateway.close();
      await Promise.all([plain.close(), interactive.close(), batch.close()]);
      client.disconnect();
    }
  });

  it("follows the fleet's document: an apply that moves a tenant to another account sends its next jobs to that account's queue", async () => {
    const queue = uniqueName('gw-accounts-move');
    const env = parseGatewayEnv({ PORT: '0', HOST: '127.0.0.1', REDIS_URL: redis.url, TOLLGATE_QUEUE: queue, TOLLGATE_CONFIG: path, TOLLGATE_NAME: 'interactive' });
    const gateway = await buildGateway(env, pino({ level: 'silent' }), { SEARCH_TOKEN_VAR: SEARCH_TOKEN, BATCH_TOKEN_VAR: BATCH_TOKEN });
    const client = new Redis(redis.url);
    const batch = createProducer({ redis: redis.url, queue, account: 'org:batch', tenantPolicy: 'none' });
    try {
      const url = await gateway.app.listen({ port: 0, host: '127.0.0.1' });
      const postOnce = async () => {
        const answer = await fetch(`${url}/v1/jobs`, {
          method: 'POST',
          body: JSON.stringify(request('once')),
          headers: { 'content-type': 'application/json', 'x-api-key': SEARCH_TOKEN, 'idempotency-key': 'move-once' },
        });
        expect(answer.status).toBe(202);
        return ((await answer.json()) as { id: string }).id;
      };
      const once = await postOnce(); // before the move: on search's queue on account interactive
      expect(await client.exists(queueKeys(`${queue}@interactive#search`).job(once))).toBe(1);
      const moved = (await readFile(path, 'utf8')).replace(
        'search: { tokenEnv: SEARCH_TOKEN_VAR, account: interactive }',
        'search: { tokenEnv: SEARCH_TOKEN_VAR, account: "org:batch" }',
      );
      expect(moved).not.toBe(await readFile(path, 'utf8'));
      await storeLimitsDocument(client, parseLimitsDocument(moved, 'moved.yaml'));
      await expect
        .poll(
          async () => {
            const answer = await fetch(`${url}/v1/jobs`, {
              method: 'POST',
              body: JSON.stringify(request('moved')),
              headers: { 'content-type': 'application/json', 'x-api-key': SEARCH_TOKEN },
            });
            const { id } = (await answer.json()) as { id: string };
            return (await client.exists(queueKeys(`${queue}@org%3Abatch#search`).job(id))) === 1;
          },
          { timeout: 5_000, interval: 300 },
        )
        .toBe(true);
      // after the move, the tenant's earlier job is still its own (found on the old queue), and an idempotent retry
      // answers that job instead of enqueuing a second one on the new queue (review: it ran twice)
      expect((await fetch(`${url}/v1/jobs/${once}`, { headers: { 'x-api-key': SEARCH_TOKEN } })).status).toBe(200);
      expect(await postOnce()).toBe(once);
      expect(await client.exists(queueKeys(`${queue}@org%3Abatch#search`).job(once))).toBe(0);
    } finally {
      await gateway.close();
      await batch.close();
      client.disconnect();
    }
  });

  it("starts for one account without the other accounts' tenants' tokens (a gateway per account); those tenants cannot sign in here", async () => {
    const env = parseGatewayEnv({
      PORT: '0',
      HOST: '127.0.0.1',
      REDIS_URL: redis.url,
      TOLLGATE_QUEUE: uniqueName('gw-one-account'),
      TOLLGATE_CONFIG: path,
      TOLLGATE_NAME: 'interactive',
    });
    const gateway = await buildGateway(env, pino({ level: 'silent' }), { SEARCH_TOKEN_VAR: SEARCH_TOKEN }); // batch's (org:batch) token is not here
    try {
      const url = await gateway.app.listen({ port: 0, host: '127.0.0.1' });
      expect((await fetch(`${url}/v1/jobs/job_x`, { headers: { 'x-api-key': BATCH_TOKEN } })).status).toBe(401);
      expect((await fetch(`${url}/v1/jobs/job_x`, { headers: { 'x-api-key': SEARCH_TOKEN } })).status).toBe(404);
    } finally {
      await gateway.close();
    }
    // its own account's tenant without a token still fails the start, naming the variable
    await expect(buildGateway(env, pino({ level: 'silent' }), { BATCH_TOKEN_VAR: BATCH_TOKEN })).rejects.toThrow(/SEARCH_TOKEN_VAR .* is invalid: unset/);
  });

  it('refuses GATEWAY_TOKENS when no account is the default (their jobs would name none that a worker runs)', async () => {
    const env = parseGatewayEnv({
      PORT: '0',
      REDIS_URL: redis.url,
      TOLLGATE_QUEUE: uniqueName('gw-accounts-bad'),
      TOLLGATE_CONFIG: path,
      GATEWAY_TOKENS: `legacy:${LEGACY_TOKEN}`,
    });
    await expect(buildGateway(env, pino({ level: 'silent' }), { SEARCH_TOKEN_VAR: SEARCH_TOKEN, BATCH_TOKEN_VAR: BATCH_TOKEN })).rejects.toThrow(
      /GATEWAY_TOKENS is invalid here: .* set TOLLGATE_NAME to one of interactive, org:batch/,
    );
  });
});
