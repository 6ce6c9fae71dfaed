import { strict as assert } from 'node:assert';
import { BudgetExceededError, CostExceedsCapacityError, InvalidArgumentError, InvalidCostError } from '../errors.js';
import type { LimiterKeys } from '../keys.js';
import { canonicalLimits, limitsArgs, type FleetLimits } from '../limits.js';
import { splitGroupBucketDimension } from '../options.js';
import type { Cost } from '../permit.js';
import type { BucketSnapshot, LimiterSnapshot } from '../types.js';
import { callFunction, type RawReply, type RedisLike, type ScriptName } from './library.js';

/**
 * One typed wrapper per Lua function. Each owns its function's ARGV order and reply layout (the
 * contract in the .lua file's header) and returns a discriminated union; nothing outside this file
 * reads a raw reply by index. Status numbers are named in {@link Status}, and {@link scriptError}
 * is the one place an error status becomes a TollgateError.
 */

/** Every status number a function replies with, named once. */
const Status = {
  /** `{-1, epoch}` from any function but configure: the dataset has no epoch or a different one. */
  resync: -1,
  /** acquire: the waiter is queued. */
  queued: 0,
  /** acquire: granted now. */
  granted: 1,
  /** acquire: a re-submitted waiter that was granted already (the grant is on its way through the list). */
  grantedEarlier: 2,
  /** acquire: the cost exceeds a bucket's capacity; it can never be granted. */
  costExceedsCapacity: -2,
  /** acquire: the cost names a dimension Redis does not know. */
  dimensionNotConfigured: -3,
  /** acquire: an argument out of range (`{-4, field}`); the client's own checks should have caught it. */
  invalidArgument: -4,
  /** acquire: a budget of the waiter's group cannot cover its cost now (`{-5, dimension, retryAfterMs}`); never queued. */
  overBudget: -5,
} as const;

/** acquire's ARGV up to its timeoutMs: the fields after it may be left off when they are their defaults. */
const ACQUIRE_REQUIRED_ARGS = 5;

/** cancel's first element. */
const CancelState = { absent: 0, dequeued: 1, grantReleased: 2 } as const;

/** A grant as scripts send it: 'waiterId fence expiresAtMs grantedAtMs'. */
export interface GrantMessage {
  waiterId: string;
  fence: number;
  expiresAtMs: number;
  grantedAtMs: number;
  /** Set for 'waiterId ! dimension capacity': the waiter left the queue, its cost no longer fits a lowered capacity. */
  rejected?: { dimension: string; capacity: number };
  /** Set for 'waiterId $ ~<group>/<bucket> retryAfterMs': the waiter left the queue, its group's budget no longer covers it. */
  overBudget?: { dimension: string; retryAfterMs: number };
  /**
   * True when the reply of the caller's own call made this grant (an acquire's grant, or its own
   * pump's): no copy of it was kept in `<p>:granted`, if the waiter was submitted only once (a
   * re-submission's answer may be a grant another process's pump kept). False for a grant that came
   * by message or in a heartbeat's reply (it collects kept grants): it may be kept there.
   */
  direct?: boolean;
}

/** What every function that pumps answers: the next wake time, Redis time, and the caller's own grants. */
export interface Pumped {
  /** Redis ms at which a pump could grant more; 0: only a release can help. */
  wakeAtMs: number;
  /** Redis ms of the call; 0 when it read no clock (a release that found nobody waiting: wakeAtMs is 0 too). */
  nowMs: number;
  /** Grants to the calling process's own waiters (not pushed to its grants list). */
  ownGrants: GrantMessage[];
}

export interface Resync {
  kind: 'resync';
  /** The dataset's current epoch; '' when it has none (Redis lost its data). */
  epoch: string;
}

export type AcquireReply = { kind: 'granted'; grant: GrantMessage } | { kind: 'queued'; member: string; pumped: Pumped } | { kind: 'grantedEarlier' } | Resync;
export type ReleaseReply = { kind: 'released'; leaseWasLive: boolean; pumped: Pumped } | Resync;
export type CancelReply = { kind: 'cancelled'; state: keyof typeof CancelState; pumped: Pumped } | Resync;
export type PumpReply = { kind: 'pumped'; pumped: Pumped } | Resync;
export type HeartbeatReply =
  | {
      kind: 'renewed';
      wasAlive: boolean;
      lostPermitIds: string[];
      pumped: Pumped;
      /** The fleet limits' revision, and their JSON when it differs from the one the process sent (else ''). */
      limitsVersion: string;
      limitsJson: string;
    }
  | Resync;
