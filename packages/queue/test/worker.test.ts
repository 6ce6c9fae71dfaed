import type Anthropic from '@anthropic-ai/sdk';
import { limitAnthropic } from '@tollgate/anthropic';
import { createLimiter, type Limiter } from '@tollgate/limiter';
import { startMockAnthropic, type MockAnthropic } from '@tollgate/mock-anthropic';
import { startRedis, uniqueName, type TestRedis } from '@tollgate/test-support';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { RequestBody, UpstreamError, createProducer, createWorker, type MessagesClient, type Producer, type QueueWorker, type WorkerEvents } from '../src/index.js';
import { JOB_FAILED_EVENT, JOB_UPSTREAM_EVENT, randomJobId, decodeFailure, idempotentJobId, queueKeys, readJobEvents } from '../src/internal.js';
import { nextEvent, rawJob, request, sdkClient, textOf, thrown } from './support.js';

const FLEET_CONCURRENCY = 3;
const JOBS = 30;
/** A call slow enough that a test acts while it is in flight; the tests never wait for it to end. */
const SLOW_FIRST_TOKEN_MS = 20_000;

let redis: TestRedis;
let mock: MockAnthropic;
let limiter: Limiter;
let queue: string;
let producer: Producer;
let worker: QueueWorker | undefined;
/** Priorities the worker asked a client for, in order. */
let prioritiesAsked: number[];

/** One limited client per priority, as the worker service builds them. */
function limitedClients(): (priority: number) => MessagesClient {
  const clients = new Map<number, MessagesClient>();
  return (priority) => {
    prioritiesAsked.push(priority);
    let client = clients.get(priority);
    if (client === undefined) {
      client = limitAnthropic(sdkClient(mock.url), limiter, { priority });
      clients.set(priority, client);
    }
    return client;
  };
}

function on<E extends keyof WorkerEvents>(event: E) {
  return (listener: (value: WorkerEvents[E][0]) => void) => {
    const wrapped = (...args: WorkerEvents[E]) => listener(args[0]);
    (worker as QueueWorker).on(event, wrapped as never);
    return () => void (worker as QueueWorker).off(event, wrapped as never);
  };
}

beforeAll(async () => {
  redis = await startRedis();
  mock = await startMockAnthropic({ limits: { concurrency: FLEET_CONCURRENCY } });
});
afterAll(async () => {
  await mock.close();
  await redis.close();
});
beforeEach(async () => {
  mock.reset();
  mock.setConfig({ latency: { timeToFirstTokenMs: 0, perTokenMs: 0 }, faults: {} });
  prioritiesAsked = [];
  queue = uniqueName('worker');
  limiter = createLimiter({ redis: redis.url, name: uniqueName('worker-limiter'), concurrency: FLEET_CONCURRENCY, rates: { requests: { limit: 10_000, intervalMs: 60_000 } } });
  await limiter.ready();
  producer = createProducer({ redis: redis.url, queue });
});
afterEach(async () => {
  await worker?.close({ drainTimeoutMs: 0 });
  worker = undefined;
  await producer.close();
  await limiter.close();
});

