import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/** The repository root: `node --conditions=tollgate-source --import tsx` resolves the workspaces from here. */
export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const WORKER_ENTRY = 'services/worker/src/main.ts';
export const GATEWAY_ENTRY = 'services/gateway/src/main.ts';
export const MOCK_ENTRY = 'services/mock-anthropic/src/main.ts';
/** Starting a TypeScript entry through tsx takes seconds on two busy cores; a deadline, not a measurement. */
export const READY_TIMEOUT_MS = 60_000;
/** After SIGTERM, a process gets this long to exit before it is killed. */
export const STOP_GRACE_MS = 10_000;
/** Lines of output kept per process, for error messages. */
const OUTPUT_LINES_KEPT = 200;

/** Only these variables pass from the test's own environment into a child: what it gets is exactly what we say. */
const INHERITED_ENV = ['PATH', 'HOME', 'TMPDIR', 'LANG', 'SystemRoot'] as const;

/** What a started process announced: the JSON ready line of a Tollgate service, or the mock's `listening on <url>`. */
export interface ReadyInfo {
  pid: number;
  /** The URL it serves (gateway, mock) or its metrics URL (worker). */
  url: string | undefined;
  line: Record<string, unknown>;
}

/** A child process that printed its ready line. */
export interface ServiceProcess {
  readonly name: string;
  readonly child: ChildProcess;
  readonly pid: number;
  readonly ready: ReadyInfo;
  /** The JSON lines it printed on stdout so far (pino logs and the ready line). */
  readonly logs: Array<Record<string, unknown>>;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly running: boolean;
  /** Sends `signal` if it is still running. */
  signal(signal: NodeJS.Signals): void;
  /** SIGTERM, then SIGKILL after {@link STOP_GRACE_MS}; resolves once it has exited. */
  stop(): Promise<void>;
}

export interface SpawnOptions {
  name: string;
  command: string;
  args: readonly string[];
  /** The child's whole environment, besides PATH, HOME, TMPDIR and LANG. */
  env: Readonly<Record<string, string>>;
}

/**
 * Set by `npm test` (scripts/run-tests.mjs) once `turbo run build` has built every workspace: child processes then run
 * the compiled `dist/` entry, as the Docker image does, and skip tsx's loader (about 0.7 s of CPU per process).
 */
export const BUILT_ENV = 'TOLLGATE_TEST_BUILT';

/**
 * The command that runs a service's `src/….ts` entry: its compiled `dist/….js` under `npm test` ({@link BUILT_ENV}),
 * else the source through tsx with the source condition (no build needed, e.g. `npx vitest run` in a workspace).
 * @throws when the build is asked for and the compiled entry is missing (run `npm run build`).
 */
export function entryCommand(entry: string): { command: string; args: string[] } {
  if (process.env[BUILT_ENV] !== '1') return { command: process.execPath, args: ['--conditions=tollgate-source', '--import', 'tsx', entry] };
  const compiled = entry.replace(/(^|\/)src\//, '$1dist/').replace(/\.ts$/, '.js');
  if (compiled === entry || !existsSync(join(REPO_ROOT, compiled))) throw new Error(`${BUILT_ENV}=1 but ${compiled} (the build of ${entry}) is missing: run npm run build`);
  return { command: process.execPath, args: [compiled] };
}

function parseReadyLine(line: string, pid: number): { json: Record<string, unknown> | undefined; ready: ReadyInfo | undefined } {
  const listening = /^listening on (\S+)/.exec(line);
  if (listening) return { json: undefined, ready: { pid, url: listening[1], line: { event: 'listening', url: listening[1] } } };
  if (!line.startsWith('{')) return { json: undefined, ready: undefined };
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return { json: undefined, ready: undefined }; // a partial or non-JSON line
  }
  if (json.event !== 'ready') return { json, ready: undefined };
  const url = typeof json.url === 'string' ? json.url : typeof json.metricsUrl === 'string' ? json.metricsUrl : undefined;
  return { json, ready: { pid: typeof json.pid === 'number' ? json.pid : pid, url, line: json } };
}

/** Every process spawned here, so that a test file can stop whatever it started, even after a failure. */
const spawned = new Set<ServiceProcess>();

/** Spawns a process with exactly `env` and waits for its ready line. */
export async function spawnService(options: SpawnOptions): Promise<ServiceProcess> {
  const inherited = Object.fromEntries(INHERITED_ENV.flatMap((name) => (process.env[name] === undefined ? [] : [[name, process.env[name]]])));
  const child = spawn(options.command, [...options.args], { cwd: REPO_ROOT, env: { ...inherited, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const output: string[] = [];
  const keep = (line: string) => {
    output.push(line);
    if (output.length > OUTPUT_LINES_KEPT) output.shift();
  };
  const logs: Array<Record<string, unknown>> = [];
  createInterface({ input: child.stderr! }).on('line', keep);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  let exitedYet = false;
  void exited.then(() => (exitedYet = true));
  const ready = await new Promise<ReadyInfo>((resolve, reject) => {
    const describe = () => `${options.name} (${options.command} ${options.args.join(' ')}):\n${output.join('\n')}`;
    const timer = setTimeout(() => reject(new Error(`no ready line within ${READY_TIMEOUT_MS} ms from ${describe()}`)), READY_TIMEOUT_MS);
    child.once('error', (error) => reject(new Error(`could not start ${describe()}: ${error.message}`)));
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`exited (${code ?? signal}) before ready: ${describe()}`));
    });
    createInterface({ input: child.stdout! }).on('line', (line) => {
      keep(line);
      const parsed = parseReadyLine(line, child.pid ?? 0);
      if (parsed.json) logs.push(parsed.json);
      if (parsed.ready) {
        clearTimeout(timer);
        resolve(parsed.ready);
      }
    });
  }).catch((error: unknown) => {
    child.kill('SIGKILL'); // never leave a half-started process behind
    throw error;
  });
  const service: ServiceProcess = {
    name: options.name,
    child,
    pid: child.pid ?? ready.pid,
    ready,
    logs,
    exited,
    get running() {
      return !exitedYet;
    },
    signal: (signal) => {
      if (!exitedYet) child.kill(signal);
    },
    stop: async () => {
      if (exitedYet) return;
      child.kill('SIGCONT'); // a stopped process cannot act on SIGTERM
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
      await exited;
      clearTimeout(timer);
    },
  };
  spawned.add(service);
  void exited.then(() => spawned.delete(service));
  return service;
}

/** Stops every process this test file spawned that is still running. */
export async function stopAllServices(): Promise<void> {
  await Promise.all([...spawned].map((service) => service.stop()));
}
