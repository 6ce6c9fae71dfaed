import { randomBytes } from 'node:crypto';
import { LimiterClosedError, LimiterUnavailableError, TollgateError } from './errors.js';
import type { LimiterKeys } from './keys.js';
import type { BucketSpec, ResolvedLimiterOptions } from './options.js';
import { loadLibrary, type RedisLike } from './scripts/library.js';
import { LimiterScripts, type Resync } from './scripts/scripts.js';

/** After Redis lost its data, grants pause this many heartbeats: every live process renews (and so
 * re-registers its leases) at least once in that time, even one whose reconnect came late. */
const RESYNC_PAUSE_HEARTBEATS = 2;

/**
 * What a caller does with the reply of a call that missed its deadline, or when no reply will come.
 * `run` takes it as LateReply<never> (any handler): its type parameter cannot be inferred next to the call's.
 */
export interface LateReply<R> {
  reply(reply: R): void;
  lost(cause: unknown): void;
}

/** Redis did not answer in time; the call may still run and answer later. */
class DeadlineError extends Error {
  constructor(timeoutMs: number) {
    super(`Redis did not answer within ${timeoutMs} ms`);
  }
}

/** What the runner needs from the rest of the limiter when Redis lost its data. */
export interface ResyncHooks {
  /** The leases this process holds, with the time each has left, to re-register. */
  leasesToReregister(): Array<{ permitId: string; remainingTtlMs: number }>;
  /** After the new dataset is configured: submit the queued waiters again (the queue was lost). */
  afterResync(): void;
}

/**
 * Runs a limiter's scripts on its command connection: each call under `redisTimeoutMs`, with the
 * dataset epoch, re-registering once (configure) when Redis answers that it lost its data.
 */
export class ScriptRunner {
  readonly #redis: RedisLike;
  readonly #name: string;
  readonly #ownerId: string;
  readonly #keys: LimiterKeys;
  readonly #options: ResolvedLimiterOptions;
  readonly #buckets: readonly BucketSpec[];
  readonly #onError: (error: Error) => void;
  #hooks: ResyncHooks | undefined;
  #scripts: LimiterScripts | undefined;
  #epoch = '';
  #resync: Promise<void> | undefined;

  constructor(init: {
    redis: RedisLike;
    name: string;
    ownerId: string;
    keys: LimiterKeys;
    options: ResolvedLimiterOptions;
    buckets: readonly BucketSpec[];
    onError: (error: Error) => void;
  }) {
    this.#redis = init.redis;
    this.#name = init.name;
    this.#ownerId = init.ownerId;
    this.#keys = init.keys;
    this.#options = init.options;
    this.#buckets = init.buckets;
    this.#onError = init.onError;
  }

  set hooks(hooks: ResyncHooks) {
    this.#hooks = hooks;
  }

  /** True once the scripts are loaded (after the first successful start). */
  get loaded(): boolean {
    return this.#scripts !== undefined;
  }

  /** Connects, loads the library and writes this process's limits. */
  async start(): Promise<void> {
    await this.withTimeout(this.#connected());
    await this.withTimeout(loadLibrary(this.#redis));
    this.#scripts = new LimiterScripts(this.#redis, this.#name, this.#keys.prefix, this.#ownerId);
    await this.#configure(false);
  }

  /** Connects a lazy client, and waits for one that is still connecting (a caller's client may be either). */
  async #connected(): Promise<void> {
    const redis = this.#redis;
    if (redis.status === 'ready') return;
    if (redis.status === 'wait') {
      await redis.connect();
      return;
    }
    await new Promise<void>((resolve) => redis.once('ready', () => resolve()));
  }

  /**
   * Runs a script with the deadline, re-registering once when Redis lost its data. A call that
   * missed the deadline may still run (a stall, not a failure): `late` gets its reply when it comes
   * after all, so that nothing it carried (a grant to this process, a queue entry) is lost with it;
   * `lost` is told when no reply will ever come (the connection dropped) and the script may have run.
   */
  async run<R extends { kind: string }>(call: (scripts: LimiterScripts, epoch: string) => Promise<R | Resync>, late?: LateReply<never>): Promise<Exclude<R, Resync>> {
    const scripts = this.#scripts;
    if (scripts === undefined) throw new LimiterClosedError(this.#name);
    let reply: R | Resync;
    try {
      reply = await this.#deadline(call(scripts, this.#epoch), late);
      if (reply.kind === 'resync') {
        await this.#resyncOnce();
        reply = await this.#deadline(call(scripts, this.#epoch), late);
      }
    } catch (error) {
      throw this.unavailable(error);
    }
    if (reply.kind === 'resync') throw new LimiterUnavailableError(this.#name, { cause: new Error('the limiter epoch changed again during a resync') });
    return reply as Exclude<R, Resync>;
  }

  /** withTimeout, and when the deadline passes first, hands what the call still answers to `late`. */
  #deadline<R extends { kind: string }>(sent: Promise<R | Resync>, late: LateReply<never> | undefined): Promise<R | Resync> {
    if (late === undefined) return this.withTimeout(sent);
    return this.withTimeout(sent).catch((error: unknown) => {
      if (error instanceof DeadlineError) {
        sent.then(
          (reply) => {
            if (reply.kind !== 'resync') late.reply(reply as never); // the caller's handler reads the reply of its own call
          },
          (cause: unknown) => late.lost(cause),
        );
      } else if (!(error instanceof TollgateError)) {
        late.lost(error); // the command failed on the way (a dropped connection): it may have run
      }
      throw error;
    });
  }

  #resyncOnce(): Promise<void> {
    this.#resync ??= this.#configure(true).finally(() => (this.#resync = undefined));
    return this.#resync;
  }

  /**
   * Writes this process's limits. On a resync (Redis lost its data) it also re-registers the
   * leases this process holds and pauses grants for one heartbeat while the fleet does the same,
   * then submits its queued waiters again (the queue was lost with the data).
   */
  async #configure(resync: boolean): Promise<void> {
    const scripts = this.#scripts;
    if (scripts === undefined) throw new LimiterClosedError(this.#name);
    const options = this.#options;
    const reply = await this.withTimeout(
      scripts.configure({
        newEpoch: randomBytes(8).toString('hex'),
        concurrency: options.concurrency ?? 0,
        leaseTtlMs: options.leaseTtlMs,
        reserve: options.reserve.map((channel) => `${channel.maxPriority}:${channel.concurrency}`).join(';'),
        resyncPauseMs: resync ? RESYNC_PAUSE_HEARTBEATS * options.heartbeatMs : 0,
        buckets: this.#buckets,
        leases: resync ? (this.#hooks?.leasesToReregister() ?? []) : [],
      }),
    );
    this.#epoch = reply.epoch;
    if (resync) this.#hooks?.afterResync();
  }

  withTimeout<T>(promise: Promise<T>): Promise<T> {
    const timeoutMs = this.#options.redisTimeoutMs;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new DeadlineError(timeoutMs)), timeoutMs);
    });
    return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
  }

  /** A TollgateError passes as is; anything else (a timeout, a dropped connection) becomes LimiterUnavailableError. */
  unavailable(error: unknown): TollgateError {
    if (error instanceof TollgateError) return error;
    const cause = error instanceof Error ? error : new Error(String(error));
    this.#onError(cause);
    return new LimiterUnavailableError(this.#name, { cause });
  }
}