describe('the worker runs jobs through the limited client', () => {
  it('completes every job within the fleet limit, each permit at the job priority', async () => {
    mock.setConfig({ latency: { timeToFirstTokenMs: 20 } });
    worker = createWorker({ redis: redis.url, queue, client: limitedClients(), concurrency: 8 });
    const answers = await Promise.all(Array.from({ length: JOBS }, (_, i) => producer.enqueueAndWait(request(i), { priority: i % 10 })));
    expect(answers).toHaveLength(JOBS);
    for (const answer of answers) expect(answer.type).toBe('message');
    expect(new Set(answers.map((answer) => answer.id)).size).toBe(JOBS);
    expect(mock.stats().maxConcurrent).toBeLessThanOrEqual(FLEET_CONCURRENCY);
    expect(mock.stats().rateLimited.concurrency).toBe(0);
    expect([...prioritiesAsked].sort()).toEqual(Array.from({ length: JOBS }, (_, i) => i % 10).sort());
    expect(await producer.counts()).toMatchObject({ completed: JOBS, failed: 0, active: 0 });
  });

  it('takes jobs in priority order (0 first), FIFO within a priority', async () => {
    const ids: Record<string, number> = {};
    for (const [i, priority] of [9, 5, 0, 5, 9, 0].entries()) ids[await producer.enqueue(request(`p${i}`), { priority })] = i;
    const order: number[] = [];
    worker = createWorker({ redis: redis.url, queue, client: sdkClient(mock.url), concurrency: 1 });
    worker.on('completed', ({ jobId }) => order.push(ids[jobId] ?? -1));
    await Promise.all(Object.keys(ids).map((id) => producer.wait(id)));
    expect(order).toEqual([2, 5, 1, 3, 0, 4]);
  });

  it('publishes a streaming job event by event to its Redis stream, and returns the final message', async () => {
    worker = createWorker({ redis: redis.url, queue, client: limitedClients(), concurrency: 2 });
    const params = { ...request('stream me', 64), stream: true };
    const jobId = await producer.enqueue(params);
    const message = await producer.wait(jobId);
    const reader = new Redis(redis.url);
    const stop = new AbortController();
    const names: string[] = [];
    let text = '';
    try {
      for await (const event of readJobEvents(reader, queueKeys(queue).jobEvents(jobId), stop.signal)) {
        names.push(event.name);
        const data = JSON.parse(event.data) as Anthropic.RawMessageStreamEvent;
        if (data.type === 'content_block_delta' && data.delta.type === 'text_delta') text += data.delta.text;
        expect(event.attempt).toBe(1);
        if (event.name === 'message_stop') stop.abort();
      }
    } finally {
      reader.disconnect();
    }
    expect(names[0]).toBe(JOB_UPSTREAM_EVENT); // the upstream's headers, before its first SSE event
    expect(names[1]).toBe('message_start');
    expect(names.at(-1)).toBe('message_stop');
    expect(text).toBe(textOf(message));
    const direct = await sdkClient(mock.url).messages.create(request('stream me', 64));
    expect(text).toBe(textOf(direct)); // the same request gives the same answer, streamed or not
  });
});

describe('the upstream call carries the job as the caller sent it', () => {
  const text =
    '{"model":"claude-haiku-4-5","zeta":{"b":[1,{"a":null}],"c":"\\u00e9"},"max_tokens":16,"messages":[{"role":"user","content":"raw bytes"}],"metadata":{"user_id":"u"}}';

  it('sends the body byte for byte with its anthropic-beta and anthropic-version headers, and returns the upstream headers', async () => {
    worker = createWorker({ redis: redis.url, queue, client: limitedClients(), concurrency: 2, account: 'acct-main' });
    const headers = { 'anthropic-beta': 'context-management-2025-06-27', 'anthropic-version': '2023-06-01' };
    const jobId = await producer.enqueue(RequestBody.fromText(text), { headers });
    // an unknown top-level field is the upstream's to refuse: the mock answers 400 and the job fails with its body
    const failure = await thrown(() => producer.waitForResult(jobId));
    expect(failure).toBeInstanceOf(UpstreamError);
    const [sent] = mock.requests();
    expect(sent?.body).toBe(text);
    expect(sent?.headers).toMatchObject(headers);
    expect((failure as UpstreamError).body).toMatchObject({
      error: { message: 'zeta: Extra inputs are not permitted' },
      request_id: sent === undefined ? '' : expect.stringMatching(/^req_/),
    });
    expect((failure as UpstreamError).headers['request-id']).toBe((failure as UpstreamError).requestId);
  });

  it('a streamed job sends its bytes too; its result names the account, the upstream request id and the waits', async () => {
    worker = createWorker({ redis: redis.url, queue, client: limitedClients(), concurrency: 2, account: 'acct-main' });
    const streamed = '{"stream":true, "model":"claude-haiku-4-5","max_tokens":16,"messages":[{"role":"user","content":"streamed bytes"}],"context_management":{"edits":[]}}';
    const jobId = await producer.enqueue(RequestBody.fromText(streamed), { headers: { 'anthropic-beta': 'context-management-2025-06-27' } });
    const result = await producer.waitForResult(jobId);
    const [sent] = mock.requests();
    expect(sent?.body).toBe(streamed);
    expect(sent?.headers['anthropic-beta']).toBe('context-management-2025-06-27');
    expect((result.answer as Anthropic.Message).type).toBe('message');
    expect(result.upstream.account).toBe('acct-main');
    expect(result.upstream.headers['request-id']).toMatch(/^req_/);
    expect(result.upstream.waitedMs).toBeLessThanOrEqual(result.upstream.elapsedMs);
  });

  it('a count_tokens job is answered by the upstream within its own fleet-wide rate', async () => {
    // the fleet's bucket a token below the server's: a grant reaches the server a few ms after the fleet's refill (README)
    mock.setConfig({ limits: { concurrency: FLEET_CONCURRENCY, countTokensRpm: 60, burst: { countTokensRpm: 2 } } });
    const countTokensLimiter = createLimiter({ redis: redis.url, name: uniqueName('count-tokens'), rates: { requests: { limit: 60, intervalMs: 60_000, burst: 1 } } });
    await countTokensLimiter.ready();
    try {
      worker = createWorker({ redis: redis.url, queue, client: limitedClients(), concurrency: 8, countTokensLimiter });
      const body = JSON.stringify({ model: 'claude-haiku-4-5', messages: [{ role: 'user', content: 'count these words please' }] });
      const ids = await Promise.all(Array.from({ length: 4 }, () => producer.enqueue(RequestBody.fromText(body, 'count_tokens'))));
      const results = await Promise.all(ids.map((id) => producer.waitForResult(id)));
      for (const result of results) expect(result.answer).toEqual({ input_tokens: Math.ceil('count these words please'.length / 4) });
      expect(mock.stats()).toMatchObject({ countTokens: 4, messages: 0, rateLimited: { count_tokens: 0 } });
    } finally {
      await countTokensLimiter.close();
    }
  });

  it('still runs a job of the first payload version (an old producer mid-deploy)', async () => {
    worker = createWorker({ redis: redis.url, queue, client: limitedClients(), concurrency: 1 });
    const job = await producer.queue.add('messages', { v: 1, params: request('old'), tenant: null, priority: 5 }, { jobId: randomJobId() });
    expect((await producer.wait(job.id ?? '')).type).toBe('message');
  });
});

