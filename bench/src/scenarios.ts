import { startOverlapServer, type OverlapHoldMs } from '@tollgate/test-support';
import { isAdapterContender, type ContenderName } from './contenders.js';
import { firstLine, fixed, markdownTable, NOT_APPLICABLE, percent, signed, violations, whole } from './format.js';
import type { TrialKind, TrialSpec } from './protocol.js';
import { runFairnessScenario } from './fairness-scenario.js';
import { medianOfEach, quantile, splitByWeight, splitEvenly } from './stats.js';
import { runScaleScenario, SCALE_SHAPE_IDS } from './scale-scenario.js';
import { runTokenPoolsScenario } from './tokens-pools-scenario.js';
import { runTokenScenario } from './tokens-scenario.js';
import type { CommandStat } from './redis-stats.js';
import { overlapProbe, runTrial, type TrialContext, type TrialMeasurement, type TrialPlan } from './trial.js';

/** DESIGN §6 standard scenario: 4 worker processes × 16 local slots, fleet limit 10. */
export const FLEET_LIMIT = 10;
export const WORKER_PROCESSES = 4;
export const LOCAL_SLOTS = 16;
export const CALLS_FULL = 2_000;
export const CALLS_QUICK = 500;
export const MICRO_DURATION_MS_FULL = 2_000;
export const MICRO_DURATION_MS_QUICK = 500;
/** Seed of the upstream's hold-time PRNG: the same sequence of holds in every run. */
export const UPSTREAM_SEED = 7;
const HOLD_MS_STANDARD = 20;
const HOLD_MS_SPREAD = { min: 10, max: 50 } as const;
/** Micro shapes: processes × local slots in flight, against the same fleet limit. */
const MICRO_SHAPES = [
  { processes: 1, lanes: 1 },
  { processes: 1, lanes: 16 },
  { processes: 4, lanes: 16 },
] as const;
/** The contender every micro cell is compared with (DESIGN §6: Tollgate ≥ redis-semaphore in every shape). */
const MICRO_REFERENCE: ContenderName = 'redis-semaphore';
/** The contender whose utilization per permit is the ceiling (DESIGN §6). */
export const CEILING: ContenderName = 'static-split';

/**
 * The scenarios, in run order; scenario 4 (tokens) lives in `tokens-scenario.ts`, its mixed-model variant in
 * `tokens-pools-scenario.ts`, the two tenants' scenario in `fairness-scenario.ts`, the scale shapes in `scale-scenario.ts`.
 */
export const SCENARIO_IDS = ['1', '2', '3', '4', '4-pools', 'fairness', 'micro', 'scale'] as const;
export type ScenarioId = (typeof SCENARIO_IDS)[number];

export function isScenarioId(value: string): value is ScenarioId {
  return (SCENARIO_IDS as readonly string[]).includes(value);
}

export interface RunSettings {
  quick: boolean;
  contenders: readonly ContenderName[];
  /** Progress lines (stderr), so stdout carries only the tables. */
  log: (line: string) => void;
  /** Aborted on SIGINT/SIGTERM: no further trial starts. */
  signal: AbortSignal;
  /** Trials per cell, contenders interleaved (see {@link interleaved}); each figure is their median. */
  trials: number;
  /** `--shapes`: the micro and scale shapes to run (ids as {@link SHAPE_IDS}); undefined: all. */
  shapes?: readonly string[] | undefined;
}

/** What `--shapes` may name: the micro shapes and the scale scenario's rows. */
export const SHAPE_IDS: readonly string[] = [...MICRO_SHAPES.map((shape) => `${shape.processes}x${shape.lanes}`), ...SCALE_SHAPE_IDS.filter((id) => id !== '4x16')];

/** One scenario's rendered table plus the figures the target check reads. */
export interface ScenarioResult {
  id: ScenarioId;
  title: string;
  description: string;
  table: string;
  /** Trials that failed: named here, never shown as rows. */
  failures: string[];
  /** Tollgate's figures against DESIGN §6, when Tollgate ran. */
  targets: TargetCheck[];
}

export interface TargetCheck {
  figure: string;
  target: string;
  measured: string;
  /** Undefined for a figure that is reported, not held to a target. */
  met: boolean | undefined;
}

