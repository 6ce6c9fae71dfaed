import Anthropic from '@anthropic-ai/sdk';
import { startRedis, uniqueName, type TestRedis } from '@tollgate/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JOB_ID_PATTERN } from '@tollgate/queue';
import type { Gateway } from '../src/index.js';
import { ADMIN_TOKEN, MODEL, TOKEN_A, TOKEN_B, request, startGateway } from './support.js';

const MAX_BODY_BYTES = 4_096;
let redis: TestRedis;
let gateway: Gateway;
let url: string;

beforeAll(async () => {
  redis = await startRedis();
  ({ gateway, url } = await startGateway({
    REDIS_URL: redis.url,
    TOLLGATE_QUEUE: uniqueName('gw'),
    TOLLGATE_NAME: uniqueName('gw-limiter'),
    GATEWAY_MAX_BODY_BYTES: String(MAX_BODY_BYTES),
  }));
});
afterAll(async () => {
  await gateway.close();
  await redis.close();
});

async function totalJobs(): Promise<number> {
  return Object.values(await gateway.producer.counts()).reduce((sum, count) => sum + count, 0);
}

async function post(
  path: string,
  body: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: { type?: string; error?: { type: string; message: string }; request_id?: string } & Record<string, unknown>; headers: Headers }> {
  const response = await fetch(`${url}${path}`, { method: 'POST', body, headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN_A}`, ...headers } });
  return { status: response.status, body: (await response.json()) as never, headers: response.headers };
}

function expectEnvelope(answer: Awaited<ReturnType<typeof post>>, status: number, type: string, message: RegExp): void {
  expect(answer.status).toBe(status);
  expect(answer.body).toMatchObject({ type: 'error', error: { type, message: expect.stringMatching(message) } });
  expect(answer.body.request_id).toBe(answer.headers.get('request-id'));
}

describe('bad requests get Anthropic error envelopes and enqueue nothing', () => {
  it.each([
    ['no token', {}, { authorization: '' }, 401, 'authentication_error', /x-api-key header is required/],
    ['wrong token', {}, { authorization: 'Bearer not-a-token-of-anyone' }, 401, 'authentication_error', /Invalid bearer token/],
    ['missing max_tokens', { model: MODEL, messages: [{ role: 'user', content: 'x' }] }, {}, 400, 'invalid_request_error', /^max_tokens: /],
    ['messages not a list', { ...request(1), messages: 'x' }, {}, 400, 'invalid_request_error', /^messages: /],
    ['bad priority header', request(1), { 'tollgate-priority': 'urgent' }, 400, 'invalid_request_error', /^tollgate-priority: /],
  ])('%s', async (_name, body, headers, status, type, message) => {
    const before = await totalJobs();
    for (const path of ['/v1/messages', '/v1/jobs']) expectEnvelope(await post(path, JSON.stringify(body), headers), status, type, message);
    expect(await totalJobs()).toBe(before);
  });

  it('malformed JSON → 400 naming the body; oversized body → 413; unknown route → 404', async () => {
    const before = await totalJobs();
    expectEnvelope(await post('/v1/messages', '{"model": '), 400, 'invalid_request_error', /^body: invalid JSON/);
    const huge = JSON.stringify({ ...request(1), messages: [{ role: 'user', content: 'x'.repeat(MAX_BODY_BYTES) }] });
    expectEnvelope(await post('/v1/messages', huge), 413, 'request_too_large', /maximum size/);
    expectEnvelope(await post('/v1/nothing-here', JSON.stringify(request(1))), 404, 'not_found_error', /Not found/);
    const get = await fetch(`${url}/no/such/page`);
    expect(get.status).toBe(404);
    expect(await totalJobs()).toBe(before);
  });

  it('the official SDK sees its own error classes', async () => {
    const client = new Anthropic({ baseURL: url, apiKey: 'wrong-token-0123456789', maxRetries: 0 });
    await expect(client.messages.create(request(1))).rejects.toBeInstanceOf(Anthropic.AuthenticationError);
    const valid = new Anthropic({ baseURL: url, apiKey: TOKEN_A, maxRetries: 0 });
    await expect(valid.messages.create({ ...request(1), max_tokens: 0 })).rejects.toBeInstanceOf(Anthropic.BadRequestError);
  });
});

describe('jobs API', () => {
  it('POST /v1/jobs → 202 with an id; GET shows it to its tenant only; DELETE cancels a waiting job', async () => {
    const created = await post('/v1/jobs', JSON.stringify(request('job')), { 'tollgate-priority': '3', 'idempotency-key': 'job-abc' });
    expect(created.status).toBe(202);
    const id = String(created.body.id);
    expect(id).toMatch(JOB_ID_PATTERN); // derived from the tenant and the key, never the key itself
    expect(created.body).toEqual({ id, state: 'queued' });
    const again = await post('/v1/jobs', JSON.stringify(request('job')), { 'idempotency-key': 'job-abc' });
    expect(again.status).toBe(202);
    expect(again.body.id).toBe(id);
    const mine = await fetch(`${url}/v1/jobs/${id}`, { headers: { authorization: `Bearer ${TOKEN_A}` } });
    expect(mine.status).toBe(200);
    expect(await mine.json()).toMatchObject({ id, state: 'prioritized', tenant: 'team-a', priority: 3, result: null });
    const theirs = await fetch(`${url}/v1/jobs/${id}`, { headers: { authorization: `Bearer ${TOKEN_B}` } });
    expect(theirs.status).toBe(404);
    const deletedByOther = await fetch(`${url}/v1/jobs/${id}`, { method: 'DELETE', headers: { authorization: `Bearer ${TOKEN_B}` } });
    expect(deletedByOther.status).toBe(404);
    const deleted = await fetch(`${url}/v1/jobs/${id}`, { method: 'DELETE', headers: { authorization: `Bearer ${TOKEN_A}` } });
    expect(await deleted.json()).toEqual({ id, cancelled: true });
    const gone = await fetch(`${url}/v1/jobs/${id}`, { headers: { authorization: `Bearer ${TOKEN_A}` } });
    expect(gone.status).toBe(404);
    expect(((await gone.json()) as { error: { type: string } }).error.type).toBe('not_found_error');
  });

  it('GET /health answers 200 while Redis is up; GET /metrics (admin token) has the fleet gauges', async () => {
    const health = await fetch(`${url}/health`);
    expect(health.status).toBe(200);
    expect((await fetch(`${url}/metrics`)).status).toBe(401);
    const metrics = await (await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).text();
    expect(metrics).toMatch(/^tollgate_concurrency_limit\{account="[^"]+",pool="default"\} 4$/m);
    expect(metrics).toMatch(/^tollgate_permits_in_flight\{account="[^"]+",pool="default"\} 0$/m);
    expect(metrics).toMatch(/^tollgate_queue_jobs\{queue="[^"]+",state="completed"\} \d+$/m);
    expect(metrics).toContain('tollgate_redis_up 1');
  });
});
