import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { queueKeys } from '@tollgate/queue/internal';
import { freePort } from '@tollgate/test-support';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jsonOf, runTollgate, watchTollgate } from '../support/cli.js';
import { LEASE_TTL_MS, MODEL, eventually, settle, startFleet, type Fleet } from '../support/fleet.js';
import { stopAllServices } from '../support/processes.js';

/** The account's concurrency limit, given to the mock and the fleet. */
const CONCURRENCY = 3;
/** A word in every prompt of this file: it must never be printed without --show-content. */
const PROMPT_MARKER = 'walrus-prompt-text';
/** Polls of fleet state; a deadline, not a measurement. */
const EVENTUALLY_MS = 30_000;

let fleet: Fleet;
let env: Record<string, string>;
let dir: string;

const request = (i: number) => ({ model: MODEL, max_tokens: 8, messages: [{ role: 'user' as const, content: `${PROMPT_MARKER} ${i}` }] });

interface StatusJson {
  atMs: number;
  limiters: Array<{
    name: string;
    pool: string;
    inFlight: number;
    concurrency: number | null;
    concurrencyConfigured: number | null;
    waiting: number;
    pausedForMs: number;
    buckets: Record<string, unknown>;
    pools: Array<{ pool: string; waiting: number; pausedForMs: number; buckets: Record<string, { capacity: number }> }>;
  }>;
  tenants: { account: string; pool: string };
  queue: { name: string; counts: Record<string, number>; totals: Record<string, number> };
}

beforeAll(async () => {
  fleet = await startFleet({ workers: 1, concurrency: CONCURRENCY, rpm: 100_000, mockEnv: { MOCK_LATENCY_MS: '20' } });
  env = { REDIS_URL: fleet.redis.url, TOLLGATE_NAME: fleet.limiterName, TOLLGATE_QUEUE: fleet.queue };
  dir = await mkdtemp(join(tmpdir(), 'tollgate-cli-'));
});

afterAll(async () => {
  await fleet?.close();
  await stopAllServices();
  await rm(dir, { recursive: true, force: true });
});

