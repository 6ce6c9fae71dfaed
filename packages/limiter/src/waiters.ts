import { performance } from 'node:perf_hooks';
import type { LimiterCore } from './core.js';
import { AcquireAbortedError, AcquireTimeoutError, CostExceedsCapacityError, LimiterClosedError, LimiterUnavailableError, type TollgateError } from './errors.js';
import type { LeaseKeeper } from './lease-keeper.js';
import { Permit, type Cost, type PermitOwner } from './permit.js';
import type { GrantMessage } from './scripts/scripts.js';

interface Waiter {
  readonly id: string;
  readonly cost: Cost;
  readonly priority: number;
  readonly startedAt: number;
  readonly deadlineAt: number | undefined;
  state: 'waiting' | 'cancelling' | 'done';
  /** Its entry in the fleet-wide queue, once queued ('' before): cancel removes exactly this. */
  member: string;
  resolve(permit: Permit): void;
  reject(error: unknown): void;
}

/** One acquire, as the waiters take it (options already validated). */
export interface WaitRequest {
  cost: Cost;
  priority: number;
  signal: AbortSignal | undefined;
  timeoutMs: number | undefined;
}

/**
 * This process's waiters: the local map waiterId → pending acquire, settled by a grant (from a
 * reply or the grants list), a deadline, an abort, or close.
 */
export class Waiters {
  readonly #core: LimiterCore;
  readonly #leases: LeaseKeeper;
  readonly #permitOwner: PermitOwner;
  readonly #waiters = new Map<string, Waiter>();
  #sequence = 0;

  constructor(core: LimiterCore, leases: LeaseKeeper, permitOwner: PermitOwner) {
    this.#core = core;
    this.#leases = leases;
    this.#permitOwner = permitOwner;
  }

  get size(): number {
    return this.#waiters.size;
  }

  async acquire(request: WaitRequest): Promise<Permit> {
    const { cost, priority, signal, timeoutMs } = request;
    const startedAt = performance.now();
    let waiter!: Waiter;
    const granted = new Promise<Permit>((resolve, reject) => {
      waiter = {
        id: `${this.#core.ownerId}:${++this.#sequence}`,
        cost,
        priority,
        startedAt,
        deadlineAt: timeoutMs === undefined ? undefined : startedAt + timeoutMs,
        state: 'waiting',
        member: '',
        resolve,
        reject,
      };
    });
    this.#waiters.set(waiter.id, waiter); // before the script: its grant may come through the list first
    try {
      await this.#submit(waiter);
    } catch (error) {
      this.#waiters.delete(waiter.id);
      waiter.state = 'done';
      if (error instanceof LimiterUnavailableError) void this.#cancel(waiter).catch(() => {}); // if it ran late, undo it
      throw error;
    }
    if (waiter.state === 'done') return granted;
    return this.#wait(waiter, granted, signal, timeoutMs);
  }

