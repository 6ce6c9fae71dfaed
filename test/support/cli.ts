import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { BUILT_ENV, REPO_ROOT } from './processes.js';

/**
 * The `tollgate` command as `npx tollgate` runs it: the workspace's bin, from the repository root (it runs the sources
 * through tsx); under `npm test` ({@link BUILT_ENV}) the compiled entry that bin runs once installed.
 */
export const TOLLGATE_BIN = process.env[BUILT_ENV] === '1' ? 'packages/cli/dist/main.js' : 'packages/cli/bin/tollgate.js';

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `tollgate …args` with exactly `env` (plus PATH and HOME) and waits for it to exit. */
export async function runTollgate(args: readonly string[], env: Record<string, string>): Promise<CliRun> {
  const child = spawn(process.execPath, [TOLLGATE_BIN, ...args], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', (exitCode) => resolve(exitCode)));
  return { code, stdout, stderr };
}

/** Parses the one JSON document a `--json` command printed; fails the test with its output otherwise. */
export function jsonOf<T = Record<string, unknown>>(run: CliRun): T {
  try {
    return JSON.parse(run.stdout) as T;
  } catch {
    throw new Error(`not one JSON document (exit ${run.code}):\n${run.stdout}\nstderr:\n${run.stderr}`);
  }
}

/** Starts `tollgate …args` (a `--watch`), hands each stdout line to `onLine` until it returns true, then sends SIGINT. */
export async function watchTollgate(args: readonly string[], env: Record<string, string>, onLine: (line: string) => boolean): Promise<CliRun> {
  const child = spawn(process.execPath, [TOLLGATE_BIN, ...args], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  createInterface({ input: child.stdout }).on('line', (line) => {
    stdout += `${line}\n`;
    if (onLine(line)) child.kill('SIGINT');
  });
  const code = await new Promise<number | null>((resolve) => child.once('exit', (exitCode) => resolve(exitCode)));
  return { code, stdout, stderr };
}
