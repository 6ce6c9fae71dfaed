/**
 * The five invariants of DESIGN §10, checked after a run from what the witnesses recorded: the
 * callers' own stamps (when each held a permit, when its signal aborted) and the witness server's
 * calls, all on one monotonic clock. Nothing here asks the limiter what it thinks happened, except
 * a permit's `fence` and `grantedAtMs` (Redis TIME of the grant), which are what is being checked.
 *
 * Tolerances, each a named constant below:
 * - SCHEDULING_SLACK_MS: how late a timer or an IPC message may run on a busy 2-core machine.
 * - The frozen-process window (G7): a permit whose lease was lost may still be held by its caller
 *   for one heartbeat (+ slack) after Redis dropped the lease; so a lost permit counts as live only
 *   until one heartbeat + slack before its signal aborted (or its work ended), and a permit of a
 *   process frozen by SIGSTOP long enough to lose its lease (freezeMayLoseLease) does not count from
 *   the stop until one heartbeat + slack after SIGCONT; a shorter freeze is no excuse.
 *   A permit whose signal aborts later than that overlaps what Redis granted meanwhile: a violation.
 *   The heartbeat is one of the process's running time: time it spent frozen inside that window
 *   (a short SIGSTOP followed by a CLIENT PAUSE that held its renewals) does not count.
 * - CLOCK_SLACK_MS: Redis TIME (ms, floored) mapped onto the monotonic clock through an offset
 *   measured at start (min round trip).
 * - Limit changes take effect at an unknown moment between the call and its answer: the larger of
 *   the old and new limit applies in between; a change whose answer was lost keeps both until the
 *   next answered change. After Redis lost its data the effective concurrency may be back at the
 *   applied (configured) one.
 * - Tokens: data loss refills the buckets, so token windows never span one. Refunds count once,
 *   in every window their release could have run in (capped refunds only make the bound looser).
 */
import { CHECKER_BUDGET, groupOf } from './limits.js';
import type { AcquireSpec, CheckerTimings, ErrorInfo } from './protocol.js';
import type { WitnessCall } from './witness-server.js';

export const SCHEDULING_SLACK_MS = 500;
export const CLOCK_SLACK_MS = 5;
/** Steps of the search for a moment of running time before another (each step adds the frozen windows it reaches). */
const FROZEN_STEPS_MAX = 8;
/** Violations reported per invariant (and per witness); the rest are counted. */
const VIOLATIONS_SHOWN_MAX = 5;

export type InvariantId = 1 | 2 | 3 | 4 | 5;
export const INVARIANT_NAMES: Record<InvariantId, string> = {
  1: 'concurrency (live permits ≤ limit)',
  2: 'every acquire settles in time',
  3: 'nothing leaks after the faults stop',
  4: 'tokens granted ≤ capacity + refill·Δ',
  5: 'fences rise strictly',
};

export interface Violation {
  invariant: InvariantId;
  /** Monotonic ms of the violation (for the trace). */
  atMs: number;
  message: string;
  /** The acquire operations involved. */
  ops: number[];
  /** Invariant 1 is checked from two witnesses: which one saw it. */
  witness?: 'callers' | 'server' | undefined;
}

/** One acquire: what was asked, and what its caller saw. */
export interface AcquireRecord extends AcquireSpec {
  op: number;
  /** The process (slot and generation), e.g. 'p1.0'. */
  proc: string;
  calledAt?: number | undefined;
  settledAt?: number | undefined;
  abortedAt?: number | undefined;
  outcome?: 'granted' | 'rejected' | undefined;
  error?: ErrorInfo | undefined;
  permitId?: string | undefined;
  fence?: number | undefined;
  grantedAtMs?: number | undefined;
  /** Its cost was charged to its group's budget. */
  budgeted?: boolean | undefined;
  lostAt?: number | undefined;
  endedAt?: number | undefined;
  release?: { calledAt: number; settledAt: number; leaseLost?: boolean | undefined; error?: ErrorInfo | undefined };
  /** The process was killed (kill -9) at this time. */
  killedAt?: number | undefined;
}

/** A value in force from `from` until `to` (undefined: still in force at the end). */
export interface Segment<T> {
  from: number;
  to: number | undefined;
  value: T;
}

export interface TokenLimit {
  capacity: number;
  refillPerMs: number;
}

