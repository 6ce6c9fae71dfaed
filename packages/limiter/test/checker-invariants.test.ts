/**
 * The fault checker's invariants must be able to fail: each is fed a small hand-made history that
 * breaks it (and one at the edge of its tolerance that does not). The checker's end-to-end
 * self-test with a double-granting process is in checker.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { concurrencySegments, endSupersededSegments, heardWindow } from './checker/segments.js';
import {
  checkBudgets,
  checkConcurrency,
  checkDrain,
  checkFences,
  checkSettling,
  checkTokens,
  freezeMayLoseLease,
  SCHEDULING_SLACK_MS,
  type AcquireRecord,
  type History,
} from './checker/invariants.js';

const timings = { leaseTtlMs: 1_500, heartbeatMs: 300, redisTimeoutMs: 150 };
const OFFSET = 1_000_000; // Redis ms = monotonic ms + OFFSET

function history(acquires: AcquireRecord[], overrides: Partial<History> = {}): History {
  return {
    timings,
    redisOffsetMs: OFFSET,
    acquires,
    witnessCalls: [],
    frozen: [],
    concurrency: [{ from: 0, to: undefined, value: 1 }],
    tokens: [{ from: 0, to: undefined, value: { capacity: 10, refillPerMs: 0.01 } }],
    dataLoss: [],
    drain: undefined,
    ...overrides,
  };
}

/** A permit granted at `from` (called 1 ms before), held until `to`, released at once. */
function held(op: number, from: number, to: number, extra: Partial<AcquireRecord> = {}): AcquireRecord {
  return {
    op,
    proc: 'p0.0',
    client: 0,
    tokens: 1,
    priority: 5,
    holdMs: to - from,
    calledAt: from - 1,
    settledAt: from,
    outcome: 'granted',
    permitId: `owner:${op}`,
    fence: op,
    grantedAtMs: from + OFFSET,
    endedAt: to,
    release: { calledAt: to, settledAt: to + 1, leaseLost: false },
    ...extra,
  };
}