describe('failures', () => {
  it('a non-retryable upstream error fails the job at once, the upstream body kept in the failed set', async () => {
    worker = createWorker({ redis: redis.url, queue, client: limitedClients(), concurrency: 2 });
    const error = await thrown(() => producer.enqueueAndWait({ ...request('x'), model: 'claude-unknown-9' }, { idempotencyKey: 'unknown-model', attempts: 5 }));
    expect(error).toBeInstanceOf(UpstreamError);
    expect(error).toMatchObject({ status: 404, type: 'not_found_error', message: 'model: claude-unknown-9' });
    expect((error as UpstreamError).requestId).toMatch(/^req_/);
    const job = await rawJob(producer.queue, idempotentJobId(null, 'unknown-model'));
    expect(job?.attemptsMade).toBe(1); // not retried although 5 attempts were allowed
    const failure = decodeFailure(job?.failedReason);
    expect(failure).toMatchObject({ status: 404, retryable: false, body: { type: 'error', error: { type: 'not_found_error', message: 'model: claude-unknown-9' } } });
    expect(mock.stats().byStatus['404']).toBe(1);
  });

  it('a retryable upstream error is retried by BullMQ with backoff and then completes', async () => {
    mock.setConfig({ faults: { schedule: [{ nth: 1, fault: '500' }] } });
    worker = createWorker({ redis: redis.url, queue, client: sdkClient(mock.url), concurrency: 1 }); // no client retries: BullMQ's only
    const jobId = await producer.enqueue(request('retry'), { attempts: 3 });
    const message = await producer.wait(jobId);
    expect(message.type).toBe('message');
    expect((await rawJob(producer.queue, jobId))?.attemptsStarted).toBe(2);
    expect((await producer.counts()).failed).toBe(0);
    expect(mock.stats().byStatus).toMatchObject({ '500': 1, '200': 1 });
  });

  it('a streaming job that fails for good writes the failure to its stream', async () => {
    worker = createWorker({ redis: redis.url, queue, client: limitedClients(), concurrency: 1 });
    const jobId = await producer.enqueue({ ...request('y'), model: 'claude-unknown-9', stream: true });
    await thrown(() => producer.wait(jobId));
    const reader = new Redis(redis.url);
    const stop = new AbortController();
    try {
      for await (const event of readJobEvents(reader, queueKeys(queue).jobEvents(jobId), stop.signal)) {
        expect(event.name).toBe(JOB_FAILED_EVENT);
        expect(decodeFailure(event.data)).toMatchObject({ status: 404, body: { error: { type: 'not_found_error' } } });
        stop.abort();
      }
    } finally {
      reader.disconnect();
    }
  });
});

