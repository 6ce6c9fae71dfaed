import { performance } from 'node:perf_hooks';
import { Cluster } from 'ioredis';
import type { LimiterCore } from './core.js';
import type { LimiterKeys } from './keys.js';
import type { RedisLike } from './scripts/library.js';
import { parseGrant, type GrantMessage, type Pumped } from './scripts/scripts.js';

/** The shortest deadline for the first subscription (a new connection, like the command connection's connect). */
const SUBSCRIBE_DEADLINE_MS_MIN = 1_000;

/** What the grant reader hands grants to (the waiters). */
export interface GrantSink {
  deliver(grants: readonly GrantMessage[]): void;
}

/**
 * How grants reach this process besides a reply of its own: messages on its own Pub/Sub channel,
 * published by the pump of any process (a channel is no key: nothing to declare, nothing that a
 * Cluster slot migration moves), and one pump timer at the earliest wake time it heard (a refill,
 * the end of a pause, a lease expiry). A message missed while the subscription was down is not
 * lost: the pump kept the grant in Redis, and the next heartbeat collects it; each (re)subscription
 * sends that heartbeat at once.
 */
export class GrantReader {
  readonly #core: LimiterCore;
  readonly #keys: LimiterKeys;
  readonly #waiters: GrantSink;
  /** Called when the subscription is (again) in place: collect what may have been missed. */
  readonly #onSubscribed: () => void;
  #subscriber: RedisLike | undefined;
  #pumpTimer: NodeJS.Timeout | undefined;
  #pumpAt = Number.POSITIVE_INFINITY;

  constructor(core: LimiterCore, keys: LimiterKeys, waiters: GrantSink, onSubscribed: () => void) {
    this.#core = core;
    this.#keys = keys;
    this.#waiters = waiters;
    this.#onSubscribed = onSubscribed;
  }

  /**
   * Opens the subscriber connection (a duplicate of `redis`) and subscribes to this process's channel,
   * within the connect deadline (`redisTimeoutMs`, at least 1 s, as for the command connection).
   */
  async start(redis: RedisLike): Promise<void> {
    this.disconnect(); // a ready() tried again
    const channel = this.#keys.grantsChannel(this.#core.ownerId);
    const subscriber =
      redis instanceof Cluster ? redis.duplicate() : redis.duplicate({ enableOfflineQueue: true, maxRetriesPerRequest: null, lazyConnect: false, autoResubscribe: false });
    this.#subscriber = subscriber;
    subscriber.on('error', (error: Error) => this.#core.redisError(error));
    subscriber.on('message', (from: string, message: string) => {
      if (from === channel) this.#deliver(message);
    });
    const deadlineMs = Math.max(this.#core.options.redisTimeoutMs, SUBSCRIBE_DEADLINE_MS_MIN);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      subscriber.subscribe(channel),
      new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`Redis did not confirm the grants subscription within ${deadlineMs} ms`)), deadlineMs))),
    ]).finally(() => clearTimeout(timer));
    subscriber.on('ready', () => {
      // a reconnect: subscribe again, then collect the grants published while the subscription was down
      subscriber.subscribe(channel).then(
        () => this.#onSubscribed(),
        (error: unknown) => this.#core.redisError(error),
      );
    });
  }

  #deliver(message: string): void {
    try {
      this.#waiters.deliver([parseGrant(message)]);
    } catch (error) {
      this.#core.redisError(error); // a message that breaks the contract: the heartbeat collects the grant it was for
    }
  }

  /** Stops the pump timer (close: no pump after it). */
  stop(): void {
    clearTimeout(this.#pumpTimer);
  }

  disconnect(): void {
    this.#subscriber?.disconnect();
  }

  /** Every reply that pumped: resolve this process's waiters granted in it, and keep the pump timer at the wake time. */
  afterPump(pumped: Pumped): void {
    this.#waiters.deliver(pumped.ownGrants);
    this.schedulePump(pumped.wakeAtMs, pumped.nowMs);
  }

  /**
   * Keeps one timer, at the earliest wakeAtMs heard. Whoever hears of a wake time pumps at it, with
   * waiters of its own or not: a refund, or a pump that stopped at its grant limit, can make the
   * head's wake time earlier than the one its owner knows, and only the caller hears of it (G5).
   */
  schedulePump(wakeAtMs: number, redisNowMs: number): void {
    if (wakeAtMs <= 0 || this.#core.closed) return;
    const at = performance.now() + Math.max(0, wakeAtMs - redisNowMs);
    if (at >= this.#pumpAt) return;
    clearTimeout(this.#pumpTimer);
    this.#pumpAt = at;
    this.#pumpTimer = setTimeout(
      () => {
        this.#pumpAt = Number.POSITIVE_INFINITY;
        void this.#pump();
      },
      Math.max(0, Math.ceil(at - performance.now())),
    );
  }

  async #pump(): Promise<void> {
    if (this.#core.closed) return;
    try {
      const reply = await this.#core.runner.run((scripts, epoch) => scripts.pump(epoch), this.#core.latePumped);
      this.afterPump(reply.pumped);
    } catch (error) {
      this.#core.redisError(error);
    }
  }
}