/** Row figures of one fleet trial (scenarios 1–3). */
interface FleetFigures {
  contender: ContenderName;
  utilization: number;
  /** Utilization per permit the contender was given: for static-split the slots its split uses. */
  utilizationPerPermit: number;
  gapMedianMs: number;
  gapP99Ms: number;
  waitP50Ms: number;
  waitP99Ms: number;
  maxInFlight: number;
  commandsPerCall: number;
  roundTripsPerCall: number;
  redisCommandsPerCall: number;
  redisCpuUsPerCall: number;
  workerCpuUsPerCall: number;
  wallMs: number;
}

function adapterSpecs(kind: TrialKind, contender: ContenderName, context: TrialContext, upstreamUrl: string, calls: number): TrialSpec[] {
  const split = splitEvenly(FLEET_LIMIT, WORKER_PROCESSES);
  const base = { kind, contender, upstreamUrl, queueName: `bench-${kind}`, durationMs: 0 };
  const adapter = (localLimit: number) => ({ redisUrl: context.redisUrl, name: `bench-${kind}-${contender}`, limit: FLEET_LIMIT, localLimit });
  if (contender === 'local') {
    return [{ ...base, adapter: adapter(FLEET_LIMIT), lanes: WORKER_PROCESSES * LOCAL_SLOTS, calls }];
  }
  // a static split gives each process calls in proportion to its slots, so no process idles at the end
  const callsPerProcess = contender === CEILING && kind === 'direct' ? splitByWeight(calls, split) : splitEvenly(calls, WORKER_PROCESSES);
  return split.map((localLimit, index) => ({
    ...base,
    adapter: adapter(localLimit),
    lanes: kind === 'queue' && contender === CEILING ? localLimit : LOCAL_SLOTS, // the queue's split is the worker concurrency
    calls: callsPerProcess[index] ?? 0,
  }));
}

function fleetFigures(contender: ContenderName, measurement: TrialMeasurement, calls: number): FleetFigures {
  const upstream = measurement.upstream;
  if (!upstream) throw new Error('a fleet trial needs the upstream stats');
  const waitsMs = measurement.workers.flatMap((worker) => worker.acquireWaitsMs);
  const sum = (pick: (worker: TrialMeasurement['workers'][number]) => number): number => measurement.workers.reduce((total, worker) => total + pick(worker), 0);
  const permits = contender === CEILING ? splitEvenly(FLEET_LIMIT, WORKER_PROCESSES).reduce((a, b) => a + b, 0) : FLEET_LIMIT;
  return {
    contender,
    utilization: upstream.utilization,
    utilizationPerPermit: upstream.inFlightMean / permits,
    gapMedianMs: upstream.refillGap.medianMs,
    gapP99Ms: upstream.refillGap.p99Ms,
    waitP50Ms: quantile(waitsMs, 0.5),
    waitP99Ms: quantile(waitsMs, 0.99),
    maxInFlight: upstream.maxInFlight,
    commandsPerCall: sum((worker) => worker.commands) / calls,
    roundTripsPerCall: sum((worker) => worker.roundTrips) / calls,
    redisCommandsPerCall: measurement.redisCommands / calls,
    redisCpuUsPerCall: measurement.redisCpuUs / calls,
    workerCpuUsPerCall: sum((worker) => worker.cpuUs) / calls,
    wallMs: measurement.wallMs,
  };
}

/** Each figure's median over one contender's trials (a single trial is its own median). */
function medianFigures(trials: readonly FleetFigures[]): FleetFigures {
  const [first] = trials;
  if (!first) throw new Error('no trials to take the median of');
  const median = (pick: (figures: FleetFigures) => number): number => quantile(trials.map(pick), 0.5);
  return {
    contender: first.contender,
    utilization: median((figures) => figures.utilization),
    utilizationPerPermit: median((figures) => figures.utilizationPerPermit),
    gapMedianMs: median((figures) => figures.gapMedianMs),
    gapP99Ms: median((figures) => figures.gapP99Ms),
    waitP50Ms: median((figures) => figures.waitP50Ms),
    waitP99Ms: median((figures) => figures.waitP99Ms),
    maxInFlight: Math.max(...trials.map((figures) => figures.maxInFlight)), // a violation in any trial shows
    commandsPerCall: median((figures) => figures.commandsPerCall),
    roundTripsPerCall: median((figures) => figures.roundTripsPerCall),
    redisCommandsPerCall: median((figures) => figures.redisCommandsPerCall),
    redisCpuUsPerCall: median((figures) => figures.redisCpuUsPerCall),
    workerCpuUsPerCall: median((figures) => figures.workerCpuUsPerCall),
    wallMs: median((figures) => figures.wallMs),
  };
}

