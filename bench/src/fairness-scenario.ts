/**
 * Scenario fairness (issue 15, DESIGN §9): two tenants of one account, 10:1 load. Tenant A floods (ten callers per
 * process), tenant B asks a tenth as much (one caller per process); every caller asks again as soon as its call ends.
 * Both take their permits from one fleet-wide limiter with a concurrency limit, then call mock-anthropic, whose
 * latency is fixed. Tollgate with the tenants as limiter groups (fair share) beside the same limiter without groups
 * (one FIFO for everyone); the figures are each tenant's share of the grants and its wait from asking to holding.
 */
import { startMockAnthropic, type MockStats } from '@tollgate/mock-anthropic';
import { fixed, markdownTable, percent, violations } from './format.js';
import type { FairnessTenantResult, FairnessTrialSpec, TokenCall, TrialSpec } from './protocol.js';
import type { RunSettings, ScenarioResult, TargetCheck } from './scenarios.js';
import { quantile } from './stats.js';
import { runVariants, type TrialContext, type TrialMeasurement } from './trial.js';

const PROCESSES = 4;
/** The account's concurrency limit, fleet-wide; the mock enforces the same per key. */
const CONCURRENCY = 10;
/** Every call takes this long at the mock (time to the answer; no per-token time). */
const LATENCY_MS = 50;
const DURATION_MS_FULL = 15_000;
const DURATION_MS_QUICK = 5_000;
const SEED = 15;
const MODEL = 'claude-sonnet-4-6';
/** A small call: the latency, not the tokens, sets its length. */
const CALL: TokenCall = { inputTokens: 20, maxTokens: 8, outputTokens: 8 };

/** The tenants, their callers per process (10:1) and their weights as groups (equal: each is owed half). */
const TENANTS = [
  { tenant: 'A', lanesPerProcess: 10, weight: 1, role: 'floods' },
  { tenant: 'B', lanesPerProcess: 1, weight: 1, role: 'a tenth of the load' },
] as const;
type TenantName = (typeof TENANTS)[number]['tenant'];
const FLOOD: TenantName = 'A';
const LIGHT: TenantName = 'B';

/** The rows: the same limiter with the tenants as groups, or without groups. */
interface Variant {
  label: string;
  groups: boolean;
}
const FAIR: Variant = { label: 'tollgate, tenants as groups (fair share)', groups: true };
const FIFO: Variant = { label: 'tollgate without groups (FIFO)', groups: false };
const VARIANTS: readonly Variant[] = [FAIR, FIFO];

interface TenantFigures {
  tenant: TenantName;
  callers: number;
  grants: number;
  share: number;
  grantsPerSecond: number;
  waitP50Ms: number;
  waitP99Ms: number;
  failed: number;
}

interface FairnessFigures {
  variant: Variant;
  tenants: TenantFigures[];
  maxConcurrent: number;
  rateLimited: number;
}

const total = (counts: Record<string, number>): number => Object.values(counts).reduce((sum, count) => sum + count, 0);

function figures(variant: Variant, measurement: TrialMeasurement<MockStats>, durationMs: number): FairnessFigures {
  const stats = measurement.upstream;
  if (!stats) throw new Error('a fairness trial needs the mock stats');
  const of = (tenant: TenantName): FairnessTenantResult[] => measurement.workers.flatMap((worker) => worker.fairness?.[tenant] ?? []);
  const grants = (tenant: TenantName): number => of(tenant).reduce((sum, result) => sum + result.waitsMs.length, 0);
  const allGrants = TENANTS.reduce((sum, { tenant }) => sum + grants(tenant), 0);
  return {
    variant,
    tenants: TENANTS.map(({ tenant, lanesPerProcess }) => {
      const waitsMs = of(tenant).flatMap((result) => result.waitsMs);
      return {
        tenant,
        callers: lanesPerProcess * PROCESSES,
        grants: grants(tenant),
        share: grants(tenant) / allGrants,
        grantsPerSecond: grants(tenant) / (durationMs / 1_000),
        waitP50Ms: quantile(waitsMs, 0.5),
        waitP99Ms: quantile(waitsMs, 0.99),
        failed: of(tenant).reduce((sum, result) => sum + total(result.failed), 0),
      };
    }),
    maxConcurrent: stats.maxConcurrent,
    rateLimited: total(stats.rateLimited),
  };
}

function tenantOf(row: FairnessFigures | undefined, tenant: TenantName): TenantFigures | undefined {
  return row?.tenants.find((figures) => figures.tenant === tenant);
}

function fairnessTable(rows: readonly FairnessFigures[]): string {
  const header = [
    'configuration',
    'tenant',
    'callers',
    'grants',
    'share of grants',
    'grants/s',
    'wait p50 ms',
    'wait p99 ms',
    'calls failed',
    'max concurrent',
    'violations',
    '429s',
  ];
  return markdownTable(
    header,
    rows.flatMap((row) =>
      row.tenants.map((t) => [
        row.variant.label,
        `${t.tenant} (${TENANTS.find((spec) => spec.tenant === t.tenant)?.role ?? ''})`,
        String(t.callers),
        String(t.grants),
        percent(t.share),
        fixed(t.grantsPerSecond, 1),
        fixed(t.waitP50Ms, 2),
        fixed(t.waitP99Ms, 2),
        String(t.failed),
        String(row.maxConcurrent),
        violations(row.maxConcurrent, CONCURRENCY),
        String(row.rateLimited),
      ]),
    ),
  );
}

