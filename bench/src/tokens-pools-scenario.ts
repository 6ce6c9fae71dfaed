/**
 * Scenario 4-pools, mixed models: Sonnet and Haiku calls from 4 worker processes to a mock account whose two model
 * pools have their own RPM, ITPM and OTPM (DESIGN §9, issue 13). Tollgate with the account's two pools against
 * Tollgate with ONE set of buckets for every model (the naive config), sized to Sonnet's limits or to Haiku's.
 * Each row runs for a fixed time with every caller always asking; the figures are each pool's share of its limits.
 */
import { startMockAnthropic, type KeyStats, type MockStats } from '@tollgate/mock-anthropic';
import { fixed, markdownTable, percent, whole } from './format.js';
import type { TokenCall, TokenPoolSpec, TokenRate, TokenTrialSpec, TrialSpec } from './protocol.js';
import type { RunSettings, ScenarioResult, TargetCheck } from './scenarios.js';
import { runVariants, type TrialContext, type TrialMeasurement } from './trial.js';

const PROCESSES = 4;
/** Callers per process, half per model: more than either pool lets through. */
const LANES = 16;
/** The account's concurrency: high enough not to bind (the pools' per-minute limits are measured here). */
const CONCURRENCY = 64;
const DURATION_MS_FULL = 15_000;
const DURATION_MS_QUICK = 7_000;
const SEED = 4;
const MS_PER_MINUTE = 60_000;
const WINDOW_MS = 1_000;
/** Windows before this spend the initial buckets; the last window (partial) is left out too. */
const STEADY_AFTER_MS = 3_000;
/** As in scenario 4: the limiter's buckets hold 1.5 s of refill, the mock's 300 ms of dispatch jitter more. */
const LIMITER_BURST_MS = 1_500;
const DISPATCH_JITTER_MS = 300;
const MOCK_LATENCY = { timeToFirstTokenMs: { kind: 'uniform', minMs: 50, maxMs: 150 }, perTokenMs: 0.2 } as const;

/**
 * Sonnet-like: ITPM-bound calls (250 input, 16 output tokens), 20 calls/s at its limit. Haiku-like: OTPM-bound calls
 * (50 input, 200 output tokens), 40 calls/s at its limit; its limits are the larger, as on the real API.
 */
const POOLS = {
  sonnet: { modelPrefix: 'claude-sonnet-4', model: 'claude-sonnet-4-6', rpm: 2_000, itpm: 300_000, otpm: 100_000, call: { inputTokens: 250, outputTokens: 16, maxTokens: 16 } },
  haiku: { modelPrefix: 'claude-haiku-4', model: 'claude-haiku-4-5', rpm: 4_000, itpm: 1_000_000, otpm: 480_000, call: { inputTokens: 50, outputTokens: 200, maxTokens: 200 } },
} as const;
type PoolName = keyof typeof POOLS;
const POOL_NAMES = Object.keys(POOLS) as PoolName[];

/** The rows: the two pools, or one set of buckets copying one pool's limits for every model. */
interface Variant {
  label: string;
  single?: PoolName;
}
const VARIANTS: readonly Variant[] = [
  { label: 'tollgate, two pools' },
  { label: "tollgate, one bucket set at Sonnet's limits", single: 'sonnet' },
  { label: "tollgate, one bucket set at Haiku's limits", single: 'haiku' },
];

const burst = (perMinute: number, ms: number): number => Math.min(perMinute, Math.round((perMinute / MS_PER_MINUTE) * ms));
const rate = (perMinute: number): TokenRate => ({ perMinute, burst: burst(perMinute, LIMITER_BURST_MS) });

function poolSpec(name: PoolName): TokenPoolSpec {
  const p = POOLS[name];
  return { modelPrefix: p.modelPrefix, requests: rate(p.rpm), inputTokens: rate(p.itpm), outputTokens: rate(p.otpm) };
}

interface PoolFigures {
  calls: number;
  rpm: number;
  itpm: number;
  otpm: number;
  rateLimited: number;
}

interface PoolsFigures {
  variant: Variant;
  pools: Record<PoolName, PoolFigures>;
  rateLimited: MockStats['rateLimited'];
  failed: number;
  wallMs: number;
}