export interface DrainResult {
  /** Faults over, every caller done and every release answered. */
  quietAt: number;
  /** When no live lease was left in Redis; undefined if that never happened. */
  zeroAt: number | undefined;
  /** Live leases at the end of the wait. */
  inFlightLeft: number;
  fresh: Array<{ proc?: string | undefined; calledAt: number; settledAt: number | undefined; granted: boolean; error?: ErrorInfo | undefined }>;
  /** What Redis still held when something was left over (live leases, queued waiters), for the trace. */
  leftover: string[];
}

export interface History {
  timings: CheckerTimings;
  /** redisMs = monotonicMs + redisOffsetMs */
  redisOffsetMs: number;
  acquires: readonly AcquireRecord[];
  witnessCalls: readonly WitnessCall[];
  /** Witness calls are matched to their acquire by op. SIGSTOP windows, and windows a process did not run (it used no CPU): alike for every invariant. */
  frozen: ReadonlyArray<{ proc: string; from: number; to: number }>;
  concurrency: ReadonlyArray<Segment<number>>;
  tokens: ReadonlyArray<Segment<TokenLimit>>;
  /** When Redis lost its data (between the call and its answer). */
  dataLoss: ReadonlyArray<{ from: number; to: number }>;
  drain: DrainResult | undefined;
}

export interface InvariantReport {
  violations: Violation[];
  /** Violations per invariant, including those not shown. */
  counts: Record<InvariantId, number>;
}

export function checkInvariants(history: History): InvariantReport {
  const all = [...checkConcurrency(history), ...checkSettling(history), ...checkDrain(history), ...checkTokens(history), ...checkBudgets(history), ...checkFences(history)];
  const counts: Record<InvariantId, number> = { 1: 0, 2: 0, 3: 0, 4: 0, 5: 0 };
  const violations: Violation[] = [];
  const shown = new Map<string, number>();
  for (const violation of all) {
    counts[violation.invariant]++;
    const key = `${violation.invariant}${violation.witness ?? ''}`;
    shown.set(key, (shown.get(key) ?? 0) + 1);
    if ((shown.get(key) ?? 0) <= VIOLATIONS_SHOWN_MAX) violations.push(violation);
  }
  return { violations, counts };
}

/** The largest value in force at any moment of [from, to]; -Infinity when none. */
export function maxIn<T>(segments: ReadonlyArray<Segment<T>>, from: number, to: number, value: (item: T) => number): number {
  let best = Number.NEGATIVE_INFINITY;
  for (const segment of segments) {
    if (segment.from <= to && (segment.to === undefined || segment.to >= from)) best = Math.max(best, value(segment.value));
  }
  return best;
}

/** The permit's grant on the monotonic clock, kept within what the caller saw. */
function grantTime(record: AcquireRecord, offsetMs: number): number {
  const settled = record.settledAt ?? 0;
  if (record.grantedAtMs === undefined) return settled;
  return Math.min(settled, Math.max(record.calledAt ?? settled, record.grantedAtMs - offsetMs));
}

function leaseWasLost(record: AcquireRecord): boolean {
  return record.lostAt !== undefined || record.release?.leaseLost === true || record.release?.error !== undefined;
}

/**
 * The shortest freeze that may cost a process its leases: its last renewal was up to one heartbeat
 * (+ slack) before the stop, the next one up to one heartbeat after SIGCONT. A shorter freeze is no
 * excuse (DESIGN §1: the exception is a process frozen longer than its lease).
 */
export function freezeMayLoseLease(timings: CheckerTimings): number {
  return timings.leaseTtlMs - 2 * timings.heartbeatMs - SCHEDULING_SLACK_MS;
}

/** Cuts [from, to) into the pieces outside the process's frozen windows (each widened by the G7 window). */
function outsideFrozen(history: History, proc: string, from: number, to: number): Array<[number, number]> {
  const g7 = history.timings.heartbeatMs + SCHEDULING_SLACK_MS;
  let pieces: Array<[number, number]> = [[from, to]];
  for (const window of history.frozen) {
    if (window.proc !== proc || window.to - window.from < freezeMayLoseLease(history.timings)) continue;
    const cutFrom = window.from;
    const cutTo = window.to + g7;
    pieces = pieces.flatMap(([a, b]): Array<[number, number]> => {
      if (b <= cutFrom || a >= cutTo) return [[a, b]];
      const kept: Array<[number, number]> = [];
      if (a < cutFrom) kept.push([a, cutFrom]);
      if (b > cutTo) kept.push([cutTo, b]);
      return kept;
    });
  }
  return pieces.filter(([a, b]) => b > a);
}