/** p99 ÷ p50 of acquire waits; undefined when the median wait is too small to divide by. */
const WAIT_MS_MEDIAN_MIN_FOR_RATIO = 0.05;
function waitSpread(figures: FleetFigures): number {
  return figures.waitP50Ms >= WAIT_MS_MEDIAN_MIN_FOR_RATIO ? figures.waitP99Ms / figures.waitP50Ms : Number.NaN;
}

const FLEET_HEADER = [
  'contender',
  'utilization',
  'of ceiling',
  'refill gap p50 ms',
  'gap p99 ms',
  'gap p50 vs ceiling ms',
  'wait p50 ms',
  'wait p99 ms',
  'wait p99÷p50',
  'max in flight',
  'violations',
  'cmds sent/call',
  'round trips/call',
  'cmds in Redis/call',
  'Redis CPU µs/call',
  'worker CPU µs/call',
  'wall s',
];

function fleetTable(rows: readonly FleetFigures[]): string {
  const ceiling = rows.find((row) => row.contender === CEILING);
  return markdownTable(
    FLEET_HEADER,
    rows.map((row) => [
      row.contender,
      percent(row.utilization),
      ceiling ? percent(row.utilization / ceiling.utilizationPerPermit) : NOT_APPLICABLE,
      fixed(row.gapMedianMs, 2),
      fixed(row.gapP99Ms, 2),
      ceiling ? signed(row.gapMedianMs - ceiling.gapMedianMs, 2) : NOT_APPLICABLE,
      fixed(row.waitP50Ms, 2),
      fixed(row.waitP99Ms, 2),
      fixed(waitSpread(row), 2),
      String(row.maxInFlight),
      violations(row.maxInFlight, FLEET_LIMIT),
      fixed(row.commandsPerCall, 2),
      fixed(row.roundTripsPerCall, 2),
      fixed(row.redisCommandsPerCall, 2),
      fixed(row.redisCpuUsPerCall, 0),
      fixed(row.workerCpuUsPerCall, 0),
      fixed(row.wallMs / 1_000, 2),
    ]),
  );
}

function fleetTargets(rows: readonly FleetFigures[], checkFairness: boolean): TargetCheck[] {
  const tollgate = rows.find((row) => row.contender === 'tollgate');
  if (!tollgate) return [];
  const checks: TargetCheck[] = [];
  const ceiling = rows.find((row) => row.contender === CEILING);
  if (ceiling) {
    const share = tollgate.utilization / ceiling.utilizationPerPermit;
    checks.push({ figure: 'utilization, share of the ceiling', target: '≥ 98%', measured: percent(share), met: share >= 0.98 });
    const gapDeltaMs = tollgate.gapMedianMs - ceiling.gapMedianMs;
    checks.push({ figure: 'refill gap p50 above the ceiling', target: '≤ +0.3 ms', measured: `${signed(gapDeltaMs, 2)} ms`, met: gapDeltaMs <= 0.3 });
  }
  if (checkFairness) {
    const spread = waitSpread(tollgate);
    checks.push({ figure: 'acquire wait p99 ÷ p50', target: '≤ 1.5', measured: fixed(spread, 2), met: spread <= 1.5 });
  }
  // in the queue scenario the ceiling's commands are BullMQ's own (fetch, finish); the target is the limiter's share
  const ownCommandsPerCall = tollgate.commandsPerCall - (ceiling?.commandsPerCall ?? 0);
  checks.push({ figure: "Redis commands sent per call, beyond the ceiling's", target: '≤ 3', measured: fixed(ownCommandsPerCall, 2), met: ownCommandsPerCall <= 3 });
  checks.push({ figure: 'limit violations', target: '0', measured: String(Math.max(0, tollgate.maxInFlight - FLEET_LIMIT)), met: tollgate.maxInFlight <= FLEET_LIMIT });
  return checks;
}

