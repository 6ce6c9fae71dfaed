/**
 * Scenario scale (issue 18): acquire+release pairs with no upstream at fleet scale, measured in the
 * steady state. Two wide shapes of 1,024 callers (16 × 64 and 64 × 16) and a sweep of the waiting
 * queue's depth (10 → 10,000 waiters), each beside the standard 4 × 16 measured the same way.
 *
 * The bench has 4 worker processes (2 shared cores cannot host 64 Node processes), so a shape of P
 * processes runs as 4 processes × P/4 contender clients: each client is what one process would have
 * (a limiter of its own, with its own owner id, connections, heartbeat and grants channel; for
 * redis-semaphore a Redis connection of its own). The table says how each row ran.
 *
 * Every lane loops acquire+release from setup to teardown; a trial is measured only once every lane
 * has held a slot once (the queue has turned over; at most PRIME_MS_MAX), for a fixed window: pairs
 * completed in it, waits of the acquires granted in it, Redis CPU and commands over it.
 */
import { loadavg } from 'node:os';
import { isAdapterContender, type ContenderName } from './contenders.js';
import { firstLine, fixed, markdownTable, whole } from './format.js';
import type { TrialSpec } from './protocol.js';
import { interleaved, FLEET_LIMIT, WORKER_PROCESSES, type RunSettings, type ScenarioResult, type TargetCheck } from './scenarios.js';
import { medianOfEach, quantile, splitEvenly } from './stats.js';
import { runTrial, type TrialContext } from './trial.js';

const WINDOW_MS_FULL = 5_000;
const WINDOW_MS_QUICK = 2_000;
/** Longest the lanes run before the window, waiting for every lane's first slot (a barging contender may starve some forever). */
const PRIME_MS_MAX = 10_000;
const PRIME_MS_MAX_QUICK = 5_000;
/** The contenders this scenario compares (the others' figures at these shapes add nothing to issue 18's question). */
export const SCALE_CONTENDERS: readonly ContenderName[] = ['tollgate', 'tollgate-baseline', 'redis-semaphore'];
/** Tollgate's scale targets (issue 18): within 20% of its 4 × 16 figures, fair waits everywhere. */
const WITHIN_OF_REFERENCE = 0.2;
const FAIRNESS_MAX = 1.5;

export interface ScaleShape {
  /** What `--shapes` names it. */
  id: string;
  label: string;
  /** Processes the shape stands for, and the clients per worker process that stand for them. */
  processes: number;
  clientsPerWorker: number;
  /** Callers per client (a sweep row: per worker, split evenly over the 4 workers' single clients). */
  lanesPerWorker: readonly number[];
}

function depthShape(waiters: number): ScaleShape {
  return {
    id: `depth${waiters}`,
    label: `depth ${waiters.toLocaleString('en-US')}`,
    processes: WORKER_PROCESSES,
    clientsPerWorker: 1,
    lanesPerWorker: splitEvenly(FLEET_LIMIT + waiters, WORKER_PROCESSES),
  };
}

function wideShape(processes: number, lanes: number): ScaleShape {
  return {
    id: `${processes}x${lanes}`,
    label: `${processes}×${lanes}`,
    processes,
    clientsPerWorker: processes / WORKER_PROCESSES,
    lanesPerWorker: Array.from({ length: WORKER_PROCESSES }, () => lanes),
  };
}

/** The shapes' `--shapes` names (scenarios.ts checks them), the reference first: every other row is compared with it. */
export const SCALE_SHAPE_IDS = ['4x16', '16x64', '64x16', 'depth10', 'depth100', 'depth1000', 'depth10000'] as const;

/** Made when the scenario runs (it reads scenarios.ts's constants, which import this module). */
function scaleShapes(): ScaleShape[] {
  return [wideShape(4, 16), wideShape(16, 64), wideShape(64, 16), ...[10, 100, 1_000, 10_000].map(depthShape)];
}

function callers(shape: ScaleShape): number {
  return shape.lanesPerWorker.reduce((sum, lanes) => sum + lanes * shape.clientsPerWorker, 0);
}

function runAs(shape: ScaleShape): string {
  const lanes = [...new Set(shape.lanesPerWorker)].join('/');
  return shape.clientsPerWorker === 1 ? `${WORKER_PROCESSES} processes × ${lanes}` : `${WORKER_PROCESSES} processes × ${shape.clientsPerWorker} clients × ${lanes}`;
}