describe('checker invariant 1: concurrency', () => {
  it('reports two permits live at once under concurrency 1', () => {
    const violations = checkConcurrency(history([held(1, 100, 300), held(2, 200, 400, { proc: 'p1.0' })]));
    expect(violations).toHaveLength(1);
    expect(violations[0]?.ops).toEqual([1, 2]);
  });

  it('allows back-to-back permits and the G7 window of a lost lease, but not an abort later than one heartbeat', () => {
    expect(checkConcurrency(history([held(1, 100, 300), held(2, 300, 400)]))).toEqual([]);
    const lostAt = 200 + timings.heartbeatMs + SCHEDULING_SLACK_MS - 10; // aborted within one heartbeat (+ slack) of the other grant
    expect(checkConcurrency(history([held(1, 100, lostAt, { lostAt }), held(2, 200, 400, { proc: 'p1.0' })]))).toEqual([]);
    const lateLostAt = 200 + timings.heartbeatMs + SCHEDULING_SLACK_MS + 100;
    expect(checkConcurrency(history([held(1, 100, lateLostAt, { lostAt: lateLostAt }), held(2, 200, 400, { proc: 'p1.0' })]))).toHaveLength(1);
  });

  it('does not count a frozen process until one heartbeat after SIGCONT, and counts it after that', () => {
    const frozen = [{ proc: 'p0.0', from: 150, to: 2_000 }];
    const resumedFor = 2_000 + timings.heartbeatMs + SCHEDULING_SLACK_MS;
    expect(checkConcurrency(history([held(1, 100, resumedFor - 1), held(2, 1_800, 2_900, { proc: 'p1.0' })], { frozen }))).toEqual([]);
    expect(checkConcurrency(history([held(1, 100, resumedFor + 200), held(2, 1_800, 2_900, { proc: 'p1.0' })], { frozen }))).toHaveLength(1);
  });

  it('counts the G7 window of a lost lease in the running time of its process (a short freeze, then a write pause)', () => {
    // p0 frozen 350 ms (too short to lose a lease by itself), its renewals then held by a CLIENT PAUSE:
    // its lease is lost and another process is granted at 1_000; p0 learns it at its first heartbeat
    // after it runs again, which the freeze delayed
    const frozen = [{ proc: 'p0.0', from: 1_100, to: 1_450 }];
    const lostAt = 1_000 + timings.heartbeatMs + SCHEDULING_SLACK_MS + 300; // one heartbeat (+ slack) of running time, plus 300 of the 350 ms frozen
    expect(checkConcurrency(history([held(1, 100, lostAt, { lostAt }), held(2, 1_000, 2_000, { proc: 'p1.0' })], { frozen }))).toEqual([]);
    const lateLostAt = 1_000 + timings.heartbeatMs + SCHEDULING_SLACK_MS + 350 + 100; // later than the freeze explains
    expect(checkConcurrency(history([held(1, 100, lateLostAt, { lostAt: lateLostAt }), held(2, 1_000, 2_000, { proc: 'p1.0' })], { frozen }))).toHaveLength(1);
  });

  it('counts a process frozen too briefly to lose its lease all the time', () => {
    const frozen = [{ proc: 'p0.0', from: 150, to: 150 + freezeMayLoseLease(timings) - 1 }];
    expect(checkConcurrency(history([held(1, 100, 1_000), held(2, 200, 400, { proc: 'p1.0' })], { frozen }))).toHaveLength(1);
  });

  it('takes the larger limit while a change is in flight, and the new one after', () => {
    const concurrency = [
      { from: 0, to: 250, value: 2 },
      { from: 240, to: undefined, value: 1 },
    ];
    expect(checkConcurrency(history([held(1, 100, 600), held(2, 245, 600, { proc: 'p1.0' })], { concurrency }))).toEqual([]);
    expect(checkConcurrency(history([held(1, 100, 600), held(2, 300, 600, { proc: 'p1.0' })], { concurrency }))).toHaveLength(1);
  });

  it('counts the witness server calls too', () => {
    const acquires = [held(1, 100, 300), held(2, 350, 500, { proc: 'p1.0' })];
    const witnessCalls = [
      { op: 1, pid: 1, startAt: 101, endAt: 400, closedEarly: false }, // the upstream saw the first call still running
      { op: 2, pid: 2, startAt: 351, endAt: 450, closedEarly: false },
    ];
    const violations = checkConcurrency(history(acquires, { witnessCalls }));
    expect(violations.map((violation) => violation.message)).toEqual([expect.stringContaining('witness server')]);
  });
});

