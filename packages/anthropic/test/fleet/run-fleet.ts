import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { RESULT_PREFIX, type WorkerConfig, type WorkerResult } from './protocol.js';

const WORKER_SCRIPT = fileURLToPath(new URL('./worker.ts', import.meta.url));
/** The same protocol from a CommonJS process: the SDK's CommonJS build, the packages through `require`. */
export const CJS_WORKER_SCRIPT = fileURLToPath(new URL('./cjs-worker.cjs', import.meta.url));
const SOURCE_CONDITION = 'tollgate-source';

interface Worker {
  child: ChildProcess;
  ready: Promise<void>;
  result: Promise<WorkerResult>;
}

function startWorker(config: WorkerConfig, script: string): Worker {
  const child = spawn(process.execPath, [`--conditions=${SOURCE_CONDITION}`, '--import', 'tsx', script], {
    env: { ...process.env, TOLLGATE_WORKER_CONFIG: JSON.stringify(config) },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const lines = createInterface({ input: child.stdout ?? process.stdin });
  let onReady: () => void = () => undefined;
  const ready = new Promise<void>((resolve) => (onReady = resolve));
  let resultLine: string | undefined;
  lines.on('line', (line) => {
    if (line === 'ready') onReady();
    else if (line.startsWith(RESULT_PREFIX)) resultLine = line.slice(RESULT_PREFIX.length);
  });
  const result = exited.then((code) => {
    if (code !== 0 || resultLine === undefined) throw new Error(`worker exited with ${String(code)} without a result:\n${stderr}`);
    return JSON.parse(resultLine) as WorkerResult;
  });
  // a worker that dies before it is ready fails the run instead of hanging it
  const readyOrDead = Promise.race([ready, result.then(() => Promise.reject(new Error('worker ended before ready')))]);
  result.catch(() => undefined);
  return { child, ready: readyOrDead, result };
}

/**
 * Starts one child process per config, waits until every one has its limiter ready, then calls `beforeGo` and
 * starts them together. Returns each process's result, in order. `script`: the worker to run (worker.ts by default).
 */
export async function runFleet(configs: WorkerConfig[], beforeGo: () => Promise<void> = async () => undefined, script: string = WORKER_SCRIPT): Promise<WorkerResult[]> {
  const workers = configs.map((config) => startWorker(config, script));
  try {
    await Promise.all(workers.map((worker) => worker.ready));
    await beforeGo();
    for (const worker of workers) worker.child.stdin?.write('go\n');
    return await Promise.all(workers.map((worker) => worker.result));
  } finally {
    for (const worker of workers) if (worker.child.exitCode === null) worker.child.kill('SIGKILL');
  }
}

/** Sums a counter over the fleet. */
export function total(results: WorkerResult[], pick: (result: WorkerResult) => number): number {
  return results.reduce((sum, result) => sum + pick(result), 0);
}
