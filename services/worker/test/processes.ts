import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/** The repository root, where `node --conditions=tollgate-source --import tsx` resolves the workspaces. */
export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const WORKER_ENTRY = 'services/worker/src/main.ts';
/** Starting a process through tsx takes a few seconds on a busy machine; this is a deadline, not a measurement. */
export const READY_TIMEOUT_MS = 30_000;

/** The JSON ready line a service prints on stdout. */
export interface ReadyLine {
  event: 'ready';
  service: string;
  pid: number;
  [field: string]: unknown;
}

/** A service running as a child process. */
export interface ServiceProcess {
  readonly child: ChildProcess;
  readonly ready: ReadyLine;
  /** Every JSON log line it printed so far. */
  readonly logs: Array<Record<string, unknown>>;
  /** Resolves once it exits. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Sends `signal` if it is still running. */
  signal(signal: NodeJS.Signals): void;
}

/** Spawns `entry` (a path from the repository root) with `env` added, and waits for its ready line. */
export async function spawnService(entry: string, env: Record<string, string>): Promise<ServiceProcess> {
  const child = spawn(process.execPath, ['--conditions=tollgate-source', '--import', 'tsx', entry], {
    cwd: REPO_ROOT,
    env: { ...process.env, LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Array<Record<string, unknown>> = [];
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const ready = await new Promise<ReadyLine>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${entry} printed no ready line within ${READY_TIMEOUT_MS} ms; stderr: ${stderr}`)), READY_TIMEOUT_MS);
    void exited.then(({ code }) => reject(new Error(`${entry} exited with ${code} before ready; stderr: ${stderr}`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      let parsed: Record<string, unknown>;
      try {
        parsed = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return; // not a JSON line
      }
      logs.push(parsed);
      if (parsed.event === 'ready') {
        clearTimeout(timer);
        resolve(parsed as ReadyLine);
      }
    });
  });
  return {
    child,
    ready,
    logs,
    exited,
    signal: (signal) => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
  };
}