export type PauseReply = { kind: 'paused'; pausedUntilMs: number; nowMs: number } | Resync;
/** `pausedUntilMs`: when the pause it ended would have ended (0: there was none). */
export type ResumeReply = { kind: 'resumed'; pausedUntilMs: number; pumped: Pumped } | Resync;
export type ObserveReply = { kind: 'observed'; lowered: number; nowMs: number } | Resync;
export type SetConcurrencyReply = { kind: 'concurrencySet'; effective: number; pumped: Pumped } | Resync;
export type SnapshotReply = { kind: 'snapshot'; snapshot: LimiterSnapshot } | Resync;
export interface ConfigureReply {
  epoch: string;
  nowMs: number;
  created: boolean;
  /** This call wrote its limits (first boot, data loss, or an apply that changed them). */
  applied: boolean;
  /** The fleet's limits in force: revision, canonical JSON, hash. */
  limitsVersion: string;
  limitsJson: string;
  limitsHash: string;
  pumped: Pumped;
  /** False when the process had been presumed dead (its mark passed): a pump may have dropped its queued waiters. */
  wasAlive: boolean;
}

export interface AcquireArgs {
  waiterId: string;
  priority: number;
  /** Server-side deadline, ms from now; 0 = none. */
  timeoutMs: number;
  /** The waiter's queue member when this is a re-submission, else ''. */
  previousMember: string;
  /** The pool it queues in ('' for a limiter without pools); its cost names only that pool's buckets. */
  pool: string;
  /** Its group ('*': none) in a limiter with groups, else ''; and the finish-tag step of the group (1000 / weight; 0 with ''). */
  group: string;
  step: number;
  cost: Cost;
}

export interface CancelArgs {
  waiterId: string;
  /** The queue entry acquire returned ('' if it never got one). */
  member: string;
  /** Refunded in full when the waiter had been granted meanwhile. */
  cost: Cost;
}

/** One dimension of a release's settlement: the bucket gets `reserved − used` back. */
export interface Settlement {
  dimension: string;
  reserved: number;
  used: number;
}

export interface ConfigureArgs {
  /** Used only when the dataset has no epoch yet. */
  newEpoch: string;
  /** 'adopt': write `limits` only when Redis has none; 'apply': write them whatever the fleet has. */
  mode: 'adopt' | 'apply';
  /** The highest fence this process has seen: a new dataset's fences continue above it. */
  fenceFloor: number;
  /** The grace pause of a dataset created after data loss (the fleet's re-registration window). */
  graceMs: number;
  limits: FleetLimits;
  /** Leases this process holds, to re-register. */
  leases: ReadonlyArray<{ permitId: string; remainingTtlMs: number }>;
  /** Also declare the database marker (single Redis; a Cluster script may touch only its own slot). */
  datasetsKey: string | undefined;
}

/** The functions of one limiter, called by one process (`ownerId`). */
export class LimiterScripts {
  readonly #redis: RedisLike;
  readonly #limiterName: string;
  readonly #ownerId: string;
  readonly #keys: readonly string[];

  constructor(redis: RedisLike, limiterName: string, keys: LimiterKeys, ownerId: string) {
    this.#redis = redis;
    this.#limiterName = limiterName;
    this.#ownerId = ownerId;
    this.#keys = keys.functionKeys;
  }

  #call(script: ScriptName, args: ReadonlyArray<string | number>, keys: readonly string[] = this.#keys): Promise<RawReply> {
    return callFunction(this.#redis, script, keys, args);
  }

