import { randomBytes } from 'node:crypto';
import { dumpRedis } from '@tollgate/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFleet, type Fleet } from '../support/fleet.js';

const hex = (bytes: number) => randomBytes(bytes).toString('hex');
const API_KEY = `sk-ant-canary-${hex(12)}`;
const TOKEN_ALPHA = `tok-canary-alpha-${hex(12)}`;
const TOKEN_BETA = `tok-canary-beta-${hex(12)}`;
const ADMIN_TOKEN = `tok-canary-admin-${hex(12)}`;
const METRICS_TOKEN = `tok-canary-scrape-${hex(12)}`;
const PROMPT = `prompt-canary-${hex(8)}`;
const SECRETS = { API_KEY, TOKEN_ALPHA, TOKEN_BETA, ADMIN_TOKEN, METRICS_TOKEN };

let fleet: Fleet;

beforeAll(async () => {
  fleet = await startFleet({
    concurrency: 4,
    workers: 1,
    gateway: true,
    mockEnv: { MOCK_API_KEYS: API_KEY }, // the mock refuses any other key: the canary is the key really used
    workerEnv: { ANTHROPIC_API_KEY: API_KEY, LOG_LEVEL: 'trace' },
    gatewayEnv: { GATEWAY_TOKENS: `alpha:${TOKEN_ALPHA},beta:${TOKEN_BETA}`, GATEWAY_ADMIN_TOKEN: ADMIN_TOKEN, GATEWAY_METRICS_TOKEN: METRICS_TOKEN, LOG_LEVEL: 'trace' },
  });
});
afterAll(() => fleet?.close());

const request = (tag: string, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ model: 'claude-haiku-4-5', max_tokens: 16, messages: [{ role: 'user', content: `${PROMPT} ${tag}` }], ...extra });

describe('the API key, the tenant tokens, the admin and metrics tokens never leave their owners', () => {
  it('not in logs (trace level), Redis, metrics, the dashboard, or any answer of any endpoint', async () => {
    const seen: string[] = [];
    const call = async (path: string, init: RequestInit & { keep?: boolean } = {}) => {
      const answer = await fetch(`${fleet.gatewayUrl}${path}`, { redirect: 'manual', ...init });
      const text = path === '/dashboard/events' ? await firstChunk(answer) : await answer.text();
      seen.push(`${answer.status} ${path}\n${[...answer.headers].map(([name, value]) => `${name}: ${value}`).join('\n')}\n${text}`);
      return { status: answer.status, text, headers: answer.headers };
    };
    const json = (token: string, extra: Record<string, string> = {}) => ({ 'content-type': 'application/json', authorization: `Bearer ${token}`, ...extra });

    expect((await call('/v1/messages', { method: 'POST', headers: json(TOKEN_ALPHA), body: request('plain') })).status).toBe(200);
    expect(
      (await call('/v1/messages', { method: 'POST', headers: { ...json(TOKEN_BETA), authorization: '', 'x-api-key': TOKEN_BETA }, body: request('stream', { stream: true }) }))
        .status,
    ).toBe(200);
    const job = await call('/v1/jobs', { method: 'POST', headers: json(TOKEN_ALPHA, { 'idempotency-key': 'canary-order' }), body: request('job') });
    expect(job.status).toBe(202);
    const { id } = JSON.parse(job.text) as { id: string };
    expect((await call('/v1/jobs', { method: 'POST', headers: json(TOKEN_ALPHA, { 'idempotency-key': 'canary-order' }), body: request('other') })).status).toBe(409);
    expect((await call(`/v1/jobs/${id}`, { headers: json(TOKEN_ALPHA) })).status).toBe(200);
    expect((await call(`/v1/jobs/${id}`, { headers: json(TOKEN_BETA) })).status).toBe(404);
    expect((await call('/v1/messages', { method: 'POST', headers: json(TOKEN_ALPHA), body: request('bad', { temperature: 2 }) })).status).toBe(400);
    expect((await call('/v1/messages', { method: 'POST', headers: json(TOKEN_ALPHA), body: request('unknown model', { model: 'claude-no-such-model' }) })).status).toBe(404);
    expect((await call('/v1/messages', { method: 'POST', headers: json(`${TOKEN_ALPHA}x`), body: request('wrong token') })).status).toBe(401);
    expect((await call('/v1/nothing', { headers: json(TOKEN_ALPHA) })).status).toBe(404);
    expect((await call('/health')).status).toBe(200);
    expect((await call('/metrics', { headers: { authorization: `Bearer ${METRICS_TOKEN}` } })).status).toBe(200);
    expect((await call('/metrics', { headers: { authorization: `Bearer ${TOKEN_ALPHA}` } })).status).toBe(401);
    expect((await call('/', { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).status).toBe(200);
    expect((await call('/dashboard/events', { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).status).toBe(200);
    // the sign-in link's own answer carries the admin token in its cookie, by design; what it sends back otherwise does not
    const signIn = await fetch(`${fleet.gatewayUrl}/?token=${ADMIN_TOKEN}`, { redirect: 'manual' });
    expect(signIn.status).toBe(303);
    seen.push(await signIn.text());
    const workerMetrics = await (await fetch(fleet.workers[0]?.ready.url ?? '')).text();
    expect(workerMetrics).toContain('tollgate_');

    const logs = [...(fleet.gateway?.logs ?? []), ...fleet.workers.flatMap((worker) => worker.logs)].map((line) => JSON.stringify(line)).join('\n');
    const answers = seen.join('\n');
    const redis = await dumpRedis(fleet.redis.url);
    expect(redis).toContain(PROMPT); // the jobs are in Redis (the prompt is their payload), so the scan saw them
    for (const [name, secret] of Object.entries(SECRETS)) {
      expect(logs.includes(secret), `${name} in the logs`).toBe(false);
      expect(answers.includes(secret), `${name} in an answer`).toBe(false);
      expect(redis.includes(secret), `${name} in Redis`).toBe(false);
      expect(workerMetrics.includes(secret), `${name} in the worker's metrics`).toBe(false);
    }
    expect(logs.includes(PROMPT), 'the prompt in the logs').toBe(false);
    expect(answers.includes(PROMPT), 'the prompt in an answer (none echoes the request)').toBe(false);
  });
});

/** The first chunk of an event stream (the dashboard's history), then the stream is let go. */
async function firstChunk(response: Response): Promise<string> {
  const reader = response.body?.getReader();
  const chunk = await reader?.read();
  await reader?.cancel();
  return new TextDecoder().decode(chunk?.value);
}
