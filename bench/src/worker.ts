/**
 * One worker process of the bench fleet. The coordinator forks it once and drives it over IPC:
 * setup (build the contender, warm the sockets) → ready → go (measure) → done → teardown.
 */
import { performance } from 'node:perf_hooks';
import { Worker as BullWorker, type Job } from 'bullmq';
import { commandCounts, installCommandCounter, resetCommandCounts } from './command-counter.js';
import { baselineRedisClass, createAdapter, isAdapterContender, loadBaseline, loadTollgate, type LimiterAdapter } from './contenders.js';
import { createFairnessClient, type FairnessClient } from './fairness-client.js';
import { parseCoordinatorMessage, type FairnessTenantResult, type TokenCall, type TokenWorkerResult, type TrialSpec, type WorkerMessage, type WorkerResult } from './protocol.js';
import { splitEvenly } from './stats.js';
import { createTokenClient, failureKind, type TokenClient } from './token-client.js';
import { UpstreamClient } from './upstream-client.js';

installCommandCounter(); // before any client exists
/** Compiles the limiter's TypeScript sources once at boot, not inside a trial where 4 processes share 2 cores. */
const booted = Promise.all([
  loadTollgate(),
  // the baseline checkout's own ioredis is counted like ours; its limiter compiled at boot too
  baselineRedisClass()
    .then((redisClass) => (redisClass ? (installCommandCounter(redisClass), loadBaseline()) : undefined))
    .catch(() => undefined), // reported by the baseline adapter when a trial asks for it
]);

/** Acquire+release pairs each process runs before `ready`: loads Lua scripts and warms the JIT, unmeasured. */
const WARMUP_PAIRS = 20;

interface Trial {
  spec: TrialSpec;
  adapter: LimiterAdapter | undefined;
  upstream: UpstreamClient | undefined;
  queueWorker: BullWorker | undefined;
  tokenClient: TokenClient | undefined;
  tokenResult: TokenWorkerResult | undefined;
  fairnessClient: FairnessClient | undefined;
  fairnessResult: Record<string, FairnessTenantResult> | undefined;
  acquireWaitsMs: number[];
  operations: number;
  startedAtMs: number;
  cpuAtStart: NodeJS.CpuUsage | undefined;
}

let trial: Trial | undefined;

/** A trial of `spec` before `go`: nothing measured yet, and only the clients its kind uses. */
function newTrial(spec: TrialSpec, clients: Partial<Pick<Trial, 'adapter' | 'upstream' | 'tokenClient' | 'fairnessClient'>>): Trial {
  return {
    spec,
    adapter: clients.adapter,
    upstream: clients.upstream,
    queueWorker: undefined,
    tokenClient: clients.tokenClient,
    tokenResult: undefined,
    fairnessClient: clients.fairnessClient,
    fairnessResult: undefined,
    acquireWaitsMs: [],
    operations: 0,
    startedAtMs: 0,
    cpuAtStart: undefined,
  };
}

function send(message: WorkerMessage): void {
  process.send?.(message);
}

function requireTrial(): Trial {
  if (!trial) throw new Error('no trial is set up');
  return trial;
}

/** Takes a slot, recording how long that took; the release is returned to the caller. */
async function timedAcquire(current: Trial, adapter: LimiterAdapter): Promise<() => Promise<void>> {
  const askedAtMs = performance.now();
  const release = await adapter.acquire();
  current.acquireWaitsMs.push(performance.now() - askedAtMs);
  return release;
}

function cpuUsedUs(since: NodeJS.CpuUsage | undefined): number {
  const used = process.cpuUsage(since);
  return since === undefined ? Number.NaN : used.user + used.system;
}

function result(current: Trial): WorkerResult {
  const counts = commandCounts();
  return {
    operations: current.operations,
    acquireWaitsMs: current.acquireWaitsMs,
    elapsedMs: performance.now() - current.startedAtMs,
    commands: counts.commands,
    roundTrips: counts.roundTrips,
    cpuUs: cpuUsedUs(current.cpuAtStart),
    ...(current.tokenResult ? { tokens: current.tokenResult } : {}),
    ...(current.fairnessResult ? { fairness: current.fairnessResult } : {}),
  };
}

