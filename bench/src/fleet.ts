import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseWorkerMessage, type CoordinatorMessage, type WorkerMessage } from './protocol.js';

const WORKER_ENTRY = fileURLToPath(new URL('./worker.ts', import.meta.url));
/** The same flags `npm run bench` starts the coordinator with: TypeScript sources through tsx. */
const WORKER_EXEC_ARGV = ['--conditions=tollgate-source', '--import', 'tsx'];
/**
 * `--worker-cpu-prof DIR` puts it here: every worker writes a V8 CPU profile of each measured window
 * (the inspector's profiler, as `node --cpu-prof` samples, without the boot and setup) into DIR, for
 * chrome://inspect or `speedscope`.
 */
export const WORKER_CPU_PROF_ENV = 'TOLLGATE_BENCH_WORKER_CPU_PROF';
/** How long a worker may take to exit after its IPC channel closes before it is killed. */
const WORKER_EXIT_GRACE_MS = 2_000;

type AwaitedType = Exclude<WorkerMessage['type'], 'tick' | 'failed'>;
type MessageOf<T extends AwaitedType> = Extract<WorkerMessage, { type: T }>;

interface Waiter {
  type: AwaitedType;
  resolve: (message: WorkerMessage) => void;
  reject: (error: Error) => void;
}

/** One forked worker process and its IPC conversation. */
export class ForkedWorker {
  readonly index: number;
  readonly #child: ChildProcess;
  readonly #exited: Promise<void>;
  #waiters: Waiter[] = [];
  #failure: Error | undefined;
  #rejectFailed: (error: Error) => void = () => {};
  /** Rejects when the worker fails or exits; never resolves. */
  readonly failed: Promise<never>;
  /** Called for every `tick` (a queue job finished). */
  onTick: () => void = () => {};

  constructor(index: number) {
    this.index = index;
    this.failed = new Promise<never>((_, reject) => (this.#rejectFailed = reject));
    this.failed.catch(() => {}); // observed through `failed`, `next` and `request`; never unhandled
    this.#child = fork(WORKER_ENTRY, [], { execArgv: WORKER_EXEC_ARGV, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.#exited = new Promise((resolve) => this.#child.once('exit', () => resolve()));
    this.#child.on('message', (raw: unknown) => this.#onMessage(parseWorkerMessage(raw)));
    this.#child.once('exit', (code, signal) => this.#fail(new Error(`worker ${index} exited (code ${code}, signal ${signal})`)));
    this.#child.once('error', (error) => this.#fail(error));
  }

  /** Sends `message` and resolves with the worker's next message of type `expect`. */
  request<T extends AwaitedType>(message: CoordinatorMessage, expect: T): Promise<MessageOf<T>> {
    const reply = this.next(expect);
    this.send(message);
    return reply;
  }

  /** The next message of type `expect`; rejects if the worker fails or exits first. */
  next<T extends AwaitedType>(expect: T): Promise<MessageOf<T>> {
    if (this.#failure) return Promise.reject(this.#failure);
    return new Promise((resolve, reject) => {
      this.#waiters.push({ type: expect, resolve: (message) => resolve(message as MessageOf<T>), reject });
    });
  }

  send(message: CoordinatorMessage): void {
    if (this.#failure) throw this.#failure;
    this.#child.send(message);
  }

  /** Disconnects (the worker exits on its own) and kills it if it lingers. */
  async close(): Promise<void> {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return;
    if (this.#child.connected) this.#child.disconnect();
    const timer = setTimeout(() => this.#child.kill('SIGKILL'), WORKER_EXIT_GRACE_MS);
    await this.#exited;
    clearTimeout(timer);
  }

  #onMessage(message: WorkerMessage): void {
    if (message.type === 'tick') return this.onTick();
    if (message.type === 'failed') return this.#fail(new Error(`worker ${this.index}: ${message.message}`));
    const index = this.#waiters.findIndex((waiter) => waiter.type === message.type);
    if (index === -1) return; // nobody asked (e.g. a late `done`); the protocol is strictly request/reply otherwise
    const [waiter] = this.#waiters.splice(index, 1);
    waiter?.resolve(message);
  }

  #fail(error: Error): void {
    this.#failure ??= error;
    this.#rejectFailed(this.#failure);
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const waiter of waiters) waiter.reject(this.#failure);
  }

  get hasFailed(): boolean {
    return this.#failure !== undefined;
  }
}

/** The bench's worker processes, forked once and reused by every trial until one fails. */
export class WorkerPool {
  #workers: ForkedWorker[] = [];
  readonly size: number;

  constructor(size: number) {
    this.size = size;
  }

  /** The first `count` workers, replacing the whole pool if any worker has failed. */
  async take(count: number): Promise<ForkedWorker[]> {
    if (count > this.size) throw new RangeError(`the pool has ${this.size} workers, ${count} asked`);
    if (this.#workers.some((worker) => worker.hasFailed) || this.#workers.length === 0) {
      await this.close();
      this.#workers = Array.from({ length: this.size }, (_, index) => new ForkedWorker(index));
    }
    return this.#workers.slice(0, count);
  }

  async close(): Promise<void> {
    const workers = this.#workers;
    this.#workers = [];
    await Promise.all(workers.map((worker) => worker.close()));
  }
}
