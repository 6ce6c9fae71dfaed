import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import { Cluster, Redis } from 'ioredis';
import {
  AcquireAbortedError,
  AcquireTimeoutError,
  CostExceedsCapacityError,
  InvalidCostError,
  LimiterClosedError,
  LimiterUnavailableError,
  TollgateError,
} from './errors.js';
import { limiterKeys, type LimiterKeys } from './keys.js';
import {
  PRIORITY_DEFAULT,
  PRIORITY_MAX,
  PRIORITY_MIN,
  REQUESTS_DIMENSION,
  bucketSpecs,
  formatValue,
  parseLimiterOptions,
  type BucketSpec,
  type LimiterOptions,
  type ResolvedLimiterOptions,
} from './options.js';
import { Permit, type Cost, type PermitOwner, type ReleaseResult } from './permit.js';
import { defineScripts, grantsIn, loadLibrary, integer, isResync, list, parseGrant, text, type GrantMessage, type RawReply } from './scripts.js';

/** Grants one blocking read may take off this process's grants list at once. */
const GRANTS_BATCH_MAX = 64;
/** Lease ids one heartbeat call renews; a process holding more sends several calls. */
const HEARTBEAT_IDS_MAX = 500;
/** After Redis lost its data, grants pause this many heartbeats: every live process renews (and so
 * re-registers its leases) at least once in that time, even one whose reconnect came late. */
const RESYNC_PAUSE_HEARTBEATS = 2;
/** Leases listed by `snapshot()`. */
const SNAPSHOT_LEASES_MAX = 100;
/** Pause after a failed blocking read before the next one, so a dead connection is not spun on. */
const GRANT_READ_RETRY_MS = 100;

export interface AcquireOptions {
  /** Tokens to take from each bucket. `requests: 1` is implied when a `requests` rate is configured. */
  cost?: Cost;
  /** 0 = first … 9 = last. Default 5. */
  priority?: number;
  /** Aborting it removes the waiter from the fleet-wide queue. */
  signal?: AbortSignal;
  /** Longest wait in the queue, in ms; then {@link AcquireTimeoutError}. No deadline when omitted. */
  timeoutMs?: number;
}

export interface BucketSnapshot {
  tokens: number;
  capacity: number;
  refillPerSecond: number;
}

export interface LimiterSnapshot {
  /** Redis time of the snapshot. */
  nowMs: number;
  inFlight: number;
  /** The effective concurrency limit (adaptive control may hold it below the configured one); null: none. */
  concurrency: number | null;
  concurrencyConfigured: number | null;
  waiting: number;
  buckets: Record<string, BucketSnapshot>;
  /** Redis time until which grants are paused; 0 when not paused. */
  pausedUntilMs: number;
  leases: Array<{ id: string; expiresAtMs: number }>;
}

/** Typed events: listen with `limiter.on('granted', (event) => …)`. */
export interface LimiterEvents {
  /** `grantedAtMs`: Redis time of the grant. */
  granted: [{ permitId: string; waitedMs: number; fence: number; grantedAtMs: number }];
  released: [{ permitId: string; leaseLost: boolean }];
  leaseLost: [{ permitId: string }];
  /** `atMs`: Redis time at which the pause took effect (no grant after it until `pausedUntilMs`). */
  paused: [{ pausedUntilMs: number; atMs: number; reason: string | undefined }];
  redisError: [Error];
}

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

type Scripts = ReturnType<typeof defineScripts>;

/**
 * A fleet-wide limiter: one concurrency semaphore plus token buckets, shared by every process that
 * uses the same `name` on the same Redis. Create with {@link createLimiter}.
 */