describe('tollgate CLI, as a process against a live fleet (a worker process, the mock, a real Redis)', () => {
  it('--help lists every command, exit 0; each command has its own --help; no command is exit 2 with the help', async () => {
    const help = await runTollgate(['--help'], env);
    expect(help.code).toBe(0);
    for (const command of [
      'status',
      'pause',
      'resume',
      'concurrency',
      'limits show',
      'limits apply',
      'limits diff',
      'queue counts',
      'queue retry-failed',
      'queue clean',
      'queue drain',
      'jobs show',
    ]) {
      expect(help.stdout).toContain(`  ${command} `);
    }
    const pause = await runTollgate(['pause', '--help'], env);
    expect(pause.code).toBe(0);
    expect(pause.stdout).toMatch(/^tollgate pause DURATION/);
    expect((await runTollgate([], env)).code).toBe(2);
  });

  it('status --json after a load: the limiter and the queue as the fleet sees them; the text view names the same', async () => {
    const ids = await Promise.all(Array.from({ length: 12 }, (_, i) => fleet.producer.enqueue(request(i))));
    expect((await settle(fleet.producer, ids)).completed).toHaveLength(12);
    const run = await runTollgate(['status', '--json'], env);
    expect(run.code).toBe(0);
    const status = jsonOf<StatusJson>(run);
    expect(status.limiters).toHaveLength(1);
    expect(status.limiters[0]).toMatchObject({ name: fleet.limiterName, pool: 'default', concurrency: CONCURRENCY, concurrencyConfigured: CONCURRENCY, pausedForMs: 0 });
    expect(status.limiters[0]!.inFlight).toBeLessThanOrEqual(CONCURRENCY);
    expect(Object.keys(status.limiters[0]!.buckets)).toEqual(['requests']);
    // without pools: the one pool `default`, with the limiter's buckets, waiters and pause
    expect(status.limiters[0]!.pools).toEqual([{ pool: 'default', waiting: status.limiters[0]!.waiting, pausedForMs: 0, buckets: status.limiters[0]!.buckets }]);
    expect(status.tenants).toMatchObject({ account: fleet.limiterName, pool: 'default' });
    expect(status.queue.name).toBe(fleet.queue);
    expect(status.queue.counts.completed).toBeGreaterThanOrEqual(12);
    const text = await runTollgate(['status'], env);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain(`limiter ${fleet.limiterName} (pool default)`);
    expect(text.stdout).toMatch(new RegExp(`in flight +\\d+ / ${CONCURRENCY}`));
    expect(text.stdout).toContain(`queue ${fleet.queue}`);
  });

  it('status --watch --json prints one JSON line per refresh and exits 0 on SIGINT', async () => {
    let lines = 0;
    const run = await watchTollgate(['status', '--watch', '--interval', '200ms', '--json'], env, () => ++lines === 3);
    expect(run.code).toBe(0);
    const frames = run.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as StatusJson);
    expect(frames.length).toBeGreaterThanOrEqual(3);
    for (const frame of frames) expect(frame.limiters[0]?.name).toBe(fleet.limiterName);
    expect(frames[2]!.atMs).toBeGreaterThan(frames[0]!.atMs);
  });

  it('pause holds every grant fleet-wide (a job waits, the mock sees nothing); resume lets it through', async () => {
    const paused = await runTollgate(['pause', '2m', '--json'], env);
    expect(paused.code).toBe(0);
    const pause = jsonOf<{ pausedForMs: number; keptLongerPause: boolean }>(paused);
    expect(pause.pausedForMs).toBeGreaterThan(100_000);
    expect(pause.pausedForMs).toBeLessThanOrEqual(120_000);
    expect((await fleet.observer.snapshot()).pausedUntilMs).toBeGreaterThan((await fleet.observer.snapshot()).nowMs);

    const before = (await fleet.mockStats()).messages;
    const id = await fleet.producer.enqueue(request(100));
    expect(await eventually(async () => (await fleet.observer.snapshot()).waiting === 1, EVENTUALLY_MS)).toBe(true); // the worker took it and waits
    expect((await fleet.mockStats()).messages).toBe(before);
    const status = jsonOf<StatusJson>(await runTollgate(['status', '--json'], env));
    expect(status.limiters[0]!.pausedForMs).toBeGreaterThan(0);
    expect(status.limiters[0]!.waiting).toBe(1);

    const resumed = await runTollgate(['resume', '--json'], env);
    expect(resumed.code).toBe(0);
    expect(jsonOf(resumed)).toMatchObject({ name: fleet.limiterName, wasPaused: true });
    expect((await settle(fleet.producer, [id])).completed).toEqual([id]);
    expect(jsonOf(await runTollgate(['resume', '--json'], env))).toMatchObject({ wasPaused: false });
  });

  it('concurrency N sets the effective limit fleet-wide; above the configured limit is refused (5), not a number is usage (2)', async () => {
    const set = await runTollgate(['concurrency', '1', '--json'], env);
    expect(set.code).toBe(0);
    expect(jsonOf(set)).toEqual({ name: fleet.limiterName, concurrency: 1, concurrencyConfigured: CONCURRENCY });
    expect((await fleet.observer.snapshot()).concurrency).toBe(1);
    const ids = await Promise.all(Array.from({ length: 8 }, (_, i) => fleet.producer.enqueue(request(200 + i))));
    await fleet.mockAdmin('reset');
    expect((await settle(fleet.producer, ids)).completed).toHaveLength(8);
    expect((await fleet.mockStats()).maxConcurrent).toBe(1);

    const above = await runTollgate(['concurrency', String(CONCURRENCY + 1)], env);
    expect(above.code).toBe(5);
    expect(above.stderr).toContain(`above the configured ${CONCURRENCY}`);
    const word = await runTollgate(['concurrency', 'lots'], env);
    expect(word.code).toBe(2);
    expect(word.stderr).toContain('concurrency "lots"');
    expect((await runTollgate(['concurrency', String(CONCURRENCY)], env)).code).toBe(0);
    expect((await fleet.observer.snapshot()).concurrency).toBe(CONCURRENCY);
  });

  it('limits show | diff | apply: a round trip, a change the fleet then runs with, a bad file refused whole naming the field', async () => {
    const show = await runTollgate(['limits', 'show'], env);
    expect(show.code).toBe(0);
    const file = join(dir, 'limits.yaml');
    await writeFile(file, show.stdout);
    const same = await runTollgate(['limits', 'diff', file, '--json'], env);
    expect(same.code).toBe(0);
    expect(jsonOf(same)).toEqual({ name: fleet.limiterName, changes: [] });

    const shown = jsonOf<{ limits: Record<string, unknown> }>(await runTollgate(['limits', 'show', '--json'], env));
    expect(shown.limits).toEqual({ concurrency: CONCURRENCY, rates: { requests: { limit: 100_000, intervalMs: 60_000 } }, reserve: [], leaseTtlMs: LEASE_TTL_MS });
    const changed = join(dir, 'changed.json');
    await writeFile(changed, JSON.stringify({ ...shown.limits, concurrency: CONCURRENCY + 1, rates: { requests: { limit: 50_000, intervalMs: 60_000 } } }));
    const diff = await runTollgate(['limits', 'diff', changed, '--json'], env);
    expect(diff.code).toBe(1);
    expect(jsonOf(diff)).toEqual({
      name: fleet.limiterName,
      changes: [
        { field: 'concurrency', fleet: CONCURRENCY, file: CONCURRENCY + 1 },
        { field: 'rates.requests.perMinute', fleet: 100_000, file: 50_000 },
        { field: 'rates.requests.capacity', fleet: 100_000, file: 50_000 },
      ],
    });
    const apply = await runTollgate(['limits', 'apply', changed, '--json'], env);
    expect(apply.code).toBe(0);
    expect(jsonOf(apply)).toMatchObject({ applied: true });
    const snapshot = await fleet.observer.snapshot();
    expect(snapshot.concurrencyConfigured).toBe(CONCURRENCY + 1);
    expect(snapshot.buckets.requests?.capacity).toBe(50_000);
    expect((await runTollgate(['limits', 'diff', changed], env)).code).toBe(0);

    const bad = join(dir, 'bad.yaml');
    await writeFile(bad, 'concurrency: 0\nrates:\n  requests: { limit: 10, intervalMs: 60000 }\n');
    const refused = await runTollgate(['limits', 'apply', bad], env);
    expect(refused.code).toBe(5);
    expect(refused.stderr).toMatch(/concurrency: .*\(got 0\)/);
    expect((await fleet.observer.snapshot()).concurrencyConfigured).toBe(CONCURRENCY + 1); // nothing applied
    const unknownField = join(dir, 'typo.yaml');
    await writeFile(unknownField, 'concurency: 4\n');
    const typo = await runTollgate(['limits', 'diff', unknownField], env);
    expect(typo.code).toBe(5);
    expect(typo.stderr).toContain('concurency');

    // back to the fleet's limits for the tests after this one
    expect((await runTollgate(['limits', 'apply', file], env)).code).toBe(0);
    expect((await fleet.observer.snapshot()).concurrencyConfigured).toBe(CONCURRENCY);
  });

  it('limits apply of a whole document (accounts, tenants): the account limiter runs with it, the document is stored with a revision, show and diff read it; two pools in one account run one limiter with pools; a bad document writes nothing', async () => {
    const documentFor = (concurrency: number, maxPriority: number) =>
      [
        'accounts:',
        `  ${fleet.limiterName}:`,
        '    apiKeyEnv: ANTHROPIC_API_KEY',
        `    concurrency: ${concurrency}`,
        `    leaseTtlMs: ${LEASE_TTL_MS}`,
        '    pools:',
        "      all: { models: ['*'], rpm: 100000 }",
        'tenants:',
        `  batch: { tokenEnv: TOKEN_BATCH, account: ${fleet.limiterName}, maxPriority: ${maxPriority} }`,
        '',
      ].join('\n');
    const lowered = join(dir, 'document.yaml');
    await writeFile(lowered, documentFor(CONCURRENCY - 1, 4));
    const before = await runTollgate(['limits', 'diff', lowered, '--json'], env);
    expect(before.code).toBe(1);
    expect(jsonOf(before)).toEqual({ document: true, revision: null, changes: ['(no document stored yet: all of it)'] });
    const applied = await runTollgate(['limits', 'apply', lowered, '--json'], env);
    expect(applied.code).toBe(0);
    expect(jsonOf(applied)).toMatchObject({ document: true, applied: true, revision: 1, limiters: [{ name: fleet.limiterName }] });
    expect((await fleet.observer.snapshot()).concurrencyConfigured).toBe(CONCURRENCY - 1);
    expect((await runTollgate(['limits', 'diff', lowered], env)).code).toBe(0);
    const again = await runTollgate(['limits', 'apply', lowered, '--json'], env);
    expect(jsonOf(again)).toMatchObject({ applied: false, revision: 1 });
    const shown = jsonOf<{ document: { revision: number; document: { tenants: Record<string, { maxPriority: number }> } } }>(await runTollgate(['limits', 'show', '--json'], env));
    expect(shown.document.revision).toBe(1);
    expect(shown.document.document.tenants.batch?.maxPriority).toBe(4);
    expect((await runTollgate(['limits', 'show'], env)).stdout).toMatch(/# the fleet's limits document, revision 1/);

    const twoPools = join(dir, 'two-pools.yaml');
    await writeFile(
      twoPools,
      documentFor(CONCURRENCY, 4).replace(
        "      all: { models: ['*'], rpm: 100000 }",
        "      sonnet: { models: ['claude-sonnet-*'], rpm: 100 }\n      haiku: { models: ['claude-haiku-*'], rpm: 200 }",
      ),
    );
    // an account with two pools runs one limiter with a lane and a set of buckets per pool (DESIGN §9)
    expect(jsonOf(await runTollgate(['limits', 'apply', twoPools, '--json'], env))).toMatchObject({ applied: true, revision: 2 });
    const shownPools = jsonOf<{ limits: unknown }>(await runTollgate(['limits', 'show', '--json'], env));
    expect(shownPools.limits).toMatchObject({ pools: { haiku: { requests: { limit: 200, intervalMs: 60_000 } }, sonnet: { requests: { limit: 100, intervalMs: 60_000 } } } });
    expect(await eventually(async () => (await fleet.observer.snapshot()).pools.sonnet !== undefined, EVENTUALLY_MS)).toBe(true);
    // status: one entry per pool, its buckets by their plain dimensions; what the account shares is pool `*`
    await fleet.observer.pause(60_000, 'test: sonnet only', { pool: 'sonnet' });
    const pooledStatus = jsonOf<StatusJson>(await runTollgate(['status', '--json'], env));
    expect(pooledStatus.limiters[0]).toMatchObject({ name: fleet.limiterName, pool: '*', concurrencyConfigured: CONCURRENCY, pausedForMs: 0 });
    expect(Object.keys(pooledStatus.limiters[0]!.buckets).sort()).toEqual(['haiku/requests', 'sonnet/requests']);
    const [haiku, sonnet] = pooledStatus.limiters[0]!.pools;
    expect(pooledStatus.limiters[0]!.pools.map(({ pool }) => pool)).toEqual(['haiku', 'sonnet']);
    expect(haiku).toMatchObject({ waiting: 0, pausedForMs: 0, buckets: { requests: { capacity: 200 } } });
    expect(sonnet).toMatchObject({ waiting: 0, buckets: { requests: { capacity: 100 } } });
    expect(sonnet!.pausedForMs).toBeGreaterThan(50_000);
    expect(pooledStatus.tenants).toMatchObject({ account: fleet.limiterName, pool: '*' });
    const pooledText = (await runTollgate(['status'], env)).stdout;
    expect(pooledText).toContain(`limiter ${fleet.limiterName} (pools haiku, sonnet)`);
    expect(pooledText).toMatch(/ {2}pool sonnet\n {4}waiting {4}0\n {4}paused {5}yes, [^\n]+ left\n {4}buckets {4}requests {2}[\d.]+ \/ 100 /);
    expect(pooledText).toMatch(/ {2}pool haiku\n {4}waiting {4}0\n {4}paused {5}no\n {4}buckets {4}requests {2}[\d.]+ \/ 200 /);
    // a worker process's metrics: the fleet gauges per pool
    const metrics = await (await fetch(String(fleet.workers[0]!.ready.url))).text();
    const account = `account="${fleet.limiterName}"`;
    expect(metrics).toContain(`tollgate_bucket_capacity_tokens{${account},pool="sonnet",dimension="requests"} 100`);
    expect(metrics).toContain(`tollgate_bucket_capacity_tokens{${account},pool="haiku",dimension="requests"} 200`);
    expect(metrics).toContain(`tollgate_waiting{${account},pool="haiku"} 0`);
    expect(metrics).toMatch(new RegExp(`^tollgate_pause_remaining_seconds\\{${account},pool="sonnet"\\} [1-9]`, 'm'));
    expect(metrics).toContain(`tollgate_concurrency_configured{${account},pool="*"} ${CONCURRENCY}`);
    await fleet.observer.resume({ pool: 'sonnet' });
    const badTenant = join(dir, 'bad-tenant.yaml');
    await writeFile(badTenant, documentFor(CONCURRENCY, 4).replace(`account: ${fleet.limiterName}`, 'account: nowhere'));
    const badRefused = await runTollgate(['limits', 'apply', badTenant], env);
    expect(badRefused.code).toBe(5);
    expect(badRefused.stderr).toMatch(/tenants\.batch\.account: not an account of this document/);

    // back to the fleet's limits for the tests after this one
    const restored = join(dir, 'document-restored.yaml');
    await writeFile(restored, documentFor(CONCURRENCY, 4));
    expect(jsonOf(await runTollgate(['limits', 'apply', restored, '--json'], env))).toMatchObject({ applied: true, revision: 3 });
    expect((await fleet.observer.snapshot()).concurrencyConfigured).toBe(CONCURRENCY);
  });

  it('jobs show: state, attempts, usage; the prompt only with --show-content; an unknown id is exit 3, a malformed one 2', async () => {
    const id = await fleet.producer.enqueue(request(300));
    await settle(fleet.producer, [id]);
    const run = await runTollgate(['jobs', 'show', id, '--json'], env);
    expect(run.code).toBe(0);
    const job = jsonOf<{ state: string; attemptsMade: number; usage: { input_tokens: number; output_tokens: number } | null; error: unknown; model: string }>(run);
    expect(job).toMatchObject({ state: 'completed', attemptsMade: 1, error: null, model: MODEL });
    expect(job.usage?.input_tokens).toBeGreaterThan(0);
    expect(job.usage?.output_tokens).toBeGreaterThan(0);
    expect(run.stdout).not.toContain(PROMPT_MARKER);
    const text = await runTollgate(['jobs', 'show', id], env);
    expect(text.stdout).toContain('state        completed');
    expect(text.stdout).not.toContain(PROMPT_MARKER);
    const content = await runTollgate(['jobs', 'show', id, '--show-content', '--json'], env);
    expect(content.stdout).toContain(PROMPT_MARKER);
    const unknownId = `job_${'a'.repeat(22)}`;
    const missing = await runTollgate(['jobs', 'show', unknownId], env);
    expect(missing.code).toBe(3);
    expect(missing.stderr).toContain(`no job "${unknownId}"`);
    const malformed = await runTollgate(['jobs', 'show', 'no-such-job'], env);
    expect(malformed.code).toBe(2);
    expect(malformed.stderr).toContain('job id "no-such-job": expected an id as enqueue returns it');
  });

  it('queue counts, retry-failed (failed jobs back in the queue), clean --older-than, drain --yes', async () => {
    // a model the mock does not know: a 404, never retried, so each job fails at once with its error kept
    const failing = await Promise.all(Array.from({ length: 3 }, (_, i) => fleet.producer.enqueue({ ...request(400 + i), model: 'claude-no-such-model' })));
    const outcomes = await settle(fleet.producer, failing);
    expect(outcomes.failed.size).toBe(3);
    const counts = jsonOf<{ counts: Record<string, number> }>(await runTollgate(['queue', 'counts', '--json'], env)).counts;
    expect(counts.failed).toBe(3);
    const shownFailure = jsonOf<{ state: string; error: { status: number } }>(await runTollgate(['jobs', 'show', failing[0]!, '--json'], env));
    expect(shownFailure).toMatchObject({ state: 'failed', error: { status: 404 } });

    const retried = await runTollgate(['queue', 'retry-failed', '--json'], env);
    expect(retried.code).toBe(0);
    expect(jsonOf(retried)).toMatchObject({ retried: 3, failed: 0 });
    expect(await eventually(async () => (await fleet.producer.counts()).failed === 3, EVENTUALLY_MS)).toBe(true); // they ran again, and failed again
    const job = jsonOf<{ attemptsMade: number }>(await runTollgate(['jobs', 'show', failing[0]!, '--json'], env));
    expect(job.attemptsMade).toBeGreaterThanOrEqual(1);

    const completedBefore = (await fleet.producer.counts()).completed;
    expect(completedBefore).toBeGreaterThan(0);
    const cleaned = await runTollgate(['queue', 'clean', '--older-than', '0s', '--state', 'completed', '--json'], env);
    expect(cleaned.code).toBe(0);
    expect(jsonOf(cleaned)).toMatchObject({ removed: { completed: completedBefore } });
    expect(await fleet.producer.counts()).toMatchObject({ completed: 0, failed: 3 });
    expect((await runTollgate(['queue', 'clean'], env)).code).toBe(2); // --older-than is required

    // while paused the worker holds at most its own slots; the rest of the jobs wait in the queue
    expect((await runTollgate(['pause', '5m'], env)).code).toBe(0);
    await Promise.all(Array.from({ length: 30 }, (_, i) => fleet.producer.enqueue(request(500 + i))));
    const refused = await runTollgate(['queue', 'drain'], env);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('add --yes');
    const waitingBefore = await fleet.producer.counts();
    const drained = await runTollgate(['queue', 'drain', '--yes', '--json'], env);
    expect(drained.code).toBe(0);
    const removed = jsonOf<{ removed: number }>(drained).removed;
    expect(removed).toBeGreaterThan(0);
    expect(removed).toBeLessThanOrEqual(waitingBefore.waiting + waitingBefore.prioritized);
    const after = await fleet.producer.counts();
    expect(after.waiting + after.prioritized).toBe(0);
    expect((await runTollgate(['resume'], env)).code).toBe(0);
  });

  it('errors: a wrong Redis URL fails fast (4), an unknown limiter or queue (3), a bad duration or option or command (2)', async () => {
    const port = await freePort(); // nothing listens there
    const unreachable = await runTollgate(['status', '--redis', `redis://127.0.0.1:${port}`], env);
    expect(unreachable.code).toBe(4);
    expect(unreachable.stderr).toContain(`cannot reach Redis at redis://127.0.0.1:${port}`);
    const password = await runTollgate(['status'], { ...env, REDIS_URL: `redis://user:hunter2@127.0.0.1:${port}` });
    expect(password.code).toBe(4);
    expect(password.stderr).not.toContain('hunter2');
    const notUrl = await runTollgate(['status', '--redis', 'localhost:6379'], env);
    expect(notUrl.code).toBe(2);
    expect(notUrl.stderr).toContain('--redis "localhost:6379"');

    const limiter = await runTollgate(['pause', '30s', '--name', 'no-such-limiter'], env);
    expect(limiter.code).toBe(3);
    expect(limiter.stderr).toContain('no limiter named "no-such-limiter"');
    const badName = await runTollgate(['status', '--name', '{tag}'], env);
    expect(badName.code).toBe(2);
    const queue = await runTollgate(['queue', 'counts', '--queue', 'no-such-queue'], env);
    expect(queue.code).toBe(3);
    expect(queue.stderr).toContain('no queue named "no-such-queue"');
    const redis = new Redis(fleet.redis.url);
    expect(await redis.exists(queueKeys('no-such-queue').meta)).toBe(0); // looking wrote nothing
    redis.disconnect();

    for (const [args, message] of [
      [['pause', '30'], 'duration "30"'],
      [['pause', '3 weeks'], 'duration "3 weeks"'],
      [['pause', '30d'], 'at most 7d'],
      [['status', '--interval', 'soon', '--watch'], '--interval "soon"'],
      [['pause', '30s', '--watch'], 'pause does not take --watch'],
      [['status', '--frobnicate'], "Unknown option '--frobnicate'"],
      [['explode'], 'unknown command "explode"'],
      [['pause'], 'pause takes 1 argument(s), got 0'],
    ] as const) {
      const run = await runTollgate(args, env);
      expect(run.code, args.join(' ')).toBe(2);
      expect(run.stderr, args.join(' ')).toContain(message);
    }
  });
});
