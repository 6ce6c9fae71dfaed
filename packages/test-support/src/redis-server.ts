import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';

/** How long a freshly spawned redis-server may take to answer PING. */
const REDIS_START_TIMEOUT_MS = 10_000;
const REDIS_START_POLL_MS = 25;

export interface RedisServerOptions {
  /** Turn on the append-only file (fsync every write) so `kill()` + `start()` keeps the data. */
  appendonly?: boolean;
  /** Extra `redis-server` arguments, e.g. `['--cluster-enabled', 'yes']`. */
  args?: readonly string[];
  /** Port to listen on; a free one when omitted. */
  port?: number;
}

/** Asks the kernel for a free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        if (address !== null && typeof address === 'object') resolve(address.port);
        else reject(new Error('could not read the free port'));
      });
    });
  });
}

/**
 * A `redis-server` child process with its own port and data directory, for tests that must
 * stop, pause or restart Redis. `kill()` is a crash (SIGKILL); `stop()` is a clean shutdown.
 */
export class RedisServerProcess {
  readonly port: number;
  readonly url: string;
  readonly dir: string;
  readonly #options: RedisServerOptions;
  #child: ChildProcess | undefined;
  #exited: Promise<void> | undefined;

  private constructor(port: number, dir: string, options: RedisServerOptions) {
    this.port = port;
    this.dir = dir;
    this.url = `redis://127.0.0.1:${port}`;
    this.#options = options;
  }

  static async start(options: RedisServerOptions = {}): Promise<RedisServerProcess> {
    const port = options.port ?? (await freePort());
    const dir = await mkdtemp(join(tmpdir(), 'tollgate-redis-'));
    const server = new RedisServerProcess(port, dir, options);
    await server.start();
    return server;
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  get running(): boolean {
    return this.#child !== undefined;
  }

  /** Starts the server (again) on the same port and directory and waits until it answers. */
  async start(): Promise<void> {
    if (this.#child) return;
    const args = [
      '--port',
      String(this.port),
      '--bind',
      '127.0.0.1',
      '--dir',
      this.dir,
      '--save',
      '',
      '--appendonly',
      this.#options.appendonly ? 'yes' : 'no',
      '--appendfsync',
      'always',
      '--maxmemory-policy',
      'noeviction',
      '--daemonize',
      'no',
      '--logfile',
      '',
      '--loglevel',
      'warning',
      ...(this.#options.args ?? []),
    ];
    const child = spawn('redis-server', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    this.#child = child;
    this.#exited = new Promise((resolve) => child.once('exit', () => resolve()));
    child.once('exit', () => {
      if (this.#child === child) this.#child = undefined;
    });
    const spawnError = new Promise<never>((_, reject) =>
      child.once('error', (error) => reject(new Error(`could not start redis-server (is it installed? apt-get install -y redis-server): ${error.message}`, { cause: error }))),
    );
    await Promise.race([this.#waitUntilReady(() => stderr), spawnError]);
  }

  async #waitUntilReady(stderr: () => string): Promise<void> {
    const deadline = Date.now() + REDIS_START_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (!this.#child) throw new Error(`redis-server exited at start: ${stderr()}`);
      const client = new Redis(this.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
      client.on('error', () => {}); // the next poll reports failure; an unanswered probe is expected here
      try {
        await client.connect();
        if ((await client.ping()) === 'PONG') return;
      } catch {
        // not listening yet
      } finally {
        client.disconnect();
      }
      await sleep(REDIS_START_POLL_MS);
    }
    throw new Error(`redis-server on port ${this.port} did not answer within ${REDIS_START_TIMEOUT_MS} ms: ${stderr()}`);
  }

  /** SIGKILL: a crash. The data survives only with `appendonly`. */
  async kill(): Promise<void> {
    await this.#signalAndWait('SIGKILL');
  }

  /** Clean shutdown (SIGTERM); with `appendonly` the data is kept. */
  async stop(): Promise<void> {
    await this.#signalAndWait('SIGTERM');
  }

  /** SIGSTOP: the server keeps its sockets but answers nothing. */
  pause(): void {
    this.#child?.kill('SIGSTOP');
  }

  resume(): void {
    this.#child?.kill('SIGCONT');
  }

  /**
   * Restarts on the same port. `keepData: true` shuts down with a save so the dataset comes back;
   * `keepData: false` crashes it and wipes the directory, as a restart without persistence would.
   */
  async restart({ keepData }: { keepData: boolean }): Promise<void> {
    if (keepData && this.#child) {
      const client = new Redis(this.url, { maxRetriesPerRequest: 0 });
      client.on('error', () => {}); // the socket closes as the server shuts down
      try {
        await client.call('SHUTDOWN', 'SAVE').catch(() => undefined);
      } finally {
        client.disconnect();
      }
      await this.#exited;
      this.#child = undefined;
    } else if (!keepData) {
      await this.kill();
      await rm(this.dir, { recursive: true, force: true });
      await mkdir(this.dir, { recursive: true });
    }
    await this.start();
  }

  /** Stops the server for good and removes its directory. */
  async close(): Promise<void> {
    this.resume();
    await this.kill();
    await rm(this.dir, { recursive: true, force: true });
  }

  async #signalAndWait(signal: NodeJS.Signals): Promise<void> {
    const child = this.#child;
    if (!child) return;
    child.kill('SIGCONT'); // a paused process cannot act on SIGTERM
    child.kill(signal);
    await this.#exited;
    this.#child = undefined;
  }
}