const total = (counts: Record<string, number>): number => Object.values(counts).reduce((sum, count) => sum + count, 0);

function figures(variant: Variant, measurement: TrialMeasurement<MockStats>): PoolsFigures {
  const stats = measurement.upstream;
  if (!stats) throw new Error('a tokens trial needs the mock stats');
  const key = Object.values(stats.byKey)[0] as KeyStats | undefined;
  const pools = Object.fromEntries(
    POOL_NAMES.map((name) => {
      const pool = key?.pools[name];
      const windows = (pool?.windows ?? []).slice(Math.ceil(STEADY_AFTER_MS / stats.windowMs), -1);
      const perMinute = (pick: (window: MockStats['windows'][number]) => number): number =>
        windows.length === 0 ? Number.NaN : (windows.reduce((sum, window) => sum + pick(window), 0) / windows.length) * (MS_PER_MINUTE / stats.windowMs);
      return [
        name,
        {
          calls: pool?.requests ?? 0,
          rpm: perMinute((window) => window.requests),
          itpm: perMinute((window) => window.inputTokens),
          otpm: perMinute((window) => window.outputTokens),
          rateLimited: total(pool?.rateLimited ?? {}),
        },
      ];
    }),
  ) as Record<PoolName, PoolFigures>;
  const failed = measurement.workers.reduce((sum, worker) => sum + total(worker.tokens?.failed ?? {}), 0);
  return { variant, pools, rateLimited: stats.rateLimited, failed, wallMs: measurement.wallMs };
}

function poolsTable(rows: readonly PoolsFigures[]): string {
  const header = ['configuration'];
  for (const name of POOL_NAMES) header.push(`${name} calls`, `${name} of RPM`, `${name} of ITPM`, `${name} of OTPM`, `${name} 429s`);
  header.push('429s (all)', 'calls failed', 'wall s');
  return markdownTable(
    header,
    rows.map((row) => {
      const cells = [row.variant.label];
      for (const name of POOL_NAMES) {
        const p = row.pools[name];
        const limits = POOLS[name];
        cells.push(String(p.calls), percent(p.rpm / limits.rpm), percent(p.itpm / limits.itpm), percent(p.otpm / limits.otpm), String(p.rateLimited));
      }
      cells.push(String(total(row.rateLimited)), String(row.failed), fixed(row.wallMs / 1_000, 2));
      return cells;
    }),
  );
}

function poolsTargets(rows: readonly PoolsFigures[]): TargetCheck[] {
  const tollgate = rows.find((row) => row.variant.single === undefined);
  if (!tollgate) return [];
  const tooMany = total(tollgate.rateLimited);
  const binding = (name: PoolName): number => {
    const p = tollgate.pools[name];
    const limits = POOLS[name];
    return Math.max(p.rpm / limits.rpm, p.itpm / limits.itpm, p.otpm / limits.otpm);
  };
  return [
    { figure: 'upstream 429s (all kinds), two pools', target: '0', measured: String(tooMany), met: tooMany === 0 },
    { figure: 'calls failed, two pools', target: '0', measured: String(tollgate.failed), met: tollgate.failed === 0 },
    ...POOL_NAMES.map((name) => ({ figure: `${name}: share of its binding limit (steady state)`, target: 'reported', measured: percent(binding(name)), met: undefined })),
  ];
}

/** Every process's calls: as many of each model (the lanes go round them until the time is up). */
function calls(): TokenCall[] {
  return POOL_NAMES.flatMap((name) => Array.from({ length: LANES }, () => ({ ...POOLS[name].call, model: POOLS[name].model })));
}

