import { performance } from 'node:perf_hooks';
import type { LimiterCore } from './core.js';
import { AcquireAbortedError, AcquireTimeoutError, CostExceedsCapacityError, LimiterClosedError, LimiterUnavailableError, type TollgateError } from './errors.js';
import type { LeaseKeeper } from './lease-keeper.js';
import { Permit, type Cost } from './permit.js';
import type { LateReply } from './runner.js';
import { PoolsChangedError, budgetExceeded, type AcquireReply, type CancelArgs, type GrantMessage, type Pumped } from './scripts/scripts.js';

/** Waiters that left without a permit, remembered (oldest forgotten first) so that a grant reaching one late is refunded in full. */
const GONE_WAITERS_MAX = 1_000;

interface Waiter {
  readonly id: string;
  /** Its pool ('' for a limiter without pools). */
  readonly pool: string;
  /** Its group and finish-tag step ('' and 0 without groups). */
  readonly group: string;
  readonly step: number;
  readonly cost: Cost;
  readonly priority: number;
  readonly startedAt: number;
  readonly deadlineAt: number | undefined;
  /** waiting → done (granted, or failed), or waiting → cancelling (abort, deadline, close) → done. */
  state: 'waiting' | 'cancelling' | 'done';
  /** An acquire for it is in flight: nobody sends a second one (which would queue it twice); its answer decides. */
  submitting: boolean;
  /** Acquires sent for it: after a re-submission, a grant may be one another process's pump kept in `<p>:granted`. */
  submissions: number;
  /** Its entry in the fleet-wide queue, once queued ('' before): cancel removes exactly this. */
  member: string;
  /** Why it is leaving (state 'cancelling'): what it is rejected with once its cancel is done. */
  reason: TollgateError | undefined;
  resolve(permit: Permit): void;
  reject(error: unknown): void;
  /** The caller's promise (close waits for it to settle). */
  readonly granted: Promise<Permit>;
}

/** One acquire, as the waiters take it (options already validated). */
export interface WaitRequest {
  /** '' for a limiter without pools. */
  pool: string;
  /** '' and 0 in a limiter without groups. */
  group: string;
  step: number;
  /** By the buckets' names in Redis (`<pool>/<dimension>` in a pool). */
  cost: Cost;
  priority: number;
  signal: AbortSignal | undefined;
  timeoutMs: number | undefined;
}

/**
 * This process's waiters: the local map waiterId → pending acquire, settled by a grant (from a
 * reply, a late reply or the grants list), a deadline, an abort, or close.
 *
 * Every grant goes through {@link Waiters.deliver}: a grant for a waiter that is still waiting
 * resolves it; one for a waiter this process no longer has (it timed out, was aborted, or its
 * acquire failed while the script ran late) is released at once, its whole cost refunded.
 */
export class Waiters {
  readonly #core: LimiterCore;
  readonly #leases: LeaseKeeper;
  readonly #waiters = new Map<string, Waiter>();
  /** Waiters that left without a permit: id → cost (for the refund of a grant that reaches them late). */
  readonly #gone = new Map<string, Cost>();
  /** Cancels that failed because Redis was unreachable, sent again when it is back (a queue entry nobody owns otherwise waits for its grant). */
  readonly #unsentCancels = new Map<string, CancelArgs>();
  /** Cancels on their way (close waits for them). */
  readonly #cancels = new Set<Promise<boolean>>();
  /** A reply that pumped was lost on the way (the connection dropped): it may have granted a waiter of ours. */
  #replyLost = false;
  #sequence = 0;

  constructor(core: LimiterCore, leases: LeaseKeeper) {
    this.#core = core;
    this.#leases = leases;
  }

