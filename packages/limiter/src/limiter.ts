import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { EventEmitter } from 'node:events';
import { Redis } from 'ioredis';
import type { LimiterCore } from './core.js';
import { AcquireAbortedError, AcquireTimeoutError, CostExceedsCapacityError, InvalidArgumentError, InvalidCostError, LimiterClosedError, toError } from './errors.js';
import { FleetView } from './fleet.js';
import { GrantReader } from './grant-reader.js';
import { limiterKeys, type LimiterKeys } from './keys.js';
import { LeaseKeeper } from './lease-keeper.js';
import { limitsFromOptions, type FleetLimitsState } from './limits.js';
import {
  GROUP_NAME_PATTERN,
  PRIORITY_DEFAULT,
  PRIORITY_MAX,
  PRIORITY_MIN,
  REQUESTS_DIMENSION,
  formatValue,
  poolDimension,
  parseLimiterOptions,
  type LimiterOptions,
  type ResolvedLimiterOptions,
} from './options.js';
import type { Cost, Permit } from './permit.js';
import { ScriptRunner } from './runner.js';
import type { RedisLike } from './scripts/library.js';
import { PoolsChangedError, type Pumped } from './scripts/scripts.js';
import type { AcquireOptions, LimiterEvents, LimiterSnapshot } from './types.js';

/** A queued waiter of weight 1 moves its group's finish tag this far (a weight-w group's: FAIR_TAG_UNIT / w). */
const FAIR_TAG_UNIT = 1_000;
/** The group of an acquire that names none, in a limiter with groups (not a group name: `*` is outside their pattern). */
const UNGROUPED = '*';
import { Waiters } from './waiters.js';

export type { AcquireOptions, BucketSnapshot, LimiterEvents, LimiterSnapshot } from './types.js';

/** Leases listed by `snapshot()`. */
const SNAPSHOT_LEASES_MAX = 100;
/** The longest `timeoutMs`: what a Node timer can wait (2^31 − 1 ms, about 24.8 days); a longer one would fire at once. */
export const TIMEOUT_MS_MAX = 2 ** 31 - 1;
/** The longest pause one call may ask for (the Anthropic wrapper bounds a retry-after the same way). */
const PAUSE_MS_MAX = TIMEOUT_MS_MAX;

/**
 * A fleet-wide limiter: one concurrency semaphore plus token buckets, shared by every process that
 * uses the same `name` on the same Redis. Create with {@link createLimiter}.
 *
 * The façade: it validates each call and hands it to the part that does the work: the
 * {@link Waiters} (acquire until settled), the {@link LeaseKeeper} (heartbeat, release), the
 * {@link GrantReader} (grants list, pump timer), all running scripts through one {@link ScriptRunner}.
 */
export class Limiter extends EventEmitter<LimiterEvents> implements AsyncDisposable {
  readonly name: string;
  /** This process's identity in Redis (random per limiter instance). */
  readonly ownerId: string;
  readonly options: ResolvedLimiterOptions;
  readonly #keys: LimiterKeys;
  /** The fleet's limits this process runs with (its buckets check costs; its leaseTtlMs times heartbeats). */
  readonly #fleet: FleetView;
  readonly #ownsConnection: boolean;
  readonly #redis: RedisLike;
  readonly #runner: ScriptRunner;
  readonly #leases: LeaseKeeper;
  readonly #waiters: Waiters;
  readonly #reader: GrantReader;
  readonly #core: LimiterCore;
  #ready: Promise<void> | undefined;
  /** ready() has resolved: acquire need not await it. */
  #started = false;
  #closed = false;