/**
 * The moment `ms` of the process's own running time before `to`: time it spent frozen does not
 * count. G7 (a lost lease aborts its work within one heartbeat) is a bound on what the process does
 * while it runs; a process stopped meanwhile, even for less than it takes to lose a lease by itself
 * (a short SIGSTOP, then a CLIENT PAUSE that holds its renewals), learns of the loss that much later.
 */
function runningTimeBefore(history: History, proc: string, to: number, ms: number): number {
  let from = to - ms;
  for (let step = 0; step < FROZEN_STEPS_MAX; step++) {
    const next = to - ms - frozenDuring(history, proc, from, to);
    if (next === from) break;
    from = next;
  }
  return from;
}

interface LiveInterval {
  op: number;
  grantAt: number;
  pieces: Array<[number, number]>;
}

function liveIntervals(history: History, witness: 'callers' | 'server'): LiveInterval[] {
  const g7 = history.timings.heartbeatMs + SCHEDULING_SLACK_MS;
  const calls = new Map(history.witnessCalls.map((call) => [call.op, call]));
  const intervals: LiveInterval[] = [];
  for (const record of history.acquires) {
    if (record.outcome !== 'granted' || record.settledAt === undefined) continue;
    let from: number;
    let to: number;
    if (witness === 'callers') {
      from = record.settledAt;
      to = Math.min(record.endedAt ?? Infinity, record.lostAt ?? Infinity, record.killedAt ?? Infinity);
    } else {
      const call = calls.get(record.op);
      if (call === undefined) continue;
      from = call.startAt;
      to = Math.min(call.endAt ?? Infinity, record.killedAt ?? Infinity);
    }
    if (leaseWasLost(record)) to = runningTimeBefore(history, record.proc, to, g7);
    const pieces = outsideFrozen(history, record.proc, from, to);
    if (pieces.length > 0) intervals.push({ op: record.op, grantAt: grantTime(record, history.redisOffsetMs), pieces });
  }
  return intervals;
}

/** Invariant 1, from the callers' stamps and, separately, from the witness server's calls. */
export function checkConcurrency(history: History): Violation[] {
  return [...concurrencyFrom(history, 'callers'), ...concurrencyFrom(history, 'server')];
}

function concurrencyFrom(history: History, witness: 'callers' | 'server'): Violation[] {
  const events: Array<{ at: number; delta: 1 | -1; interval: LiveInterval }> = [];
  for (const interval of liveIntervals(history, witness)) {
    for (const [from, to] of interval.pieces) {
      events.push({ at: from, delta: 1, interval });
      if (Number.isFinite(to)) events.push({ at: to, delta: -1, interval });
    }
  }
  events.sort((a, b) => a.at - b.at || a.delta - b.delta); // ends before starts at one instant
  const live = new Set<LiveInterval>();
  const violations: Violation[] = [];
  let inEpisode = false;
  for (const event of events) {
    if (event.delta === -1) {
      live.delete(event.interval);
      continue;
    }
    live.add(event.interval);
    // every lease live now was live in Redis at the latest of their grants: the limit of that moment bounds them
    let lastGrant = Number.NEGATIVE_INFINITY;
    for (const interval of live) lastGrant = Math.max(lastGrant, interval.grantAt);
    const bound = maxIn(history.concurrency, lastGrant - CLOCK_SLACK_MS, Math.min(event.at, lastGrant + CLOCK_SLACK_MS), (value) => value);
    if (live.size > bound) {
      if (!inEpisode) {
        const ops = [...live].map((interval) => interval.op).sort((a, b) => a - b);
        violations.push({
          invariant: 1,
          atMs: event.at,
          message: `${live.size} permits live at once (seen by the ${witness === 'callers' ? 'callers' : 'witness server'}), concurrency in force ${bound}`,
          ops,
          witness,
        });
      }
      inEpisode = true;
    } else {
      inEpisode = false;
    }
  }
  return violations;
}

