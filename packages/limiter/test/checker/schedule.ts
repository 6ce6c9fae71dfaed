import { seededRandom } from '@tollgate/test-support';
import type { AcquireSpec, CheckerLimits } from './protocol.js';

/** Every fault the checker injects (DESIGN §10). */
export const FAULT_KINDS = ['stall', 'pauseWrites', 'flushall', 'freeze', 'restartKeep', 'restartEmpty', 'killProcess'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export type ScheduledOp =
  | ({ kind: 'acquire'; atMs: number } & AcquireSpec)
  /** `pool`: pause that pool only (a limiter with pools). */
  | { kind: 'pause'; atMs: number; client: number; ms: number; pool?: string | undefined }
  | { kind: 'setConcurrency'; atMs: number; client: number; concurrency: number }
  | { kind: 'apply'; atMs: number; client: number; limits: CheckerLimits }
  /**
   * `newProcess`: after a data loss, kill -9 `process` and start a new one at once (old and new processes).
   * `fleetFreeze` (freeze only): freeze every process, FLUSHALL, start a new process in place of
   * `process`, and resume the others after `durationMs` (shorter than a lease): the new process is
   * the first to see the empty dataset while the old ones hold permits.
   */
  | { kind: 'fault'; atMs: number; fault: FaultKind; durationMs: number; process: number; newProcess: boolean; fleetFreeze: boolean };

/**
 * Parts of the mix a run may leave out, to look past a known bug: the PRNG draws them anyway, so
 * every other operation keeps its arguments and time.
 */
export const OMITTABLE = ['limitChanges', 'absurdTimeouts', 'aborts'] as const;
export type Omittable = (typeof OMITTABLE)[number];

export interface ScheduleOptions {
  seed: number;
  operations: number;
  processes: number;
  clientsPerProcess: number;
  limits: CheckerLimits;
  leaseTtlMs: number;
  /** Fault kinds to draw from; none: no faults. */
  faults: readonly FaultKind[];
  /** Mean time between two operations. */
  meanGapMs: number;
  without: readonly Omittable[];
}

/** Largest cost of one acquire; every capacity an apply chooses is at least this, or below it on purpose. */
export const TOKENS_COST_MAX = 12;
/** Capacities an apply may choose (10 is below the largest cost: a queued waiter may no longer fit). */
const APPLY_TOKEN_LIMITS = [10, 40, 60, 120] as const;
/** Quiet time after one fault ends before the next may start, so faults rarely pile up unseen. */
const FAULT_GAP_MS = 150;
/** Seed of the second PRNG stream (any odd constant). */
const EXTRA_STREAM = 0x9e3779b9;
/** Seed of the third stream: the pool choices (a run without pools draws none, and keeps its schedule). */
const POOLS_STREAM = 0x85ebca6b;
/** Pool counts an apply may move a limiter with pools to (0: no pools). */
const APPLY_POOL_COUNTS = [0, 2, 3] as const;
/** Share of applies (of a run that starts with pools) that change the pools. */
const APPLY_POOLS_CHANGE = 0.3;
/** Seed of the fourth stream: whether an apply turns fair share between groups on or off. */
const GROUPS_STREAM = 0xc2b2ae35;
/** Share of applies that turn groups on or off while waiters are queued (their scores change kind: arrival order, fair tags). */
const APPLY_GROUPS_FLIP = 0.2;
/** Share of pauses (with pools) that pause one pool rather than the whole limiter. */
const POOL_PAUSE_SHARE = 0.5;
/** Share of data losses followed at once by a brand-new process. */
const NEW_PROCESS_AFTER_DATA_LOSS = 0.5;
/** Share of freezes that freeze the whole fleet around a data loss and a new process, and how long. */
const FLEET_FREEZE_SHARE = 0.4;
const FLEET_FREEZE_MS_MIN = 150;
const FLEET_FREEZE_MS_MAX = 380;
/** Share of acquires whose caller holds the permit long (LONG_HOLD_MS_MIN..MAX). */
const LONG_HOLD_SHARE = 0.1;
const LONG_HOLD_MS_MIN = 300;
const LONG_HOLD_MS_MAX = 2_500;
/** Out-of-range deadlines a caller might send (DESIGN §10: absurd `timeoutMs` values). */
const ABSURD_TIMEOUTS_MS = [2 ** 31 + 5, 1e14] as const;

/**
 * The whole run, drawn from one seeded PRNG before anything starts: the same seed gives the same
 * operations with the same arguments at the same offsets, whatever the timing of the run itself.
 */
export function makeSchedule(options: ScheduleOptions): ScheduledOp[] {
  const random = seededRandom(options.seed);
  // choices added after schedules were first published come from a second stream, so a seed keeps its schedule
  const extra = seededRandom(options.seed ^ EXTRA_STREAM);
  const poolsRandom = seededRandom(options.seed ^ POOLS_STREAM);
  const groupsRandom = seededRandom(options.seed ^ GROUPS_STREAM);
  let groups = options.limits.groups;
  const withPools = options.limits.pools > 0;
  let pools = options.limits.pools; // as the schedule last set them; a call may meet older ones (refused: a TollgateError)
  const drawPool = () => (pools === 0 ? undefined : `p${Math.floor(poolsRandom() * pools)}`);
  const int = (min: number, max: number) => min + Math.floor(random() * (max - min + 1));
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
  const clients = options.processes * options.clientsPerProcess;
  const ops: ScheduledOp[] = [];
  let atMs = 0;
  let nextFaultAt = 500; // let every process settle in first
  for (let index = 0; index < options.operations; index++) {
    atMs += Math.round(random() * 2 * options.meanGapMs);
    const client = int(0, clients - 1);
    const roll = random();
    if (roll < 0.15 && options.faults.length > 0 && atMs >= nextFaultAt) {
      const fault = pick(options.faults);
      const durationMs = faultDuration(fault, options.leaseTtlMs, int);
      const newProcess = (fault === 'flushall' || fault === 'restartEmpty') && extra() < NEW_PROCESS_AFTER_DATA_LOSS;
      const fleetFreeze = fault === 'freeze' && extra() < FLEET_FREEZE_SHARE;
      const fleetFreezeMs = FLEET_FREEZE_MS_MIN + Math.floor(extra() * (FLEET_FREEZE_MS_MAX - FLEET_FREEZE_MS_MIN));
      ops.push({ kind: 'fault', atMs, fault, durationMs: fleetFreeze ? fleetFreezeMs : durationMs, process: int(0, options.processes - 1), newProcess, fleetFreeze });
      nextFaultAt = atMs + durationMs + FAULT_GAP_MS;
    } else if (roll < 0.17) {
      const ms = int(20, 500);
      const pool = withPools && poolsRandom() < POOL_PAUSE_SHARE ? drawPool() : undefined;
      ops.push({ kind: 'pause', atMs, client, ms, ...(pool === undefined ? {} : { pool }) });
    } else if (roll < 0.22) {
      const concurrency = int(1, options.limits.concurrency + 1);
      if (!options.without.includes('limitChanges')) ops.push({ kind: 'setConcurrency', atMs, client, concurrency });
    } else if (roll < 0.25) {
      const limits = { ...options.limits, concurrency: int(1, options.limits.concurrency + 2), tokensLimit: pick(APPLY_TOKEN_LIMITS) };
      // with pools, some applies add, remove or drop every pool while waiters are queued in them
      if (withPools) limits.pools = poolsRandom() < APPLY_POOLS_CHANGE ? APPLY_POOL_COUNTS[Math.floor(poolsRandom() * APPLY_POOL_COUNTS.length)]! : pools;
      limits.groups = groupsRandom() < APPLY_GROUPS_FLIP ? !groups : groups;
      if (!options.without.includes('limitChanges')) {
        ops.push({ kind: 'apply', atMs, client, limits });
        pools = limits.pools;
        groups = limits.groups;
      }
    } else {
      const tokens = int(0, TOKENS_COST_MAX);
      const deadline = random();
      const absurd = pick(ABSURD_TIMEOUTS_MS);
      const timeoutMs = deadline < 0.55 ? int(20, 1_500) : deadline < 0.57 && !options.without.includes('absurdTimeouts') ? absurd : undefined;
      const abort = random();
      const abortAt = int(1, 800);
      const drawn = abort < 0.08 ? 0 : abort < 0.16 ? Math.ceil(abortAt / 80) : abort < 0.26 ? abortAt : undefined;
      const abortAfterMs = options.without.includes('aborts') ? undefined : drawn;
      const use = random();
      const used = use < 0.3 ? undefined : use < 0.45 ? 0 : int(0, tokens + 4);
      const shortHoldMs = int(2, 150);
      // some holds outlast a heartbeat or the lease: old processes still hold permits when Redis loses its data
      const holdMs = extra() < LONG_HOLD_SHARE ? LONG_HOLD_MS_MIN + Math.floor(extra() * (LONG_HOLD_MS_MAX - LONG_HOLD_MS_MIN)) : shortHoldMs;
      const pool = drawPool();
      ops.push({ kind: 'acquire', atMs, client, ...(pool === undefined ? {} : { pool }), tokens, priority: int(0, 9), timeoutMs, abortAfterMs, holdMs, used });
    }
  }
  return ops;
}

/** Half of the stalls and freezes are short (past redisTimeoutMs, within the lease), half run past the lease. */
function faultDuration(fault: FaultKind, leaseTtlMs: number, int: (min: number, max: number) => number): number {
  const long = int(0, 1) === 1;
  switch (fault) {
    case 'stall':
      return long ? int(leaseTtlMs / 2, leaseTtlMs + 500) : int(150, 500);
    case 'pauseWrites':
      return int(150, 800);
    case 'freeze':
      return long ? int(leaseTtlMs, 2 * leaseTtlMs) : int(200, 800);
    case 'restartKeep':
    case 'restartEmpty':
      return 600; // about how long a restart takes; the driver waits for it anyway
    case 'flushall':
    case 'killProcess':
      return 100;
  }
}
