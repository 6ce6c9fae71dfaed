import { mkdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseLimitsDocument, storeLimitsDocument } from '@tollgate/config';
import { createLimiter, type Limiter, type Permit } from '@tollgate/limiter';
import { startRedis, uniqueName, type TestRedis } from '@tollgate/test-support';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildGateway, parseGatewayEnv, type Gateway } from '../src/index.js';
import { ADMIN_TOKEN, request, startGateway } from './support.js';

const OUTPUT_DIR = fileURLToPath(new URL('../test-output/', import.meta.url));
/** Debian's chromium (what CI installs); elsewhere point CHROMIUM_PATH at a Chromium or Chrome binary. */
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];
const CONCURRENCY = 8;
const PERMITS_HELD = 3;
const RPM = 600;
const ITPM = 40_000;
/** How long the page may take to show the held permits (a deadline for the wait, not an assertion). */
const PAGE_DEADLINE_MS = 20_000;
/** Frames on the chart before the screenshot, so it shows a line. */
const CHART_FRAMES = 3;

let redis: TestRedis;
let gateway: Gateway;
let url: string;
let limiter: Limiter;
let browser: Browser;
const permits: Permit[] = [];

beforeAll(async () => {
  redis = await startRedis();
  const name = uniqueName('dash');
  ({ gateway, url } = await startGateway({
    REDIS_URL: redis.url,
    TOLLGATE_NAME: name,
    TOLLGATE_QUEUE: uniqueName('dash-queue'),
    TOLLGATE_CONCURRENCY: String(CONCURRENCY),
    TOLLGATE_RPM: String(RPM),
    TOLLGATE_ITPM: String(ITPM),
  }));
  limiter = createLimiter({
    redis: redis.url,
    name,
    concurrency: CONCURRENCY,
    rates: { requests: { limit: RPM, intervalMs: 60_000 }, inputTokens: { limit: ITPM, intervalMs: 60_000 } },
  });
  for (let i = 0; i < PERMITS_HELD; i += 1) permits.push(await limiter.acquire({ cost: { inputTokens: 1_000 } }));
  // no worker: they stay waiting; 3 of tenant alpha, 1 without a tenant
  for (let i = 0; i < 4; i += 1) await gateway.producer.enqueue(request(`queued ${i}`), i < 3 ? { tenant: 'alpha' } : {});
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
});
afterAll(async () => {
  await browser?.close();
  for (const permit of permits) await permit.release();
  await limiter?.close();
  await gateway?.close();
  await redis?.close();
});

