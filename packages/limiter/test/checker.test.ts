/**
 * The randomized fault checker of DESIGN §10, bounded for CI: fixed seeds, a few hundred
 * operations each, every fault kind. Replay a failing seed with `npm run soak -- --seed S`
 * (add `--operations 150`, as here); run longer with `npm run soak -- --minutes N`.
 */
import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { runChecker, type CheckerResult } from './checker/driver.js';

/** The seeds CI runs. Each run prints its seed and the command that replays it. */
const CI_SEEDS = [1, 2] as const;
const CI_OPERATIONS = 150;
const RUN_TIMEOUT_MS = 120_000;
/**
 * A CI run that hangs is reported (and its processes killed) by its deadline, this much before the
 * test's own timeout (its deadline from the schedule, runDeadlineMs, is longer: 160-180 s).
 */
const CLEANUP_MS = 10_000;

function describeResult(result: CheckerResult): string {
  const ops = Object.entries(result.operations)
    .map(([kind, count]) => `${kind} ${count}`)
    .join(', ');
  const faults =
    Object.entries(result.faults)
      .map(([kind, count]) => `${kind} ${count}`)
      .join(', ') || 'none';
  return [
    `seed ${result.seed} (${(result.durationMs / 1000).toFixed(1)} s; ${ops}; faults: ${faults}); replay: ${result.replay}`,
    ...result.traces.flat(),
    ...(result.hang?.lines ?? []),
  ].join('\n');
}

describe('fault checker: every invariant of DESIGN §10 under a seeded mix of calls and faults', () => {
  for (const seed of CI_SEEDS) {
    it(
      `seed ${seed}: ${CI_OPERATIONS} operations and faults, no invariant violated`,
      async () => {
        const result = await runChecker({ seed, operations: CI_OPERATIONS, deadlineMs: RUN_TIMEOUT_MS - CLEANUP_MS });
        console.log(describeResult(result));
        expect(result.hang?.lines[0]).toBeUndefined();
        expect(result.violations.map((violation) => `invariant ${violation.invariant}: ${violation.message}`)).toEqual([]);
      },
      RUN_TIMEOUT_MS,
    );
  }

  it(
    'self-test: a wedged process (it answers nothing, close neither) fails the run at its deadline, with the seed and what each process did last; every process is killed',
    async () => {
      const deadlineMs = 12_000; // the drain alone waits longer for the wedged process than this
      const result = await runChecker({ seed: 8, operations: 40, faults: [], wedgedProcess: true, deadlineMs });
      console.log(describeResult(result));
      expect(result.hang).toBeDefined();
      const report = result.hang?.lines.join('\n') ?? '';
      expect(report).toMatch(/^run hung: .* it was at: drain/);
      expect(report).toMatch(/p0\.0 \(pid \d+ ready\): [1-9]\d* acquires not done/);
      expect(result.replay).toContain('--seed 8');
      for (const [, pid] of report.matchAll(/pid (\d+)/g)) expect(() => process.kill(Number(pid), 0)).toThrow(/ESRCH/);
      const port = Number(new URL(/redis-server (\S+)/.exec(report)?.[1] ?? 'redis://x').port);
      const refused = await new Promise<string>((resolve) => {
        const socket = connect(port, '127.0.0.1', () => resolve('connected'));
        socket.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
      });
      expect(refused).toBe('ECONNREFUSED'); // its redis-server is gone too
    },
    RUN_TIMEOUT_MS,
  );

  it(
    'self-test: a process whose limiters double-grant (another limiter name) is caught as a concurrency violation',
    async () => {
      const result = await runChecker({ seed: 7, operations: 80, faults: [], brokenProcess: true });
      console.log(describeResult(result));
      expect(result.counts[1]).toBeGreaterThan(0);
      const concurrency = result.violations.filter((violation) => violation.invariant === 1);
      expect(concurrency.some((violation) => violation.witness === 'callers')).toBe(true);
      expect(concurrency.some((violation) => violation.witness === 'server')).toBe(true);
    },
    RUN_TIMEOUT_MS,
  );
});