describe('checker: the limits in force after overlapping changes', () => {
  it('an answered change ends only the limits of changes done before it was called (seed 296997051)', () => {
    // setConcurrency(4) called at 100 and answered at 160; setConcurrency(1) called at 130, answered at 140:
    // Redis may have run the 4 last, so 4 stays in force; a change called after 160 ends it
    const segments = [
      { from: 0, to: undefined as number | undefined, value: 3, settleBy: 0 },
      { from: 100, to: undefined as number | undefined, value: 4, settleBy: 160 },
    ];
    endSupersededSegments(segments, 130, 140);
    segments.push({ from: 130, to: undefined, value: 1, settleBy: 140 });
    expect(segments.map((segment) => segment.to)).toEqual([140, undefined, undefined]);
    endSupersededSegments(segments, 200, 210);
    expect(segments.map((segment) => segment.to)).toEqual([140, 210, 210]);
  });

  const noLoss = (): [number, number] => [0, 0];
  const change = (kind: 'apply' | 'setConcurrency', calledAt: number, settledAt: number, value: number, unanswered = false) => ({ kind, calledAt, settledAt, value, unanswered });
  const inForceAt = (segments: ReturnType<typeof concurrencySegments>, at: number) =>
    Math.max(...segments.filter((segment) => segment.from <= at && (segment.to === undefined || segment.to >= at)).map((segment) => segment.value));

  it('an apply whose answer was lost may run after a later answered apply: setConcurrency is clamped to the larger (seed 1311398277)', () => {
    // apply(4) called at 1,000 times out at 1,150 during a stall; apply(1) called at 1,200, answered at 2,800 when the stall ends;
    // Redis ran the apply(4) last, so a setConcurrency(3) at 5,000 (after every window closed) gets 3, not 1
    const segments = concurrencySegments(2, [change('apply', 1_000, 1_150, 4, true), change('apply', 1_200, 2_800, 1), change('setConcurrency', 5_000, 5_010, 3)], noLoss);
    expect(inForceAt(segments, 6_000)).toBe(3);
    // a later answered apply called after the lost one's window closed settles it: setConcurrency is clamped to 1 again
    const settled = concurrencySegments(
      2,
      [change('apply', 1_000, 1_150, 4, true), change('apply', 1_200, 2_800, 1), change('apply', 4_500, 4_510, 1), change('setConcurrency', 5_000, 5_010, 3)],
      noLoss,
    );
    expect(inForceAt(settled, 6_000)).toBe(1);
  });

  it('a setConcurrency that ran while an apply was on its way may be clamped by the limits before it (seed 217594292)', () => {
    // configured 4 at start; apply(1) called at 212, answered at 250; setConcurrency(5) called at 233, answered at 252:
    // it may have run first (effective 4), and the apply after it: 4 may be in force until the apply's answer
    const segments = concurrencySegments(4, [change('setConcurrency', 113, 170, 1), change('apply', 212, 250, 1), change('setConcurrency', 233, 252, 5)], noLoss);
    expect(inForceAt(segments, 248)).toBe(4);
    expect(inForceAt(segments, 1_000)).toBe(4); // nothing answered since ends the setConcurrency's 4
    // a setConcurrency called after the apply's answer is clamped to 1
    const after = concurrencySegments(4, [change('apply', 212, 250, 1), change('setConcurrency', 300, 310, 5)], noLoss);
    expect(inForceAt(after, 400)).toBe(1);
  });

  it('two answered applies whose calls overlap: either may be the configured one', () => {
    const segments = concurrencySegments(2, [change('apply', 1_000, 1_300, 5), change('apply', 1_100, 1_200, 1), change('setConcurrency', 2_000, 2_010, 4)], noLoss);
    expect(inForceAt(segments, 3_000)).toBe(4);
  });
});

describe('checker: the limits a data loss may bring back', () => {
  const loss = { calledAt: 11_687, settledAt: 11_769 };
  it('one hearing before the loss, or before a freeze and a stall chained across it (seed 881170558)', () => {
    expect(heardWindow(loss, 800, [], [])).toEqual([10_887, 11_769]);
    // p2 frozen 7,803 → 10,372, then Redis asleep 10,372 → 11,687: p2 heard nothing since 7,003
    const frozen = [{ proc: 'p2', from: 7_803, to: 10_372 }];
    expect(heardWindow(loss, 800, [{ from: 10_372, to: 11_687 }], frozen)).toEqual([7_003, 11_769]);
    // without the stall the freeze ended long enough before the loss for p2 to hear again
    expect(heardWindow(loss, 800, [], frozen)).toEqual([10_887, 11_769]);
    // another process's freeze does not chain onto p2's: each process's own windows, and Redis's
    expect(heardWindow(loss, 800, [{ from: 10_372, to: 11_687 }], [{ proc: 'p1', from: 5_000, to: 9_000 }, ...frozen])).toEqual([7_003, 11_769]);
  });
});