interface FleetScenario {
  id: ScenarioId;
  title: string;
  description: string;
  kind: 'direct' | 'queue';
  holdMs: OverlapHoldMs;
  /** Whether DESIGN §6's fairness target applies to this scenario. */
  checkFairness: boolean;
}

function fleetContenders(kind: 'direct' | 'queue', contenders: readonly ContenderName[]): ContenderName[] {
  // the ceiling runs first so that its row leads the table; `local` is one process, so it has no queue form
  const applicable = contenders.filter((name) => (kind === 'direct' ? isAdapterContender(name) : name !== 'local'));
  return [...applicable.filter((name) => name === CEILING), ...applicable.filter((name) => name !== CEILING)];
}

async function runFleetScenario(scenario: FleetScenario, context: TrialContext, settings: RunSettings): Promise<ScenarioResult> {
  const calls = settings.quick ? CALLS_QUICK : CALLS_FULL;
  const upstream = await startOverlapServer({ holdMs: scenario.holdMs, seed: UPSTREAM_SEED });
  const trials = new Map<ContenderName, FleetFigures[]>();
  const failures: string[] = [];
  const contenders = fleetContenders(scenario.kind, settings.contenders);
  try {
    for (const contender of interleaved(contenders, settings.trials)) {
      settings.signal.throwIfAborted();
      const plan: TrialPlan = {
        specs: adapterSpecs(scenario.kind, contender, context, upstream.url, calls),
        upstream: overlapProbe(upstream, FLEET_LIMIT),
        jobs: scenario.kind === 'queue' ? calls : 0,
        globalConcurrency: contender === 'bullmq-global' ? FLEET_LIMIT : undefined,
      };
      try {
        const measurement = await runTrial(context, plan);
        const figures = fleetFigures(contender, measurement, calls);
        trials.set(contender, [...(trials.get(contender) ?? []), figures]);
        settings.log(`scenario ${scenario.id}: ${contender} ${percent(figures.utilization)} in ${fixed(figures.wallMs / 1_000, 1)} s`);
      } catch (error) {
        failures.push(`${contender}: ${firstLine(error)}`);
        settings.log(`scenario ${scenario.id}: ${contender} failed: ${String(error)}`);
      }
    }
  } finally {
    await upstream.close();
  }
  const rows = contenders.flatMap((contender) => {
    const figures = trials.get(contender);
    return figures ? [medianFigures(figures)] : [];
  });
  return {
    id: scenario.id,
    title: scenario.title,
    description: `${scenario.description} ${calls.toLocaleString('en-US')} calls.`,
    table: fleetTable(rows),
    failures,
    targets: fleetTargets(rows, scenario.checkFairness),
  };
}

interface MicroCell extends Record<string, number> {
  pairsPerSecond: number;
  commandsPerPair: number;
  redisCommandsPerPair: number;
  redisCpuUsPerPair: number;
  workerCpuUsPerPair: number;
}

/** One micro trial: its figures and what each Redis command came to (summed over the trials of a cell). */
interface MicroTrial {
  cell: MicroCell;
  pairs: number;
  commandStats: ReadonlyMap<string, CommandStat>;
}

function microApplies(contender: ContenderName, processes: number): boolean {
  if (contender === 'bullmq-global') return false;
  if (contender === 'local') return processes === 1; // one process by definition
  if (contender === CEILING) return processes > 1; // with one process a split is the local semaphore
  return true;
}

/** The contenders a side-by-side table compares: the limiter of this checkout against the baseline checkout's. */
const SIDE_BY_SIDE = { current: 'tollgate', baseline: 'tollgate-baseline' } as const satisfies Record<string, ContenderName>;

const MICRO_CELL_COLUMNS: ReadonlyArray<{ header: string; pick: (cell: MicroCell) => number; digits: number }> = [
  { header: 'pairs/s', pick: (cell) => cell.pairsPerSecond, digits: 0 },
  { header: 'Redis CPU µs/pair', pick: (cell) => cell.redisCpuUsPerPair, digits: 1 },
  { header: 'worker CPU µs/pair', pick: (cell) => cell.workerCpuUsPerPair, digits: 1 },
  { header: 'cmds sent/pair', pick: (cell) => cell.commandsPerPair, digits: 2 },
  { header: 'cmds in Redis/pair', pick: (cell) => cell.redisCommandsPerPair, digits: 2 },
];