/** Reported, not held to a target: the light tenant's share and wait with fair share, and as ratios to FIFO's. */
function fairnessTargets(rows: readonly FairnessFigures[]): TargetCheck[] {
  const fair = rows.find((row) => row.variant === FAIR);
  const fifo = rows.find((row) => row.variant === FIFO);
  const light = tenantOf(fair, LIGHT);
  if (fair === undefined || light === undefined) return [];
  const checks: TargetCheck[] = [
    {
      figure: `fair share: tenant ${LIGHT}'s share of grants (${LIGHT} asks for at most ${percent(lanesShare(LIGHT))} of the slots)`,
      target: 'reported',
      measured: percent(light.share),
      met: undefined,
    },
    {
      figure: `fair share: tenant ${LIGHT}'s wait p50 / p99, ms (one call takes ${LATENCY_MS} ms)`,
      target: 'reported',
      measured: `${fixed(light.waitP50Ms, 2)} / ${fixed(light.waitP99Ms, 2)}`,
      met: undefined,
    },
  ];
  const fifoLight = tenantOf(fifo, LIGHT);
  if (fifoLight !== undefined) {
    checks.push({ figure: `tenant ${LIGHT}'s wait p50, fair share ÷ FIFO`, target: 'reported', measured: fixed(light.waitP50Ms / fifoLight.waitP50Ms, 3), met: undefined });
    checks.push({ figure: `tenant ${LIGHT}'s share of grants, fair share ÷ FIFO`, target: 'reported', measured: fixed(light.share / fifoLight.share, 2), met: undefined });
  }
  const over = Math.max(...rows.map((row) => row.maxConcurrent)) - CONCURRENCY;
  checks.push({ figure: 'concurrency violations (both rows)', target: '0', measured: String(Math.max(0, over)), met: over <= 0 });
  return checks;
}

/** A tenant's callers as a share of the limit: with every caller of it in flight, the most it can hold. */
function lanesShare(tenant: TenantName): number {
  const lanes = (TENANTS.find((spec) => spec.tenant === tenant)?.lanesPerProcess ?? 0) * PROCESSES;
  return Math.min(1, lanes / CONCURRENCY);
}

function specs(variant: Variant, context: TrialContext, mockUrl: string, durationMs: number): TrialSpec[] {
  const fairness: FairnessTrialSpec = {
    mockUrl,
    model: MODEL,
    concurrency: CONCURRENCY,
    ...(variant.groups ? { groups: Object.fromEntries(TENANTS.map(({ tenant, weight }) => [tenant, weight])) } : {}),
    tenants: TENANTS.map(({ tenant, lanesPerProcess }) => ({ tenant, lanes: lanesPerProcess })),
    durationMs,
    call: CALL,
  };
  return Array.from({ length: PROCESSES }, () => ({
    kind: 'fairness',
    contender: 'tollgate',
    adapter: { redisUrl: context.redisUrl, name: `bench-fairness-${variant.groups ? 'groups' : 'fifo'}`, limit: CONCURRENCY, localLimit: CONCURRENCY },
    lanes: TENANTS.reduce((sum, { lanesPerProcess }) => sum + lanesPerProcess, 0),
    calls: 0,
    durationMs: 0,
    upstreamUrl: mockUrl,
    queueName: '',
    fairness,
  }));
}

export async function runFairnessScenario(context: TrialContext, settings: RunSettings): Promise<ScenarioResult> {
  const durationMs = settings.quick ? DURATION_MS_QUICK : DURATION_MS_FULL;
  const mock = await startMockAnthropic({
    port: 0,
    seed: SEED,
    limits: { concurrency: CONCURRENCY },
    latency: { timeToFirstTokenMs: { kind: 'fixed', ms: LATENCY_MS }, perTokenMs: 0 },
  });
  let result: { rows: FairnessFigures[]; failures: string[] };
  try {
    result = await runVariants(
      context,
      { ...settings, scenario: 'fairness' },
      { reset: () => mock.reset(), stats: () => mock.stats() },
      settings.contenders.includes('tollgate') ? VARIANTS : [],
      {
        specs: (variant) => specs(variant, context, mock.url, durationMs),
        figures: (variant, measurement) => figures(variant, measurement, durationMs),
        line: (row) => row.tenants.map((t) => `${t.tenant} ${percent(t.share)} of grants, wait p50 ${fixed(t.waitP50Ms, 1)} ms, p99 ${fixed(t.waitP99Ms, 1)} ms`).join('; '),
      },
    );
  } finally {
    await mock.close();
  }
  const callers = TENANTS.map(({ tenant, lanesPerProcess }) => `${tenant} ${lanesPerProcess * PROCESSES}`).join(', ');
  return {
    id: 'fairness',
    title: 'Scenario fairness: two tenants at 10:1, fair share beside FIFO',
    description: [
      `One account with concurrency ${CONCURRENCY} (the limiter's and mock-anthropic's), every call ${LATENCY_MS} ms at the mock (fixed latency).`,
      `${PROCESSES} worker processes; tenant ${FLOOD} floods with ${TENANTS[0].lanesPerProcess} callers per process, tenant ${LIGHT} has ${TENANTS[1].lanesPerProcess} (callers in all: ${callers});`,
      `each caller takes a permit for its tenant (\`acquire({ group })\`), makes one call, releases, and asks again, for ${durationMs / 1_000} s per row.`,
      `Fair share: \`createLimiter({ groups: { ${TENANTS.map(({ tenant, weight }) => `${tenant}: { weight: ${weight} }`).join(', ')} } })\`; FIFO: the same limiter without \`groups\`.`,
      `Wait: from asking for a permit to holding it; grants after the end are released unused and not counted.`,
    ].join(' '),
    table: fairnessTable(result.rows),
    failures: result.failures,
    targets: fairnessTargets(result.rows),
  };
}