  /** The ids of the waiters still waiting (for the heartbeat's collection of missed grants). */
  waitingIds(): string[] {
    const ids: string[] = [];
    for (const waiter of this.#waiters.values()) if (waiter.state === 'waiting') ids.push(waiter.id);
    return ids;
  }

  async acquire(request: WaitRequest): Promise<Permit> {
    const { pool, group, step, cost, priority, signal, timeoutMs } = request;
    const name = this.#core.name;
    if (signal?.aborted) throw new AcquireAbortedError(name, { cause: signal.reason }); // nothing sent: nothing to cancel
    const startedAt = performance.now();
    let resolve!: (permit: Permit) => void;
    let reject!: (error: unknown) => void;
    const granted = new Promise<Permit>((resolveGrant, rejectGrant) => {
      resolve = resolveGrant;
      reject = rejectGrant;
    });
    // a rejection may come before the caller awaits it (a lowered capacity's message during this acquire's own round
    // trip): handled here so that it is never an unhandled rejection (which ends the process); `await granted` below
    // still receives it
    granted.catch(() => {});
    const waiter: Waiter = {
      id: `${this.#core.ownerId}:${++this.#sequence}`, // made here and sent with the acquire, so a cancel can name it
      pool,
      group,
      step,
      cost,
      priority,
      startedAt,
      deadlineAt: timeoutMs === undefined ? undefined : startedAt + timeoutMs,
      state: 'waiting',
      submitting: false,
      submissions: 0,
      member: '',
      reason: undefined,
      resolve,
      reject,
      granted,
    };
    this.#waiters.set(waiter.id, waiter); // before the script: its grant may come through the list first
    // the signal counts from the call: an abort during the round trip cancels what the acquire made
    // no listener (and no closure) for the usual call without a signal
    const onAbort = signal === undefined ? undefined : () => this.#giveUp(waiter, new AcquireAbortedError(name, { cause: signal.reason }));
    if (onAbort !== undefined) signal?.addEventListener('abort', onAbort, { once: true });
    let timer: NodeJS.Timeout | undefined;
    try {
      try {
        await this.#send(waiter);
      } catch (error) {
        this.#fail(waiter, error);
      }
      // the deadline counts from the call too; its timer is set only for a waiter left waiting (most
      // are granted in the reply), for the time left (the round trip itself is bounded by redisTimeoutMs)
      if (timeoutMs !== undefined && waiter.state === 'waiting') {
        // a Node timer may fire up to ~2 ms early by performance.now() (libuv's loop clock is coarse
        // and counts whole ms): a deadline that comes early is set again for what is left
        const deadlineAt = startedAt + timeoutMs;
        const onDeadline = () => {
          const left = deadlineAt - performance.now();
          if (left > 0) timer = setTimeout(onDeadline, left);
          else this.#giveUp(waiter, new AcquireTimeoutError(name, timeoutMs));
        };
        timer = setTimeout(onDeadline, Math.max(0, deadlineAt - performance.now()));
      }
      return await granted;
    } finally {
      clearTimeout(timer);
      if (onAbort !== undefined) signal?.removeEventListener('abort', onAbort);
    }
  }

  /** Sends one acquire for the waiter (the first, or a re-submission); then finishes a give-up that came meanwhile. */
  async #send(waiter: Waiter): Promise<void> {
    waiter.submitting = true;
    try {
      await this.#submit(waiter);
    } finally {
      waiter.submitting = false;
    }
    // it gave up during the round trip: cancel what the answer made, and settle the caller now (its
    // deadline has passed already); the cancel goes out first, so this process's next call sees it done
    if (waiter.state === 'cancelling') this.#cancelThenReject(waiter, true);
  }