describe('checker invariant 2: settling', () => {
  it('reports an acquire that never settled, one granted after its abort, one settled late, one timed out early', () => {
    const never: AcquireRecord = { op: 1, proc: 'p0.0', client: 0, tokens: 1, priority: 5, holdMs: 1, calledAt: 0 };
    const afterAbort = held(2, 500, 600, { calledAt: 100, abortedAt: 101 });
    const late = held(3, 100 + 50 + timings.redisTimeoutMs + SCHEDULING_SLACK_MS + 10, 2_000, { calledAt: 100, timeoutMs: 50 });
    const early: AcquireRecord = {
      op: 4,
      proc: 'p0.0',
      client: 0,
      tokens: 1,
      priority: 5,
      holdMs: 1,
      calledAt: 0,
      settledAt: 5,
      outcome: 'rejected',
      timeoutMs: 1e14,
      error: { name: 'AcquireTimeoutError', code: 'ACQUIRE_TIMEOUT', message: '' },
    };
    const violations = checkSettling(history([never, afterAbort, late, early]));
    expect(violations.map((violation) => violation.ops[0])).toEqual([1, 2, 3, 4]);
  });

  it('accepts a rejection within the deadline plus one redisTimeoutMs, and excuses the time its process was frozen', () => {
    const inTime: AcquireRecord = {
      op: 1,
      proc: 'p0.0',
      client: 0,
      tokens: 1,
      priority: 5,
      holdMs: 1,
      calledAt: 0,
      settledAt: 50 + timings.redisTimeoutMs,
      outcome: 'rejected',
      timeoutMs: 50,
      error: { name: 'AcquireTimeoutError', code: 'ACQUIRE_TIMEOUT', message: '' },
    };
    const frozenLate = { ...inTime, op: 2, settledAt: 3_000 };
    expect(checkSettling(history([inTime, frozenLate], { frozen: [{ proc: 'p0.0', from: 10, to: 2_900 }] }))).toEqual([]);
  });

  it('excuses the time a process did not run once, however many windows report it (SIGSTOP and no CPU overlap)', () => {
    const late: AcquireRecord = {
      op: 1,
      proc: 'p0.0',
      client: 0,
      tokens: 1,
      priority: 5,
      holdMs: 1,
      calledAt: 0,
      settledAt: 1_800,
      outcome: 'rejected',
      timeoutMs: 50,
      error: { name: 'AcquireTimeoutError', code: 'ACQUIRE_TIMEOUT', message: '' },
    };
    const stopped = { proc: 'p0.0', from: 100, to: 1_000 };
    // 900 ms excused: 1_800 is later than 50 + 150 + 500 + 900; counted twice it would pass
    expect(checkSettling(history([late], { frozen: [stopped, { ...stopped, from: 150 }] }))).toHaveLength(1);
    expect(checkSettling(history([late], { frozen: [stopped, { proc: 'p0.0', from: 1_000, to: 1_300 }] }))).toEqual([]);
  });

  it('reports a rejection that is not a TollgateError', () => {
    const record: AcquireRecord = {
      op: 1,
      proc: 'p0.0',
      client: 0,
      tokens: 1,
      priority: 5,
      holdMs: 1,
      calledAt: 0,
      settledAt: 5,
      outcome: 'rejected',
      error: { name: 'ReplyError', code: undefined, message: 'ERR' },
    };
    expect(checkSettling(history([record]))).toHaveLength(1);
  });
});

describe('checker invariant 3: nothing leaks', () => {
  it('reports leases that never came back, and a fresh acquire that was refused', () => {
    const drain = {
      quietAt: 0,
      zeroAt: undefined,
      inFlightLeft: 2,
      leftover: ['lease a:1'],
      fresh: [{ calledAt: 10, settledAt: 20, granted: false, error: { name: 'x', code: 'LIMITER_UNAVAILABLE', message: '' } }],
    };
    expect(checkDrain(history([], { drain })).map((violation) => violation.message)).toEqual([
      expect.stringContaining('2 leases still live'),
      expect.stringContaining('lease a:1'),
      expect.stringContaining('LIMITER_UNAVAILABLE'),
    ]);
    const clean = { quietAt: 0, zeroAt: timings.leaseTtlMs, inFlightLeft: 0, leftover: [], fresh: [{ calledAt: 10, settledAt: 20, granted: true }] };
    // slow by 720 ms, of which its process did not run for 300: within redisTimeoutMs + slack; without that, not
    const slow = { ...clean, fresh: [{ proc: 'p0.0', calledAt: 10, settledAt: 730, granted: true }] };
    expect(checkDrain(history([], { drain: slow, frozen: [{ proc: 'p0.0', from: 100, to: 400 }] }))).toEqual([]);
    expect(checkDrain(history([], { drain: slow }))).toHaveLength(1);
    expect(checkDrain(history([], { drain: clean }))).toEqual([]);
  });
});

