import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { JOB_ID_PATTERN } from '@tollgate/queue';
import { queueKeys } from '@tollgate/queue/internal';
import { seededRandom } from '@tollgate/test-support';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Fleet } from '../support/fleet.js';
import { TOKEN_ALPHA, TOKEN_BETA, asTenant, body, json, startSecurityFleet } from './support.js';

const SEED = 11;
const HOSTILE_RANDOM = 300;
/** A request of the other tenant must complete within this while the attack runs; a deadline, not a measurement. */
const VICTIM_DEADLINE_MS = 30_000;

let fleet: Fleet;

beforeAll(async () => {
  fleet = await startSecurityFleet({ GATEWAY_TENANT_QUEUED_MAX: '100000' });
});
afterAll(() => fleet?.close());

/** BullMQ's own key suffixes, read from its source: the queue keys, plus the per-job and other suffixes its scripts use. */
function bullmqSuffixes(): string[] {
  const require = createRequire(import.meta.url);
  const source = readFileSync(require.resolve('bullmq/dist/cjs/classes/queue-keys.js'), 'utf8');
  const list = /\[\s*((?:'[^']*',?\s*(?:\/\/[^\n]*)?\s*)+)\]/.exec(source)?.[1] ?? '';
  const queueKeySuffixes = [...list.matchAll(/'([^']*)'/g)].map((match) => match[1] ?? '').filter((suffix) => suffix.length > 0);
  expect(queueKeySuffixes).toEqual(
    expect.arrayContaining([
      'wait',
      'active',
      'delayed',
      'stalled',
      'marker',
      'meta',
      'id',
      'events',
      'completed',
      'failed',
      'paused',
      'prioritized',
      'limiter',
      'pc',
      'repeat',
      'de',
      'stalled-check',
    ]),
  );
  const scriptSuffixes = [
    'lock',
    'logs',
    'dependencies',
    'processed',
    'unsuccessful',
    'failed',
    'ret',
    'retained',
    'metrics',
    'metrics:completed',
    'metrics:failed',
    'priority',
    'dn',
    'de:x',
    'dn:x',
    'repeat:x',
    'events:x',
    'fleet-stats',
    'epoch',
    'tenant-open:alpha',
    'tenant-open:beta',
    'tenant-jobs',
    'tenant-unfinished',
    'relay-wake:x',
    'cleanup',
    'inbox',
    'mid',
    'node',
    'started',
    'subs',
    'layout',
  ];
  return [...new Set([...queueKeySuffixes, ...scriptSuffixes])];
}

/** Strings an attacker would try: BullMQ's names in many spellings, separators, braces (hash tags), wildcards, control characters. */
function hostileStrings(suffixes: readonly string[]): string[] {
  const random = seededRandom(SEED);
  const alphabet = 'abc:{}*?[]\\/\'" .-_%\u0000\u0001\n\r\t\u00ff\u2028$#@!~`^&|<>=+,;';
  const pick = <T>(items: readonly T[]) => items[Math.floor(random() * items.length)] as T;
  const fixed = [
    ...suffixes,
    ...suffixes.map((suffix) => `${suffix}:`),
    ...suffixes.map((suffix) => suffix.toUpperCase()),
    '1',
    '0',
    '-1',
    '00',
    '9007199254740993',
    '',
    ' ',
    ':',
    '::',
    '{',
    '}',
    '{x}',
    '{tollgate-queue:x}',
    '*',
    '?',
    '..',
    '../wait',
    'job_AAAAAAAAAAAAAAAAAAAAAA',
    'job_',
    `job_${'A'.repeat(23)}`,
    'x'.repeat(257),
  ];
  const generated = Array.from({ length: HOSTILE_RANDOM }, () => {
    const length = 1 + Math.floor(random() * 40);
    let text = random() < 0.3 ? `${pick(suffixes)}${pick([':', '', '-', ' '])}` : '';
    for (let i = 0; i < length; i += 1) text += pick([...alphabet]);
    return text;
  });
  return [...new Set([...fixed, ...generated])];
}

/** Header values HTTP can carry: no CR/LF/NUL, no characters above Latin-1. */
const sendable = (text: string) => /^[\t\u0020-\u007e\u0080-\u00ff]*$/.test(text);

/** Every key of the fleet's Redis with its type. */
async function keyTypes(url: string): Promise<Map<string, string>> {
  const connection = new Redis(url);
  try {
    const types = new Map<string, string>();
    let cursor = '0';
    do {
      const [next, keys] = await connection.scan(cursor, 'COUNT', 1_000);
      cursor = next;
      for (const key of keys) types.set(key, await connection.type(key));
    } while (cursor !== '0');
    return types;
  } finally {
    connection.disconnect();
  }
}

describe('no caller string names a Redis key or a job id', () => {
  it('every BullMQ key suffix and a seeded list of hostile strings, as Idempotency-Key and as job ids in URLs: the other tenant keeps being served', async () => {
    const suffixes = bullmqSuffixes();
    const hostile = hostileStrings(suffixes);
    const victim = async (tag: string) => {
      const answer = await fetch(`${fleet.gatewayUrl}/v1/messages`, {
        method: 'POST',
        headers: asTenant(TOKEN_BETA),
        body: json(body(`victim ${tag}`)),
        signal: AbortSignal.timeout(VICTIM_DEADLINE_MS),
      });
      expect(answer.status, `beta's request ${tag}`).toBe(200);
    };
    await victim('before');
    const ids = new Set<string>();
    let accepted = 0;
    let served = 1;
    for (const [i, key] of hostile.entries()) {
      if (sendable(key)) {
        const created = await fetch(`${fleet.gatewayUrl}/v1/jobs`, { method: 'POST', headers: asTenant(TOKEN_ALPHA, { 'idempotency-key': key }), body: json(body(`attack ${i}`)) });
        if (key.length >= 1 && key.length <= 256 && key.trim() === key) {
          expect(created.status, JSON.stringify(key)).toBe(202);
          const { id } = (await created.json()) as { id: string };
          expect(id).toMatch(JOB_ID_PATTERN);
          ids.add(id);
          accepted += 1;
        } else {
          // blank or over-long: refused; with spaces around it: HTTP trims them, and the trimmed key may be one sent before
          expect([202, 400, 409], JSON.stringify(key)).toContain(created.status);
          await created.body?.cancel();
        }
      }
      // the same strings as job ids in the URL: never found, never touched, never echoed whole
      for (const method of ['GET', 'DELETE']) {
        const answer = await fetch(`${fleet.gatewayUrl}/v1/jobs/${encodeURIComponent(key)}`, { method, headers: asTenant(TOKEN_ALPHA) });
        expect([404, 414, 400], `${method} ${JSON.stringify(key)}`).toContain(answer.status);
        const text = await answer.text();
        expect(text.length).toBeLessThan(1_000);
        expect(JSON.parse(text)).toMatchObject({ type: 'error' });
      }
      if (i % 50 === 49) {
        await victim(String(i));
        served += 1;
      }
    }
    await victim('after');
    served += 1;
    expect(accepted).toBeGreaterThan(suffixes.length);
    expect(ids.size).toBe(accepted); // each key its own job

    // Redis holds BullMQ's keys with BullMQ's types, and every other key is a job's, under a derived id
    const keys = queueKeys(fleet.queue);
    const base = `${keys.prefix}:${fleet.queue}:`;
    const types = await keyTypes(fleet.redis.url);
    const expectedType: Record<string, string> = {
      wait: 'list',
      active: 'list',
      paused: 'list',
      prioritized: 'zset',
      delayed: 'zset',
      completed: 'zset',
      failed: 'zset',
      stalled: 'set',
      meta: 'hash',
      id: 'string',
      events: 'stream',
      marker: 'zset',
      pc: 'string',
      'tenant-jobs': 'hash',
      'tenant-unfinished': 'hash',
    };
    for (const [suffix, type] of Object.entries(expectedType)) {
      const actual = types.get(base + suffix);
      if (actual !== undefined) expect(actual, suffix).toBe(type);
    }
    for (const key of types.keys()) {
      if (!key.startsWith(base)) continue;
      const rest = key.slice(base.length);
      const jobPart = /^(job_[A-Za-z0-9_-]{22})(?::(lock|logs|dependencies|processed|failed|unsuccessful))?$/.exec(rest);
      const ok =
        jobPart !== null ||
        rest in expectedType ||
        ['stalled-check', 'fleet-stats', 'epoch', 'tenant-open:alpha', 'tenant-open:beta', 'limiter'].includes(rest) ||
        /^events:job_[A-Za-z0-9_-]{22}$/.test(rest) ||
        /^relay-wake:[0-9a-f]{16}$/.test(rest);
      expect(ok, `unexpected key ${JSON.stringify(key)}`).toBe(true);
    }
    expect(served).toBeGreaterThanOrEqual(3);
  });

  it('job ids are random: neither numbers nor in creation order, so they tell nothing about other tenants', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 20; i += 1) {
      const created = await fetch(`${fleet.gatewayUrl}/v1/jobs`, { method: 'POST', headers: asTenant(TOKEN_ALPHA), body: json(body(`order ${i}`)) });
      expect(created.status).toBe(202);
      ids.push(((await created.json()) as { id: string }).id);
    }
    for (const id of ids) expect(id).toMatch(JOB_ID_PATTERN);
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort()).not.toEqual(ids); // 20 random ids sorted by chance: 1 in 20!
    for (const id of ids) expect(id).not.toMatch(/^\d+$/); // BullMQ's counter ids are never handed out
  });
});

