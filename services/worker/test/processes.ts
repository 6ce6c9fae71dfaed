import type { ChildProcess } from 'node:child_process';
import { REPO_ROOT, WORKER_ENTRY, entryCommand, spawnService as spawnProcess } from '@tollgate/test-support';

// The service tests' view of @tollgate/test-support's spawnService: a service entry (its sources, or its build under
// `npm test`) with the test's whole environment, and its JSON ready line as `ready`.
export { REPO_ROOT, WORKER_ENTRY, entryCommand };

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

/** Spawns `entry` (a path from the repository root) with the test's environment plus `env`, and waits for its ready line. */
export async function spawnService(entry: string, env: Record<string, string>): Promise<ServiceProcess> {
  const inherited = Object.fromEntries(Object.entries(process.env).filter((entry): entry is [string, string] => entry[1] !== undefined));
  const started = await spawnProcess({ name: entry, ...entryCommand(entry), env: { ...inherited, LOG_LEVEL: 'info', ...env } });
  return { child: started.child, ready: started.ready.line as ReadyLine, logs: started.logs, exited: started.exited, signal: (signal) => started.signal(signal) };
}