function specs(variant: Variant, context: TrialContext, mockUrl: string, durationMs: number): TrialSpec[] {
  const single = variant.single === undefined ? undefined : POOLS[variant.single];
  const tokens: TokenTrialSpec = {
    mockUrl,
    model: POOLS.sonnet.model,
    calls: calls(),
    concurrency: CONCURRENCY,
    inputTokens: rate(single?.itpm ?? POOLS.sonnet.itpm),
    outputTokens: rate(single?.otpm ?? POOLS.sonnet.otpm),
    ...(single === undefined ? { pools: { sonnet: poolSpec('sonnet'), haiku: poolSpec('haiku') } } : { requests: rate(single.rpm) }),
    sdkMaxRetries: 0,
    durationMs,
  };
  return Array.from({ length: PROCESSES }, () => ({
    kind: 'tokens',
    contender: 'tollgate',
    adapter: { redisUrl: context.redisUrl, name: `bench-tokens-pools-${variant.single ?? 'two'}`, limit: CONCURRENCY, localLimit: CONCURRENCY },
    lanes: LANES,
    calls: 0,
    durationMs: 0,
    upstreamUrl: mockUrl,
    queueName: '',
    tokens,
  }));
}

export async function runTokenPoolsScenario(context: TrialContext, settings: RunSettings): Promise<ScenarioResult> {
  const durationMs = settings.quick ? DURATION_MS_QUICK : DURATION_MS_FULL;
  const mockBurst = (perMinute: number): number => burst(perMinute, LIMITER_BURST_MS + DISPATCH_JITTER_MS);
  const mock = await startMockAnthropic({
    port: 0,
    seed: SEED,
    statsWindowMs: WINDOW_MS,
    limits: {
      concurrency: CONCURRENCY,
      otpmMode: 'max_tokens',
      pools: Object.fromEntries(
        POOL_NAMES.map((name) => {
          const p = POOLS[name];
          return [
            name,
            { models: [`${p.modelPrefix}*`], rpm: p.rpm, itpm: p.itpm, otpm: p.otpm, burst: { rpm: mockBurst(p.rpm), itpm: mockBurst(p.itpm), otpm: mockBurst(p.otpm) } },
          ];
        }),
      ),
    },
    latency: MOCK_LATENCY,
  });
  let result: { rows: PoolsFigures[]; failures: string[] };
  try {
    result = await runVariants(
      context,
      { ...settings, scenario: '4-pools' },
      { reset: () => mock.reset(), stats: () => mock.stats() },
      settings.contenders.includes('tollgate') ? VARIANTS : [],
      {
        specs: (variant) => specs(variant, context, mock.url, durationMs),
        figures,
        line: (row) =>
          `${POOL_NAMES.map((name) => `${name} ${percent(row.pools[name].itpm / POOLS[name].itpm)} of ITPM, ${percent(row.pools[name].otpm / POOLS[name].otpm)} of OTPM`).join(
            '; ',
          )}; ${total(row.rateLimited)} 429s`,
      },
    );
  } finally {
    await mock.close();
  }
  const describe = (name: PoolName): string => {
    const p = POOLS[name];
    return `${name} (${p.model}: RPM ${whole(p.rpm)}, ITPM ${whole(p.itpm)}, OTPM ${whole(p.otpm)}; calls of ${p.call.inputTokens} input and ${p.call.outputTokens} output tokens)`;
  };
  return {
    id: '4-pools',
    title: 'Scenario 4-pools: mixed models against two pools, Tollgate with pools against one bucket set',
    description: [
      `${PROCESSES} worker processes × ${LANES} callers (half per model), each caller asking again as soon as its call ends, for ${durationMs / 1_000} s per row,`,
      `to mock-anthropic with concurrency ${CONCURRENCY} and two pools: ${describe('sonnet')}, ${describe('haiku')}; otpmMode max_tokens, buckets of ${
        LIMITER_BURST_MS + DISPATCH_JITTER_MS
      } ms of refill.`,
      `Tollgate's limiter: the two pools with buckets of ${LIMITER_BURST_MS} ms (each call's permit from its model's pool), or one set of RPM/ITPM/OTPM buckets`,
      `for every model at one pool's limits. Shares are each pool's delivered rate over its limit, the mean of the ${WINDOW_MS / 1_000} s windows from ${
        STEADY_AFTER_MS / 1_000
      } s to before the last; 429s as the mock counted them per pool.`,
    ].join(' '),
    table: poolsTable(result.rows),
    failures: result.failures,
    targets: poolsTargets(result.rows),
  };
}