  constructor(input: LimiterOptions) {
    super();
    this.options = parseLimiterOptions(input);
    this.name = this.options.name;
    this.ownerId = randomBytes(8).toString('hex');
    this.#keys = limiterKeys(this.name);
    this.#fleet = new FleetView(this.name, this.options, this);
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

    this.#runner = new ScriptRunner({
      redis: this.#redis,
      name: this.name,
      ownerId: this.ownerId,
      keys: this.#keys,
      options: this.options,
      fleet: this.#fleet,
      onError: (error) => this.#redisError(error),
    });
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- the parts read `closed` live
    const limiter = this;
    const core: LimiterCore = {
      name: this.name,
      ownerId: this.ownerId,
      options: this.options,
      runner: this.#runner,
      fleet: this.#fleet,
      events: this,
      get closed() {
        return limiter.#closed;
      },
      redisError: (error) => this.#redisError(toError(error)),
      afterPump: (pumped: Pumped) => this.#reader.afterPump(pumped),
      latePumped: {
        reply: (reply) => this.#reader.afterPump(reply.pumped),
        lost: () => this.#waiters.replyLost(),
      },
    };
    this.#core = core;
    this.#leases = new LeaseKeeper(
      core,
      () => this.#waiters.resubmitAll(),
      () => this.#waiters.waitingIds(),
      () => this.#waiters.retryPending(),
    );
    this.#waiters = new Waiters(core, this.#leases);
    this.#reader = new GrantReader(core, this.#keys, this.#waiters, () => void this.#leases.heartbeat());
    this.#runner.hooks = {
      leasesToReregister: () => this.#leases.leasesToReregister(),
      afterResync: () => void this.#waiters.resubmitAll(),
      afterPump: (pumped) => this.#reader.afterPump(pumped),
    };
    this.#fleet.onHeartbeatChange = () => this.#leases.restart();
  }

  /** Validates the config, loads the scripts, writes the limits, starts the heartbeat and grant reader. */
  ready(): Promise<void> {
    this.#ready ??= this.#start().then(() => {
      this.#started = true;
    });
    return this.#ready;
  }

  async #start(): Promise<void> {
    if (this.#closed) throw new LimiterClosedError(this.name);
    try {
      await this.#runner.start();
      await this.#reader.start(this.#redis); // subscribed before any waiter of this process can be queued
    } catch (error) {
      this.#reader.disconnect();
      this.#ready = undefined; // a later call may try again
      throw this.#runner.unavailable(error);
    }
    this.#warnOnEviction();
    this.#redis.on('ready', () => {
      this.#leases.onReconnect();
      void this.#waiters.onReconnect();
    });
    this.#leases.start();
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
    const priority = options.priority ?? PRIORITY_DEFAULT;
    if (!Number.isInteger(priority) || priority < PRIORITY_MIN || priority > PRIORITY_MAX) {
      throw new InvalidArgumentError('priority', priority, `an integer from ${PRIORITY_MIN} to ${PRIORITY_MAX}`);
    }
    const { signal, timeoutMs } = options;
    if (timeoutMs !== undefined && (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs < 0 || timeoutMs > TIMEOUT_MS_MAX)) {
      throw new InvalidArgumentError('timeoutMs', timeoutMs, `a number of ms from 0 to ${TIMEOUT_MS_MAX}`);
    }
    if (signal?.aborted) throw new AcquireAbortedError(this.name, { cause: signal.reason });
    if (!this.#started) await this.ready(); // once started, no promise hop for it
    if (this.#closed) throw new LimiterClosedError(this.name);
    const startedAt = performance.now();
    try {
      const inForce = this.#poolInForce(options.pool);
      const pool = typeof inForce === 'object' ? await inForce : inForce; // no promise hop when the pool checks out
      const group = this.#groupOf(options.group);
      const cost = this.#normalizeCost(pool, options.cost, group.group); // against the fleet's buckets, known once ready
      return await this.#waiters.acquire({ pool: pool ?? '', ...group, cost, priority, signal, timeoutMs });
    } catch (error) {
      if (!(error instanceof PoolsChangedError)) throw error;
      // the pools changed in Redis between this process's view and the call: read them, check and send once more,
      // within what is left of the caller's deadline (which counts from the call)
      await this.#readFleetLimits(error);
      const pool = this.#checkPool(options.pool);
      const group = this.#groupOf(options.group);
      const cost = this.#normalizeCost(pool, options.cost, group.group);
      const leftMs = timeoutMs === undefined ? undefined : Math.floor(timeoutMs - (performance.now() - startedAt));
      if (leftMs !== undefined && leftMs <= 0) throw new AcquireTimeoutError(this.name, timeoutMs ?? 0);
      return this.#waiters.acquire({ pool: pool ?? '', ...group, cost, priority, signal, timeoutMs: leftMs });
    }
  }

  /**
   * The group an acquire queues under and its finish-tag step (1000 / weight, DESIGN §9), by the groups in force: ''
   * and 0 without groups (arrival order); `*` for a call that names none.
   */
  #groupOf(group: string | undefined): { group: string; step: number } {
    if (group !== undefined && (typeof group !== 'string' || !GROUP_NAME_PATTERN.test(group))) {
      throw new InvalidArgumentError('group', group, 'a group name (letters, digits and ._-, 1 to 64 characters)');
    }
    const groups = this.#fleet.groups;
    if (groups === undefined) return { group: '', step: 0 };
    const weight = group !== undefined && Object.hasOwn(groups, group) ? (groups[group]?.weight ?? 1) : 1;
    return { group: group ?? UNGROUPED, step: Math.max(1, Math.round(FAIR_TAG_UNIT / weight)) };
  }

  /** The rate dimensions costs are charged to: the fleet's once ready, this process's own options before (with pools: `<pool>/<dimension>`). */
  get rateDimensions(): readonly string[] {
    return [...this.#fleet.buckets.keys()];
  }

  /**
   * The cost dimensions the budgets of `group` count (e.g. `outputTokens`), by the fleet's limits once ready: an acquire
   * for the group charges them to its budgets, so a caller names them in its cost even where no pool bucket does.
   */
  budgetDimensions(group: string): readonly string[] {
    return [...new Set(this.#fleet.groupBudgets(group).map((budget) => budget.source))];
  }

  /** The pools (the fleet's once ready, this process's own before); undefined for a limiter without pools. */
  get pools(): readonly string[] | undefined {
    return this.#fleet.pools;
  }

  /** The rate dimensions of one pool, as `acquire({ pool, cost })` names them (`inputTokens`, not `<pool>/inputTokens`). */
  poolDimensions(pool: string): readonly string[] {
    const prefix = `${pool}/`;
    return [...this.#fleet.buckets.keys()].filter((name) => name.startsWith(prefix)).map((name) => name.slice(prefix.length));
  }

  /** The fleet's limits in force (revision, limits, hash), as this process last heard them; undefined before ready(). */
  get fleetLimits(): FleetLimitsState | undefined {
    return this.#fleet.state;
  }

  /**
   * Writes limits for the whole fleet (DESIGN §8), the only way they change once set: `limits` in
   * the shape of limiter options (without redis and name), or this process's own when omitted.
   * Every process runs with them within one heartbeat; a queued waiter whose cost a lowered
   * capacity can no longer hold is rejected with {@link CostExceedsCapacityError} at once.
   */
  async applyLimits(limits?: Omit<LimiterOptions, 'redis' | 'name'>): Promise<FleetLimitsState> {
    const document = limits === undefined ? this.#fleet.own : limitsFromOptions(parseLimiterOptions({ ...limits, redis: this.options.redis, name: this.name }));
    await this.ready();
    await this.#runner.apply(document);
    const state = this.#fleet.state;
    if (state === undefined) throw new LimiterClosedError(this.name);
    return state;
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
      await permit.release().catch((error: unknown) => this.#redisError(toError(error)));
    }
  }

  /**
   * A fleet-wide cool-down of `ms` (e.g. an upstream 429's retry-after). Extends, never shortens.
   * `pool`: pause only that pool (e.g. its input-token limit was hit); the other pools go on.
   */
  async pause(ms: number, reason?: string, options: { pool?: string } = {}): Promise<{ pausedUntilMs: number }> {
    if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0 || ms > PAUSE_MS_MAX) throw new InvalidArgumentError('ms', ms, `a pause of 0 to ${PAUSE_MS_MAX} ms`);
    await this.ready();
    const pool = options.pool === undefined ? '' : await this.#poolInForce(options.pool);
    const reply = await this.#runner.run((scripts, epoch) => scripts.pause(epoch, Math.ceil(ms), pool ?? ''));
    const { pausedUntilMs, nowMs: atMs } = reply;
    this.#reader.schedulePump(pausedUntilMs, atMs);
    this.emit('paused', { pausedUntilMs, atMs, reason });
    return { pausedUntilMs };
  }

  /**
   * Ends a fleet-wide pause now (an operator's override of {@link pause}), and every pool's; with
   * `pool`, that pool's pause only. Waiters it held are granted at once.
   * @returns the Redis time the pause would have ended at, 0 when there was none.
   */
  async resume(options: { pool?: string } = {}): Promise<{ pausedUntilMs: number }> {
    await this.ready();
    const pool = options.pool === undefined ? '' : await this.#poolInForce(options.pool);
    const reply = await this.#runner.run((scripts, epoch) => scripts.resume(epoch, pool ?? ''), this.#core.latePumped);
    this.#reader.afterPump(reply.pumped);
    return { pausedUntilMs: reply.pausedUntilMs };
  }

  /**
   * Lowers buckets to what the upstream reports as remaining (its rate-limit headers); never raises one.
   * `resetMs` is accepted for the record; the bucket's own refill rate governs recovery. `pool`: the
   * pool the answer came from (its dimensions named as `acquire` names them).
   */
  async observe(remaining: Readonly<Record<string, { remaining: number; resetMs?: number }>>, options: { pool?: string } = {}): Promise<void> {
    await this.ready();
    const pool = options.pool === undefined ? undefined : await this.#poolInForce(options.pool);
    const pairs: Array<readonly [string, number]> = [];
    for (const [dimension, value] of Object.entries(remaining)) {
      const name = poolDimension(pool, dimension);
      if (this.#fleet.buckets.has(name) && Number.isFinite(value.remaining) && value.remaining >= 0) pairs.push([name, value.remaining]);
    }
    if (pairs.length === 0) return;
    await this.#runner.run((scripts, epoch) => scripts.observe(epoch, pairs));
  }

  /** Sets the effective concurrency limit (clamped to 1…configured), fleet-wide; a raise admits waiters at once. */
  async setConcurrency(concurrency: number): Promise<number> {
    if (!Number.isSafeInteger(concurrency)) throw new InvalidArgumentError('concurrency', concurrency, 'an integer');
    await this.ready();
    // the fleet's limits decide (a process that omits concurrency runs with the fleet's)
    if (this.#fleet.state?.limits.concurrency === null)
      throw new InvalidArgumentError('concurrency', concurrency, `a limiter with a concurrency limit to set (limiter ${this.name} has none)`);
    const reply = await this.#runner.run((scripts, epoch) => scripts.setConcurrency(epoch, concurrency), this.#core.latePumped);
    this.#reader.afterPump(reply.pumped);
    return reply.effective;
  }

  /** The fleet-wide state, read in one script. */
  async snapshot(): Promise<LimiterSnapshot> {
    await this.ready();
    const reply = await this.#runner.run((scripts, epoch) => scripts.snapshot(epoch, SNAPSHOT_LEASES_MAX));
    return reply.snapshot;
  }

  /** Permits this process holds now. */
  get heldCount(): number {
    return this.#leases.count;
  }

  /**
   * Stops timers and the grant reader, gives up this process's waiters, releases the permits it
   * holds (best effort: what cannot be released expires by itself) and closes the connections it
   * opened. A Redis client passed in by the caller is left open.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#leases.stop();
    this.#reader.stop();
    await Promise.all([this.#waiters.closeAll(), ...this.#leases.releaseAll()]);
    if (this.#runner.loaded) await this.#runner.withTimeout(this.#redis.zrem(this.#keys.owners, this.ownerId)).catch(() => {});
    this.#reader.disconnect();
    if (this.#ownsConnection) this.#redis.disconnect();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // ---- internals ----

  /**
   * {@link #checkPool}, once more after reading the fleet's limits when it fails: an apply that changed the pools
   * reaches this process with its next heartbeat, and a call made in between is not refused for that.
   */
  #poolInForce(pool: string | undefined): string | undefined | Promise<string | undefined> {
    try {
      return this.#checkPool(pool); // the usual call: answered at once, no promise
    } catch (error) {
      return this.#readFleetLimits(error).then(() => this.#checkPool(pool));
    }
  }

  /**
   * Reads the fleet's limits from Redis now (rather than at the next heartbeat) and runs with them.
   * @throws {@link LimiterUnavailableError} when Redis does not answer in time; `refused` when it has no limits.
   */
  async #readFleetLimits(refused: unknown): Promise<void> {
    let fields: Array<string | null>;
    try {
      fields = await this.#runner.withTimeout(this.#redis.hmget(this.#keys.config, 'version', 'limits', 'limitsHash'));
    } catch (error) {
      throw this.#runner.unavailable(error);
    }
    const [version, json, hash] = fields;
    if (!version || !json) throw refused;
    this.#fleet.adopt(version, json, hash ?? undefined);
  }

  /** The pool an acquire (pause, observe) names, checked against the pools in force: required with pools, refused without. */
  #checkPool(pool: string | undefined): string | undefined {
    const pools = this.#fleet.pools;
    if (pools === undefined) {
      if (pool !== undefined) throw new InvalidArgumentError('pool', pool, `no pool (limiter ${this.name} has no pools)`);
      return undefined;
    }
    if (pool === undefined || !pools.includes(pool)) throw new InvalidArgumentError('pool', pool, `one of the pools of limiter ${this.name} (${pools.join(', ')})`);
    return pool;
  }

  /**
   * The cost by the buckets' names in Redis (`<pool>/<dimension>` in a pool), with the implied request, checked against
   * the fleet's buckets; and the amount of each budget of `group` (`~<group>/<bucket>`: the cost's amount of the
   * budget's dimension, 1 for `requests`).
   */
  #normalizeCost(pool: string | undefined, input: Cost | undefined, group: string): Cost {
    const buckets = this.#fleet.buckets;
    const budgets = this.#fleet.groupBudgets(group);
    const cost: Record<string, number> = {};
    const requests = poolDimension(pool, REQUESTS_DIMENSION);
    if (buckets.has(requests)) cost[requests] = 1;
    const ownRates = pool === undefined ? this.options.rates : this.options.pools?.[pool];
    for (const [dimension, amount] of Object.entries(input ?? {})) {
      const name = poolDimension(pool, dimension);
      const bucket = buckets.get(name);
      const budgeted = budgets.some((budget) => budget.source === dimension); // only a budget may count it (checked below)
      if (bucket === undefined && (budgeted || ownRates?.[dimension] !== undefined)) continue; // this process's own rate, which the fleet does not limit
      if (bucket === undefined) {
        const configured = pool === undefined ? [...buckets.keys()] : this.poolDimensions(pool);
        throw new InvalidCostError(
          `limiter ${this.name}: cost names ${formatValue(dimension)}, which is not a configured rate${pool === undefined ? '' : ` of pool ${pool}`} (${configured.join(', ') || 'none'})`,
        );
      }
      if (!Number.isFinite(amount) || amount < 0) throw new InvalidCostError(`limiter ${this.name}: cost of "${dimension}" must be a number ≥ 0, got ${formatValue(amount)}`);
      if (amount > bucket.capacityTokens) throw new CostExceedsCapacityError(this.name, name, amount, bucket.capacityTokens);
      cost[name] = amount;
    }
    for (const budget of budgets) {
      const amount = budget.source === REQUESTS_DIMENSION ? 1 : (input?.[budget.source] ?? 0);
      if (!Number.isFinite(amount) || amount < 0) throw new InvalidCostError(`limiter ${this.name}: cost of "${budget.source}" must be a number ≥ 0, got ${formatValue(amount)}`);
      // more than the whole budget: no refill will ever cover it
      if (amount > budget.capacityTokens) throw new CostExceedsCapacityError(this.name, budget.dimension, amount, budget.capacityTokens);
      cost[budget.dimension] = amount;
    }
    return cost;
  }

  #redisError(error: Error): void {
    if (this.listenerCount('redisError') > 0) this.emit('redisError', error);
  }

  #warnOnEviction(): void {
    if (!(this.#redis instanceof Redis)) return;
    this.#runner
      .withTimeout(this.#redis.config('GET', 'maxmemory-policy'))
      .then((reply) => {
        const policy = Array.isArray(reply) ? String(reply[1]) : '';
        if (policy !== '' && policy !== 'noeviction') {
          process.emitWarning(`Redis maxmemory-policy is ${policy}: eviction could drop Tollgate's keys; use noeviction`, { code: 'TOLLGATE_EVICTION' });
        }
      })
      .catch(() => {}); // CONFIG is often disabled on managed Redis; the warning is best effort
  }
}

/**
 * Creates a limiter. Options are validated at once ({@link InvalidConfigError} names the field and
 * value); call `ready()` to connect, or let the first `acquire` do it.
 */
export function createLimiter(options: LimiterOptions): Limiter {
  return new Limiter(options);
}