/** How long the process was frozen (or not running) within [from, to]; overlapping windows count once. */
function frozenDuring(history: History, proc: string, from: number, to: number): number {
  const clipped = history.frozen
    .filter((window) => window.proc === proc && window.to > from && window.from < to)
    .map((window) => [Math.max(from, window.from), Math.min(to, window.to)] as const)
    .sort((a, b) => a[0] - b[0]);
  let total = 0;
  let reached = from;
  for (const [start, end] of clipped) {
    if (end <= reached) continue;
    total += end - Math.max(start, reached);
    reached = end;
  }
  return total;
}

/** A deadline far enough out to be honoured as none (absurd values: honoured exactly or rejected). */
const DEADLINE_FAR_MS = 1e9;

/** Invariant 2. */
export function checkSettling(history: History): Violation[] {
  const violations: Violation[] = [];
  const { redisTimeoutMs } = history.timings;
  for (const record of history.acquires) {
    if (record.calledAt === undefined) continue; // never reached its process (it was restarting)
    if (record.settledAt === undefined) {
      if (record.killedAt !== undefined) continue;
      violations.push({
        invariant: 2,
        atMs: record.calledAt,
        message: `acquire never settled (timeoutMs ${String(record.timeoutMs)}, abort after ${String(record.abortAfterMs)} ms)`,
        ops: [record.op],
      });
      continue;
    }
    if (record.killedAt !== undefined && record.killedAt < record.settledAt) continue;
    const took = record.settledAt - record.calledAt;
    if (record.outcome === 'rejected' && record.error?.code === undefined) {
      violations.push({
        invariant: 2,
        atMs: record.settledAt,
        message: `acquire rejected with a non-Tollgate error ${record.error?.name}: ${record.error?.message}`,
        ops: [record.op],
      });
    }
    if (record.outcome === 'granted' && record.abortedAt !== undefined && record.abortedAt <= record.settledAt) {
      violations.push({
        invariant: 2,
        atMs: record.settledAt,
        message: `acquire granted ${(record.settledAt - record.abortedAt).toFixed(0)} ms after its signal aborted`,
        ops: [record.op],
      });
      continue; // one report per acquire
    }
    const deadline = record.timeoutMs !== undefined && record.timeoutMs < DEADLINE_FAR_MS ? record.calledAt + record.timeoutMs : Infinity;
    const giveUpAt = Math.min(deadline, record.abortedAt ?? Infinity);
    if (Number.isFinite(giveUpAt)) {
      const allowed = giveUpAt + redisTimeoutMs + SCHEDULING_SLACK_MS + frozenDuring(history, record.proc, record.calledAt, record.settledAt);
      if (record.settledAt > allowed) {
        violations.push({
          invariant: 2,
          atMs: record.settledAt,
          message: `acquire settled (${record.outcome} ${record.error?.code ?? ''}) ${(record.settledAt - giveUpAt).toFixed(0)} ms after its ${
            giveUpAt === deadline ? 'deadline' : 'abort'
          } (allowed redisTimeoutMs ${redisTimeoutMs} + ${SCHEDULING_SLACK_MS})`,
          ops: [record.op],
        });
      }
    }
    if (record.error?.code === 'ACQUIRE_TIMEOUT' && record.timeoutMs !== undefined && took < record.timeoutMs - 1) {
      violations.push({
        invariant: 2,
        atMs: record.settledAt,
        message: `acquire timed out after ${took.toFixed(0)} ms, before its timeoutMs ${record.timeoutMs}`,
        ops: [record.op],
      });
    }
  }
  return violations;
}

