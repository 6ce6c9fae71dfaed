import type { Limiter } from '@tollgate/limiter';
import type { Logger } from 'pino';

export interface AdaptiveSettings {
  decreaseFactor: number;
  raiseAfterCleanCalls: number;
}

/**
 * Adaptive concurrency for one process: a concurrency 429 multiplies the fleet's effective limit by
 * `decreaseFactor` (floor 1); `raiseAfterCleanCalls` clean calls made while this process had callers waiting for a
 * permit raise it by one, never above the configured limit. Both read the current value from Redis first, so
 * processes act on the fleet's value, not a stale local one. Calls that started before this process's last decrease
 * (a lower permit fence) do not decrease it again: one overload episode costs one step here, and they do not count
 * towards a raise either: they ran under the old, higher limit, so they say nothing for the new one. A raise decided
 * before a decrease is dropped when the decrease comes first. So within a process the limit never rises on evidence
 * older than its last decrease. Other processes may each take one step for the same episode; the limit then lands
 * lower and climbs back one by one.
 */
export class AdaptiveConcurrency {
  readonly #limiter: Limiter;
  readonly #settings: AdaptiveSettings;
  readonly #logger: Logger | undefined;
  #cleanCalls = 0;
  /** Highest permit fence granted to this process when it last decreased the limit. */
  #decreasedAtFence = -1;
  #highestFence = -1;
  /** One change at a time per process, so two 429s seen together make one step. */
  #queue: Promise<void> = Promise.resolve();
  decreases = 0;
  raises = 0;

  constructor(limiter: Limiter, settings: AdaptiveSettings, logger: Logger | undefined) {
    this.#limiter = limiter;
    this.#settings = settings;
    this.#logger = logger;
  }

  /** Records a granted permit's fence (fences rise fleet-wide with every grant). */
  granted(fence: number): void {
    if (fence > this.#highestFence) this.#highestFence = fence;
  }

  /**
   * A call on a permit with this fence ended without a concurrency 429; `saturated`: this process had callers waiting
   * for a permit.
   */
  clean(saturated: boolean, fence: number): Promise<void> {
    if (!saturated || fence <= this.#decreasedAtFence) return Promise.resolve(); // admitted before our last decrease
    this.#cleanCalls += 1;
    if (this.#cleanCalls < this.#settings.raiseAfterCleanCalls) return Promise.resolve();
    this.#cleanCalls = 0;
    const decidedAfter = this.#decreasedAtFence;
    return this.#serial(async () => {
      if (this.#decreasedAtFence !== decidedAfter) return; // a decrease came in between: its 429 is newer news
      const { concurrency, concurrencyConfigured } = await this.#limiter.snapshot();
      if (concurrency === null || concurrencyConfigured === null || concurrency >= concurrencyConfigured) return;
      const effective = await this.#limiter.setConcurrency(concurrency + 1);
      this.raises += 1;
      this.#logger?.info({ from: concurrency, to: effective }, 'concurrency raised after clean calls');
    });
  }

  /** A concurrency 429 on a permit with this fence. */
  limited(fence: number): Promise<void> {
    this.#cleanCalls = 0;
    if (fence <= this.#decreasedAtFence) return Promise.resolve(); // admitted before our last decrease: already answered
    // at once, not in the queue: clean calls and raises decided from now on see this decrease
    this.#decreasedAtFence = this.#highestFence;
    return this.#serial(async () => {
      const { concurrency } = await this.#limiter.snapshot();
      if (concurrency === null) return;
      const target = Math.max(1, Math.floor(concurrency * this.#settings.decreaseFactor));
      if (target >= concurrency) return;
      const effective = await this.#limiter.setConcurrency(target);
      this.decreases += 1;
      this.#logger?.warn({ from: concurrency, to: effective }, 'concurrency lowered after a concurrency 429');
    });
  }

  #serial(change: () => Promise<void>): Promise<void> {
    const next = this.#queue.then(change);
    this.#queue = next.catch(() => undefined); // the caller sees this change's error; the queue goes on
    return next;
  }
}
