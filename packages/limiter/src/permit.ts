import { LeaseLostError } from './errors.js';

/** Token amounts per dimension, e.g. `{ requests: 1, inputTokens: 1_200 }`. */
export type Cost = Readonly<Record<string, number>>;

export interface ReleaseOptions {
  /**
   * What the work actually used, per dimension. Each bucket gets `reserved − used` back (or pays
   * the excess as a debt). A dimension left out keeps what was reserved; no `used` settles nothing.
   */
  used?: Cost;
}

export interface ReleaseResult {
  /** The lease had expired (or was reported lost) before this release: the work may have overrun. */
  leaseLost: boolean;
}

/** Ends a permit's lease in Redis (the lease keeper's release); given to each Permit by its limiter. */
export type ReleaseLease = (permit: Permit, used: Cost | undefined) => Promise<ReleaseResult>;

/**
 * Package-internal access to a permit's lease state, for the lease keeper: not exported from
 * index.ts, so a caller can neither move `renewedUntil` nor mark a lease lost.
 */
export interface PermitLeaseAccess {
  /** `performance.now()` until which the lease is known to be held (updated by heartbeats). */
  renewedUntil(permit: Permit): number;
  renew(permit: Permit, renewedUntil: number): void;
  /** Marks the lease lost and aborts the guarded work through `signal`. */
  lose(permit: Permit): void;
}

export let permitLease!: PermitLeaseAccess; // assigned by Permit's static block, which alone reaches its private fields

/**
 * One granted permit: a fleet-wide concurrency slot plus the reserved cost from every bucket.
 * Release it exactly once (`release` is idempotent; `await using` releases it too).
 */
export class Permit implements AsyncDisposable {
  /** The lease id in Redis. */
  readonly id: string;
  /** Rises with every grant of this limiter name, fleet-wide: a fencing token for the upstream. */
  readonly fence: number;
  /** Redis time of the grant, in ms since the epoch. */
  readonly grantedAtMs: number;
  /** How long acquire waited, measured by this process. */
  readonly waitedMs: number;
  /** What was reserved from each bucket (by the bucket's name in Redis: `<pool>/<dimension>` in a pool). */
  readonly cost: Cost;
  /** The pool it was granted from; undefined for a limiter without pools. */
  readonly pool: string | undefined;

  #renewedUntil: number;
  readonly #releaseLease: ReleaseLease;
  #controller: AbortController | undefined; // made on first use: most permits never need one
  #lost: LeaseLostError | undefined;
  #release: Promise<ReleaseResult> | undefined;

  static {
    permitLease = {
      renewedUntil: (permit) => permit.#renewedUntil,
      renew: (permit, renewedUntil) => {
        permit.#renewedUntil = renewedUntil;
      },
      lose: (permit) => permit.#loseLease(),
    };
  }

  /** Made by the limiter when a grant arrives; a Permit made by hand releases through `releaseLease`. */
  constructor(releaseLease: ReleaseLease, init: { id: string; fence: number; grantedAtMs: number; waitedMs: number; cost: Cost; pool?: string | undefined; renewedUntil: number }) {
    this.#releaseLease = releaseLease;
    this.id = init.id;
    this.fence = init.fence;
    this.grantedAtMs = init.grantedAtMs;
    this.waitedMs = init.waitedMs;
    this.cost = init.cost;
    this.pool = init.pool;
    this.#renewedUntil = init.renewedUntil;
  }

  /** Aborted with a {@link LeaseLostError} when the lease is lost (expired, or its renewal failed). */
  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.#lost) this.#controller.abort(this.#lost);
    }
    return this.#controller.signal;
  }

  /** True once the lease is known to be lost. */
  get leaseLost(): boolean {
    return this.#lost !== undefined;
  }

  get released(): boolean {
    return this.#release !== undefined;
  }

  /** Ends the lease and settles tokens. Idempotent: later calls return the first call's result. */
  release(options: ReleaseOptions = {}): Promise<ReleaseResult> {
    this.#release ??= this.#releaseLease(this, options.used);
    return this.#release;
  }

  #loseLease(): void {
    if (this.#lost) return;
    this.#lost = new LeaseLostError(this.id);
    this.#controller?.abort(this.#lost);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.release();
  }
}