async function runMicroTrial(context: TrialContext, contender: ContenderName, shape: (typeof MICRO_SHAPES)[number], durationMs: number): Promise<MicroTrial> {
  const specs: TrialSpec[] = splitEvenly(FLEET_LIMIT, shape.processes).map((localLimit) => ({
    kind: 'micro',
    contender,
    adapter: { redisUrl: context.redisUrl, name: `bench-micro-${contender}`, limit: FLEET_LIMIT, localLimit },
    lanes: shape.lanes,
    calls: 0,
    durationMs,
    upstreamUrl: '',
    queueName: '',
  }));
  const measurement = await runTrial(context, { specs, upstream: undefined, jobs: 0, globalConcurrency: undefined });
  const sum = (pick: (worker: TrialMeasurement['workers'][number]) => number): number => measurement.workers.reduce((total, worker) => total + pick(worker), 0);
  const pairs = sum((worker) => worker.operations);
  return {
    pairs,
    commandStats: measurement.redisCommandStats,
    cell: {
      pairsPerSecond: sum((worker) => (worker.operations * 1_000) / worker.elapsedMs),
      commandsPerPair: sum((worker) => worker.commands) / pairs,
      redisCommandsPerPair: measurement.redisCommands / pairs,
      redisCpuUsPerPair: measurement.redisCpuUs / pairs,
      workerCpuUsPerPair: sum((worker) => worker.cpuUs) / pairs,
    },
  };
}

/** Calls and Redis µs per pair of each command, over every trial of a cell. */
function commandsPerPair(trials: readonly MicroTrial[]): Map<string, CommandStat> {
  const pairs = trials.reduce((total, trial) => total + trial.pairs, 0);
  const perPair = new Map<string, CommandStat>();
  for (const trial of trials) {
    for (const [command, stat] of trial.commandStats) {
      const sum = perPair.get(command) ?? { calls: 0, usec: 0 };
      perPair.set(command, { calls: sum.calls + stat.calls / pairs, usec: sum.usec + stat.usec / pairs });
    }
  }
  return perPair;
}

/**
 * The order of a cell's trials: every contender once per round, the order reversed every other
 * round (A B, B A, A B, …), so that the machine's load, which drifts, weighs on each alike.
 */
export function interleaved<T>(items: readonly T[], rounds: number): T[] {
  return Array.from({ length: rounds }, (_, round) => (round % 2 === 0 ? [...items] : [...items].reverse())).flat();
}

/** The side-by-side tables: per shape, the baseline, this checkout and their ratio; then Redis's commands per pair. */
function sideBySideMarkdown(
  cells: ReadonlyMap<string, MicroCell>,
  stats: ReadonlyMap<string, Map<string, CommandStat>>,
  key: (contender: ContenderName, shapeIndex: number) => string,
): string | undefined {
  const shapeName = (shape: (typeof MICRO_SHAPES)[number]): string => `${shape.processes}×${shape.lanes}`;
  const rows: string[][] = [];
  const breakdowns: string[] = [];
  for (const [index, shape] of MICRO_SHAPES.entries()) {
    const current = cells.get(key(SIDE_BY_SIDE.current, index));
    const baseline = cells.get(key(SIDE_BY_SIDE.baseline, index));
    if (!current || !baseline) continue;
    rows.push([shapeName(shape), SIDE_BY_SIDE.baseline, ...MICRO_CELL_COLUMNS.map((column) => fixed(column.pick(baseline), column.digits))]);
    rows.push([shapeName(shape), SIDE_BY_SIDE.current, ...MICRO_CELL_COLUMNS.map((column) => fixed(column.pick(current), column.digits))]);
    rows.push([shapeName(shape), 'new ÷ baseline', ...MICRO_CELL_COLUMNS.map((column) => fixed(column.pick(current) / column.pick(baseline), 2))]);
    const currentStats = stats.get(key(SIDE_BY_SIDE.current, index)) ?? new Map<string, CommandStat>();
    const baselineStats = stats.get(key(SIDE_BY_SIDE.baseline, index)) ?? new Map<string, CommandStat>();
    const commands = [...new Set([...currentStats.keys(), ...baselineStats.keys()])].sort(
      (a, b) => (currentStats.get(b)?.calls ?? 0) - (currentStats.get(a)?.calls ?? 0) || a.localeCompare(b),
    );
    const stat = (from: ReadonlyMap<string, CommandStat>, command: string): CommandStat => from.get(command) ?? { calls: 0, usec: 0 };
    breakdowns.push(
      [
        `${shapeName(shape)}: Redis commands per pair (\`INFO commandstats\`, inner commands of the functions included; FCALL's µs include theirs)`,
        '',
        markdownTable(
          ['command', 'baseline calls/pair', 'new calls/pair', 'baseline µs/pair', 'new µs/pair'],
          commands.map((command) => [
            command,
            fixed(stat(baselineStats, command).calls, 2),
            fixed(stat(currentStats, command).calls, 2),
            fixed(stat(baselineStats, command).usec, 2),
            fixed(stat(currentStats, command).usec, 2),
          ]),
        ),
      ].join('\n'),
    );
  }
  if (rows.length === 0) return undefined;
  return [
    `### ${SIDE_BY_SIDE.current} against ${SIDE_BY_SIDE.baseline} (medians of the interleaved trials)`,
    '',
    markdownTable(['shape', 'limiter', ...MICRO_CELL_COLUMNS.map((column) => column.header)], rows),
    '',
    ...breakdowns.flatMap((breakdown) => [breakdown, '']),
  ]
    .join('\n')
    .trimEnd();
}