describe('checker invariant 4: tokens', () => {
  it('reports more tokens than capacity + refill·Δ, and counts a refund once', () => {
    const grants = [held(1, 100, 110, { tokens: 8 }), held(2, 200, 210, { tokens: 8 })];
    expect(checkTokens(history(grants))).toHaveLength(1); // 16 > 10 + 0.01·100
    const refunded = [held(1, 100, 110, { tokens: 8, used: 1 }), held(2, 200, 210, { tokens: 8 })];
    expect(checkTokens(history(refunded))).toEqual([]); // 16 ≤ 10 + 1 + refund 7
    const twice = [held(1, 100, 110, { tokens: 8, used: 1 }), held(2, 200, 210, { tokens: 8 }), held(3, 300, 310, { tokens: 8 })];
    expect(checkTokens(history(twice))).toHaveLength(1); // 24 > 10 + 2 + 7: the refund does not pay twice
  });

  it('places a grant in the limits of its moment within the clock slack (seed 296997040: a raise applied 1 ms before its own pump granted)', () => {
    // an apply raising the capacity to 120, called at 500; its pump grants 11 tokens at once, stamped
    // with Redis TIME floored to the ms, which maps to just before the call
    const tokens = [
      { from: 0, to: 505, value: { capacity: 10, refillPerMs: 0.01 } },
      { from: 500, to: undefined, value: { capacity: 120, refillPerMs: 0.12 } },
    ];
    const grants = [held(1, 499.4, 600, { tokens: 10 }), held(2, 499.4, 600, { tokens: 1 })];
    expect(checkTokens(history(grants, { tokens }))).toEqual([]);
    const before = [held(1, 480, 600, { tokens: 10 }), held(2, 480, 600, { tokens: 1 })];
    expect(checkTokens(history(before, { tokens }))).toHaveLength(1); // well before the apply: capacity 10
  });

  it('does not carry a window across data loss (the bucket starts full again)', () => {
    const grants = [held(1, 100, 110, { tokens: 8 }), held(2, 200, 210, { tokens: 8 })];
    expect(checkTokens(history(grants, { dataLoss: [{ from: 150, to: 160 }] }))).toEqual([]);
  });
});

describe("checker invariant 4: a group's budget (issue 15)", () => {
  // group g2 (op % 3 = 2): budget 12 tokens, refilled at 0.12/ms; the token bucket (capacity 10 here) is checked apart
  it('reports more granted to the group than its budget + refill·Δ, counting only grants charged to it, and a refund once', () => {
    const over = [held(2, 100, 101, { tokens: 10, budgeted: true }), held(5, 110, 111, { tokens: 10, budgeted: true })];
    expect(checkBudgets(history(over))).toHaveLength(1); // 20 > 12 + 0.12·10
    expect(checkBudgets(history(over))[0]?.message).toMatch(/^group g2's budget: 20 tokens granted/);
    expect(checkBudgets(history([held(2, 100, 101, { tokens: 10, budgeted: true }), held(5, 200, 201, { tokens: 10, budgeted: true })]))).toEqual([]); // 20 ≤ 12 + 12
    expect(checkBudgets(history([held(2, 100, 101, { tokens: 10, budgeted: true }), held(5, 110, 111, { tokens: 10 })]))).toEqual([]); // the second was not charged (groups were off)
    expect(checkBudgets(history([held(2, 100, 101, { tokens: 10, budgeted: true }), held(4, 110, 111, { tokens: 10, budgeted: true })]))).toEqual([]); // op 4 is g1's
    const refunded = [held(2, 100, 101, { tokens: 10, used: 2, budgeted: true }), held(5, 110, 111, { tokens: 10, budgeted: true })];
    expect(checkBudgets(history(refunded))).toEqual([]); // 20 ≤ 12 + 1.2 + refund 8
  });
});

describe('checker invariant 5: fences', () => {
  it('reports a fence that goes backwards for a later acquire, and a fence granted twice', () => {
    expect(checkFences(history([held(5, 100, 200, { fence: 5 }), held(6, 300, 400, { fence: 1 })]))).toHaveLength(1);
    expect(checkFences(history([held(5, 100, 200, { fence: 5 }), held(6, 300, 400, { fence: 5 })]))).toHaveLength(2);
    expect(checkFences(history([held(5, 100, 200, { fence: 5 }), held(6, 300, 400, { fence: 6 })]))).toEqual([]);
  });
});
