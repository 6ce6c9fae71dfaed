/**
 * Scenario 4, tokens: Messages calls of mixed sizes from 4 worker processes to the mock Anthropic API, which enforces
 * concurrency, ITPM and OTPM. Tollgate (`@tollgate/anthropic` over one fleet-wide limiter) against the plain SDK
 * limited the way people do it today: a local semaphore of a quarter of the concurrency limit and `maxRetries: 2`.
 */
import { startMockAnthropic, type MockStats } from '@tollgate/mock-anthropic';
import type { ContenderName } from './contenders.js';
import { firstLine, fixed, markdownTable, percent, violations, whole } from './format.js';
import type { TokenCall, TokenTrialSpec, TrialSpec } from './protocol.js';
import type { RunSettings, ScenarioResult, TargetCheck } from './scenarios.js';
import { quantile, seededRandom, splitEvenly } from './stats.js';
import { runTrial, type TrialContext, type TrialMeasurement } from './trial.js';

const PROCESSES = 4;
/** Callers per process, as in the standard scenario: more than the limits let through. */
const LANES = 16;
/** The mock's concurrency limit; the plain SDK gets a quarter of it per process. */
const CONCURRENCY = 12;
const CALLS_FULL = 1_000;
const CALLS_QUICK = 300;
/** Seeds the call sizes and the mock's latency draws. */
const SEED = 4;
const MODEL = 'claude-haiku-4-5';
const SDK_MAX_RETRIES = 2;
const MS_PER_MINUTE = 60_000;
/** The mock's stats windows: tokens per minute = tokens per window × 60. */
const WINDOW_MS = 1_000;

/** Call sizes, uniform in these ranges: prompts 100–1,700 tokens (mean 900), answers 40–360 (mean 200), max_tokens up to twice the answer. */
const INPUT_TOKENS = { min: 100, max: 1_700 } as const;
const OUTPUT_TOKENS = { min: 40, max: 360 } as const;
/**
 * Limits sized so the mean call needs both at once at 40 calls per second: ITPM = 900 × 40 × 60, OTPM = 200 × 40 × 60.
 * 1,000 calls then take about 25 s, limited by tokens, not by concurrency (12 slots of ~150 ms carry ~80 calls/s).
 */
const CALLS_PER_SECOND_AT_LIMIT = 40;
const ITPM = ((INPUT_TOKENS.min + INPUT_TOKENS.max) / 2) * CALLS_PER_SECOND_AT_LIMIT * 60;
const OTPM = ((OUTPUT_TOKENS.min + OUTPUT_TOKENS.max) / 2) * CALLS_PER_SECOND_AT_LIMIT * 60;
/**
 * The real API's buckets hold a minute of tokens; a 25-second run would fit in that, so both sides get a bucket of
 * 1.5 s of refill and the refill rate carries the run. The limiter's burst is 1.5 s; the mock's is 1.8 s, larger by
 * what refills during 300 ms of dispatch jitter (a permit granted at t reaches the upstream a little later, so calls
 * granted in order can arrive bunched; with a minute-long bucket that slack is always there).
 */
const LIMITER_BURST_MS = 1_500;
const DISPATCH_JITTER_MS = 300;
/**
 * Windows before this are left out of tokens per minute: they spend the initial buckets (1.8 s of tokens, used up
 * within about 2 s when 12 slots can carry twice the token rate).
 */
const STEADY_AFTER_MS = 3_000;
const MOCK_LATENCY = { timeToFirstTokenMs: { kind: 'uniform', minMs: 50, maxMs: 150 }, perTokenMs: 0.2 } as const;
const CONTENDERS_HERE: readonly ContenderName[] = ['static-split', 'tollgate'];
/** How the plain SDK is labelled in this scenario's table. */
const LABELS: Partial<Record<ContenderName, string>> = {
  'static-split': `sdk + local semaphore ${CONCURRENCY / PROCESSES}/process, maxRetries ${SDK_MAX_RETRIES}`,
  tollgate: 'tollgate (@tollgate/anthropic)',
};

function burstTokens(perMinute: number, burstMs: number): number {
  return Math.round((perMinute / MS_PER_MINUTE) * burstMs);
}

/** The fixed sequence of calls: the same sizes in the same order in every run. */
export function tokenCalls(count: number, seed: number): TokenCall[] {
  const random = seededRandom(seed);
  const between = (range: { min: number; max: number }): number => range.min + Math.floor(random() * (range.max - range.min + 1));
  return Array.from({ length: count }, () => {
    const inputTokens = between(INPUT_TOKENS);
    const outputTokens = between(OUTPUT_TOKENS);
    return { inputTokens, outputTokens, maxTokens: outputTokens + Math.floor(random() * (outputTokens + 1)) };
  });
}

