// `npm run demo -- --pools`: a mixed Sonnet/Haiku load against a mock account with two model pools, three ways:
// Tollgate with the account's two pools, and Tollgate with ONE set of buckets for every model (the naive config),
// sized to Sonnet's limits (it wastes Haiku's headroom) or to Haiku's (it overruns Sonnet's). Every figure is read
// from the mock upstream's per-pool stats.
import Anthropic from '@anthropic-ai/sdk';
import { limitAnthropic } from '@tollgate/anthropic';
import { poolRates } from '@tollgate/config';
import { createLimiter, type Limiter } from '@tollgate/limiter';
import type { KeyStats, MockStats, StatsWindow } from '@tollgate/mock-anthropic';

const MS_PER_MINUTE = 60_000;
const WINDOW_MS = 1_000;
/** Limiter clients sharing the account's limiter in Redis (as the processes of a fleet would), each with its lanes. */
const CLIENTS = 4;
/** Callers per model per client: more than either pool lets through, so both pools are always asked for more. */
const LANES_PER_MODEL = 8;
/** The account's concurrency: high enough not to bind; the pools' per-minute limits are what this shows. */
const CONCURRENCY = 64;
const PHASE_MS = Number(process.env.DEMO_POOLS_PHASE_MS ?? 10_000);
/** Windows before this spend the initial buckets and are left out of the rates. */
const STEADY_AFTER_MS = 2_000;
/** The limiter's buckets hold this much refill; the mock's this much more (calls granted in order can arrive bunched). */
const LIMITER_BURST_MS = 1_000;
const DISPATCH_JITTER_MS = 500;
const API_KEY = 'sk-ant-demo-pools';

/**
 * Sonnet-like: ITPM-bound (1,000-character prompts = 250 input tokens, 16 output tokens), 20 calls/s at its limit.
 * Haiku-like: OTPM-bound (200-character prompts, 200 output tokens), 40 calls/s at its limit. Haiku's limits are
 * the larger, as on the real API.
 */
export const POOLS = {
  sonnet: { model: 'claude-sonnet-4-6', models: ['claude-sonnet-4*'], rpm: 2_000, itpm: 300_000, otpm: 100_000, promptChars: 1_000, maxTokens: 16 },
  haiku: { model: 'claude-haiku-4-5', models: ['claude-haiku-4*'], rpm: 4_000, itpm: 1_000_000, otpm: 480_000, promptChars: 200, maxTokens: 200 },
} as const;
export type PoolName = keyof typeof POOLS;
const POOL_NAMES = Object.keys(POOLS) as PoolName[];
type Limits = { rpm: number; itpm: number; otpm: number };
const DIMENSIONS = [
  { label: 'RPM', limit: 'rpm', field: 'requests' },
  { label: 'ITPM', limit: 'itpm', field: 'inputTokens' },
  { label: 'OTPM', limit: 'otpm', field: 'outputTokens' },
] as const;

const burst = (perMinute: number, ms: number) => Math.min(perMinute, Math.ceil((perMinute / MS_PER_MINUTE) * ms));
const limiterRates = (limits: Limits) =>
  poolRates({
    models: ['*'],
    ...limits,
    burst: { rpm: burst(limits.rpm, LIMITER_BURST_MS), itpm: burst(limits.itpm, LIMITER_BURST_MS), otpm: burst(limits.otpm, LIMITER_BURST_MS) },
  });

/** The three configurations compared; `single` names the pool whose limits the one set of buckets copies. */
export interface Variant {
  label: string;
  single?: PoolName;
}
export const VARIANTS: readonly Variant[] = [{ label: 'two pools' }, { label: 'one bucket set = Sonnet', single: 'sonnet' }, { label: 'one bucket set = Haiku', single: 'haiku' }];

