import { performance } from 'node:perf_hooks';
import { Cluster } from 'ioredis';
import type { LimiterCore } from './core.js';
import type { LimiterKeys } from './keys.js';
import type { RedisLike } from './scripts/library.js';
import { parseGrant, type GrantMessage, type Pumped } from './scripts/scripts.js';

/** Grants one blocking read may take off this process's grants list at once. */
const GRANTS_BATCH_MAX = 64;
/** Pause after a failed blocking read before the next one, so a dead connection is not spun on. */
const GRANT_READ_RETRY_MS = 100;

/** What the grant reader hands grants to (the waiters). */
export interface GrantSink {
  readonly size: number;
  deliver(grants: readonly GrantMessage[]): void;
}

/**
 * How grants reach this process besides a reply of its own: one blocking read (BLMPOP) at a time
 * on its grants list, and one pump timer at the earliest wake time it heard (a refill, the end of
 * a pause, a lease expiry).
 */
export class GrantReader {
  readonly #core: LimiterCore;
  readonly #keys: LimiterKeys;
  readonly #waiters: GrantSink;
  #blocking: RedisLike | undefined;
  #pumpTimer: NodeJS.Timeout | undefined;
  #pumpAt = Number.POSITIVE_INFINITY;

  constructor(core: LimiterCore, keys: LimiterKeys, waiters: GrantSink) {
    this.#core = core;
    this.#keys = keys;
    this.#waiters = waiters;
  }

  /** Opens the blocking connection (a duplicate of `redis`) and starts reading. */
  start(redis: RedisLike): void {
    this.#blocking =
      redis instanceof Cluster
        ? redis.duplicate()
        : redis.duplicate({ enableOfflineQueue: true, maxRetriesPerRequest: null, lazyConnect: false }); // blocks until a grant
    this.#blocking.on('error', (error: Error) => this.#core.redisError(error));
    void this.#readGrants();
  }

  /** Stops the pump timer (close: no pump after it). */
  stop(): void {
    clearTimeout(this.#pumpTimer);
  }

  disconnect(): void {
    this.#blocking?.disconnect();
  }

  /** Every reply that pumped: resolve this process's waiters granted in it, and keep the pump timer at the wake time. */
  afterPump(pumped: Pumped): void {
    this.#waiters.deliver(pumped.ownGrants);
    this.schedulePump(pumped.wakeAtMs, pumped.nowMs);
  }

  /** Keeps one timer, at the earliest wakeAtMs heard, while this process has waiters. */
  schedulePump(wakeAtMs: number, redisNowMs: number): void {
    if (wakeAtMs <= 0 || this.#core.closed || this.#waiters.size === 0) return;
    const at = performance.now() + Math.max(0, wakeAtMs - redisNowMs);
    if (at >= this.#pumpAt) return;
    clearTimeout(this.#pumpTimer);
    this.#pumpAt = at;
    this.#pumpTimer = setTimeout(() => {
      this.#pumpAt = Number.POSITIVE_INFINITY;
      void this.#pump();
    }, Math.max(0, Math.ceil(at - performance.now())));
  }

  async #pump(): Promise<void> {
    if (this.#core.closed || this.#waiters.size === 0) return;
    try {
      const reply = await this.#core.runner.run((scripts, epoch) => scripts.pump(epoch));
      this.afterPump(reply.pumped);
    } catch (error) {
      this.#core.redisError(error);
    }
  }

  /** The blocking reader: one BLMPOP at a time on this process's own grants list. */
  async #readGrants(): Promise<void> {
    const key = this.#keys.grants(this.#core.ownerId);
    while (!this.#core.closed && this.#blocking) {
      try {
        const reply: unknown = await this.#blocking.call('BLMPOP', 0, 1, key, 'LEFT', 'COUNT', GRANTS_BATCH_MAX);
        if (Array.isArray(reply) && Array.isArray(reply[1])) {
          this.#waiters.deliver((reply[1] as unknown[]).map((message) => parseGrant(String(message))));
        }
      } catch (error) {
        if (this.#core.closed) return;
        this.#core.redisError(error);
        await new Promise((resolve) => setTimeout(resolve, GRANT_READ_RETRY_MS));
      }
    }
  }
}