  /**
   * @throws {@link CostExceedsCapacityError} / {@link InvalidCostError} for the statuses that say the
   * cost can never be granted.
   */
  async acquire(epoch: string, args: AcquireArgs): Promise<AcquireReply> {
    const argv: Array<string | number> = [epoch, this.#ownerId, args.waiterId, args.priority, args.timeoutMs, args.previousMember, args.pool, args.group, args.step];
    const cost = costArgs(args.cost);
    // no cost: the fields before it that are their defaults go too (acquire.v2.lua reads a missing one as its default)
    if (cost[0] === 0) while (argv.length > ACQUIRE_REQUIRED_ARGS && (argv.at(-1) === '' || argv.at(-1) === 0)) argv.pop();
    else argv.push(...cost);
    const raw = await this.#call('acquire', argv);
    switch (raw[0]) {
      case Status.granted:
        return { kind: 'granted', grant: { waiterId: args.waiterId, fence: integer(raw[1]), expiresAtMs: integer(raw[2]), grantedAtMs: integer(raw[3]), direct: true } };
      case Status.queued:
        return { kind: 'queued', pumped: pumpedAt(raw, 1, true), member: text(raw[4]) };
      case Status.grantedEarlier:
        return { kind: 'grantedEarlier' };
      default:
        return resyncOr(raw, () => {
          // the pools in Redis are not those this process knows (an apply changed them since it last heard)
          if (raw[0] === Status.invalidArgument && text(raw[1]) === 'pool') throw new PoolsChangedError(this.#limiterName, args.pool);
          throw scriptError('acquire', this.#limiterName, raw, args.cost);
        });
    }
  }

  /** `maybeKept`: false only when this process's own call granted the permit (GrantMessage.direct, one submission); true deletes its copy in `<p>:granted`. */
  async release(epoch: string, permitId: string, settlements: readonly Settlement[], maybeKept = true): Promise<ReleaseReply> {
    const args: Array<string | number> = [epoch, this.#ownerId, permitId, maybeKept ? '1' : '0'];
    if (settlements.length > 0) args.push(settlements.length); // none: left off (release.v2.lua reads it as 0)
    for (const entry of settlements) args.push(entry.dimension, entry.reserved, entry.used);
    const raw = await this.#call('release', args);
    return resyncOr(raw, () => ({ kind: 'released', leaseWasLive: oneOf(raw[0], [0, 1]) === 1, pumped: pumpedAt(raw, 1, true) }));
  }

  async cancel(epoch: string, args: CancelArgs): Promise<CancelReply> {
    const raw = await this.#call('cancel', [epoch, this.#ownerId, args.waiterId, args.member, ...costArgs(args.cost)]);
    return resyncOr(raw, () => ({ kind: 'cancelled', state: cancelState(raw[0]), pumped: pumpedAt(raw, 1, true) }));
  }

  async pump(epoch: string): Promise<PumpReply> {
    const raw = await this.#call('pump', [epoch, this.#ownerId]);
    return resyncOr(raw, () => ({ kind: 'pumped', pumped: pumpedAt(raw, 0, true) }));
  }

  /**
   * `knownVersion`: the limits revision this process runs with; the reply carries the fleet's JSON when it differs.
   * `waiterIds`: this process's waiters still waiting; grants kept for them (messages it missed) come back in `pumped.ownGrants`.
   */
  async heartbeat(epoch: string, knownVersion: string, permitIds: readonly string[], waiterIds: readonly string[]): Promise<HeartbeatReply> {
    const raw = await this.#call('heartbeat', [epoch, this.#ownerId, knownVersion, permitIds.length, ...permitIds, ...waiterIds]);
    return resyncOr(raw, () => ({
      kind: 'renewed',
      wasAlive: oneOf(raw[0], [0, 1]) === 1,
      pumped: pumpedAt(raw, 1, false), // its grants include those collected from <p>:granted
      lostPermitIds: list(raw[4]).map(text),
      limitsVersion: text(raw[5]),
      limitsJson: text(raw[6]),
    }));
  }

  /** `pool`: '' pauses the whole limiter (every pool); a pool's name, that pool only. */
  async pause(epoch: string, pauseMs: number, pool: string): Promise<PauseReply> {
    const raw = await this.#call('pause', [epoch, pauseMs, pool]);
    return resyncOr(raw, () => {
      if (raw[0] === Status.invalidArgument) throw new InvalidArgumentError('pool', pool, `a pool of limiter ${this.#limiterName} (Redis does not know it)`);
      return { kind: 'paused', pausedUntilMs: integer(raw[0]), nowMs: integer(raw[1]) };
    });
  }

  /** `pool`: '' ends the limiter's pause and every pool's; a pool's name, that pool's only. */
  async resume(epoch: string, pool: string): Promise<ResumeReply> {
    const raw = await this.#call('resume', [epoch, this.#ownerId, pool]);
    return resyncOr(raw, () => ({ kind: 'resumed', pausedUntilMs: integer(raw[0]), pumped: pumpedAt(raw, 1, true) }));
  }

  /** `remaining`: (dimension, remaining) pairs; unknown dimensions are ignored by the script. */
  async observe(epoch: string, remaining: ReadonlyArray<readonly [string, number]>): Promise<ObserveReply> {
    const raw = await this.#call('observe', [epoch, remaining.length, ...remaining.flat()]);
    return resyncOr(raw, () => ({ kind: 'observed', lowered: integer(raw[0]), nowMs: integer(raw[1]) }));
  }

  async setConcurrency(epoch: string, concurrency: number): Promise<SetConcurrencyReply> {
    const raw = await this.#call('set_concurrency', [epoch, this.#ownerId, concurrency]);
    return resyncOr(raw, () => ({ kind: 'concurrencySet', effective: integer(raw[0]), pumped: pumpedAt(raw, 1, true) }));
  }

  async snapshot(epoch: string, leasesMax: number): Promise<SnapshotReply> {
    const raw = await this.#call('snapshot', [epoch, leasesMax]);
    return resyncOr(raw, () => ({ kind: 'snapshot', snapshot: decodeSnapshot(raw) }));
  }

  async configure(args: ConfigureArgs): Promise<ConfigureReply> {
    const { json, hash } = canonicalLimits(args.limits);
    const raw = await this.#call(
      'configure',
      [
        args.newEpoch,
        args.mode,
        this.#ownerId,
        args.fenceFloor,
        args.graceMs,
        json,
        hash,
        ...limitsArgs(args.limits),
        ...args.leases.flatMap((lease) => [lease.permitId, lease.remainingTtlMs]),
      ],
      args.datasetsKey === undefined ? this.#keys : [...this.#keys, args.datasetsKey],
    );
    return {
      epoch: text(raw[0]),
      nowMs: integer(raw[1]),
      created: oneOf(raw[2], [0, 1]) === 1,
      applied: oneOf(raw[3], [0, 1]) === 1,
      limitsVersion: text(raw[4]),
      limitsJson: text(raw[5]),
      limitsHash: text(raw[6]),
      pumped: pumpedAt(raw, 7, true),
      wasAlive: oneOf(raw[10], [0, 1]) === 1,
    };
  }
}

/**
 * The fleet's pools (or a pool's dimensions) changed since this process read them: Redis refused an acquire's pool, or
 * an apply rejected a queued waiter whose pool or dimension it removed. The limiter reads the limits and, when the call
 * still fits them, queues it again.
 */
export class PoolsChangedError extends InvalidArgumentError {
  constructor(limiterName: string, pool: string) {
    super('pool', pool === '' ? undefined : pool, `a pool of limiter ${limiterName} as the fleet's limits in Redis have it (they changed since this process read them)`);
  }
}

/** A budget's refusal, from its dimension in Redis (`~<group>/<bucket>`). */
export function budgetExceeded(limiterName: string, dimension: string, retryAfterMs: number): BudgetExceededError {
  const named = splitGroupBucketDimension(dimension);
  if (named === undefined) throw contractBroken(`a budget refusal names ${dimension}, not a group's budget`);
  return new BudgetExceededError(limiterName, named.group, named.bucket, retryAfterMs);
}

/** The one place a function's error status (or an unknown one) becomes an error. */
function scriptError(script: ScriptName, limiterName: string, raw: RawReply, cost: Cost): Error {
  switch (raw[0]) {
    case Status.costExceedsCapacity: {
      const dimension = text(raw[1]);
      return new CostExceedsCapacityError(limiterName, dimension, cost[dimension] ?? 0, Number(text(raw[2])));
    }
    case Status.dimensionNotConfigured:
      return new InvalidCostError(`limiter ${limiterName}: dimension "${text(raw[1])}" is not configured in Redis`);
    case Status.invalidArgument:
      return new InvalidCostError(`limiter ${limiterName}: Redis refused the ${script}'s ${text(raw[1])} as out of range`);
    case Status.overBudget:
      return budgetExceeded(limiterName, text(raw[1]), integer(raw[2]));
    default:
      return contractBroken(`${script} replied with an unknown status: ${JSON.stringify(raw)}`); // our contract is broken
  }
}

/** `{-1, epoch}` (exactly two elements) is a resync; anything else is decoded by `decode`. */
function resyncOr<T>(raw: RawReply, decode: () => T): T | Resync {
  if (raw[0] === Status.resync && raw.length === 2) return { kind: 'resync', epoch: text(raw[1]) };
  return decode();
}

/**
 * The `…, wakeAtMs, nowMs, {ownGrant…}` part of a reply, starting at index `at`. `direct`: the grants
 * are only those of the caller's own pump (every function but heartbeat), none kept in `<p>:granted`.
 */
function pumpedAt(raw: RawReply, at: number, direct: boolean): Pumped {
  return { wakeAtMs: integer(raw[at]), nowMs: integer(raw[at + 1]), ownGrants: list(raw[at + 2]).map((message) => parseGrant(text(message), direct)) };
}

function decodeSnapshot(raw: RawReply): LimiterSnapshot {
  const hasConcurrency = integer(raw[2]) > 0;
  const bucketOf = (entry: RawReply[number]): [string, BucketSnapshot] => {
    const [dimension, tokens, capacity, refillPerMs] = list(entry).map(text);
    return [dimension ?? '', { tokens: Number(tokens), capacity: Number(capacity), refillPerSecond: Number(refillPerMs) * 1000 }];
  };
  const buckets = Object.fromEntries(list(raw[6]).map(bucketOf));
  const budgets: Record<string, Record<string, BucketSnapshot>> = {};
  for (const [dimension, bucket] of list(raw[9]).map(bucketOf)) {
    const named = splitGroupBucketDimension(dimension);
    if (named === undefined) throw contractBroken(`snapshot lists ${dimension} as a group's budget`);
    (budgets[named.group] ??= {})[named.bucket] = bucket;
  }
  return {
    nowMs: integer(raw[0]),
    inFlight: integer(raw[1]),
    concurrency: hasConcurrency ? integer(raw[3]) : null,
    concurrencyConfigured: hasConcurrency ? integer(raw[2]) : null,
    waiting: integer(raw[4]),
    buckets,
    pausedUntilMs: integer(raw[5]),
    leases: list(raw[7]).map((entry) => {
      const [id, expiresAtMs] = list(entry);
      return { id: text(id), expiresAtMs: integer(expiresAtMs) };
    }),
    pools: Object.fromEntries(
      list(raw[8]).map((entry) => {
        const [pool, pausedUntilMs, waiting] = list(entry);
        return [text(pool), { pausedUntilMs: integer(pausedUntilMs), waiting: integer(waiting) }];
      }),
    ),
    budgets,
  };
}

function cancelState(value: RawReply[number] | undefined): keyof typeof CancelState {
  const state = oneOf(value, Object.values(CancelState));
  return (Object.keys(CancelState) as Array<keyof typeof CancelState>).find((key) => CancelState[key] === state) ?? 'absent';
}

/** Flattens a cost into (dimension, amount) ARGV pairs, prefixed with their count. */
function costArgs(cost: Cost): Array<string | number> {
  const entries = Object.entries(cost);
  return [entries.length, ...entries.flat()];
}

// ---- reply parsing: assertions guard the contract of each script's header ----

/** The fence field of a message that rejects its waiter: 'waiterId ! dimension capacity'. */
const REJECTED = '!';
/** The fence field of a message that rejects its waiter for its group's budget: 'waiterId $ ~<group>/<bucket> retryAfterMs'. */
const OVER_BUDGET = '$';

/** Parses a grant (or rejection) message, from a reply (`direct`: see GrantMessage.direct) or from the grants channel. */
export function parseGrant(message: string, direct = false): GrantMessage {
  const [waiterId, fence, expiresAtMs, grantedAtMs] = message.split(' ');
  if (waiterId === undefined || fence === undefined || expiresAtMs === undefined || grantedAtMs === undefined) throw contractBroken(`bad grant message ${message}`);
  if (fence === REJECTED) return { waiterId, fence: 0, expiresAtMs: 0, grantedAtMs: 0, rejected: { dimension: expiresAtMs, capacity: Number(grantedAtMs) } };
  if (fence === OVER_BUDGET) return { waiterId, fence: 0, expiresAtMs: 0, grantedAtMs: 0, overBudget: { dimension: expiresAtMs, retryAfterMs: integer(Number(grantedAtMs)) } };
  const grant = { waiterId, fence: Number(fence), expiresAtMs: Number(expiresAtMs), grantedAtMs: Number(grantedAtMs), direct };
  if (!Number.isSafeInteger(grant.fence) || !Number.isSafeInteger(grant.expiresAtMs) || !Number.isSafeInteger(grant.grantedAtMs))
    throw contractBroken(`bad grant message ${message}`);
  return grant;
}

/**
 * A reply that breaks its script's contract. The checks below build their message only when they
 * fail: they run for every field of every reply.
 */
function contractBroken(message: string): assert.AssertionError {
  return new assert.AssertionError({ message });
}

function integer(value: RawReply[number] | undefined): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) throw contractBroken(`expected an integer in a script reply, got ${String(value)}`);
  return value;
}

function oneOf(value: RawReply[number] | undefined, allowed: readonly number[]): number {
  const number = integer(value);
  if (!allowed.includes(number)) throw contractBroken(`expected one of ${allowed.join(', ')} in a script reply, got ${number}`);
  return number;
}

function text(value: RawReply[number] | undefined): string {
  if (typeof value !== 'string') throw contractBroken(`expected a string in a script reply, got ${String(value)}`);
  return value;
}

function list(value: RawReply[number] | undefined): RawReply {
  if (!Array.isArray(value)) throw contractBroken(`expected an array in a script reply, got ${String(value)}`);
  return value as RawReply;
}