/** One variant's outcome: per pool, per dimension, the share of the pool's limit delivered; 429s; calls. */
export interface PoolsResult {
  variant: Variant;
  perPool: Record<PoolName, { calls: number; perMinute: Record<'rpm' | 'itpm' | 'otpm', number>; rateLimited: number; maxInFlight: number }>;
  rateLimited: number;
  failed: number;
  maxConcurrent: number;
}

export interface PoolsDemoContext {
  redisUrl: string;
  mockUrl: string;
  run: string;
  style: { bold: (text: string | number) => string; dim: (text: string | number) => string; green: (text: string | number) => string; red: (text: string | number) => string };
  tty: boolean;
  /** How long each configuration runs (default {@link PHASE_MS}). */
  phaseMs?: number;
}

/** The mock's limits: the account's two pools, and nothing on models outside them. */
export function mockConfig() {
  const pool = (name: PoolName) => {
    const p = POOLS[name];
    const ms = LIMITER_BURST_MS + DISPATCH_JITTER_MS;
    return { models: [...p.models], rpm: p.rpm, itpm: p.itpm, otpm: p.otpm, burst: { rpm: burst(p.rpm, ms), itpm: burst(p.itpm, ms), otpm: burst(p.otpm, ms) } };
  };
  return {
    limits: { concurrency: CONCURRENCY, pools: { sonnet: pool('sonnet'), haiku: pool('haiku') } },
    // every answer is exactly max_tokens long, so the limiter's output reservation is what the mock counts
    output: { tokensMin: 10_000, tokensMax: 10_000 },
    latency: { timeToFirstTokenMs: 50, perTokenMs: 0.2 },
    statsWindowMs: WINDOW_MS,
  };
}

function request(name: PoolName, i: number): Anthropic.MessageCreateParamsNonStreaming {
  const p = POOLS[name];
  const head = `${name} call ${i} `;
  return { model: p.model, max_tokens: p.maxTokens, messages: [{ role: 'user', content: head + 'x'.repeat(p.promptChars - head.length) }] };
}

const poolFor = (model: string): PoolName => (model.startsWith('claude-haiku') ? 'haiku' : 'sonnet');

function limiterFor(variant: Variant, ctx: PoolsDemoContext, name: string): Limiter {
  if (variant.single !== undefined) return createLimiter({ redis: ctx.redisUrl, name, concurrency: CONCURRENCY, rates: limiterRates(POOLS[variant.single]) });
  return createLimiter({ redis: ctx.redisUrl, name, concurrency: CONCURRENCY, pools: { sonnet: limiterRates(POOLS.sonnet), haiku: limiterRates(POOLS.haiku) } });
}

/** The windows that count: from {@link STEADY_AFTER_MS} to before the last (partial) one. */
function steady(windows: readonly StatsWindow[]): StatsWindow[] {
  return windows.slice(Math.ceil(STEADY_AFTER_MS / WINDOW_MS), Math.max(Math.ceil(STEADY_AFTER_MS / WINDOW_MS), windows.length - 1));
}

function perMinute(windows: readonly StatsWindow[], field: 'requests' | 'inputTokens' | 'outputTokens'): number {
  if (windows.length === 0) return Number.NaN;
  return (windows.reduce((sum, window) => sum + window[field], 0) / windows.length) * (MS_PER_MINUTE / WINDOW_MS);
}

async function mockStats(mockUrl: string): Promise<MockStats> {
  return (await (await fetch(`${mockUrl}/_mock/stats`)).json()) as MockStats;
}

const share = (value: number, limit: number) => `${Math.round((100 * value) / limit)}%`;