  /** Sends (or re-sends, after a resync) one waiter's acquire; a grant in the reply resolves it. */
  async #submit(waiter: Waiter): Promise<void> {
    const timeoutMs = waiter.deadlineAt === undefined ? 0 : Math.max(1, Math.ceil(waiter.deadlineAt - performance.now()));
    const reply = await this.#core.runner.run((scripts, epoch) =>
      scripts.acquire(epoch, { waiterId: waiter.id, priority: waiter.priority, timeoutMs, previousMember: waiter.member, cost: waiter.cost }),
    );
    switch (reply.kind) {
      case 'granted':
        this.#grant(waiter, reply.grant);
        return;
      case 'queued':
        waiter.member = reply.member;
        this.#core.afterPump(reply.pumped);
        return;
      case 'grantedEarlier':
        return; // the grant is on its way through the list
    }
  }

  /** After a resync: every waiter again, each on its own (the queue was lost with the data). */
  resubmitAll(): void {
    for (const waiter of this.#waiters.values()) {
      if (waiter.state === 'waiting') void this.#submit(waiter).catch((error: unknown) => this.#core.redisError(error));
    }
  }

  /** After this process was presumed dead: its queued waiters may have been dropped. */
  async resubmitQueued(): Promise<void> {
    for (const waiter of this.#waiters.values()) if (waiter.state === 'waiting') await this.#submit(waiter);
  }

  async #wait(waiter: Waiter, granted: Promise<Permit>, signal: AbortSignal | undefined, timeoutMs: number | undefined): Promise<Permit> {
    const name = this.#core.name;
    let timer: NodeJS.Timeout | undefined;
    const onAbort = () => this.#giveUp(waiter, new AcquireAbortedError(name, { cause: signal?.reason }));
    if (timeoutMs !== undefined) timer = setTimeout(() => this.#giveUp(waiter, new AcquireTimeoutError(name, timeoutMs)), timeoutMs);
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      return await granted;
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /** Abort or deadline: leave the queue (a grant that raced us is released by the cancel script). */
  #giveUp(waiter: Waiter, error: TollgateError): void {
    if (waiter.state !== 'waiting') return;
    waiter.state = 'cancelling';
    this.#cancel(waiter)
      .catch((cause: unknown) => this.#core.redisError(cause))
      .finally(() => {
        this.#waiters.delete(waiter.id);
        waiter.state = 'done';
        waiter.reject(error);
      });
  }

  async #cancel(waiter: Waiter): Promise<void> {
    const reply = await this.#core.runner.run((scripts, epoch) => scripts.cancel(epoch, { waiterId: waiter.id, member: waiter.member, cost: waiter.cost }));
    this.#core.afterPump(reply.pumped);
  }

  /** Resolves local waiters from grant messages (script replies or the grants list); rejects those a lowered capacity can no longer hold. */
  deliver(grants: readonly GrantMessage[]): void {
    for (const grant of grants) {
      const waiter = this.#waiters.get(grant.waiterId);
      if (waiter?.state !== 'waiting') continue; // cancelled (the cancel script released it) or unknown (a previous process)
      if (grant.rejected === undefined) {
        this.#grant(waiter, grant);
        continue;
      }
      const { dimension, capacity } = grant.rejected;
      waiter.state = 'done';
      this.#waiters.delete(waiter.id);
      waiter.reject(new CostExceedsCapacityError(this.#core.name, dimension, waiter.cost[dimension] ?? 0, capacity));
    }
  }

  #grant(waiter: Waiter, grant: GrantMessage): void {
    const now = performance.now();
    const permit = new Permit(this.#permitOwner, {
      id: grant.waiterId,
      fence: grant.fence,
      grantedAtMs: grant.grantedAtMs,
      waitedMs: now - waiter.startedAt,
      cost: waiter.cost,
      renewedUntil: now + (grant.expiresAtMs - grant.grantedAtMs),
    });
    waiter.state = 'done';
    this.#waiters.delete(waiter.id);
    this.#leases.hold(permit);
    this.#core.fleet.sawFence(permit.fence);
    waiter.resolve(permit);
    const events = this.#core.events;
    if (events.listenerCount('granted') > 0) events.emit('granted', { permitId: permit.id, waitedMs: permit.waitedMs, fence: permit.fence, grantedAtMs: permit.grantedAtMs }); // no event object on the hot path unless someone listens
  }

  /** Close: every waiter leaves the queue and is rejected with {@link LimiterClosedError}. */
  closeAll(): Array<Promise<unknown>> {
    const closing: Array<Promise<unknown>> = [];
    for (const waiter of this.#waiters.values()) {
      if (waiter.state !== 'waiting') continue;
      waiter.state = 'cancelling';
      closing.push(
        this.#cancel(waiter)
          .catch(() => {})
          .finally(() => waiter.reject(new LimiterClosedError(this.#core.name))),
      );
    }
    return closing;
  }

  clear(): void {
    this.#waiters.clear();
  }
}