  async #submit(waiter: Waiter): Promise<void> {
    const timeoutMs = waiter.deadlineAt === undefined ? 0 : Math.max(1, Math.ceil(waiter.deadlineAt - performance.now()));
    const args = {
      waiterId: waiter.id,
      priority: waiter.priority,
      timeoutMs,
      previousMember: waiter.member,
      pool: waiter.pool,
      group: waiter.group,
      step: waiter.step,
      cost: waiter.cost,
    };
    waiter.submissions++;
    const late: LateReply<Exclude<AcquireReply, { kind: 'resync' }>> = {
      reply: (reply) => this.#lateAcquire(waiter, reply),
      lost: () => this.replyLost(),
    };
    const reply = await this.#core.runner.run((scripts, epoch) => scripts.acquire(epoch, args), late);
    switch (reply.kind) {
      case 'granted':
        this.#offer(reply.grant);
        return;
      case 'queued':
        waiter.member = reply.member;
        this.#core.afterPump(reply.pumped);
        return;
      case 'grantedEarlier':
        return; // the grant is on its way through the list
    }
  }

  /** The answer of an acquire that had missed its deadline: the waiter was failed meanwhile, unless it lives on. */
  #lateAcquire(waiter: Waiter, reply: Exclude<AcquireReply, { kind: 'resync' }>): void {
    if (reply.kind === 'granted') {
      this.#offer(reply.grant); // to a waiter that is gone: released at once
    } else if (reply.kind === 'queued') {
      if (this.#waiters.get(waiter.id) === waiter && waiter.state === 'waiting') waiter.member = reply.member;
      else void this.#cancelEntry({ waiterId: waiter.id, member: reply.member, cost: waiter.cost }); // queued late for nobody: remove it
      this.#core.afterPump(reply.pumped);
    }
  }

  /** An acquire failed (Redis unreachable, or the cost can never fit): the waiter settles with the error. */
  #fail(waiter: Waiter, error: unknown): void {
    if (waiter.state === 'done') return;
    const reason = waiter.reason ?? error;
    this.#leave(waiter);
    waiter.reject(reason);
    // if the script ran after all, undo it: a grant is released here, a late queue entry by the late answer
    if (error instanceof LimiterUnavailableError) void this.#cancelEntry({ waiterId: waiter.id, member: waiter.member, cost: waiter.cost });
  }

  /**
   * After a resync (the queue was lost with the data), after this process was presumed dead, or
   * after a lost reply: every waiter is sent again, each on its own, so one failure settles only
   * its own waiter. One whose acquire is in flight is left to that acquire.
   */
  async resubmitAll(): Promise<void> {
    const waiting = [...this.#waiters.values()].filter((waiter) => waiter.state === 'waiting' && !waiter.submitting);
    await Promise.all(waiting.map((waiter) => this.#send(waiter).catch((error: unknown) => this.#fail(waiter, error))));
  }

  /** A reply that pumped will never come: one of our waiters may have been granted in it. */
  replyLost(): void {
    this.#replyLost = true;
  }

  /** After a heartbeat Redis answered: what {@link onReconnect} does, when there is something to do. */
  async retryPending(): Promise<void> {
    if (this.#unsentCancels.size > 0 || this.#replyLost) await this.onReconnect();
  }

  /** After a reconnect: the cancels that failed, then the waiters a lost reply may have granted. */
  async onReconnect(): Promise<void> {
    for (const [waiterId, args] of [...this.#unsentCancels]) {
      if (this.#unsentCancels.get(waiterId) !== args) continue;
      const sent = await this.#cancelEntry(args);
      if (!sent) return; // still away: the next reconnect tries again
    }
    if (this.#replyLost) {
      this.#replyLost = false;
      await this.resubmitAll(); // a queued one answers 'queued' (kept in place) or with its grant
    }
  }

  /**
   * Abort, deadline or close: leave the queue (a grant that raced us is released by the cancel script).
   * The cancel is always sent after the waiter's acquire on the same connection, so Redis runs it
   * after whatever the acquire did: a grant, a queue entry or nothing.
   */
  #giveUp(waiter: Waiter, reason: TollgateError): void {
    if (waiter.state !== 'waiting') return;
    waiter.state = 'cancelling';
    waiter.reason = reason;
    if (!waiter.submitting) this.#cancelThenReject(waiter, false); // else: once the acquire answers (#send), the cancel names what it made
  }

  /** Sends the cancel; rejects the caller once it is done, or at once (`now`) when the wait is already over. */
  #cancelThenReject(waiter: Waiter, now: boolean): void {
    const cancelled = this.#cancelEntry({ waiterId: waiter.id, member: waiter.member, cost: waiter.cost });
    const settle = () => {
      this.#leave(waiter);
      waiter.reject(waiter.reason);
    };
    if (now) settle();
    else void cancelled.finally(settle);
  }

  /**
   * Removes a waiter's queue entry, or releases its grant with the whole cost refunded. A cancel that
   * missed its deadline is handled when it answers; one that failed is sent again on reconnect.
   * Resolves false when it failed (never rejects).
   */
  #cancelEntry(args: CancelArgs): Promise<boolean> {
    const sent = this.#sendCancel(args);
    this.#cancels.add(sent);
    void sent.finally(() => this.#cancels.delete(sent));
    return sent;
  }

  async #sendCancel(args: CancelArgs): Promise<boolean> {
    const late: LateReply<{ pumped: Pumped }> = {
      reply: (reply) => {
        this.#unsentCancels.delete(args.waiterId);
        this.#core.afterPump(reply.pumped);
      },
      lost: () => this.replyLost(),
    };
    try {
      const reply = await this.#core.runner.run((scripts, epoch) => scripts.cancel(epoch, args), late);
      this.#unsentCancels.delete(args.waiterId);
      this.#core.afterPump(reply.pumped);
      return true;
    } catch (error) {
      if (error instanceof LimiterUnavailableError) this.#unsentCancels.set(args.waiterId, args);
      this.#core.redisError(error);
      return false;
    }
  }

  /** Resolves local waiters from grant messages (script replies, late replies or the grants channel); rejects those a lowered capacity can no longer hold. */
  deliver(grants: readonly GrantMessage[]): void {
    for (const grant of grants) this.#offer(grant);
  }

  #offer(grant: GrantMessage): void {
    const waiter = this.#waiters.get(grant.waiterId);
    if (grant.overBudget !== undefined) {
      // its group's budget no longer covers it (its group's other calls spent it while it waited, or an apply cut it)
      if (waiter !== undefined) this.#fail(waiter, budgetExceeded(this.#core.name, grant.overBudget.dimension, grant.overBudget.retryAfterMs));
      return;
    }
    if (grant.rejected !== undefined) {
      // its cost no longer fits a lowered capacity: it left the queue, nothing was granted to release
      const { dimension, capacity } = grant.rejected;
      // '@<pool>': its pool is gone from the fleet's limits (an apply removed it, or gave a limiter without pools
      // some); capacity 0: its dimension is gone. The limiter reads the limits and queues the call again as they say
      const error =
        dimension.startsWith('@') || capacity === 0
          ? new PoolsChangedError(this.#core.name, waiter?.pool ?? '')
          : new CostExceedsCapacityError(this.#core.name, dimension, waiter?.cost[dimension] ?? 0, capacity);
      if (waiter !== undefined) this.#fail(waiter, error);
      return;
    }
    if (waiter?.state === 'waiting') {
      this.#grant(waiter, grant);
      return;
    }
    if (waiter !== undefined) return; // cancelling: its cancel (sent, or sent once its acquire answers) releases this grant
    if (this.#leases.holds(grant.waiterId)) {
      // a second copy of a grant this process holds (e.g. the dataset went back to before its grant, and another
      // process's pump granted it again): that pump may have kept it in <p>:granted, so its release deletes it there
      this.#leases.mayBeKept(grant.waiterId);
      return;
    }
    // a waiter this process no longer has: release the grant at once instead of holding a slot for leaseTtlMs
    const cost = this.#gone.get(grant.waiterId) ?? {};
    this.#gone.delete(grant.waiterId);
    void this.#cancelEntry({ waiterId: grant.waiterId, member: '', cost });
  }

  #grant(waiter: Waiter, grant: GrantMessage): void {
    const now = performance.now();
    const permit = new Permit(this.#leases.releaser, {
      id: grant.waiterId,
      fence: grant.fence,
      grantedAtMs: grant.grantedAtMs,
      waitedMs: now - waiter.startedAt,
      cost: waiter.cost,
      pool: waiter.pool === '' ? undefined : waiter.pool,
      renewedUntil: now + (grant.expiresAtMs - grant.grantedAtMs),
    });
    waiter.state = 'done';
    this.#waiters.delete(waiter.id);
    // no copy in <p>:granted only when the reply of this process's own call made the grant, for a waiter submitted once
    this.#leases.hold(permit, grant.direct !== true || waiter.submissions > 1);
    this.#core.fleet.sawFence(permit.fence);
    waiter.resolve(permit);
    const events = this.#core.events;
    if (events.listenerCount('granted') > 0) events.emit('granted', { permitId: permit.id, waitedMs: permit.waitedMs, fence: permit.fence, grantedAtMs: permit.grantedAtMs }); // no event object on the hot path unless someone listens
  }

  /** The waiter leaves without a permit; a grant that reaches it later is refunded in full. */
  #leave(waiter: Waiter): void {
    waiter.state = 'done';
    if (this.#waiters.get(waiter.id) === waiter) this.#waiters.delete(waiter.id);
    this.#gone.set(waiter.id, waiter.cost);
    if (this.#gone.size > GONE_WAITERS_MAX) this.#gone.delete(this.#gone.keys().next().value ?? '');
  }

  /** Close: every waiter leaves the queue and is rejected with {@link LimiterClosedError}; resolves when all have settled and their cancels are done. */
  async closeAll(): Promise<void> {
    const settled: Array<Promise<unknown>> = [];
    for (const waiter of this.#waiters.values()) {
      this.#giveUp(waiter, new LimiterClosedError(this.#core.name));
      settled.push(waiter.granted.catch(() => {}));
    }
    await Promise.all(settled);
    await Promise.all(this.#cancels);
  }
}