/** Runs one variant for {@link PHASE_MS}: every lane calls its model until the phase ends. */
async function runVariant(variant: Variant, ctx: PoolsDemoContext): Promise<PoolsResult> {
  const name = `${ctx.run}-pools-${variant.single ?? 'two'}`;
  const limiters = Array.from({ length: CLIENTS }, () => limiterFor(variant, ctx, name));
  let failed = 0;
  try {
    await Promise.all(limiters.map((limiter) => limiter.ready()));
    const clients = limiters.map((limiter) =>
      limitAnthropic(new Anthropic({ baseURL: ctx.mockUrl, apiKey: API_KEY, maxRetries: 0 }), limiter, variant.single === undefined ? { poolFor } : {}),
    );
    // one call per model per client first, so that no code path is cold in the measured phase
    await Promise.all(clients.flatMap((client) => POOL_NAMES.map((pool) => client.messages.create(request(pool, -1)))));
    await new Promise((resolve) => setTimeout(resolve, LIMITER_BURST_MS)); // the limiter's buckets full again
    await fetch(`${ctx.mockUrl}/_mock/reset`, { method: 'POST' }); // the windows start with the load, the buckets full
    const phaseMs = ctx.phaseMs ?? PHASE_MS;
    const endsAt = performance.now() + phaseMs;
    let next = 0;
    const lane = async (client: (typeof clients)[number], pool: PoolName) => {
      while (performance.now() < endsAt) {
        try {
          await client.messages.create(request(pool, next++));
        } catch {
          failed += 1; // the wrapper's attempts ran out (429s it could not wait out)
        }
      }
    };
    const lanes = clients.flatMap((client) => POOL_NAMES.flatMap((pool) => Array.from({ length: LANES_PER_MODEL }, () => lane(client, pool))));
    const ticker = setInterval(() => void progress(variant, ctx, endsAt, phaseMs), 500);
    try {
      await Promise.all(lanes);
    } finally {
      clearInterval(ticker);
      if (ctx.tty) process.stdout.write('\r\x1b[2K');
    }
  } finally {
    await Promise.all(limiters.map((limiter) => limiter.close()));
  }
  const stats = await mockStats(ctx.mockUrl);
  const key = Object.values(stats.byKey)[0] as KeyStats | undefined;
  const perPool = Object.fromEntries(
    POOL_NAMES.map((pool) => {
      const poolStats = key?.pools[pool];
      const windows = steady(poolStats?.windows ?? []);
      const rates = { rpm: perMinute(windows, 'requests'), itpm: perMinute(windows, 'inputTokens'), otpm: perMinute(windows, 'outputTokens') };
      const rateLimited = Object.values(poolStats?.rateLimited ?? {}).reduce((a, b) => a + b, 0);
      return [pool, { calls: poolStats?.requests ?? 0, perMinute: rates, rateLimited, maxInFlight: poolStats?.maxConcurrent ?? 0 }];
    }),
  ) as PoolsResult['perPool'];
  return { variant, perPool, rateLimited: stats.byStatus['429'] ?? 0, failed, maxConcurrent: stats.maxConcurrent };
}

async function progress(variant: Variant, ctx: PoolsDemoContext, endsAt: number, phaseMs: number): Promise<void> {
  if (!ctx.tty) return;
  const stats = await mockStats(ctx.mockUrl).catch(() => undefined);
  const key = stats === undefined ? undefined : (Object.values(stats.byKey)[0] as KeyStats | undefined);
  if (key === undefined || performance.now() > endsAt) return;
  const parts = POOL_NAMES.map((pool) => {
    const p = key.pools[pool];
    const last = p?.windows.at(-2); // the last complete window
    const itpm = (last?.inputTokens ?? 0) * (MS_PER_MINUTE / WINDOW_MS);
    const otpm = (last?.outputTokens ?? 0) * (MS_PER_MINUTE / WINDOW_MS);
    return `${pool} in flight ${String(p?.inFlight ?? 0).padStart(2)}  ITPM ${share(itpm, POOLS[pool].itpm).padStart(4)}  OTPM ${share(otpm, POOLS[pool].otpm).padStart(4)}`;
  });
  const tooMany = stats?.byStatus['429'] ?? 0;
  process.stdout.write(
    `\r\x1b[2K${ctx.style.bold(variant.label.padEnd(24))} ${parts.join('   ')}   429s ${tooMany > 0 ? ctx.style.red(tooMany) : ctx.style.green(0)}  ${ctx.style.dim(
      `${((phaseMs - (endsAt - performance.now())) / 1000).toFixed(1)} s`,
    )}`,
  );
}