export class Limiter extends EventEmitter<LimiterEvents> implements PermitOwner, AsyncDisposable {
  readonly name: string;
  /** This process's identity in Redis (random per limiter instance). */
  readonly ownerId: string;
  readonly options: ResolvedLimiterOptions;
  readonly #keys: LimiterKeys;
  readonly #buckets: ReadonlyMap<string, BucketSpec>;
  readonly #ownsConnection: boolean;
  readonly #redis: Redis | Cluster;
  #blocking: Redis | Cluster | undefined;
  #scripts: Scripts | undefined;
  #epoch = '';
  #ready: Promise<void> | undefined;
  #resync: Promise<void> | undefined;
  #closed = false;
  #sequence = 0;
  readonly #waiters = new Map<string, Waiter>();
  readonly #held = new Map<string, Permit>();
  /** Releases that failed because Redis was unreachable, sent again when it is back. */
  readonly #unsentReleases = new Map<string, () => Promise<RawReply>>();
  #heartbeatTimer: NodeJS.Timeout | undefined;
  #pumpTimer: NodeJS.Timeout | undefined;
  #pumpAt = Number.POSITIVE_INFINITY;

  constructor(input: LimiterOptions) {
    super();
    this.options = parseLimiterOptions(input);
    this.name = this.options.name;
    this.ownerId = randomBytes(8).toString('hex');
    this.#keys = limiterKeys(this.name);
    this.#buckets = new Map(bucketSpecs(this.options.rates).map((spec) => [spec.dimension, spec]));
    const redis = this.options.redis;
    this.#ownsConnection = typeof redis === 'string';
    this.#redis =
      typeof redis === 'string'
        ? new Redis(redis, {
            lazyConnect: true,
            enableOfflineQueue: false, // fail closed at once while disconnected
            maxRetriesPerRequest: 0,
            connectTimeout: Math.max(this.options.redisTimeoutMs, 1_000),
          })
        : redis;
    if (this.#ownsConnection) this.#redis.on('error', (error: Error) => this.#redisError(error));
  }

  /** Validates the config, loads the scripts, writes the limits, starts the heartbeat and grant reader. */
  ready(): Promise<void> {
    this.#ready ??= this.#start();
    return this.#ready;
  }

  async #start(): Promise<void> {
    if (this.#closed) throw new LimiterClosedError(this.name);
    try {
      await this.#withTimeout(this.#connected());
      await this.#withTimeout(loadLibrary(this.#redis));
      this.#scripts = defineScripts(this.#redis);
      await this.#configure(false);
    } catch (error) {
      this.#ready = undefined; // a later call may try again
      throw this.#unavailable(error);
    }
    this.#warnOnEviction();
    this.#redis.on('ready', () => {
      // after a reconnect: send the releases that failed, then renew (and resync if Redis lost its data)
      void this.#sendUnsentReleases().finally(() => this.#heartbeat());
    });
    this.#blocking =
      this.#redis instanceof Cluster
        ? this.#redis.duplicate()
        : this.#redis.duplicate({ enableOfflineQueue: true, maxRetriesPerRequest: null, lazyConnect: false }); // blocks until a grant
    this.#blocking.on('error', (error: Error) => this.#redisError(error));
    void this.#readGrants();
    this.#heartbeatTimer = setInterval(() => void this.#heartbeat(), this.options.heartbeatMs);
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
   * Takes one permit: a fleet-wide concurrency slot plus `cost` from every token bucket, atomically.
   * Waiters are served in priority order, first come first served within a priority.
   * @throws {@link CostExceedsCapacityError} at once when the cost can never fit.
   * @throws {@link AcquireTimeoutError} / {@link AcquireAbortedError} when the wait ends first.
   * @throws {@link LimiterUnavailableError} when Redis does not answer within `redisTimeoutMs`.
   * @example
   * await using permit = await limiter.acquire({ cost: { inputTokens: 1_200 }, timeoutMs: 5_000 });
   */
  async acquire(options: AcquireOptions = {}): Promise<Permit> {
    const cost = this.#normalizeCost(options.cost);
    const priority = options.priority ?? PRIORITY_DEFAULT;
    if (!Number.isInteger(priority) || priority < PRIORITY_MIN || priority > PRIORITY_MAX) {
      throw new InvalidCostError(`priority must be an integer from ${PRIORITY_MIN} to ${PRIORITY_MAX}, got ${formatValue(priority)}`);
    }
    const { signal, timeoutMs } = options;
    if (timeoutMs !== undefined && (!Number.isFinite(timeoutMs) || timeoutMs < 0)) {
      throw new InvalidCostError(`timeoutMs must be a number ≥ 0, got ${formatValue(timeoutMs)}`);
    }
    if (signal?.aborted) throw new AcquireAbortedError(this.name, { cause: signal.reason });
    await this.ready();
    if (this.#closed) throw new LimiterClosedError(this.name);

    const startedAt = performance.now();
    let waiter!: Waiter;
    const granted = new Promise<Permit>((resolve, reject) => {
      waiter = {
        id: `${this.ownerId}:${++this.#sequence}`,
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
    const remainingMs = waiter.deadlineAt === undefined ? 0 : Math.max(1, Math.ceil(waiter.deadlineAt - performance.now()));
    const reply = await this.#run((scripts) =>
      scripts.acquire(this.#keys.prefix, this.#epoch, this.ownerId, waiter.id, waiter.priority, remainingMs, waiter.member, ...costArgs(waiter.cost)),
    );
    const status = integer(reply[0]);
    if (status === 1) {
      this.#grant(waiter, { waiterId: waiter.id, fence: integer(reply[1]), expiresAtMs: integer(reply[2]), grantedAtMs: integer(reply[3]) });
    } else if (status === 0) {
      waiter.member = text(reply[4]);
      this.#afterPump(reply, 1);
    } else if (status === -2) {
      const dimension = text(reply[1]);
      throw new CostExceedsCapacityError(this.name, dimension, waiter.cost[dimension] ?? 0, Number(text(reply[2])));
    } else if (status === -3) {
      throw new InvalidCostError(`limiter ${this.name}: dimension "${text(reply[1])}" is not configured in Redis`);
    }
    // status 2: granted earlier; the grant is on its way through the list
  }

  async #wait(waiter: Waiter, granted: Promise<Permit>, signal: AbortSignal | undefined, timeoutMs: number | undefined): Promise<Permit> {
    let timer: NodeJS.Timeout | undefined;
    const onAbort = () => this.#giveUp(waiter, new AcquireAbortedError(this.name, { cause: signal?.reason }));
    if (timeoutMs !== undefined) timer = setTimeout(() => this.#giveUp(waiter, new AcquireTimeoutError(this.name, timeoutMs)), timeoutMs);
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
      .catch((cause: unknown) => this.#redisError(cause instanceof Error ? cause : new Error(String(cause))))
      .finally(() => {
        this.#waiters.delete(waiter.id);
        waiter.state = 'done';
        waiter.reject(error);
      });
  }

  async #cancel(waiter: Waiter): Promise<void> {
    const reply = await this.#run((scripts) =>
      scripts.cancel(this.#keys.prefix, this.#epoch, this.ownerId, waiter.id, waiter.member, ...costArgs(waiter.cost)),
    );
    this.#afterPump(reply, 1);
  }

  /**
   * Every function that pumps replies `…, wakeAtMs, nowMs, {ownGrant…}` from index `at`: resolve this process's
   * waiters granted in the reply, and keep the pump timer at the wake time.
   */
  #afterPump(reply: RawReply, at: number): void {
    this.#deliver(grantsIn(reply[at + 2]));
    this.#schedulePump(integer(reply[at]), integer(reply[at + 1]));
  }

  /** Resolves local waiters from grant messages (script replies or the grants list). */
  #deliver(grants: readonly GrantMessage[]): void {
    for (const grant of grants) {
      const waiter = this.#waiters.get(grant.waiterId);
      if (waiter?.state === 'waiting') this.#grant(waiter, grant);
      // else: cancelled (the cancel script released it) or unknown (a previous process): nothing to do
    }
  }

  #grant(waiter: Waiter, grant: GrantMessage): void {
    const now = performance.now();
    const permit = new Permit(this, {
      id: grant.waiterId,
      fence: grant.fence,
      grantedAtMs: grant.grantedAtMs,
      waitedMs: now - waiter.startedAt,
      cost: waiter.cost,
      renewedUntil: now + (grant.expiresAtMs - grant.grantedAtMs),
    });
    waiter.state = 'done';
    this.#waiters.delete(waiter.id);
    this.#held.set(permit.id, permit);
    waiter.resolve(permit);
    if (this.listenerCount('granted') > 0) this.emit('granted', { permitId: permit.id, waitedMs: permit.waitedMs, fence: permit.fence, grantedAtMs: permit.grantedAtMs }); // no event object on the hot path unless someone listens
  }

  /** @internal Called by {@link Permit.release}. */
  async releasePermit(permit: Permit, used: Cost | undefined): Promise<ReleaseResult> {
    this.#held.delete(permit.id);
    const settle: Array<string | number> = [];
    if (used !== undefined) {
      for (const [dimension, reserved] of Object.entries(permit.cost)) {
        const amount = used[dimension];
        if (amount === undefined || !Number.isFinite(amount) || amount < 0) continue; // keeps the reservation
        settle.push(dimension, reserved, amount);
      }
    }
    const send = () => this.#run((scripts) => scripts.release(this.#keys.prefix, this.#epoch, this.ownerId, permit.id, settle.length / 3, ...settle));
    let reply: RawReply;
    try {
      reply = await send();
    } catch (error) {
      // Redis is away: send the release again once the connection is back, so that the slot returns at once
      // instead of when its lease expires (and the buckets get their settlement)
      if (error instanceof LimiterUnavailableError) this.#unsentReleases.set(permit.id, send);
      throw error;
    }
    // 0: the lease was already reclaimed; renewedUntil passed: it expired, though no one reclaimed it yet
    const leaseLost = integer(reply[0]) === 0 || permit.leaseLost || performance.now() > permit.renewedUntil;
    this.#afterPump(reply, 1);
    if (this.listenerCount('released') > 0) this.emit('released', { permitId: permit.id, leaseLost });
    return { leaseLost };
  }

  /**
   * Acquires, runs `fn` with the permit, and releases it whatever happens. `fn` may call
   * `permit.release({ used })` itself to settle actual usage; the final release is then a no-op.
   */
  async run<T>(options: AcquireOptions, fn: (permit: Permit) => Promise<T> | T): Promise<T> {
    const permit = await this.acquire(options);
    try {
      return await fn(permit);
    } finally {
      // a failed release must not hide fn's outcome; the lease then expires by itself
      await permit.release().catch((error: unknown) => this.#redisError(error instanceof Error ? error : new Error(String(error))));
    }
  }

  /** A fleet-wide cool-down of `ms` (e.g. an upstream 429's retry-after). Extends, never shortens. */
  async pause(ms: number, reason?: string): Promise<{ pausedUntilMs: number }> {
    if (!Number.isFinite(ms) || ms < 0) throw new InvalidCostError(`pause needs a duration ≥ 0 ms, got ${formatValue(ms)}`);
    await this.ready();
    const reply = await this.#run((scripts) => scripts.pause(this.#keys.prefix, this.#epoch, Math.ceil(ms)));
    const pausedUntilMs = integer(reply[0]);
    const atMs = integer(reply[1]);
    this.#schedulePump(pausedUntilMs, atMs);
    this.emit('paused', { pausedUntilMs, atMs, reason });
    return { pausedUntilMs };
  }

  /**
   * Lowers buckets to what the upstream reports as remaining (its rate-limit headers); never raises one.
   * `resetMs` is accepted for the record; the bucket's own refill rate governs recovery.
   */
  async observe(remaining: Readonly<Record<string, { remaining: number; resetMs?: number }>>): Promise<void> {
    await this.ready();
    const pairs: Array<string | number> = [];
    for (const [dimension, value] of Object.entries(remaining)) {
      if (this.#buckets.has(dimension) && Number.isFinite(value.remaining) && value.remaining >= 0) pairs.push(dimension, value.remaining);
    }
    if (pairs.length === 0) return;
    await this.#run((scripts) => scripts.observe(this.#keys.prefix, this.#epoch, pairs.length / 2, ...pairs));
  }

  /** Sets the effective concurrency limit (clamped to 1…configured), fleet-wide; a raise admits waiters at once. */
  async setConcurrency(concurrency: number): Promise<number> {
    if (this.options.concurrency === undefined) throw new InvalidCostError(`limiter ${this.name} has no concurrency limit to set`);
    if (!Number.isInteger(concurrency)) throw new InvalidCostError(`concurrency must be an integer, got ${formatValue(concurrency)}`);
    await this.ready();
    const reply = await this.#run((scripts) => scripts.set_concurrency(this.#keys.prefix, this.#epoch, this.ownerId, concurrency));
    this.#afterPump(reply, 1);
    return integer(reply[0]);
  }

  /** The fleet-wide state, read in one script. */
  async snapshot(): Promise<LimiterSnapshot> {
    await this.ready();
    const reply = await this.#run((scripts) => scripts.snapshot(this.#keys.prefix, this.#epoch, SNAPSHOT_LEASES_MAX));
    const hasConcurrency = integer(reply[2]) > 0;
    const buckets: Record<string, BucketSnapshot> = {};
    for (const entry of list(reply[6])) {
      const [dimension, tokens, capacity, refillPerMs] = list(entry).map(text);
      buckets[dimension ?? ''] = { tokens: Number(tokens), capacity: Number(capacity), refillPerSecond: Number(refillPerMs) * 1000 };
    }
    return {
      nowMs: integer(reply[0]),
      inFlight: integer(reply[1]),
      concurrency: hasConcurrency ? integer(reply[3]) : null,
      concurrencyConfigured: hasConcurrency ? integer(reply[2]) : null,
      waiting: integer(reply[4]),
      buckets,
      pausedUntilMs: integer(reply[5]),
      leases: list(reply[7]).map((entry) => {
        const [id, expiresAtMs] = list(entry);
        return { id: text(id), expiresAtMs: integer(expiresAtMs) };
      }),
    };
  }

  /** Permits this process holds now. */
  get heldCount(): number {
    return this.#held.size;
  }

  /**
   * Stops timers and the grant reader, gives up this process's waiters, releases the permits it
   * holds (best effort: what cannot be released expires by itself) and closes the connections it
   * opened. A Redis client passed in by the caller is left open.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#heartbeatTimer);
    clearTimeout(this.#pumpTimer);
    const closing: Array<Promise<unknown>> = [];
    for (const waiter of this.#waiters.values()) {
      if (waiter.state !== 'waiting') continue;
      waiter.state = 'cancelling';
      closing.push(this.#cancel(waiter).catch(() => {}).finally(() => waiter.reject(new LimiterClosedError(this.name))));
    }
    for (const permit of this.#held.values()) closing.push(permit.release().catch(() => {}));
    await Promise.all(closing);
    this.#waiters.clear();
    if (this.#scripts) await this.#withTimeout(this.#redis.del(this.#keys.owner(this.ownerId))).catch(() => {});
    this.#blocking?.disconnect();
    if (this.#ownsConnection) this.#redis.disconnect();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // ---- internals ----

  #normalizeCost(input: Cost | undefined): Cost {
    const cost: Record<string, number> = {};
    if (this.#buckets.has(REQUESTS_DIMENSION)) cost[REQUESTS_DIMENSION] = 1;
    for (const [dimension, amount] of Object.entries(input ?? {})) {
      const bucket = this.#buckets.get(dimension);
      if (bucket === undefined) {
        throw new InvalidCostError(`limiter ${this.name}: cost names "${dimension}", which is not a configured rate (${[...this.#buckets.keys()].join(', ') || 'none'})`);
      }
      if (!Number.isFinite(amount) || amount < 0) throw new InvalidCostError(`limiter ${this.name}: cost of "${dimension}" must be a number ≥ 0, got ${formatValue(amount)}`);
      if (amount > bucket.capacityTokens) throw new CostExceedsCapacityError(this.name, dimension, amount, bucket.capacityTokens);
      cost[dimension] = amount;
    }
    return cost;
  }

  /** Runs a script with the deadline, re-registering once when Redis lost its data. */
  async #run(call: (scripts: Scripts) => Promise<RawReply>): Promise<RawReply> {
    const scripts = this.#scripts;
    if (scripts === undefined) throw new LimiterClosedError(this.name);
    let reply: RawReply;
    try {
      reply = await this.#withTimeout(call(scripts));
      if (isResync(reply)) {
        await this.#resyncOnce();
        reply = await this.#withTimeout(call(scripts));
      }
    } catch (error) {
      throw this.#unavailable(error);
    }
    if (isResync(reply)) throw new LimiterUnavailableError(this.name, { cause: new Error('the limiter epoch changed again during a resync') });
    return reply;
  }

  #resyncOnce(): Promise<void> {
    this.#resync ??= this.#configure(true).finally(() => (this.#resync = undefined));
    return this.#resync;
  }

  /**
   * Writes this process's limits. On a resync (Redis lost its data) it also re-registers the
   * leases this process holds and pauses grants for one heartbeat while the fleet does the same,
   * then submits its queued waiters again (the queue was lost with the data).
   */
  async #configure(resync: boolean): Promise<void> {
    const scripts = this.#scripts;
    if (scripts === undefined) throw new LimiterClosedError(this.name);
    const now = performance.now();
    const leaseArgs: Array<string | number> = [];
    if (resync) for (const permit of this.#held.values()) leaseArgs.push(permit.id, Math.max(1, Math.ceil(permit.renewedUntil - now)));
    const dimensionArgs = [...this.#buckets.values()].flatMap((spec) => [spec.dimension, spec.capacityTokens, spec.refillPerMs]);
    const reserve = this.options.reserve.map((channel) => `${channel.maxPriority}:${channel.concurrency}`).join(';');
    const reply = await this.#withTimeout(
      scripts.configure(
        this.#keys.prefix,
        randomBytes(8).toString('hex'),
        this.options.concurrency ?? 0,
        this.options.leaseTtlMs,
        reserve,
        resync ? RESYNC_PAUSE_HEARTBEATS * this.options.heartbeatMs : 0,
        this.ownerId,
        this.#buckets.size,
        ...dimensionArgs,
        ...leaseArgs,
      ),
    );
    this.#epoch = text(reply[0]);
    if (resync) {
      for (const waiter of this.#waiters.values()) {
        if (waiter.state === 'waiting') void this.#submit(waiter).catch((error: unknown) => this.#redisError(error instanceof Error ? error : new Error(String(error))));
      }
    }
  }

  async #sendUnsentReleases(): Promise<void> {
    for (const [permitId, send] of [...this.#unsentReleases]) {
      try {
        const reply = await send();
        this.#unsentReleases.delete(permitId);
        this.#afterPump(reply, 1);
      } catch {
        return; // still away: the next reconnect tries again (and the lease expires by itself meanwhile)
      }
    }
  }

  /** One call per heartbeat: renews every lease this process holds; lost ones abort their work. */
  async #heartbeat(): Promise<void> {
    if (this.#closed || this.#scripts === undefined) return;
    const sentAt = performance.now();
    for (const permit of this.#held.values()) {
      if (sentAt > permit.renewedUntil) this.#loseLease(permit); // not renewed in time: it may be gone
    }
    const ids = [...this.#held.keys()];
    try {
      let wasAlive = true;
      for (let from = 0; from === 0 || from < ids.length; from += HEARTBEAT_IDS_MAX) {
        const chunk = ids.slice(from, from + HEARTBEAT_IDS_MAX);
        const reply = await this.#run((scripts) => scripts.heartbeat(this.#keys.prefix, this.#epoch, this.ownerId, ...chunk));
        wasAlive &&= integer(reply[0]) === 1;
        for (const id of list(reply[4]).map(text)) {
          const permit = this.#held.get(id);
          if (permit) this.#loseLease(permit);
        }
        this.#afterPump(reply, 1);
      }
      const renewedUntil = sentAt + this.options.leaseTtlMs;
      for (const id of ids) {
        const permit = this.#held.get(id);
        if (permit && !permit.leaseLost) permit.renewedUntil = renewedUntil;
      }
      if (!wasAlive) {
        // this process was presumed dead (frozen, cut off): its queued waiters may have been dropped
        for (const waiter of this.#waiters.values()) if (waiter.state === 'waiting') await this.#submit(waiter);
      }
    } catch (error) {
      this.#redisError(error instanceof Error ? error : new Error(String(error)));
    }
  }

  #loseLease(permit: Permit): void {
    if (permit.leaseLost) return;
    permit.loseLease();
    this.emit('leaseLost', { permitId: permit.id });
  }

  /** Keeps one timer, at the earliest wakeAtMs heard, while this process has waiters. */
  #schedulePump(wakeAtMs: number, redisNowMs: number): void {
    if (wakeAtMs <= 0 || this.#closed || this.#waiters.size === 0) return;
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
    if (this.#closed || this.#waiters.size === 0) return;
    try {
      const reply = await this.#run((scripts) => scripts.pump(this.#keys.prefix, this.#epoch, this.ownerId));
      this.#afterPump(reply, 0);
    } catch (error) {
      this.#redisError(error instanceof Error ? error : new Error(String(error)));
    }
  }

  /** The blocking reader: one BLMPOP at a time on this process's own grants list. */
  async #readGrants(): Promise<void> {
    const key = this.#keys.grants(this.ownerId);
    while (!this.#closed && this.#blocking) {
      try {
        const reply: unknown = await this.#blocking.call('BLMPOP', 0, 1, key, 'LEFT', 'COUNT', GRANTS_BATCH_MAX);
        if (Array.isArray(reply) && Array.isArray(reply[1])) {
          this.#deliver((reply[1] as unknown[]).map((message) => parseGrant(String(message))));
        }
      } catch (error) {
        if (this.#closed) return;
        this.#redisError(error instanceof Error ? error : new Error(String(error)));
        await new Promise((resolve) => setTimeout(resolve, GRANT_READ_RETRY_MS));
      }
    }
  }

  #withTimeout<T>(promise: Promise<T>): Promise<T> {
    const timeoutMs = this.options.redisTimeoutMs;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`Redis did not answer within ${timeoutMs} ms`)), timeoutMs);
    });
    return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
  }

  #unavailable(error: unknown): TollgateError {
    if (error instanceof TollgateError) return error;
    const cause = error instanceof Error ? error : new Error(String(error));
    this.#redisError(cause);
    return new LimiterUnavailableError(this.name, { cause });
  }

  #redisError(error: Error): void {
    if (this.listenerCount('redisError') > 0) this.emit('redisError', error);
  }

  #warnOnEviction(): void {
    if (!(this.#redis instanceof Redis)) return;
    this.#withTimeout(this.#redis.config('GET', 'maxmemory-policy'))
      .then((reply) => {
        const policy = Array.isArray(reply) ? String(reply[1]) : '';
        if (policy !== '' && policy !== 'noeviction') {
          process.emitWarning(`Redis maxmemory-policy is ${policy}: eviction could drop Tollgate's keys; use noeviction`, { code: 'TOLLGATE_EVICTION' });
        }
      })
      .catch(() => {}); // CONFIG is often disabled on managed Redis; the warning is best effort
  }
}

/** Flattens a cost into (dimension, amount) ARGV pairs, prefixed with their count. */
function costArgs(cost: Cost): Array<string | number> {
  const entries = Object.entries(cost);
  return [entries.length, ...entries.flat()];
}

/**
 * Creates a limiter. Options are validated at once ({@link InvalidConfigError} names the field and
 * value); call `ready()` to connect, or let the first `acquire` do it.
 */
export function createLimiter(options: LimiterOptions): Limiter {
  return new Limiter(options);
}