/** Scenario 4: no adapter; the Messages client limits itself (Tollgate) or holds a local semaphore (the plain SDK). */
async function setupTokens(spec: TrialSpec): Promise<void> {
  if (!spec.tokens) throw new Error('a tokens trial needs its calls');
  const tokenClient = await createTokenClient(spec.contender, spec.tokens, spec.adapter);
  // one tiny call per lane opens the sockets and compiles the call path; the coordinator resets the mock afterwards
  const models = [...new Set(spec.tokens.calls.map((call) => call.model))]; // every model's call path (and pool)
  const warmup = (lane: number) => ({
    inputTokens: 1,
    maxTokens: 1,
    outputTokens: 1,
    ...(models[lane % models.length] === undefined ? {} : { model: models[lane % models.length] }),
  });
  await Promise.all(Array.from({ length: spec.lanes }, (_, lane) => tokenClient.call(warmup(lane), -1 - lane)));
  trial = newTrial(spec, { tokenClient });
}

/** Scenario fairness: no adapter; the tenants' lanes take their permits from one limiter with groups or without. */
async function setupFairness(spec: TrialSpec): Promise<void> {
  if (!spec.fairness) throw new Error('a fairness trial needs its tenants');
  const fairnessClient = await createFairnessClient(spec.fairness, spec.adapter);
  await fairnessClient.warm(); // the coordinator resets the mock afterwards
  trial = newTrial(spec, { fairnessClient });
}

async function setup(spec: TrialSpec): Promise<void> {
  if (spec.kind === 'tokens') return setupTokens(spec);
  if (spec.kind === 'fairness') return setupFairness(spec);
  const adapter =
    isAdapterContender(spec.contender) && !(spec.kind === 'queue' && spec.contender === 'static-split') ? await createAdapter(spec.contender, spec.adapter) : undefined; // bullmq-global limits in the queue; a queue's static split is the worker concurrency itself
  for (let pair = 0; adapter && pair < WARMUP_PAIRS; pair += 1) {
    const release = await adapter.acquire();
    await release();
  }
  const upstream = spec.kind === 'micro' ? undefined : new UpstreamClient(spec.upstreamUrl, spec.lanes);
  await upstream?.warm(spec.lanes);
  const current = newTrial(spec, { adapter, upstream });
  if (spec.kind === 'queue') current.queueWorker = await createQueueWorker(current);
  trial = current;
}

async function createQueueWorker(current: Trial): Promise<BullWorker> {
  const { hostname, port } = new URL(current.spec.adapter.redisUrl);
  const processor = async (_job: Job): Promise<void> => {
    const release = current.adapter ? await timedAcquire(current, current.adapter) : undefined;
    try {
      await current.upstream?.call();
    } finally {
      await release?.();
    }
    current.operations += 1;
    send({ type: 'tick' });
  };
  const worker = new BullWorker(current.spec.queueName, processor, {
    connection: { host: hostname, port: Number(port), maxRetriesPerRequest: null }, // BullMQ requires null for its blocking connection
    concurrency: current.spec.lanes,
    autorun: false, // nothing is taken before `go`
  });
  worker.on('failed', (_job, error) => send({ type: 'failed', message: `job failed: ${error.message}` }));
  await worker.waitUntilReady();
  return worker;
}

async function runDirect(current: Trial, adapter: LimiterAdapter, upstream: UpstreamClient): Promise<void> {
  let remaining = current.spec.calls;
  const lane = async (): Promise<void> => {
    while (remaining > 0) {
      remaining -= 1;
      const release = await timedAcquire(current, adapter);
      try {
        await upstream.call();
      } finally {
        await release();
      }
      current.operations += 1;
    }
  };
  await Promise.all(Array.from({ length: current.spec.lanes }, lane));
}

async function runMicro(current: Trial, adapter: LimiterAdapter): Promise<void> {
  const deadlineMs = current.startedAtMs + current.spec.durationMs;
  const lane = async (): Promise<void> => {
    while (performance.now() < deadlineMs) {
      const release = await adapter.acquire();
      await release();
      current.operations += 1;
    }
  };
  await Promise.all(Array.from({ length: current.spec.lanes }, lane));
}