/** The side-by-side table: one column per variant, one row per pool and dimension. */
export function poolsTable(results: readonly PoolsResult[], style: PoolsDemoContext['style']): string[] {
  const rows: Array<[string, (result: PoolsResult) => string]> = [];
  for (const pool of POOL_NAMES) {
    const p = POOLS[pool];
    for (const dimension of DIMENSIONS) {
      rows.push([
        `${pool} ${dimension.label} (limit ${p[dimension.limit].toLocaleString('en-US')})`,
        (r) => {
          const value = r.perPool[pool].perMinute[dimension.limit];
          return `${Math.round(value).toLocaleString('en-US')} ${share(value, p[dimension.limit]).padStart(4)}`;
        },
      ]);
    }
    rows.push([`${pool} max in flight`, (r) => String(r.perPool[pool].maxInFlight)]);
    rows.push([`${pool} 429s at the API`, (r) => String(r.perPool[pool].rateLimited)]);
  }
  rows.push(['calls failed (attempts ran out)', (r) => String(r.failed)]);
  const width = Math.max(...rows.map(([label]) => label.length));
  const column = 24;
  const lines = [`${' '.repeat(width)}  ${results.map((r) => style.bold(r.variant.label.padStart(column))).join('  ')}`];
  for (const [label, value] of rows) lines.push(`${label.padEnd(width)}  ${results.map((r) => value(r).padStart(column)).join('  ')}`);
  return lines;
}

export async function runPoolsDemo(ctx: PoolsDemoContext): Promise<PoolsResult[]> {
  const { bold, dim } = ctx.style;
  console.log(
    bold('Model pools') +
      dim(
        `: ${CLIENTS} limiter clients × ${LANES_PER_MODEL} callers per model, ${(ctx.phaseMs ?? PHASE_MS) / 1000} s per configuration. ` +
          `Sonnet pool ${POOLS.sonnet.rpm} RPM, ${POOLS.sonnet.itpm.toLocaleString('en-US')} ITPM, ${POOLS.sonnet.otpm.toLocaleString('en-US')} OTPM; ` +
          `Haiku pool ${POOLS.haiku.rpm} RPM, ${POOLS.haiku.itpm.toLocaleString('en-US')} ITPM, ${POOLS.haiku.otpm.toLocaleString('en-US')} OTPM.`,
      ),
  );
  const response = await fetch(`${ctx.mockUrl}/_mock/config`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(mockConfig()) });
  if (!response.ok) throw new Error(`mock config: ${response.status} ${await response.text()}`);
  const results: PoolsResult[] = [];
  for (const variant of VARIANTS) {
    const result = await runVariant(variant, ctx);
    results.push(result);
    const line = POOL_NAMES.map((pool) => {
      const r = result.perPool[pool];
      return `${pool} ITPM ${share(r.perMinute.itpm, POOLS[pool].itpm)}, OTPM ${share(r.perMinute.otpm, POOLS[pool].otpm)}`;
    }).join('; ');
    console.log(`${bold(variant.label.padEnd(24))} ${line}; 429s ${result.rateLimited > 0 ? ctx.style.red(result.rateLimited) : ctx.style.green(0)}`);
  }
  console.log('');
  for (const line of poolsTable(results, ctx.style)) console.log(line);
  console.log(
    dim(
      `\nDelivered per minute and share of each pool's limit, from the mock's ${WINDOW_MS / 1000} s windows after the first ${STEADY_AFTER_MS / 1000} s ` +
        `(the initial buckets). One bucket set sized to Sonnet's limits holds Haiku's calls to Sonnet's OTPM; sized to Haiku's, it lets ` +
        `Sonnet's calls past Sonnet's ITPM and the API answers 429 (each pauses every model: one set of buckets, one pause).`,
    ),
  );
  return results;
}