async function runMicro(context: TrialContext, settings: RunSettings): Promise<ScenarioResult> {
  const durationMs = settings.quick ? MICRO_DURATION_MS_QUICK : MICRO_DURATION_MS_FULL;
  const contenders = settings.contenders.filter((name) => MICRO_SHAPES.some((shape) => microApplies(name, shape.processes)));
  const trials = new Map<string, MicroTrial[]>();
  const failures: string[] = [];
  const key = (contender: ContenderName, shapeIndex: number): string => `${contender}/${shapeIndex}`;
  for (const [shapeIndex, shape] of MICRO_SHAPES.entries()) {
    if (settings.shapes !== undefined && !settings.shapes.includes(`${shape.processes}x${shape.lanes}`)) continue;
    for (const contender of interleaved(
      contenders.filter((name) => microApplies(name, shape.processes)),
      settings.trials,
    )) {
      settings.signal.throwIfAborted();
      try {
        const trial = await runMicroTrial(context, contender, shape, durationMs);
        trials.set(key(contender, shapeIndex), [...(trials.get(key(contender, shapeIndex)) ?? []), trial]);
        settings.log(
          `micro ${shape.processes}×${shape.lanes}: ${contender} ${whole(trial.cell.pairsPerSecond)} pairs/s, Redis ${fixed(
            trial.cell.redisCpuUsPerPair,
            1,
          )} µs/pair, worker ${fixed(trial.cell.workerCpuUsPerPair, 1)} µs/pair`,
        );
      } catch (error) {
        failures.push(`${contender} ${shape.processes}×${shape.lanes}: ${firstLine(error)}`);
        settings.log(`micro ${shape.processes}×${shape.lanes}: ${contender} failed: ${String(error)}`);
      }
    }
  }
  const cells = new Map([...trials].map(([cellKey, cellTrials]) => [cellKey, medianOfEach(cellTrials.map((trial) => trial.cell))]));
  const stats = new Map([...trials].map(([cellKey, cellTrials]) => [cellKey, commandsPerPair(cellTrials)]));
  const shapeName = (shape: (typeof MICRO_SHAPES)[number]): string => `${shape.processes}×${shape.lanes}`;
  const widest = MICRO_SHAPES.length - 1;
  const header = [
    'contender',
    ...MICRO_SHAPES.map((shape) => `${shapeName(shape)} pairs/s`),
    ...MICRO_SHAPES.map((shape) => `${shapeName(shape)} ÷ ${MICRO_REFERENCE}`),
    'cmds sent/pair (widest)',
    'cmds in Redis/pair (widest)',
    'Redis CPU µs/pair (widest)',
  ];
  const ratio = (contender: ContenderName, shapeIndex: number): number =>
    (cells.get(key(contender, shapeIndex))?.pairsPerSecond ?? Number.NaN) / (cells.get(key(MICRO_REFERENCE, shapeIndex))?.pairsPerSecond ?? Number.NaN);
  const rows = contenders
    .filter((contender) => MICRO_SHAPES.some((_, index) => cells.has(key(contender, index))))
    .map((contender) => {
      const widestCell = [...MICRO_SHAPES.keys()]
        .reverse()
        .map((index) => cells.get(key(contender, index)))
        .find((cell) => cell !== undefined);
      return [
        contender,
        ...MICRO_SHAPES.map((_, index) => whole(cells.get(key(contender, index))?.pairsPerSecond ?? Number.NaN)),
        ...MICRO_SHAPES.map((_, index) => fixed(ratio(contender, index), 2)),
        fixed(widestCell?.commandsPerPair ?? Number.NaN, 2),
        fixed(widestCell?.redisCommandsPerPair ?? Number.NaN, 2),
        fixed(widestCell?.redisCpuUsPerPair ?? Number.NaN, 1),
      ];
    });
  const targets: TargetCheck[] = [];
  if (cells.has(key('tollgate', widest)) || cells.has(key('tollgate', 0))) {
    for (const [index, shape] of MICRO_SHAPES.entries()) {
      if (!cells.has(key('tollgate', index))) continue; // not run (--shapes)
      const value = ratio('tollgate', index);
      targets.push({ figure: `micro ${shapeName(shape)} pairs/s ÷ ${MICRO_REFERENCE}`, target: '≥ 1.00', measured: fixed(value, 2), met: value >= 1 });
    }
  }
  return {
    id: 'micro',
    title: 'Micro: acquire+release pairs per second, no upstream',
    description: `Processes × local slots in flight against a fleet limit of ${FLEET_LIMIT}, ${durationMs} ms per shape${
      settings.trials > 1 ? `, ${settings.trials} interleaved trials per cell (medians)` : ''
    }. "widest" is the largest shape the contender ran. Worker CPU: user + system of the worker processes from \`go\` to their report (the harness's own loop included, alike for every contender).`,
    table: [markdownTable(header, rows), sideBySideMarkdown(cells, stats, key)].filter((part) => part !== undefined).join('\n\n'),
    failures,
    targets,
  };
}

