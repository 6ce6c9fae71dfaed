import { performance } from 'node:perf_hooks';
import type { LimiterCore } from './core.js';
import { LimiterUnavailableError } from './errors.js';
import { GROUP_BUCKET_PREFIX, REQUESTS_DIMENSION } from './options.js';
import { permitLease, type Cost, type Permit, type ReleaseLease, type ReleaseResult } from './permit.js';
import type { LateReply } from './runner.js';
import type { HeartbeatReply, Pumped, ReleaseReply, Settlement } from './scripts/scripts.js';

type Renewed = Exclude<HeartbeatReply, { kind: 'resync' }>;

/** Lease ids one heartbeat call renews; a process holding more sends several calls. */
const HEARTBEAT_IDS_MAX = 500;

/**
 * The leases this process holds: one heartbeat renews them all (and reports the ones lost), a
 * release ends one, and a release that Redis missed is sent again when the connection is back.
 */
export class LeaseKeeper {
  readonly #core: LimiterCore;
  /** Called when a heartbeat finds this process was presumed dead: its queued waiters may be gone. */
  readonly #resubmitWaiters: () => Promise<void>;
  /** This process's waiters still waiting: the heartbeat collects grants kept for them whose message was missed. */
  readonly #waitingIds: () => string[];
  readonly #held = new Map<string, Permit>();
  /** Held permits whose grant may have a copy in `<p>:granted` (see GrantMessage.direct): their release deletes it. */
  readonly #mayBeKept = new Set<string>();
  /** Releases that failed because Redis was unreachable, sent again when it is back. */
  /** After a heartbeat Redis answered: the waiters' cancels that failed, and a lost reply's re-submission. */
  readonly #retryWaiters: () => Promise<void>;
  readonly #unsentReleases = new Map<string, () => Promise<Extract<ReleaseReply, { kind: 'released' }>>>();
  #timer: NodeJS.Timeout | undefined;

  constructor(core: LimiterCore, resubmitWaiters: () => Promise<void>, waitingIds: () => string[], retryWaiters: () => Promise<void>) {
    this.#core = core;
    this.#resubmitWaiters = resubmitWaiters;
    this.#waitingIds = waitingIds;
    this.#retryWaiters = retryWaiters;
  }

  get count(): number {
    return this.#held.size;
  }

  holds(permitId: string): boolean {
    return this.#held.has(permitId);
  }

  /** What each Permit calls to release itself. */
  readonly releaser: ReleaseLease = (permit, used) => this.release(permit, used);

  /** `mayBeKept`: its grant may have a copy in `<p>:granted` (when unsure, true). */
  hold(permit: Permit, mayBeKept: boolean): void {
    this.#held.set(permit.id, permit);
    if (mayBeKept) this.#mayBeKept.add(permit.id);
  }

