import { randomBytes } from 'node:crypto';
import { Cluster } from 'ioredis';
import { LimiterClosedError, LimiterUnavailableError, TollgateError, toError } from './errors.js';
import type { FleetView } from './fleet.js';
import { DATASETS_KEY, type LimiterKeys } from './keys.js';
import type { FleetLimits } from './limits.js';
import type { ResolvedLimiterOptions } from './options.js';
import { loadLibrary, type RedisLike } from './scripts/library.js';
import { LimiterScripts, type Pumped, type Resync } from './scripts/scripts.js';

/** A dataset created after Redis lost its data pauses grants this many heartbeats, whoever creates it:
 * every live process renews (and so re-registers its leases) at least once in that time, even one
 * whose reconnect came late. */
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
  /** After the new dataset is configured, or a configure found the process presumed dead: submit the queued waiters again (the queue, or their entries, may be gone). */
  afterResync(): void;
  /** A configure that applied limits pumped (a raise admits waiters, a lowered capacity rejects some). */
  afterPump(pumped: Pumped): void;
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
  readonly #fleet: FleetView;
  readonly #onError: (error: Error) => void;
  #hooks: ResyncHooks | undefined;
  #scripts: LimiterScripts | undefined;
  #epoch = '';
  #resync: Promise<void> | undefined;

  constructor(init: { redis: RedisLike; name: string; ownerId: string; keys: LimiterKeys; options: ResolvedLimiterOptions; fleet: FleetView; onError: (error: Error) => void }) {
    this.#redis = init.redis;
    this.#name = init.name;
    this.#ownerId = init.ownerId;
    this.#keys = init.keys;
    this.#options = init.options;
    this.#fleet = init.fleet;
    this.#onError = init.onError;
  }

  set hooks(hooks: ResyncHooks) {
    this.#hooks = hooks;
  }

  /** True once the scripts are loaded (after the first successful start). */
  get loaded(): boolean {
    return this.#scripts !== undefined;
  }

  /** Connects, loads the library and joins the fleet's limits (writing its own with `applyLimits: 'force'` or on first boot). */
  async start(): Promise<void> {
    await this.withTimeout(this.#connected());
    await this.withTimeout(loadLibrary(this.#redis));
    this.#scripts = new LimiterScripts(this.#redis, this.#name, this.#keys, this.#ownerId);
    await this.#configure(false, this.#options.applyLimits === 'force' ? this.#fleet.own : undefined);
  }

  /** An explicit apply: writes `limits` as the fleet's (DESIGN §8). */
  async apply(limits: FleetLimits): Promise<void> {
    try {
      await this.#configure(false, limits);
    } catch (error) {
      throw this.unavailable(error);
    }
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
   * Joins the fleet's limits: writes `apply` (an explicit apply) or, when Redis has none (first
   * boot, data loss), the limits this process knows; then runs with whatever the fleet has. On a
   * resync (Redis lost its data) it also re-registers the leases this process holds, then submits
   * its queued waiters again (the queue was lost with the data). A dataset created after data loss
   * pauses grants while the fleet re-registers, whoever creates it (configure.v2.lua).
   */
  async #configure(resync: boolean, apply?: FleetLimits): Promise<void> {
    const scripts = this.#scripts;
    if (scripts === undefined) throw new LimiterClosedError(this.#name);
    const fleet = this.#fleet;
    const reply = await this.withTimeout(
      scripts.configure({
        newEpoch: randomBytes(8).toString('hex'),
        mode: apply === undefined ? 'adopt' : 'apply',
        fenceFloor: fleet.highestFence,
        graceMs: RESYNC_PAUSE_HEARTBEATS * fleet.heartbeatMs,
        limits: apply ?? fleet.known, // after data loss, a process that knew the fleet's limits brings them back
        leases: resync ? (this.#hooks?.leasesToReregister() ?? []) : [],
        datasetsKey: this.#redis instanceof Cluster ? undefined : DATASETS_KEY,
      }),
    );
    this.#epoch = reply.epoch;
    fleet.adopt(reply.limitsVersion, reply.limitsJson, reply.limitsHash);
    this.#hooks?.afterPump(reply.pumped);
    // this call re-created a dataset that lost its data (an apply, the first call after the loss):
    // the leases this process holds are registered in it now, as a resync does, not found missing
    // (and reported lost, their work aborted) by the next heartbeat
    if (reply.created && !resync && (this.#hooks?.leasesToReregister().length ?? 0) > 0) {
      await this.#resyncOnce();
      return;
    }
    // the queue was lost (a resync, or this call re-created the dataset: an apply the first call after
    // data loss), or the process was presumed dead (frozen past its lease; a pump may have dropped its
    // waiters, and the heartbeat after this call answers wasAlive 1): its waiters are submitted again
    if (resync || reply.created || !reply.wasAlive) this.#hooks?.afterResync();
  }

  /** `promise`, or a DeadlineError once `redisTimeoutMs` has passed; one promise and one timer per call (every script call goes through here). */
  withTimeout<T>(promise: Promise<T>): Promise<T> {
    const timeoutMs = this.#options.redisTimeoutMs;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new DeadlineError(timeoutMs)), timeoutMs);
      promise.then(
        (value) => {
          clearTimeout(timer);
          resolve(value);
        },
        (error: unknown) => {
          clearTimeout(timer);
          reject(error);
        },
      );
    });
  }

  /** A TollgateError passes as is; anything else (a timeout, a dropped connection) becomes LimiterUnavailableError. */
  unavailable(error: unknown): TollgateError {
    if (error instanceof TollgateError) return error;
    const cause = toError(error);
    this.#onError(cause);
    return new LimiterUnavailableError(this.#name, { cause });
  }
}
