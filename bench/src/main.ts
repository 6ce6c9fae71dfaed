/**
 * `npm run bench`: Tollgate against the limiters people use today, in one run on one machine.
 * Starts its own redis-server, an overlap-counting upstream and a pool of worker processes, runs
 * every scenario for every contender, prints one Markdown table per scenario and writes RESULTS.md.
 */
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { RedisServerProcess } from '@tollgate/test-support';
import { parseBenchOptions, USAGE, type BenchOptions } from './cli.js';
import { BASELINE_LIMITER_ENV, COMPILED_LIMITERS_ENV, baselineLimiterDir, loadBaseline, loadTollgate } from './contenders.js';
import { WORKER_CPU_PROF_ENV, WorkerPool } from './fleet.js';
import { redisVersion } from './redis-stats.js';
import { gitCommitOf, machineInfo, reportMarkdown, scenarioMarkdown } from './report.js';
import { runScenario, WORKER_PROCESSES, type ScenarioResult } from './scenarios.js';

const DEFAULT_REPORT_PATH = fileURLToPath(new URL('../RESULTS.md', import.meta.url));

/** Everything the run started, stopped in reverse order exactly once, on success, error or signal. */
class Cleanup {
  readonly #steps: Array<() => Promise<void>> = [];
  #ran = false;

  add(step: () => Promise<void>): void {
    this.#steps.push(step);
  }

  async run(): Promise<void> {
    if (this.#ran) return;
    this.#ran = true;
    for (const step of this.#steps.reverse()) {
      await step().catch((error: unknown) => console.error(`cleanup: ${String(error)}`)); // keep stopping the rest
    }
  }
}

async function bench(options: BenchOptions, cleanup: Cleanup, signal: AbortSignal): Promise<void> {
  const log = (line: string): void => void process.stderr.write(`${line}\n`);
  const notes: string[] = [];
  let contenders = options.contenders;
  if (options.compiled) {
    process.env[COMPILED_LIMITERS_ENV] = '1'; // before the first import; the workers inherit it
    notes.push('tollgate and tollgate-baseline were imported from their builds (dist/, `--compiled`), not from their sources through tsx.');
  }
  if (contenders.includes('tollgate')) {
    const tollgate = await loadTollgate();
    if ('error' in tollgate) {
      const note = `tollgate: @tollgate/limiter cannot be imported yet (${tollgate.error}); benchmarking the other contenders.`;
      console.log(note);
      notes.push(note);
      contenders = contenders.filter((name) => name !== 'tollgate');
    }
  }
  if (options.baselineLimiter !== undefined) process.env[BASELINE_LIMITER_ENV] = options.baselineLimiter; // the workers inherit it
  if (options.workerCpuProf !== undefined) process.env[WORKER_CPU_PROF_ENV] = options.workerCpuProf;
  if (contenders.includes('tollgate-baseline')) {
    const baseline = baselineLimiterDir() === undefined ? undefined : await loadBaseline();
    if (baseline === undefined) {
      contenders = contenders.filter((name) => name !== 'tollgate-baseline'); // nothing to compare with: not a contender
    } else if ('error' in baseline) {
      const note = `tollgate-baseline: the limiter in ${baselineLimiterDir() ?? ''} cannot be imported (${baseline.error}).`;
      console.log(note);
      notes.push(note);
      contenders = contenders.filter((name) => name !== 'tollgate-baseline');
    } else {
      notes.push(`tollgate-baseline: the limiter of ${baselineLimiterDir() ?? ''} (commit ${gitCommitOf(baselineLimiterDir() ?? '.')}), same options as tollgate.`);
    }
  }

  const redis = await RedisServerProcess.start();
  cleanup.add(() => redis.close());
  const admin = new Redis(redis.url, { maxRetriesPerRequest: 1 });
  cleanup.add(async () => void admin.disconnect());
  const pool = new WorkerPool(WORKER_PROCESSES);
  cleanup.add(() => pool.close());

  const machine = machineInfo(await redisVersion(admin));
  const context = { redisUrl: redis.url, admin, pool };
  const results: ScenarioResult[] = [];
  for (const id of options.scenarios) {
    const result = await runScenario(id, context, { quick: options.quick, contenders, log, signal, trials: options.trials, shapes: options.shapes });
    results.push(result);
    console.log(`\n${scenarioMarkdown(result)}\n`);
  }
  signal.throwIfAborted(); // an interrupted run writes no report
  const report = reportMarkdown(machine, { ...options, contenders }, notes, results);
  const outPath = options.outPath ?? DEFAULT_REPORT_PATH;
  await writeFile(outPath, report);
  log(`written to ${outPath}`);
}

async function main(): Promise<void> {
  const options = parseBenchOptions(process.argv.slice(2));
  if (options.help) {
    console.log(USAGE);
    return;
  }
  const cleanup = new Cleanup();
  const interrupted = new AbortController();
  const onSignal = (signal: NodeJS.Signals): void => {
    interrupted.abort(new Error(`interrupted by ${signal}`));
    void cleanup.run().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    await bench(options, cleanup, interrupted.signal);
  } finally {
    await cleanup.run();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
