/**
 * An in-process counting semaphore with a FIFO queue: the harness floor and the static-split ceiling.
 * `acquire` resolves with a release function; a release hands its slot straight to the oldest waiter.
 */
export class LocalSemaphore {
  readonly limit: number;
  #inUse = 0;
  readonly #waiters: Array<() => void> = [];

  constructor(limit: number) {
    if (!(Number.isInteger(limit) && limit >= 1)) throw new RangeError(`limit must be a positive integer, got ${limit}`);
    this.limit = limit;
  }

  async acquire(): Promise<() => Promise<void>> {
    if (this.#inUse < this.limit) this.#inUse += 1;
    else await new Promise<void>((resolve) => this.#waiters.push(resolve)); // the releaser keeps #inUse for us
    let released = false;
    return async () => {
      if (released) return;
      released = true;
      const next = this.#waiters.shift();
      if (next) next();
      else this.#inUse -= 1;
    };
  }
}