async function runTokens(current: Trial, client: TokenClient): Promise<void> {
  const spec = current.spec.tokens;
  const calls = spec?.calls ?? [];
  const result: TokenWorkerResult = { failed: {}, callMs: [] };
  const endsAtMs = spec?.durationMs === undefined ? undefined : performance.now() + spec.durationMs;
  // each model's calls get their own lanes (split evenly), so that callers waiting on one pool never hold up another's
  const groups = new Map<string | undefined, TokenCall[]>();
  for (const call of calls) groups.set(call.model, [...(groups.get(call.model) ?? []), call]);
  let made = 0;
  const lanesPerGroup = splitEvenly(current.spec.lanes, Math.max(1, groups.size));
  const lanes = [...groups.values()].flatMap((group, g) => {
    let next = 0;
    // with a duration the lanes go round the calls until it has passed; without, each call is made once
    const take = (): TokenCall | undefined => (endsAtMs === undefined ? group[next++] : performance.now() < endsAtMs ? group[next++ % group.length] : undefined);
    const lane = async (): Promise<void> => {
      for (let call = take(); call !== undefined; call = take()) {
        const startedAtMs = performance.now();
        try {
          await client.call(call, made++);
          result.callMs.push(performance.now() - startedAtMs);
          current.operations += 1;
        } catch (error) {
          const kind = failureKind(error);
          result.failed[kind] = (result.failed[kind] ?? 0) + 1;
        }
      }
    };
    return Array.from({ length: lanesPerGroup[g] ?? 0 }, lane);
  });
  await Promise.all(lanes);
  current.tokenResult = result;
}

async function go(): Promise<void> {
  const current = requireTrial();
  resetCommandCounts();
  current.startedAtMs = performance.now();
  current.cpuAtStart = process.cpuUsage();
  const { kind } = current.spec;
  if (kind === 'queue') {
    void current.queueWorker?.run().catch((error: unknown) => send({ type: 'failed', message: String(error) }));
    return; // `done` is sent on `stop`, once the coordinator has seen every job finish
  }
  if (kind === 'tokens' && current.tokenClient) {
    await runTokens(current, current.tokenClient);
    send({ type: 'done', result: result(current) });
    return;
  }
  if (kind === 'fairness' && current.fairnessClient) {
    current.fairnessResult = await current.fairnessClient.run();
    current.operations = Object.values(current.fairnessResult).reduce((sum, tenant) => sum + tenant.waitsMs.length, 0);
    send({ type: 'done', result: result(current) });
    return;
  }
  if (!current.adapter) throw new Error(`${current.spec.contender} has no adapter for a ${kind} run`);
  if (kind === 'micro') await runMicro(current, current.adapter);
  else if (current.upstream) await runDirect(current, current.adapter, current.upstream);
  send({ type: 'done', result: result(current) });
}

async function teardown(): Promise<void> {
  const current = trial;
  trial = undefined;
  if (current) {
    await current.queueWorker?.close();
    await current.adapter?.close();
    await current.tokenClient?.close();
    await current.fairnessClient?.close();
    current.upstream?.close();
  }
  send({ type: 'tornDown' });
}

async function handle(raw: unknown): Promise<void> {
  const message = parseCoordinatorMessage(raw);
  await booted; // its failure is reported by the tollgate adapter itself
  switch (message.type) {
    case 'setup':
      await setup(message.spec);
      send({ type: 'ready' });
      return;
    case 'go':
      await go();
      return;
    case 'stop':
      send({ type: 'done', result: result(requireTrial()) });
      return;
    case 'teardown':
      await teardown();
      return;
  }
}

process.on('message', (raw: unknown) => {
  handle(raw).catch((error: unknown) => {
    send({ type: 'failed', message: error instanceof Error ? (error.stack ?? error.message) : String(error) });
  });
});
process.on('disconnect', () => process.exit(0)); // the coordinator is gone: nothing left to report to