interface TokenFigures {
  contender: ContenderName;
  calls: number;
  succeeded: number;
  failed: Record<string, number>;
  inputPerMinute: number;
  outputPerMinute: number;
  rateLimited: MockStats['rateLimited'];
  retries: number;
  maxConcurrent: number;
  callP50Ms: number;
  callP99Ms: number;
  commandsPerCall: number;
  redisCommandsPerCall: number;
  wallMs: number;
}

/**
 * Tokens per minute over the steady part of the run: whole windows from {@link STEADY_AFTER_MS} (the earlier ones
 * spend the initial buckets) to before the last one with any tokens (the tail, usually partial).
 */
function steadyPerMinute(stats: MockStats): { input: number; output: number } {
  const windows = stats.windows;
  let lastActive = windows.length - 1;
  while (lastActive > 0 && (windows[lastActive]?.inputTokens ?? 0) + (windows[lastActive]?.outputTokens ?? 0) === 0) lastActive -= 1;
  const steady = windows.slice(Math.ceil(STEADY_AFTER_MS / stats.windowMs), lastActive);
  if (steady.length === 0) return { input: Number.NaN, output: Number.NaN };
  const perMinute = (pick: (window: MockStats['windows'][number]) => number): number =>
    (steady.reduce((sum, window) => sum + pick(window), 0) / steady.length) * (MS_PER_MINUTE / stats.windowMs);
  return { input: perMinute((window) => window.inputTokens), output: perMinute((window) => window.outputTokens) };
}

function tokenFigures(contender: ContenderName, measurement: TrialMeasurement<MockStats>, calls: number): TokenFigures {
  const stats = measurement.upstream;
  if (!stats) throw new Error('a tokens trial needs the mock stats');
  const failed: Record<string, number> = {};
  for (const worker of measurement.workers) {
    for (const [kind, count] of Object.entries(worker.tokens?.failed ?? {})) failed[kind] = (failed[kind] ?? 0) + count;
  }
  const callMs = measurement.workers.flatMap((worker) => worker.tokens?.callMs ?? []);
  const steady = steadyPerMinute(stats);
  return {
    contender,
    calls,
    succeeded: measurement.workers.reduce((total, worker) => total + worker.operations, 0),
    failed,
    inputPerMinute: steady.input,
    outputPerMinute: steady.output,
    rateLimited: stats.rateLimited,
    retries: stats.messages - calls, // every request past the first of each call
    maxConcurrent: stats.maxConcurrent,
    callP50Ms: quantile(callMs, 0.5),
    callP99Ms: quantile(callMs, 0.99),
    commandsPerCall: measurement.workers.reduce((total, worker) => total + worker.commands, 0) / calls,
    redisCommandsPerCall: measurement.redisCommands / calls,
    wallMs: measurement.wallMs,
  };
}

const sum = (counts: Record<string, number>): number => Object.values(counts).reduce((total, count) => total + count, 0);

function tokenTable(rows: readonly TokenFigures[]): string {
  const header = [
    'contender',
    'calls ok',
    'calls failed',
    'input tok/min',
    'of ITPM',
    'output tok/min',
    'of OTPM',
    '429 concurrency',
    '429 input',
    '429 output',
    '429 other',
    'retries',
    'max concurrent',
    'violations',
    'call p50 ms',
    'call p99 ms',
    'cmds sent/call',
    'cmds in Redis/call',
    'wall s',
  ];
  return markdownTable(
    header,
    rows.map((row) => {
      const { concurrency, input_tokens: input, output_tokens: output, ...other } = row.rateLimited;
      const failed = sum(row.failed);
      return [
        LABELS[row.contender] ?? row.contender,
        String(row.succeeded),
        failed === 0
          ? '0'
          : `${failed} (${Object.entries(row.failed)
              .map(([kind, count]) => `${kind}: ${count}`)
              .join(', ')})`,
        whole(row.inputPerMinute),
        percent(row.inputPerMinute / ITPM),
        whole(row.outputPerMinute),
        percent(row.outputPerMinute / OTPM),
        String(concurrency),
        String(input),
        String(output),
        String(sum(other)),
        String(row.retries),
        String(row.maxConcurrent),
        violations(row.maxConcurrent, CONCURRENCY),
        fixed(row.callP50Ms, 0),
        fixed(row.callP99Ms, 0),
        fixed(row.commandsPerCall, 2),
        fixed(row.redisCommandsPerCall, 2),
        fixed(row.wallMs / 1_000, 2),
      ];
    }),
  );
}

function tokenTargets(rows: readonly TokenFigures[]): TargetCheck[] {
  const tollgate = rows.find((row) => row.contender === 'tollgate');
  if (!tollgate) return [];
  const tooMany = sum(tollgate.rateLimited);
  const binding = Math.max(tollgate.inputPerMinute / ITPM, tollgate.outputPerMinute / OTPM);
  return [
    { figure: 'upstream 429s (all kinds)', target: '0', measured: String(tooMany), met: tooMany === 0 },
    { figure: 'concurrency violations', target: '0', measured: String(Math.max(0, tollgate.maxConcurrent - CONCURRENCY)), met: tollgate.maxConcurrent <= CONCURRENCY },
    { figure: 'calls failed', target: '0', measured: String(sum(tollgate.failed)), met: sum(tollgate.failed) === 0 },
    { figure: 'tokens/min delivered, share of the binding limit (steady state)', target: 'reported', measured: percent(binding), met: undefined },
  ];
}

