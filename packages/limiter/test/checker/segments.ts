/**
 * The limits in force over a run, as the driver asked for them: the upper bounds invariant 1 checks
 * against (see invariants.ts and the checker README for the rules). Pure functions of what the
 * driver recorded, so that the rules are tested on hand-made histories (checker-invariants.test.ts).
 */
import { maxIn, type Segment } from './invariants.js';

/** A change whose answer was lost may still run this long after its caller gave up (a stall ends). */
export const LOST_REPLY_RUNS_WITHIN_MS = 3_000;

/**
 * An answered change, called at `calledAt` and done by `settleBy`, ends the limits in force before
 * it, but only those whose own change was surely done before it was called: two changes whose
 * call-to-answer intervals overlap ran in Redis in an order nobody saw (seed 296997051: a
 * setConcurrency(4) answered after a setConcurrency(1) was called left 4 in force, where the order
 * of the calls said 1), so the earlier one stays in force until a change called after its answer.
 */
export function endSupersededSegments<T>(segments: Array<Segment<T> & { settleBy: number }>, calledAt: number, settleBy: number): void {
  for (const segment of segments) if (segment.to === undefined && segment.settleBy <= calledAt) segment.to = settleBy;
}

/** One thing that changed the concurrency, or may have: a call (answered or not), a data loss, a process start. */
export interface ConcurrencyEvent {
  kind: 'setConcurrency' | 'apply' | 'dataLoss' | 'processStart';
  calledAt: number;
  /** Answered, or given up on (an unanswered call). */
  settledAt: number;
  /** The value asked for (a process start: the concurrency it was started with). */
  value: number;
  /** The call's answer was lost (it timed out or failed): it may still run later. */
  unanswered: boolean;
}

/**
 * The concurrency in force over time. A setConcurrency is clamped to the configured concurrency
 * (the last apply), and the configured one is itself uncertain: an apply whose answer was lost, or
 * one whose call overlapped a later answered one, may have run after it (seed 1311398277: an
 * apply(4) that timed out during a 1.7 s DEBUG SLEEP ran after the apply(1) answered once the stall
 * ended, because Redis reads the queued commands of two connections in its own order, not in the
 * order they were sent); and an apply takes effect at an unknown moment before its answer, so a
 * setConcurrency that ran meanwhile may have been clamped by the limits before it (seed 217594292: a
 * setConcurrency(5) called while an apply(1) was on its way ran first, under the configured 4). So
 * the configured concurrency is itself a set of segments with the same rules (an answered apply ends
 * only what was surely done before it was called, at its answer), and a setConcurrency is clamped to
 * the largest configured value in force at any moment between its call and its answer.
 */
export function concurrencySegments(
  start: number,
  events: readonly ConcurrencyEvent[],
  heardBefore: (loss: { calledAt: number; settledAt: number }) => [number, number],
): Array<Segment<number> & { settleBy: number; cause: string }> {
  const sorted = [...events].sort((a, b) => a.calledAt - b.calledAt);
  const settleByOf = (event: ConcurrencyEvent) => (event.unanswered ? event.settledAt + LOST_REPLY_RUNS_WITHIN_MS : event.settledAt);
  // the configured concurrency: the applies (and what data loss or a first boot may write back)
  const configured: Array<Segment<number> & { settleBy: number }> = [{ from: 0, to: undefined, value: start, settleBy: 0 }];
  // the configured value each data loss, and each first boot after one, may have written back
  const writtenBack = new Map<ConcurrencyEvent, number>();
  let lostSinceApply = false;
  for (const event of sorted) {
    const from = event.calledAt;
    const settleBy = settleByOf(event);
    if (event.kind === 'dataLoss') {
      lostSinceApply = true;
      const [recentFrom, recentTo] = heardBefore(event);
      writtenBack.set(
        event,
        maxIn(configured, recentFrom, recentTo, (limit) => limit),
      );
    } else if (event.kind === 'processStart') {
      // with no limits left in Redis, a process that starts is a fleet's first boot: it may apply its own (DESIGN §8)
      if (lostSinceApply) writtenBack.set(event, event.value);
    } else if (event.kind === 'apply') {
      if (!event.unanswered) {
        lostSinceApply = false;
        endSupersededSegments(configured, from, settleBy);
      }
      configured.push({ from, to: undefined, value: event.value, settleBy });
    }
    const back = writtenBack.get(event);
    if (back !== undefined) configured.push({ from, to: undefined, value: back, settleBy });
  }

  const segments: Array<Segment<number> & { settleBy: number; cause: string }> = [{ from: 0, to: undefined, value: start, settleBy: 0, cause: 'start' }];
  for (const event of sorted) {
    const from = event.calledAt;
    const settleBy = settleByOf(event);
    if (event.kind === 'dataLoss') {
      // back at the configured one, or one not everyone had heard was written back
      const [recentFrom, recentTo] = heardBefore(event);
      const value = Math.max(
        maxIn(configured, recentFrom, recentTo, (limit) => limit),
        maxIn(segments, recentFrom, recentTo, (limit) => limit),
      );
      segments.push({ from, to: undefined, value, settleBy, cause: 'data loss' });
      continue;
    }
    if (event.kind === 'processStart') {
      const back = writtenBack.get(event);
      if (back !== undefined) segments.push({ from, to: undefined, value: back, settleBy, cause: 'a process started after data loss' });
      continue;
    }
    let value = event.value;
    if (event.kind === 'setConcurrency') {
      value = Math.min(
        Math.max(event.value, 1),
        maxIn(configured, from, settleBy, (limit) => limit),
      );
    }
    if (!event.unanswered) endSupersededSegments(segments, from, settleBy);
    segments.push({ from, to: undefined, value, settleBy, cause: `${event.kind}(${event.value})${event.unanswered ? ' unanswered' : ''}` });
  }
  return segments;
}

/**
 * The window of limits some process may still have held as the fleet's when Redis lost its data over `loss`, and so
 * may write back (DESIGN §8: a process re-creating the dataset writes the limits it last heard): from one hearing
 * (`hearingMs`: a heartbeat + slack) before the loss, or before the deaf windows chained across it. A process hears
 * the limits by its heartbeats: not while it is frozen (its own windows), nor while Redis answers nobody (`redisAway`:
 * a stall, a pause of writes, a restart). Seed 881170558: a process frozen for 2.6 s, then a 1.3 s DEBUG SLEEP, then a
 * restart without data: it had heard nothing since before its freeze, and wrote those limits back.
 */
export function heardWindow(
  loss: { calledAt: number; settledAt: number },
  hearingMs: number,
  redisAway: ReadonlyArray<{ from: number; to: number }>,
  frozen: ReadonlyArray<{ proc: string; from: number; to: number }>,
): [number, number] {
  let earliest = loss.calledAt - hearingMs;
  for (const proc of [undefined, ...new Set(frozen.map((window) => window.proc))]) {
    const deaf = [...redisAway, ...frozen.filter((window) => window.proc === proc)];
    let from = loss.calledAt - hearingMs;
    for (let moved = true; moved;) {
      moved = false;
      for (const window of deaf) {
        if (window.from <= loss.settledAt && window.to >= from && window.from - hearingMs < from) {
          from = window.from - hearingMs;
          moved = true;
        }
      }
    }
    earliest = Math.min(earliest, from);
  }
  return [earliest, loss.settledAt];
}