describe('aborts', () => {
  it('a failed lock renewal aborts the running call through its signal', async () => {
    mock.setConfig({ latency: { timeToFirstTokenMs: SLOW_FIRST_TOKEN_MS } });
    worker = createWorker({ redis: redis.url, queue, client: sdkClient(mock.url), concurrency: 1, lockDurationMs: 1_000, stalledIntervalMs: 60_000 });
    const failed = nextEvent(on('failed'), () => true);
    const lockLost = nextEvent(on('lockLost'), () => true);
    const jobId = await producer.enqueue(request('lock'));
    await nextEvent<{ inFlight: number }>(
      (listener) => poll(() => listener({ inFlight: mock.stats().inFlight })),
      (s) => s.inFlight === 1,
    );
    const admin = new Redis(redis.url);
    await admin.del(`${queueKeys(queue).prefix}:${queue}:${jobId}:lock`); // another owner took it, as after a long pause
    admin.disconnect();
    expect((await lockLost).jobId).toBe(jobId);
    const failure = await failed;
    expect(failure.jobId).toBe(jobId);
    expect(failure.failure.body.error.message).toMatch(/lost the job lock/);
    expect(mock.stats().byStatus['200'] ?? 0).toBe(0); // the call never completed
  });

  it('abandon: a queued job is removed; a running one is left alone, or aborted by its worker with its permit released', async () => {
    const queuedId = await producer.enqueue(request('nobody runs me yet'));
    expect(await producer.abandon(queuedId, { abortRunning: false })).toBe('cancelled');
    expect(await producer.getJob(queuedId)).toBeUndefined();
    mock.setConfig({ latency: { timeToFirstTokenMs: SLOW_FIRST_TOKEN_MS } });
    worker = createWorker({ redis: redis.url, queue, client: limitedClients(), concurrency: 1 });
    const jobId = await producer.enqueue({ ...request('abandoned'), stream: true });
    await nextEvent<{ inFlight: number }>(
      (listener) => poll(() => listener({ inFlight: mock.stats().inFlight })),
      (s) => s.inFlight === 1,
    );
    expect(await producer.abandon(jobId, { abortRunning: false })).toBe('running');
    expect(await producer.abandon(jobId, { abortRunning: true })).toBe('aborting');
    const error = await thrown(() => producer.wait(jobId));
    expect(error).toMatchObject({ status: 499 });
    expect((await limiter.snapshot()).inFlight).toBe(0); // released as the call ended, not at its lease's expiry
    expect(mock.stats().byStatus['200'] ?? 0).toBe(0); // the call never answered
  });

  it('G10: close() hands a call that outlives the drain timeout back to the queue, attempts untouched', async () => {
    mock.setConfig({ latency: { timeToFirstTokenMs: SLOW_FIRST_TOKEN_MS } });
    worker = createWorker({ redis: redis.url, queue, client: sdkClient(mock.url), concurrency: 1 });
    const handedBack = nextEvent(on('handedBack'), () => true);
    const jobId = await producer.enqueue(request('drain'));
    await nextEvent<{ inFlight: number }>(
      (listener) => poll(() => listener({ inFlight: mock.stats().inFlight })),
      (s) => s.inFlight === 1,
    );
    await worker.close({ drainTimeoutMs: 100 });
    expect((await handedBack).jobId).toBe(jobId);
    const job = await rawJob(producer.queue, jobId);
    expect(await job?.getState()).toMatch(/^(waiting|prioritized)$/);
    expect(job?.attemptsMade).toBe(0);
    expect((await producer.counts()).failed).toBe(0);
    mock.setConfig({ latency: { timeToFirstTokenMs: 0 } });
    worker = createWorker({ redis: redis.url, queue, client: sdkClient(mock.url), concurrency: 1 });
    expect((await producer.wait(jobId)).type).toBe('message');
  });

  it('close() lets running calls finish within the drain timeout', async () => {
    mock.setConfig({ latency: { timeToFirstTokenMs: 300 } });
    worker = createWorker({ redis: redis.url, queue, client: sdkClient(mock.url), concurrency: 2 });
    const jobIds = await Promise.all([1, 2].map((i) => producer.enqueue(request(`finish ${i}`))));
    await nextEvent<{ inFlight: number }>(
      (listener) => poll(() => listener({ inFlight: mock.stats().inFlight })),
      (s) => s.inFlight === 2,
    );
    await worker.close({ drainTimeoutMs: 30_000 });
    for (const jobId of jobIds) expect(await (await rawJob(producer.queue, jobId))?.getState()).toBe('completed');
  });
});

/** Calls `sample` every few ms until the returned stop function is called. */
function poll(sample: () => void): () => void {
  const timer = setInterval(sample, 10);
  return () => clearInterval(timer);
}