function tokenSpecs(contender: ContenderName, context: TrialContext, mockUrl: string, calls: readonly TokenCall[]): TrialSpec[] {
  const perProcess = splitEvenly(CONCURRENCY, PROCESSES);
  const tokens = (processIndex: number): TokenTrialSpec => ({
    mockUrl,
    model: MODEL,
    calls: calls.filter((_, index) => index % PROCESSES === processIndex), // round-robin: every process gets the same mix
    concurrency: CONCURRENCY,
    inputTokens: { perMinute: ITPM, burst: burstTokens(ITPM, LIMITER_BURST_MS) },
    outputTokens: { perMinute: OTPM, burst: burstTokens(OTPM, LIMITER_BURST_MS) },
    sdkMaxRetries: SDK_MAX_RETRIES,
  });
  return perProcess.map((localLimit, index) => ({
    kind: 'tokens',
    contender,
    adapter: { redisUrl: context.redisUrl, name: `bench-tokens-${contender}`, limit: CONCURRENCY, localLimit },
    lanes: LANES,
    calls: 0,
    durationMs: 0,
    upstreamUrl: mockUrl,
    queueName: '',
    tokens: tokens(index),
  }));
}

export async function runTokenScenario(context: TrialContext, settings: RunSettings): Promise<ScenarioResult> {
  const count = settings.quick ? CALLS_QUICK : CALLS_FULL;
  const calls = tokenCalls(count, SEED);
  const mock = await startMockAnthropic({
    port: 0,
    seed: SEED,
    statsWindowMs: WINDOW_MS,
    limits: {
      concurrency: CONCURRENCY,
      itpm: ITPM,
      otpm: OTPM,
      otpmMode: 'max_tokens',
      burst: { itpm: burstTokens(ITPM, LIMITER_BURST_MS + DISPATCH_JITTER_MS), otpm: burstTokens(OTPM, LIMITER_BURST_MS + DISPATCH_JITTER_MS) },
    },
    latency: MOCK_LATENCY,
  });
  const rows: TokenFigures[] = [];
  const failures: string[] = [];
  try {
    for (const contender of CONTENDERS_HERE.filter((name) => settings.contenders.includes(name))) {
      settings.signal.throwIfAborted();
      try {
        const measurement = await runTrial<MockStats>(context, {
          specs: tokenSpecs(contender, context, mock.url, calls),
          upstream: { reset: () => mock.reset(), stats: () => mock.stats() }, // reset refills the buckets too
          jobs: 0,
          globalConcurrency: undefined,
        });
        const figures = tokenFigures(contender, measurement, count);
        rows.push(figures);
        settings.log(
          `scenario 4: ${contender} ${percent(figures.inputPerMinute / ITPM)} of ITPM, ${percent(figures.outputPerMinute / OTPM)} of OTPM, ${sum(
            figures.rateLimited,
          )} 429s in ${fixed(figures.wallMs / 1_000, 1)} s`,
        );
      } catch (error) {
        failures.push(`${contender}: ${firstLine(error)}`);
        settings.log(`scenario 4: ${contender} failed: ${String(error)}`);
      }
    }
  } finally {
    await mock.close();
  }
  return {
    id: '4',
    title: 'Scenario 4: Messages calls against concurrency, ITPM and OTPM',
    description: [
      `${PROCESSES} worker processes × ${LANES} callers, ${count.toLocaleString('en-US')} non-streaming calls (seed ${SEED}) of ${INPUT_TOKENS.min}–${INPUT_TOKENS.max} input and ${
        OUTPUT_TOKENS.min
      }–${OUTPUT_TOKENS.max} output tokens (max_tokens up to twice the answer)`,
      `to mock-anthropic with concurrency ${CONCURRENCY}, ITPM ${whole(ITPM)}, OTPM ${whole(OTPM)} (otpmMode max_tokens), buckets of ${
        LIMITER_BURST_MS + DISPATCH_JITTER_MS
      } ms of refill;`,
      `tollgate's limiter has the same limits with buckets of ${LIMITER_BURST_MS} ms. Tokens per minute are the mean of the ${WINDOW_MS / 1_000} s windows from ${
        STEADY_AFTER_MS / 1_000
      } s (once the initial buckets are spent) to before the last;`,
      'Retries = requests the mock received − calls.',
    ].join(' '),
    table: tokenTable(rows),
    failures,
    targets: tokenTargets(rows),
  };
}