/** Invariant 3. */
export function checkDrain(history: History): Violation[] {
  const drain = history.drain;
  if (drain === undefined) return [];
  const violations: Violation[] = [];
  const { leaseTtlMs, redisTimeoutMs } = history.timings;
  const allowedAt = drain.quietAt + leaseTtlMs + SCHEDULING_SLACK_MS;
  if (drain.zeroAt === undefined || drain.zeroAt > allowedAt) {
    violations.push({
      invariant: 3,
      atMs: drain.zeroAt ?? allowedAt,
      message:
        drain.zeroAt === undefined
          ? `${drain.inFlightLeft} leases still live in Redis ${(leaseTtlMs + SCHEDULING_SLACK_MS).toFixed(0)} ms after every caller released (leaseTtlMs ${leaseTtlMs})`
          : `leases took ${(drain.zeroAt - drain.quietAt).toFixed(0)} ms to return after every caller released (leaseTtlMs ${leaseTtlMs})`,
      ops: [],
    });
  }
  if (violations.length > 0 || drain.fresh.some((fresh) => !fresh.granted)) {
    violations.push({ invariant: 3, atMs: drain.quietAt, message: `left in Redis after the run: ${drain.leftover.join('; ') || 'nothing'}`, ops: [] });
  }
  for (const fresh of drain.fresh) {
    const took = fresh.settledAt === undefined ? Infinity : fresh.settledAt - fresh.calledAt;
    // as for invariant 2: time its process was frozen or not running is not the limiter's
    const excused = fresh.proc === undefined || fresh.settledAt === undefined ? 0 : frozenDuring(history, fresh.proc, fresh.calledAt, fresh.settledAt);
    if (!fresh.granted || took - excused > redisTimeoutMs + SCHEDULING_SLACK_MS) {
      violations.push({
        invariant: 3,
        atMs: fresh.settledAt ?? fresh.calledAt,
        message: `a fresh acquire after the run was ${
          fresh.granted ? `granted only after ${took.toFixed(0)} ms` : `not granted (${fresh.error?.code ?? fresh.error?.name ?? 'no answer'}: ${fresh.error?.message ?? ''})`
        }`,
        ops: [],
      });
    }
  }
  return violations;
}

/**
 * Invariant 4, in Redis time, within each dataset's lifetime: per bucket, so per pool with pools (each pool has its own
 * bucket of the same limits; a call without a pool takes from the limiter's own).
 */
export function checkTokens(history: History): Violation[] {
  const byPool = new Map<string, AcquireRecord[]>();
  for (const record of history.acquires) {
    const key = record.pool ?? '';
    const records = byPool.get(key);
    if (records === undefined) byPool.set(key, [record]);
    else records.push(record);
  }
  return [...byPool.values()].flatMap((acquires) => checkBucket(history, acquires));
}

/**
 * Invariant 4 for a group's budget (issue 15), seen from outside: what was granted to the group's calls charged to
 * its budget (their permits name it), less refunds, within any window of Redis time ≤ the budget + its refill·Δ.
 */
export function checkBudgets(history: History): Violation[] {
  const charged = history.acquires.filter((record) => record.budgeted === true && groupOf(record.op) === CHECKER_BUDGET.group);
  const budget: Segment<TokenLimit> = {
    from: Number.NEGATIVE_INFINITY,
    to: undefined,
    value: { capacity: CHECKER_BUDGET.capacity, refillPerMs: CHECKER_BUDGET.capacity / CHECKER_BUDGET.intervalMs },
  };
  return checkBucket(history, charged, [budget], `group ${CHECKER_BUDGET.group}'s budget: `);
}