  /** A held permit's grant may have a copy in `<p>:granted` after all (a second copy of it came). */
  mayBeKept(permitId: string): void {
    if (this.#held.has(permitId)) this.#mayBeKept.add(permitId);
  }

  /** The leases held now with the time each has left, for a re-registration after Redis lost its data. */
  leasesToReregister(): Array<{ permitId: string; remainingTtlMs: number }> {
    const now = performance.now();
    return [...this.#held.values()].map((permit) => ({ permitId: permit.id, remainingTtlMs: Math.max(1, Math.ceil(permitLease.renewedUntil(permit) - now)) }));
  }

  /** Heartbeats timed by the fleet's leaseTtlMs (the one Redis enforces); started again when it changes. */
  start(): void {
    clearInterval(this.#timer);
    this.#timer = setInterval(() => void this.heartbeat(), this.#core.fleet.heartbeatMs);
  }

  /** The heartbeat period changed (hot reload of the fleet's leaseTtlMs): restart the timer if it runs. */
  restart(): void {
    if (this.#timer !== undefined && !this.#core.closed) this.start();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /** After a reconnect: send the releases that failed, then renew (and resync if Redis lost its data). */
  onReconnect(): void {
    void this.#sendUnsentReleases().finally(() => this.heartbeat());
  }

  /** Best-effort release of every permit held (close). */
  releaseAll(): Array<Promise<unknown>> {
    return [...this.#held.values()].map((permit) => permit.release().catch(() => {}));
  }

  async release(permit: Permit, used: Cost | undefined): Promise<ReleaseResult> {
    this.#held.delete(permit.id);
    const mayBeKept = this.#mayBeKept.delete(permit.id);
    const settlements: Settlement[] = [];
    if (used !== undefined) {
      for (const [dimension, reserved] of Object.entries(permit.cost)) {
        // a pool's permit settles `<pool>/inputTokens` from `used.inputTokens` too (its caller names the pool's dimensions as it acquired them);
        // a group's budget (`~<group>/<bucket>`) from its dimension's (one removed since is not settled: Redis ignores it anyway)
        const amount = dimension.startsWith(GROUP_BUCKET_PREFIX)
          ? this.#budgetUsed(dimension, used)
          : (used[dimension] ?? (permit.pool === undefined ? undefined : used[dimension.slice(permit.pool.length + 1)]));
        if (amount === undefined || !Number.isFinite(amount) || amount < 0) continue; // keeps the reservation
        settlements.push({ dimension, reserved, used: amount });
      }
    }
    const late = {
      reply: (reply: { pumped: Pumped }) => {
        this.#unsentReleases.delete(permit.id); // it ran after all
        this.#core.afterPump(reply.pumped);
      },
      lost: this.#core.latePumped.lost,
    };
    const send = () => this.#core.runner.run((scripts, epoch) => scripts.release(epoch, permit.id, settlements, mayBeKept), late);
    let reply: Extract<ReleaseReply, { kind: 'released' }>;
    try {
      reply = await send();
    } catch (error) {
      // Redis is away: send the release again once the connection is back, so that the slot returns at once
      // instead of when its lease expires (and the buckets get their settlement)
      if (error instanceof LimiterUnavailableError) this.#unsentReleases.set(permit.id, send);
      throw error;
    }
    // not live: the lease was already reclaimed; renewedUntil passed: it expired, though no one reclaimed it yet
    const leaseLost = !reply.leaseWasLive || permit.leaseLost || performance.now() > permitLease.renewedUntil(permit);
    this.#core.afterPump(reply.pumped);
    const events = this.#core.events;
    if (events.listenerCount('released') > 0) events.emit('released', { permitId: permit.id, leaseLost });
    return { leaseLost };
  }

  /** What a budget's dimension used: the `used` amount of the dimension the budget counts (a request is a request: 1). */
  #budgetUsed(dimension: string, used: Cost): number | undefined {
    const source = this.#core.fleet.budget(dimension)?.source;
    if (source === undefined || source === REQUESTS_DIMENSION) return undefined;
    return used[source];
  }

  async #sendUnsentReleases(): Promise<void> {
    for (const [permitId, send] of [...this.#unsentReleases]) {
      try {
        const reply = await send();
        this.#unsentReleases.delete(permitId);
        this.#core.afterPump(reply.pumped);
      } catch {
        return; // still away: the next reconnect tries again (and the lease expires by itself meanwhile)
      }
    }
  }

  /** One call per heartbeat: renews every lease this process holds; lost ones abort their work. */
  async heartbeat(): Promise<void> {
    const core = this.#core;
    if (core.closed || !core.runner.loaded) return;
    const sentAt = performance.now();
    for (const permit of this.#held.values()) {
      if (sentAt > permitLease.renewedUntil(permit)) this.#loseLease(permit); // not renewed in time: it may be gone
    }
    // only leases believed live: Redis registers a missing one again (partial data loss), never a lost one
    const ids = [...this.#held.values()].filter((permit) => !permit.leaseLost).map((permit) => permit.id);
    try {
      let wasAlive = true;
      for (let from = 0; from === 0 || from < ids.length; from += HEARTBEAT_IDS_MAX) {
        const chunk = ids.slice(from, from + HEARTBEAT_IDS_MAX);
        const waiting = from === 0 ? this.#waitingIds().slice(0, HEARTBEAT_IDS_MAX) : [];
        const reply = await core.runner.run((scripts, epoch) => scripts.heartbeat(epoch, core.fleet.version, chunk, waiting), this.#lateHeartbeat);
        wasAlive &&= reply.wasAlive;
        this.#heard(reply);
      }
      const renewedUntil = sentAt + core.fleet.leaseTtlMs;
      for (const id of ids) {
        const permit = this.#held.get(id);
        if (permit && !permit.leaseLost) permitLease.renew(permit, renewedUntil);
      }
      // this process was presumed dead (frozen, cut off): its queued waiters may have been dropped
      if (!wasAlive) await this.#resubmitWaiters();
      // Redis answers: what failed to reach it earlier goes now, not only after a reconnect (a Redis Cluster whose
      // slot moved, or a call that timed out on a live connection, has none): releases, then the waiters' cancels
      if (this.#unsentReleases.size > 0) await this.#sendUnsentReleases();
      await this.#retryWaiters();
    } catch (error) {
      core.redisError(error);
    }
  }

  /** What every heartbeat reply carries, in time or late: the fleet's limits, the leases lost, the grants. */
  #heard(reply: Renewed): void {
    const core = this.#core;
    if (reply.limitsJson !== '') core.fleet.adopt(reply.limitsVersion, reply.limitsJson); // hot reload
    this.#lost(reply.lostPermitIds);
    core.afterPump(reply.pumped);
  }

  /**
   * A heartbeat that missed its deadline still ran: all its reply says counts. Above all `wasAlive`:
   * it marked the process alive again, so the next heartbeat answers wasAlive 1, and the waiters a pump
   * dropped meanwhile (this process presumed dead) would be waited for forever unless submitted now.
   */
  readonly #lateHeartbeat: LateReply<Renewed> = {
    reply: (reply) => {
      this.#heard(reply);
      if (!reply.wasAlive) void this.#resubmitWaiters();
    },
    lost: (cause) => this.#core.latePumped.lost(cause),
  };

  #lost(permitIds: readonly string[]): void {
    for (const id of permitIds) {
      const permit = this.#held.get(id);
      if (permit) this.#loseLease(permit);
    }
  }

  #loseLease(permit: Permit): void {
    if (permit.leaseLost) return;
    permitLease.lose(permit);
    this.#core.events.emit('leaseLost', { permitId: permit.id });
  }
}