describe('idempotency keys belong to a tenant', () => {
  it('same key + same body → the same job; same key + another body → 409; another tenant with the key gets its own job', async () => {
    const post = (token: string, key: string, tag: string) =>
      fetch(`${fleet.gatewayUrl}/v1/jobs`, { method: 'POST', headers: asTenant(token, { 'idempotency-key': key }), body: json(body(tag)) });
    const first = await post(TOKEN_ALPHA, 'order-42', 'alpha order');
    expect(first.status).toBe(202);
    const { id } = (await first.json()) as { id: string };
    const again = await post(TOKEN_ALPHA, 'order-42', 'alpha order');
    expect(again.status).toBe(202);
    expect(((await again.json()) as { id: string }).id).toBe(id);
    const reused = await post(TOKEN_ALPHA, 'order-42', 'another body');
    expect(reused.status).toBe(409);
    expect(await reused.json()).toMatchObject({ type: 'error', error: { type: 'invalid_request_error', message: 'Idempotency-Key reused with a different body' } });

    const theirs = await post(TOKEN_BETA, 'order-42', 'alpha order');
    expect(theirs.status).toBe(202);
    const theirId = ((await theirs.json()) as { id: string }).id;
    expect(theirId).not.toBe(id);
    const betaView = await fetch(`${fleet.gatewayUrl}/v1/jobs/${theirId}`, { headers: asTenant(TOKEN_BETA) });
    expect(betaView.status).toBe(200);
    expect(await betaView.json()).toMatchObject({ id: theirId, tenant: 'beta' });
    const alphaView = await fetch(`${fleet.gatewayUrl}/v1/jobs/${id}`, { headers: asTenant(TOKEN_ALPHA) });
    expect(await alphaView.json()).toMatchObject({ id, tenant: 'alpha' });
    // beta cannot block alpha's future job with alpha's predictable key
    const future = await post(TOKEN_BETA, 'order-43', 'beta first');
    expect(future.status).toBe(202);
    const alphaFuture = await post(TOKEN_ALPHA, 'order-43', 'alpha later');
    expect(alphaFuture.status).toBe(202);
    expect(((await alphaFuture.json()) as { id: string }).id).not.toBe(((await future.json()) as { id: string }).id);
  });
});