describe('the dashboard', () => {
  it('shows in-flight and limit values that match limiter.snapshot(), the queue, the buckets and the jobs per tenant', async () => {
    expect((await fetch(`${url}/`)).status).toBe(401); // GATEWAY_DASHBOARD=token (the default) without the token
    expect((await fetch(`${url}/dashboard/events`)).status).toBe(401);
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await page.goto(`${url}/?token=${ADMIN_TOKEN}`); // the sign-in link: a cookie, then the page without the token in its URL
    expect(new URL(page.url()).search).toBe('');
    // page-side expressions as strings: this package compiles without the DOM library
    await page.waitForFunction(`document.querySelector('[data-testid="in-flight"]')?.textContent === '${PERMITS_HELD}'`, undefined, { timeout: PAGE_DEADLINE_MS });
    const snapshot = await limiter.snapshot();
    expect(await page.textContent('[data-testid="in-flight"]')).toBe(String(snapshot.inFlight));
    expect(await page.textContent('[data-testid="limit"]')).toBe(String(snapshot.concurrency));
    expect(await page.textContent('[data-testid="waiting"]')).toBe(String(snapshot.waiting));
    expect(await page.textContent('[data-testid="status"]')).toBe('live');
    expect(await page.locator('.slot.on').count()).toBe(snapshot.inFlight);
    expect(await page.locator('.slot').count()).toBe(CONCURRENCY);
    const dimensions = await page.locator('[data-dimension]').evaluateAll((nodes) => nodes.map((node) => node.getAttribute('data-dimension')));
    expect(dimensions.sort()).toEqual(Object.keys(snapshot.buckets).sort());
    expect(await page.textContent('[data-testid="queue-waiting"]')).toBe('4');
    const rows = await page.locator('[data-testid="tenants"] tbody tr').evaluateAll((trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent)));
    expect(rows).toEqual([
      ['alpha', '0', '3'],
      ['-', '0', '1'],
    ]);
    await page.waitForFunction(`Number(document.body.dataset.frames ?? 0) >= ${CHART_FRAMES}`, undefined, { timeout: PAGE_DEADLINE_MS });
    mkdirSync(OUTPUT_DIR, { recursive: true });
    await page.screenshot({ path: `${OUTPUT_DIR}dashboard.png`, fullPage: true });
    await page.close();
  });

  it("with pools (DESIGN §9): each pool's buckets, waiters and pause, as limiter.snapshot() has them, and the gateway's metrics per pool", async () => {
    const account = uniqueName('dash-pools');
    const dir = await mkdtemp(join(tmpdir(), 'tollgate-dashboard-pools-'));
    const path = join(dir, 'tollgate.yaml');
    await writeFile(
      path,
      [
        'accounts:',
        `  ${account}:`,
        '    apiKeyEnv: ANTHROPIC_API_KEY',
        `    concurrency: ${CONCURRENCY}`,
        '    pools:',
        `      sonnet: { models: ['claude-sonnet-*'], rpm: ${RPM}, itpm: ${ITPM} }`,
        "      haiku: { models: ['claude-haiku-*'], rpm: 1 }",
        '',
      ].join('\n'),
    );
    const pooled = await startGateway({ REDIS_URL: redis.url, TOLLGATE_CONFIG: path, TOLLGATE_QUEUE: uniqueName('dash-pools-queue') });
    const held: Permit[] = [];
    const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
    try {
      const poolLimiter = pooled.gateway.limiter;
      expect(poolLimiter.pools).toEqual(['haiku', 'sonnet']);
      held.push(await poolLimiter.acquire({ pool: 'sonnet', cost: { inputTokens: 2_000 } }));
      held.push(await poolLimiter.acquire({ pool: 'haiku' })); // haiku's one request a minute
      const queued = poolLimiter.acquire({ pool: 'haiku', timeoutMs: 60_000 }); // waits for haiku/requests
      queued.then((permit) => held.push(permit)).catch(() => {}); // rejected when the gateway closes
      await poolLimiter.pause(60_000, 'sonnet ITPM 429', { pool: 'sonnet' });
      await page.goto(`${pooled.url}/?token=${ADMIN_TOKEN}`);
      await page.waitForFunction(`document.querySelector('[data-pool="haiku"] [data-field="waiting"]')?.textContent === '1'`, undefined, { timeout: PAGE_DEADLINE_MS });
      const snapshot = await poolLimiter.snapshot();
      const pools = await page.locator('[data-pool]').evaluateAll((nodes) => nodes.map((node) => node.getAttribute('data-pool')));
      expect(pools).toEqual(Object.keys(snapshot.pools));
      expect(pools).toEqual(['haiku', 'sonnet']);
      for (const pool of pools as string[]) {
        const dimensions = await page.locator(`[data-pool="${pool}"] [data-dimension]`).evaluateAll((nodes) => nodes.map((node) => node.getAttribute('data-dimension')));
        expect(dimensions.sort()).toEqual(
          Object.keys(snapshot.buckets)
            .filter((name) => name.startsWith(`${pool}/`))
            .sort(),
        );
        expect(await page.textContent(`[data-pool="${pool}"] [data-field="waiting"]`)).toBe(String(snapshot.pools[pool]?.waiting));
      }
      // a bucket shows its plain dimension under its pool, and its capacity
      expect(await page.textContent('[data-dimension="sonnet/inputTokens"] .row b')).toBe('inputTokens');
      expect(await page.textContent('[data-dimension="sonnet/inputTokens"] .row span')).toMatch(new RegExp(`/ ${ITPM.toLocaleString('en-US')}$`));
      expect(await page.textContent('[data-pool="sonnet"] [data-field="paused"]')).toMatch(/^paused \d+\.\d s$/);
      expect(await page.textContent('[data-pool="haiku"] [data-field="paused"]')).toBe('not paused');
      expect(await page.textContent('[data-testid="paused"]')).toMatch(/^Pool sonnet paused by an upstream 429 for another \d+\.\d s$/);
      expect(await page.textContent('[data-testid="in-flight"]')).toBe('2');
      expect(await page.textContent('[data-testid="waiting"]')).toBe('1');
      mkdirSync(OUTPUT_DIR, { recursive: true });
      await page.screenshot({ path: `${OUTPUT_DIR}dashboard-pools.png`, fullPage: true });

      const metrics = await (await fetch(`${pooled.url}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).text();
      expect(metrics).toContain(`tollgate_bucket_capacity_tokens{account="${account}",pool="sonnet",dimension="inputTokens"} ${ITPM}`);
      expect(metrics).toContain(`tollgate_bucket_capacity_tokens{account="${account}",pool="haiku",dimension="requests"} 1`);
      expect(metrics).toContain(`tollgate_waiting{account="${account}",pool="haiku"} 1`);
      expect(metrics).toContain(`tollgate_waiting{account="${account}",pool="sonnet"} 0`);
      expect(metrics).toContain(`tollgate_pause_remaining_seconds{account="${account}",pool="haiku"} 0`);
      expect(metrics).toMatch(new RegExp(`^tollgate_pause_remaining_seconds\\{account="${account}",pool="sonnet"\\} [1-9]`, 'm'));
      expect(metrics).toContain(`tollgate_permits_in_flight{account="${account}",pool="*"} 2`);
      expect(metrics).not.toContain('pool="default"');
    } finally {
      await page.close();
      for (const permit of held) await permit.release().catch(() => {});
      await pooled.gateway.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("several accounts (issue 13): a row per account, every account's tenants with their account, and /metrics labelled by account", async () => {
    const [own, other] = [uniqueName('dash-own'), uniqueName('dash-other')];
    const queue = uniqueName('dash-accounts-queue');
    const dir = await mkdtemp(join(tmpdir(), 'tollgate-dashboard-accounts-'));
    const path = join(dir, 'tollgate.yaml');
    const text = [
      'accounts:',
      `  ${own}: { apiKeyEnv: OWN_KEY, concurrency: 4, pools: { all: { models: ['*'], rpm: ${RPM} } } }`,
      `  ${other}: { apiKeyEnv: OTHER_KEY, concurrency: 6, pools: { all: { models: ['*'], rpm: ${RPM} } } }`,
      'tenants:',
      `  search: { tokenEnv: SEARCH_TOKEN_VAR, account: ${own} }`,
      `  batch: { tokenEnv: BATCH_TOKEN_VAR, account: ${other} }`,
      '',
    ].join('\n');
    await writeFile(path, text);
    const client = new Redis(redis.url);
    await storeLimitsDocument(client, parseLimitsDocument(text, path)); // this file's Redis has the pools test's document: this one is the fleet's now
    const tokens = { SEARCH_TOKEN_VAR: 'search-token-0123456789abcdef', BATCH_TOKEN_VAR: 'batch-token-0123456789abcdef' };
    const accounts = await buildGateway(
      parseGatewayEnv({ PORT: '0', HOST: '127.0.0.1', REDIS_URL: redis.url, TOLLGATE_CONFIG: path, TOLLGATE_NAME: own, TOLLGATE_QUEUE: queue, GATEWAY_ADMIN_TOKEN: ADMIN_TOKEN }),
      pino({ level: 'silent' }),
      tokens,
    );
    const page = await browser.newPage({ viewport: { width: 1280, height: 1200 } });
    try {
      const base = await accounts.app.listen({ port: 0, host: '127.0.0.1' });
      const post = async (token: string) => {
        const answer = await fetch(`${base}/v1/jobs`, {
          method: 'POST',
          body: JSON.stringify(request('accounts')),
          headers: { 'content-type': 'application/json', 'x-api-key': token },
        });
        expect(answer.status).toBe(202);
      };
      // no worker: they stay queued, 2 of batch (account other), 1 of search (the gateway's own account)
      await post(tokens.BATCH_TOKEN_VAR);
      await post(tokens.BATCH_TOKEN_VAR);
      await post(tokens.SEARCH_TOKEN_VAR);

      const metrics = await (await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).text();
      const lines = metrics.split('\n').filter((line) => /^tollgate_(tenant_jobs_waiting|concurrency_limit|queue_jobs)\{/.test(line) && !/ 0$/.test(line));
      console.log(`gateway metrics, two accounts:\n${lines.join('\n')}`);
      for (const line of [
        `tollgate_tenant_jobs_waiting{account="${other}",pool="default",tenant="batch"} 2`,
        `tollgate_tenant_jobs_waiting{account="${own}",pool="default",tenant="search"} 1`,
        `tollgate_concurrency_limit{account="${other}",pool="default"} 6`,
        `tollgate_concurrency_limit{account="${own}",pool="default"} 4`,
        `tollgate_queue_jobs{queue="${queue}@${other}",state="prioritized"} 2`,
        `tollgate_queue_jobs{queue="${queue}@${own}",state="prioritized"} 1`,
        'tollgate_redis_up 1',
      ]) {
        expect(metrics).toContain(line);
      }
      // each tenant under its own account only
      expect(metrics).not.toContain(`account="${own}",pool="default",tenant="batch"`);
      expect(metrics).not.toContain(`account="${other}",pool="default",tenant="search"`);

      await page.goto(`${base}/?token=${ADMIN_TOKEN}`);
      const row = `[data-testid="accounts"] tr[data-account="${other}"]`;
      await page.waitForFunction(`document.querySelector('${row} [data-field="queued"]')?.textContent === '2'`, undefined, { timeout: PAGE_DEADLINE_MS });
      expect(await page.textContent(`${row} [data-field="limit"]`)).toBe('6');
      expect(await page.textContent(`[data-testid="accounts"] tr[data-account="${own}"] [data-field="queued"]`)).toBe('1');
      expect(await page.textContent(`[data-testid="accounts"] tr[data-account="${own}"] [data-field="limit"]`)).toBe('4');
      expect(await page.textContent('[data-testid="queue-waiting"]')).toBe('3'); // every account's queue together
      const tenantRows = await page.locator('[data-testid="tenants"] tbody tr').evaluateAll((trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent)));
      expect(tenantRows).toEqual([
        [other, 'batch', '0', '2'],
        [own, 'search', '0', '1'],
      ]);
      mkdirSync(OUTPUT_DIR, { recursive: true });
      await page.screenshot({ path: `${OUTPUT_DIR}dashboard-accounts.png`, fullPage: true });
    } finally {
      await page.close();
      await accounts.close();
      client.disconnect();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