interface ScaleCell extends Record<string, number> {
  pairsPerSecond: number;
  redisCpuUsPerPair: number;
  workerCpuUsPerPair: number;
  waitP50Ms: number;
  waitP99Ms: number;
  commandsPerPair: number;
  redisCommandsPerPair: number;
  pairs: number;
}

async function runScaleTrial(context: TrialContext, contender: ContenderName, shape: ScaleShape, windowMs: number, primeMsMax: number): Promise<ScaleCell> {
  const specs: TrialSpec[] = shape.lanesPerWorker.map((lanes) => ({
    kind: 'steady',
    contender,
    adapter: { redisUrl: context.redisUrl, name: `bench-scale-${contender}`, limit: FLEET_LIMIT, localLimit: 0 },
    lanes,
    clients: shape.clientsPerWorker,
    primeMsMax,
    calls: 0,
    durationMs: windowMs,
    upstreamUrl: '',
    queueName: '',
  }));
  const measurement = await runTrial(context, { specs, upstream: undefined, jobs: 0, globalConcurrency: undefined });
  const pairs = measurement.workers.reduce((sum, worker) => sum + worker.operations, 0);
  const sum = (pick: (worker: (typeof measurement.workers)[number]) => number): number => measurement.workers.reduce((total, worker) => total + pick(worker), 0);
  const waits = measurement.workers.flatMap((worker) => worker.acquireWaitsMs);
  return {
    pairsPerSecond: sum((worker) => (worker.operations * 1_000) / worker.elapsedMs),
    redisCpuUsPerPair: measurement.redisCpuUs / pairs,
    workerCpuUsPerPair: sum((worker) => worker.cpuUs) / pairs,
    waitP50Ms: quantile(waits, 0.5),
    waitP99Ms: quantile(waits, 0.99),
    commandsPerPair: sum((worker) => worker.commands) / pairs,
    redisCommandsPerPair: measurement.redisCommands / pairs,
    pairs,
  };
}

