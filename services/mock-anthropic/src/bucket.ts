const MS_PER_SECOND = 1_000;

/**
 * A continuously refilled token bucket on a monotonic millisecond clock. Charges may push the balance below zero
 * (settlement comes after admission); refills and refunds never lift it above the capacity.
 */
export class TokenBucket {
  #balance: number;
  #updatedAtMs: number;

  constructor(
    readonly capacity: number,
    readonly refillPerMs: number,
    nowMs: number,
  ) {
    this.#balance = capacity;
    this.#updatedAtMs = nowMs;
  }

  /** The balance at `nowMs`, after refilling. */
  balance(nowMs: number): number {
    if (nowMs > this.#updatedAtMs) {
      this.#balance = Math.min(this.capacity, this.#balance + (nowMs - this.#updatedAtMs) * this.refillPerMs);
      this.#updatedAtMs = nowMs;
    }
    return this.#balance;
  }

  /** How many tokens are missing for a balance of `need`; 0 when it is there. */
  deficit(nowMs: number, need: number): number {
    return Math.max(0, need - this.balance(nowMs));
  }

  /** Takes `amount` (may be negative: a refund). Returns the new balance. */
  charge(nowMs: number, amount: number): number {
    this.#balance = Math.min(this.capacity, this.balance(nowMs) - amount);
    return this.#balance;
  }

  /** Whole seconds until `deficit` tokens have refilled: ceil(deficit / refill rate). */
  retryAfterS(deficit: number): number {
    return Math.ceil(deficit / this.refillPerMs / MS_PER_SECOND);
  }

  /** Milliseconds until the bucket is full again. */
  msUntilFull(nowMs: number): number {
    return (this.capacity - this.balance(nowMs)) / this.refillPerMs;
  }
}
