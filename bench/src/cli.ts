import { parseArgs } from 'node:util';
import { CONTENDERS, isContenderName, type ContenderName } from './contenders.js';
import { isScenarioId, SCENARIO_IDS, SHAPE_IDS, type ScenarioId } from './scenarios.js';

export interface BenchOptions {
  quick: boolean;
  contenders: ContenderName[];
  scenarios: ScenarioId[];
  /** Where the Markdown report goes. */
  outPath: string | undefined;
  help: boolean;
  /** `--baseline-limiter`: another checkout's packages/limiter, measured as `tollgate-baseline`. */
  baselineLimiter: string | undefined;
  /** `--trials`: every trial of a scenario runs this many times, contenders interleaved; medians reported. */
  trials: number;
  /** `--worker-cpu-prof`: a directory for the workers' V8 CPU profiles. */
  workerCpuProf: string | undefined;
  /** `--shapes`: the micro and scale shapes to run; undefined: all. */
  shapes: string[] | undefined;
  /** `--compiled`: the limiters from their builds (dist/), not their sources through tsx. */
  compiled: boolean;
}

export const USAGE = `npm run bench -- [--quick] [--only ${CONTENDERS.slice(0, 2).join(',')}] [--scenario 1,micro] [--out FILE]
  --quick       ${'fewer calls and shorter micro runs (under a minute)'}
  --only        contenders: ${CONTENDERS.join(', ')}
  --scenario    scenarios: ${SCENARIO_IDS.join(', ')}
  --out         report file (default bench/RESULTS.md)
  --baseline-limiter DIR   also measure DIR (another checkout's packages/limiter) as tollgate-baseline
  --worker-cpu-prof DIR    every worker process writes a V8 CPU profile of each measured window into DIR
  --shapes      micro and scale shapes: ${SHAPE_IDS.join(', ')} (scale always runs 4x16, its reference)
  --trials N    run each scenario's trials N times, contenders interleaved (ABBA), report medians (default 1)
  --compiled    import tollgate and tollgate-baseline from their builds (dist/, as installed), not their sources through tsx`;

function list<T extends string>(raw: string | undefined, all: readonly T[], guard: (value: string) => value is T, what: string): T[] {
  if (raw === undefined) return [...all];
  const values = raw
    .split(',')
    .map((value) => value.trim())
    .filter((value) => value.length > 0);
  const unknown = values.filter((value) => !guard(value));
  if (unknown.length > 0) throw new Error(`unknown ${what}: ${unknown.join(', ')} (known: ${all.join(', ')})`);
  return all.filter((value) => values.includes(value)); // canonical order, whatever order was typed
}

function positiveInteger(raw: string, what: string): number {
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1) throw new Error(`--${what} must be a positive integer, got ${raw}`);
  return value;
}

export function parseBenchOptions(args: readonly string[]): BenchOptions {
  const { values } = parseArgs({
    args: [...args],
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      scenario: { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
      'baseline-limiter': { type: 'string' },
      trials: { type: 'string', default: '1' },
      'worker-cpu-prof': { type: 'string' },
      shapes: { type: 'string' },
      compiled: { type: 'boolean', default: false },
    },
    strict: true,
  });
  return {
    quick: values.quick,
    contenders: list(values.only, CONTENDERS, isContenderName, 'contender'),
    scenarios: list(values.scenario, SCENARIO_IDS, isScenarioId, 'scenario'),
    outPath: values.out,
    help: values.help,
    baselineLimiter: values['baseline-limiter'],
    trials: positiveInteger(values.trials, 'trials'),
    workerCpuProf: values['worker-cpu-prof'],
    shapes: values.shapes === undefined ? undefined : list(values.shapes, SHAPE_IDS, (value): value is string => SHAPE_IDS.includes(value), 'shape'),
    compiled: values.compiled,
  };
}