/** The scale scenario; `shapeIds` picks rows (`--shapes`), the 4 × 16 reference always among them. */
export async function runScaleScenario(context: TrialContext, settings: RunSettings, shapeIds: readonly string[] | undefined): Promise<ScenarioResult> {
  const windowMs = settings.quick ? WINDOW_MS_QUICK : WINDOW_MS_FULL;
  const primeMsMax = settings.quick ? PRIME_MS_MAX_QUICK : PRIME_MS_MAX;
  const all = scaleShapes();
  const reference = all[0] as ScaleShape;
  const shapes = all.filter((shape) => shape === reference || shapeIds === undefined || shapeIds.includes(shape.id));
  const contenders = settings.contenders.filter((name) => SCALE_CONTENDERS.includes(name) && isAdapterContender(name));
  const loadAtStart = loadavg()[0] ?? Number.NaN;
  const cells = new Map<string, ScaleCell>();
  const failures: string[] = [];
  const key = (contender: ContenderName, shape: ScaleShape): string => `${contender}/${shape.id}`;
  for (const shape of shapes) {
    const trials = new Map<ContenderName, ScaleCell[]>();
    for (const contender of interleaved(contenders, settings.trials)) {
      settings.signal.throwIfAborted();
      try {
        const cell = await runScaleTrial(context, contender, shape, windowMs, primeMsMax);
        trials.set(contender, [...(trials.get(contender) ?? []), cell]);
        settings.log(
          `scale ${shape.label}: ${contender} ${whole(cell.pairsPerSecond)} pairs/s, Redis ${fixed(cell.redisCpuUsPerPair, 1)} µs/pair, worker ${fixed(
            cell.workerCpuUsPerPair,
            1,
          )} µs/pair, wait p50 ${fixed(cell.waitP50Ms, 1)} p99 ${fixed(cell.waitP99Ms, 1)} ms`,
        );
      } catch (error) {
        failures.push(`${contender} ${shape.label}: ${firstLine(error)}`);
        settings.log(`scale ${shape.label}: ${contender} failed: ${String(error)}`);
      }
    }
    for (const [contender, cellTrials] of trials) cells.set(key(contender, shape), medianOfEach(cellTrials));
  }
  const loadAtEnd = loadavg()[0] ?? Number.NaN;
  const rows: string[][] = [];
  const targets: TargetCheck[] = [];
  for (const contender of contenders) {
    const referenceCell = cells.get(key(contender, reference));
    for (const shape of shapes) {
      const cell = cells.get(key(contender, shape));
      if (!cell) continue;
      const pairsRatio = cell.pairsPerSecond / (referenceCell?.pairsPerSecond ?? Number.NaN);
      const cpuRatio = cell.redisCpuUsPerPair / (referenceCell?.redisCpuUsPerPair ?? Number.NaN);
      const fairness = cell.waitP99Ms / cell.waitP50Ms;
      rows.push([
        contender,
        shape.label,
        whole(callers(shape)),
        whole(Math.max(0, callers(shape) - FLEET_LIMIT)),
        runAs(shape),
        whole(cell.pairsPerSecond),
        fixed(pairsRatio, 2),
        fixed(cell.redisCpuUsPerPair, 1),
        fixed(cpuRatio, 2),
        fixed(cell.workerCpuUsPerPair, 1),
        fixed(cell.waitP50Ms, 1),
        fixed(cell.waitP99Ms, 1),
        fixed(fairness, 2),
        fixed(cell.commandsPerPair, 2),
        fixed(cell.redisCommandsPerPair, 2),
        whole(cell.pairs),
      ]);
      if (contender !== 'tollgate') continue;
      if (shape !== reference) {
        targets.push({
          figure: `scale ${shape.label} pairs/s ÷ 4×16's`,
          target: `≥ ${fixed(1 - WITHIN_OF_REFERENCE, 2)}`,
          measured: fixed(pairsRatio, 2),
          met: pairsRatio >= 1 - WITHIN_OF_REFERENCE,
        });
        targets.push({
          figure: `scale ${shape.label} Redis CPU/pair ÷ 4×16's`,
          target: `≤ ${fixed(1 + WITHIN_OF_REFERENCE, 2)}`,
          measured: fixed(cpuRatio, 2),
          met: cpuRatio <= 1 + WITHIN_OF_REFERENCE,
        });
      }
      targets.push({ figure: `scale ${shape.label} wait p99 ÷ p50`, target: `≤ ${fixed(FAIRNESS_MAX, 1)}`, measured: fixed(fairness, 2), met: fairness <= FAIRNESS_MAX });
    }
  }
  const versus: string[][] = [];
  for (const shape of shapes) {
    const tollgate = cells.get(key('tollgate', shape));
    const peer = cells.get(key('redis-semaphore', shape));
    if (!tollgate || !peer) continue;
    versus.push([
      shape.label,
      fixed(tollgate.pairsPerSecond / peer.pairsPerSecond, 2),
      fixed(tollgate.redisCpuUsPerPair / peer.redisCpuUsPerPair, 2),
      fixed(tollgate.workerCpuUsPerPair / peer.workerCpuUsPerPair, 2),
    ]);
  }
  const header = [
    'contender',
    'shape',
    'callers',
    'waiters',
    'run as',
    'pairs/s',
    'pairs/s ÷ 4×16',
    'Redis CPU µs/pair',
    'Redis CPU ÷ 4×16',
    'worker CPU µs/pair',
    'wait p50 ms',
    'wait p99 ms',
    'wait p99÷p50',
    'cmds sent/pair',
    'cmds in Redis/pair',
    'pairs in window',
  ];
  const tables = [markdownTable(header, rows)];
  if (versus.length > 0) tables.push(markdownTable(['shape', 'tollgate ÷ redis-semaphore pairs/s', 'Redis CPU/pair', 'worker CPU/pair'], versus));
  return {
    id: 'scale',
    title: 'Scale: 1,024 callers and a deep waiting queue, steady state',
    description: `Fleet limit ${FLEET_LIMIT}, no upstream. Each row ran in the bench's ${WORKER_PROCESSES} worker processes; a shape of more processes runs several contender clients per process (each a limiter, or a Redis connection, of its own), as "run as" says. Every lane loops acquire+release; each trial is measured for ${windowMs} ms once every lane has held a slot once (at most ${primeMsMax} ms of priming): pairs completed in the window, waits of the acquires granted in it. "waiters" = callers − limit.${
      settings.trials > 1 ? ` ${settings.trials} interleaved trials per cell (medians).` : ''
    } Load average ${fixed(loadAtStart, 1)} at the start, ${fixed(loadAtEnd, 1)} at the end.`,
    table: tables.join('\n\n'),
    failures,
    targets,
  };
}