const FLEET_SCENARIOS: readonly FleetScenario[] = [
  {
    id: '1',
    title: 'Scenario 1: direct calls, 20 ms upstream',
    description: `${WORKER_PROCESSES} worker processes × ${LOCAL_SLOTS} local slots, fleet limit ${FLEET_LIMIT}, upstream holds each call ${HOLD_MS_STANDARD} ms.`,
    kind: 'direct',
    holdMs: HOLD_MS_STANDARD,
    checkFairness: true,
  },
  {
    id: '2',
    title: 'Scenario 2: direct calls, 10–50 ms upstream',
    description: `As scenario 1, upstream hold drawn from ${HOLD_MS_SPREAD.min}–${HOLD_MS_SPREAD.max} ms (seed ${UPSTREAM_SEED}).`,
    kind: 'direct',
    holdMs: HOLD_MS_SPREAD,
    checkFairness: false,
  },
  {
    id: '3',
    title: 'Scenario 3: BullMQ jobs, 20 ms upstream',
    description: `The same calls as BullMQ jobs pulled by ${WORKER_PROCESSES} workers (concurrency ${LOCAL_SLOTS}; static-split: worker concurrency ${splitEvenly(
      FLEET_LIMIT,
      WORKER_PROCESSES,
    ).join('/')}; bullmq-global: setGlobalConcurrency(${FLEET_LIMIT})); commands include BullMQ's own.`,
    kind: 'queue',
    holdMs: HOLD_MS_STANDARD,
    checkFairness: false,
  },
];

/** Runs one scenario for every selected contender that applies to it. */
export async function runScenario(id: ScenarioId, context: TrialContext, settings: RunSettings): Promise<ScenarioResult> {
  if (id === 'micro') return runMicro(context, settings);
  if (id === 'scale') return runScaleScenario(context, settings, settings.shapes);
  if (id === '4') return runTokenScenario(context, settings);
  if (id === '4-pools') return runTokenPoolsScenario(context, settings);
  if (id === 'fairness') return runFairnessScenario(context, settings);
  const scenario = FLEET_SCENARIOS.find((candidate) => candidate.id === id);
  if (!scenario) throw new Error(`unknown scenario ${id}`);
  return runFleetScenario(scenario, context, settings);
}