/** Invariant 4 for one bucket of limits `limits` (the token limits in force by default); `label` starts its messages. */
function checkBucket(history: History, acquires: readonly AcquireRecord[], limits: ReadonlyArray<Segment<TokenLimit>> = history.tokens, label = ''): Violation[] {
  const offset = history.redisOffsetMs;
  const lossWindows = history.dataLoss.map((loss) => [loss.from + offset - CLOCK_SLACK_MS, loss.to + offset + CLOCK_SLACK_MS] as const);
  const grants = acquires
    .filter((record) => record.outcome === 'granted' && record.grantedAtMs !== undefined)
    .map((record) => ({ record, at: record.grantedAtMs ?? 0 }))
    .filter((grant) => !lossWindows.some(([from, to]) => grant.at >= from && grant.at <= to))
    .sort((a, b) => a.at - b.at);
  const refunds = acquires
    .filter((record) => record.release !== undefined && record.outcome === 'granted')
    .map((record) => {
      const release = record.release!;
      const amount = record.used === undefined ? 0 : Math.max(0, record.tokens - record.used);
      const answered = release.error === undefined;
      return { from: release.calledAt + offset - CLOCK_SLACK_MS, to: answered ? release.settledAt + offset + CLOCK_SLACK_MS : Infinity, amount };
    })
    .filter((refund) => refund.amount > 0);
  const byFrom = [...refunds].sort((a, b) => a.from - b.from);
  const byTo = [...refunds].sort((a, b) => a.to - b.to);
  const prefix = (items: typeof refunds) => items.reduce<number[]>((sums, item) => [...sums, (sums.at(-1) ?? 0) + item.amount], [0]);
  const fromSums = prefix(byFrom);
  const toSums = prefix(byTo);
  const countAtMost = (items: typeof refunds, key: 'from' | 'to', value: number, strict: boolean) => {
    let low = 0;
    let high = items.length;
    while (low < high) {
      const mid = (low + high) >> 1;
      const item = items[mid]![key];
      if (strict ? item < value : item <= value) low = mid + 1;
      else high = mid;
    }
    return low;
  };
  // refunds whose release could have run within [a, b]: started by b, and not answered before a
  const refundedWithin = (a: number, b: number) => fromSums[countAtMost(byFrom, 'from', b, false)]! - toSums[countAtMost(byTo, 'to', a, true)]!;

  const violations: Violation[] = [];
  const costSums = grants.reduce<number[]>((sums, grant) => [...sums, (sums.at(-1) ?? 0) + grant.record.tokens], [0]);
  for (let i = 0; i < grants.length; i++) {
    const a = grants[i]!.at;
    for (let j = i; j < grants.length; j++) {
      const b = grants[j]!.at;
      if (lossWindows.some(([from]) => from > a && from < b)) break; // a data loss refilled the bucket in between
      const granted = costSums[j + 1]! - costSums[i]!;
      // Redis TIME, floored to the ms, mapped through an offset measured at start: the limits of
      // any moment within the clock slack may be the ones the grant met (as for invariant 1)
      const capacity = maxIn(limits, a - offset - CLOCK_SLACK_MS, b - offset + CLOCK_SLACK_MS, (value) => value.capacity);
      const refill = maxIn(limits, a - offset - CLOCK_SLACK_MS, b - offset + CLOCK_SLACK_MS, (value) => value.refillPerMs);
      const bound = capacity + refill * (b - a + 2) + refundedWithin(a, b) + 1e-6;
      if (granted > bound) {
        violations.push({
          invariant: 4,
          atMs: grants[j]!.record.settledAt ?? b - offset,
          message: `${label}${granted} tokens granted within ${(b - a).toFixed(0)} ms (Redis time), bound ${bound.toFixed(1)} = capacity ${capacity} + refill ${refill.toFixed(
            3,
          )}/ms·Δ + refunds ${refundedWithin(a, b)}`,
          ops: grants.slice(i, j + 1).map((grant) => grant.record.op),
        });
        i = j; // one report per run of over-granting
        break;
      }
    }
  }
  return violations;
}

/** Invariant 5: a grant whose acquire started after another grant was received carries a larger fence; no fence twice. */
export function checkFences(history: History): Violation[] {
  const grants = history.acquires
    .filter((record) => record.outcome === 'granted' && record.fence !== undefined && record.settledAt !== undefined)
    .sort((a, b) => a.settledAt! - b.settledAt!);
  const violations: Violation[] = [];
  const byFence = new Map<number, AcquireRecord>();
  for (const record of grants) {
    const twin = byFence.get(record.fence!);
    if (twin !== undefined && twin.permitId !== record.permitId) {
      violations.push({ invariant: 5, atMs: record.settledAt!, message: `fence ${record.fence} granted twice (${twin.permitId}, ${record.permitId})`, ops: [twin.op, record.op] });
    }
    byFence.set(record.fence!, record);
  }
  // prefix maxima over grants in order of receipt
  const settled = grants.map((record) => record.settledAt!);
  const maxFence: Array<{ fence: number; record: AcquireRecord }> = [];
  for (const record of grants) {
    const previous = maxFence.at(-1);
    maxFence.push(previous !== undefined && previous.fence >= record.fence! ? previous : { fence: record.fence!, record });
  }
  for (const record of grants) {
    let low = 0;
    let high = settled.length;
    while (low < high) {
      const mid = (low + high) >> 1;
      if (settled[mid]! < record.calledAt!) low = mid + 1;
      else high = mid;
    }
    const before = low > 0 ? maxFence[low - 1] : undefined;
    if (before !== undefined && before.fence >= record.fence!) {
      violations.push({
        invariant: 5,
        atMs: record.settledAt!,
        message: `fence went backwards: ${record.fence} granted to an acquire called after fence ${before.fence} was received`,
        ops: [before.record.op, record.op],
      });
    }
  }
  return violations;
}
