/**
 * One worker process of the bench fleet. The coordinator forks it once and drives it over IPC:
 * setup (build the contender, warm the sockets) → ready → go (measure) → done → teardown.
 */
import { writeFile } from 'node:fs/promises';
import { Session } from 'node:inspector/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { Worker as BullWorker, type Job } from 'bullmq';
import { commandCounts, installCommandCounter, resetCommandCounts } from './command-counter.js';
import { baselineRedisClass, createAdapter, isAdapterContender, loadBaseline, loadTollgate, type LimiterAdapter } from './contenders.js';
import { createFairnessClient, type FairnessClient } from './fairness-client.js';
import { parseCoordinatorMessage, type FairnessTenantResult, type TokenCall, type TokenWorkerResult, type TrialSpec, type WorkerMessage, type WorkerResult } from './protocol.js';
import { splitEvenly } from './stats.js';
import { createTokenClient, failureKind, type TokenClient } from './token-client.js';
import { WORKER_CPU_PROF_ENV } from './fleet.js';
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

/** A steady trial's lanes, running from setup to teardown; only what they do between `go` and `done` is counted. */
interface SteadyLanes {
  adapters: LimiterAdapter[];
  /** Every lane, settled once teardown has closed the adapters. */
  running: Promise<void>;
  measuring: boolean;
  stopping: boolean;
}

interface Trial {
  spec: TrialSpec;
  adapter: LimiterAdapter | undefined;
  steady: SteadyLanes | undefined;
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

/** A trial with nothing measured yet: its parts (adapter, lanes, upstream, clients) as given, the rest empty. */
function newTrial(spec: TrialSpec, parts: Partial<Pick<Trial, 'adapter' | 'steady' | 'upstream' | 'tokenClient' | 'fairnessClient'>>): Trial {
  return {
    spec,
    adapter: parts.adapter,
    steady: parts.steady,
    upstream: parts.upstream,
    queueWorker: undefined,
    tokenClient: parts.tokenClient,
    tokenResult: undefined,
    fairnessClient: parts.fairnessClient,
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

/** How long a steady trial's teardown lets the lanes finish their pairs before it closes the clients under them. */
const STEADY_DRAIN_MS_MAX = 3_000;
/** How often a steady trial's setup looks whether every lane has held a slot once. */
const PRIME_POLL_MS = 50;

/**
 * Steady (the scale scenario): `clients` adapters of the contender in this process (each a limiter or a
 * Redis connection of its own, standing for a process), `lanes` callers each, looping acquire+release
 * from now until teardown. Ready once every lane has held a slot once (the queue has turned over, so
 * `go` measures the steady state, not the first fill) or `primeMsMax` has passed.
 */
async function setupSteady(spec: TrialSpec): Promise<void> {
  if (!isAdapterContender(spec.contender)) throw new Error(`${spec.contender} has no adapter for a steady run`);
  const contender = spec.contender;
  const adapters = await Promise.all(Array.from({ length: spec.clients ?? 1 }, () => createAdapter(contender, spec.adapter)));
  for (const adapter of adapters) {
    for (let pair = 0; pair < WARMUP_PAIRS; pair += 1) await (await adapter.acquire())();
  }
  const steady: SteadyLanes = { adapters, running: Promise.resolve(), measuring: false, stopping: false };
  const current = newTrial(spec, { steady });
  let primed = 0;
  const lane = async (adapter: LimiterAdapter): Promise<void> => {
    let first = true;
    while (!steady.stopping) {
      const askedAtMs = performance.now();
      try {
        const release = await adapter.acquire();
        if (steady.measuring) current.acquireWaitsMs.push(performance.now() - askedAtMs);
        await release();
      } catch (error) {
        if (steady.stopping) return; // teardown closed the client under a waiting lane (see teardown)
        throw error;
      }
      if (steady.measuring) current.operations += 1;
      if (first) primed += 1;
      first = false;
    }
  };
  const lanes = adapters.flatMap((adapter) => Array.from({ length: spec.lanes }, () => lane(adapter)));
  steady.running = Promise.all(lanes).then(() => undefined);
  steady.running.catch((error: unknown) => send({ type: 'failed', message: error instanceof Error ? (error.stack ?? error.message) : String(error) }));
  const primeUntilMs = performance.now() + (spec.primeMsMax ?? 0);
  while (primed < lanes.length && performance.now() < primeUntilMs) await sleep(PRIME_POLL_MS);
  trial = current;
}

async function setup(spec: TrialSpec): Promise<void> {
  if (spec.kind === 'tokens') return setupTokens(spec);
  if (spec.kind === 'fairness') return setupFairness(spec);
  if (spec.kind === 'steady') return setupSteady(spec);
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

/**
 * `--worker-cpu-prof DIR`: a V8 CPU profile of each measured window (from `go` to the report), not of
 * the process's boot or setup, written to DIR as `<contender>-<kind>-<lanes>-<pid>-<n>.cpuprofile`.
 */
const profileDir = process.env[WORKER_CPU_PROF_ENV];
let profiles = 0;
let profiler: Session | undefined;

async function startProfile(): Promise<void> {
  if (profileDir === undefined || profileDir === '') return;
  profiler = new Session();
  profiler.connect();
  await profiler.post('Profiler.enable');
  await profiler.post('Profiler.start');
}

async function stopProfile(spec: TrialSpec): Promise<void> {
  const session = profiler;
  profiler = undefined;
  if (session === undefined || profileDir === undefined) return;
  const { profile } = await session.post('Profiler.stop');
  session.disconnect();
  profiles += 1;
  await writeFile(join(profileDir, `${spec.contender}-${spec.kind}-${spec.clients ?? 1}x${spec.lanes}-${process.pid}-${profiles}.cpuprofile`), JSON.stringify(profile));
}

/** Sends the trial's report, ending its window's profile first. */
async function report(current: Trial): Promise<void> {
  const measured = result(current);
  await stopProfile(current.spec);
  send({ type: 'done', result: measured });
}

async function go(): Promise<void> {
  const current = requireTrial();
  await startProfile();
  resetCommandCounts();
  current.acquireWaitsMs = [];
  current.operations = 0;
  current.startedAtMs = performance.now();
  current.cpuAtStart = process.cpuUsage();
  const { kind } = current.spec;
  if (kind === 'steady' && current.steady) {
    current.steady.measuring = true;
    await sleep(current.spec.durationMs);
    current.steady.measuring = false;
    await report(current);
    return;
  }
  if (kind === 'queue') {
    void current.queueWorker?.run().catch((error: unknown) => send({ type: 'failed', message: String(error) }));
    return; // `done` is sent on `stop`, once the coordinator has seen every job finish
  }
  if (kind === 'tokens' && current.tokenClient) {
    await runTokens(current, current.tokenClient);
    await report(current);
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
  await report(current);
}

async function teardown(): Promise<void> {
  const current = trial;
  trial = undefined;
  if (current) {
    if (current.steady) {
      // each lane stops after its pair in progress; a lane still waiting after STEADY_DRAIN_MS_MAX (a deep queue
      // of a slow contender) is ended by closing its client: its acquire fails, and holds nothing
      current.steady.stopping = true;
      const running = current.steady.running.catch(() => {}); // a failure was reported when it happened
      await Promise.race([running, sleep(STEADY_DRAIN_MS_MAX)]);
      await Promise.all(current.steady.adapters.map((adapter) => adapter.close()));
      await running;
    }
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
      await report(requireTrial());
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
