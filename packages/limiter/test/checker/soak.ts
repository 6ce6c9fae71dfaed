/**
 * `npm run soak -- [--minutes N] [--seed S] [--operations N] [--faults a,b|none] [--without limitChanges,absurdTimeouts,aborts] [--pools N (default: 2 for even seeds, 0 for odd)] [--broken-process] [--wedged-process]`
 *   --seed S alone: one run of seed S (a replay). --minutes N: runs seeds until the time is up
 *   (from S, or from a random seed), printing each seed's operation and fault counts, then a summary.
 *   Exits 1 on any violation or hung run (past its deadline, see runDeadlineMs), naming each failing
 *   seed and the command that replays it.
 */
import { parseArgs } from 'node:util';
import { FAULT_KINDS, OMITTABLE, type FaultKind, type Omittable } from './schedule.js';
import { runChecker, type CheckerOptions, type CheckerResult } from './driver.js';
import { INVARIANT_NAMES, type InvariantId } from './invariants.js';
import { monotonicMs } from './protocol.js';

/** Operations per seed in a soak (the bounded CI run uses fewer). */
const SOAK_OPERATIONS = 400;

const { values } = parseArgs({
  options: {
    minutes: { type: 'string' },
    seed: { type: 'string' },
    operations: { type: 'string' },
    faults: { type: 'string' },
    without: { type: 'string' },
    pools: { type: 'string' },
    'broken-process': { type: 'boolean', default: false },
    'wedged-process': { type: 'boolean', default: false },
  },
});

function faultsFrom(text: string | undefined): readonly FaultKind[] {
  if (text === undefined) return FAULT_KINDS;
  if (text === 'none') return [];
  const kinds = text.split(',');
  for (const kind of kinds) {
    if (!(FAULT_KINDS as readonly string[]).includes(kind)) throw new Error(`--faults: unknown fault "${kind}" (known: ${FAULT_KINDS.join(', ')}, or none)`);
  }
  return kinds as FaultKind[];
}

function omitted(text: string | undefined): readonly Omittable[] {
  if (text === undefined) return [];
  const parts = text.split(',');
  for (const part of parts) {
    if (!(OMITTABLE as readonly string[]).includes(part)) throw new Error(`--without: unknown part "${part}" (known: ${OMITTABLE.join(', ')})`);
  }
  return parts as Omittable[];
}

function positiveInteger(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 0) throw new Error(`--${name} must be an integer ≥ 0, got ${JSON.stringify(text)}`);
  return value;
}

function printResult(result: CheckerResult): void {
  const ops = Object.entries(result.operations)
    .map(([kind, count]) => `${kind} ${count}`)
    .join(', ');
  const faults =
    Object.entries(result.faults)
      .map(([kind, count]) => `${kind} ${count}`)
      .join(', ') || 'none';
  const total = Object.values(result.counts).reduce((sum, count) => sum + count, 0);
  console.log(`seed ${result.seed}: ${(result.durationMs / 1000).toFixed(1)} s; operations: ${ops}; faults: ${faults}; violations ${total}${result.hang ? '; HUNG' : ''}`);
  for (const trace of result.traces) console.log(trace.map((line) => `  ${line}`).join('\n'));
  if (result.hang) {
    console.log(result.hang.lines.map((line) => `  ${line}`).join('\n'));
    console.log(`  FAILED seed ${result.seed} (hung past its deadline of ${(result.hang.deadlineMs / 1000).toFixed(0)} s; every process killed); replay: ${result.replay}`);
  }
  if (total > 0) {
    const byInvariant = (Object.entries(result.counts) as Array<[string, number]>)
      .filter(([, count]) => count > 0)
      .map(([id, count]) => `${id} ${INVARIANT_NAMES[Number(id) as InvariantId]}: ${count}`);
    console.log(`  FAILED seed ${result.seed} (${byInvariant.join('; ')}); replay: ${result.replay}`);
  }
}

const minutes = values.minutes === undefined ? undefined : Number(values.minutes);
if (minutes !== undefined && !(minutes > 0)) throw new Error(`--minutes must be > 0, got ${JSON.stringify(values.minutes)}`);
const pools = values.pools === undefined ? undefined : Number(values.pools);
if (pools !== undefined && !(Number.isInteger(pools) && pools >= 0 && pools <= 32)) throw new Error(`--pools must be an integer from 0 to 32, got ${JSON.stringify(values.pools)}`);
const firstSeed = positiveInteger('seed', values.seed) ?? Math.floor(Math.random() * 2 ** 31);
const base: Omit<CheckerOptions, 'seed'> = {
  operations: positiveInteger('operations', values.operations) ?? SOAK_OPERATIONS,
  faults: faultsFrom(values.faults),
  without: omitted(values.without),
  ...(pools === undefined ? {} : { pools }),
  brokenProcess: values['broken-process'],
  wedgedProcess: values['wedged-process'],
};

const endAt = minutes === undefined ? 0 : monotonicMs() + minutes * 60_000;
const startedAt = monotonicMs();
const totals = { runs: 0, operations: 0, byKind: {} as Record<string, number>, faults: {} as Record<string, number>, violations: 0, hangs: 0 };
const failing: CheckerResult[] = [];
let seed = firstSeed;
console.log(minutes === undefined ? `checker: seed ${seed}` : `checker soak: ${minutes} min from seed ${seed}`);
do {
  const result = await runChecker({ ...base, seed });
  printResult(result);
  totals.runs++;
  totals.operations += Object.entries(result.operations)
    .filter(([kind]) => !kind.startsWith('skipped'))
    .reduce((sum, [, count]) => sum + count, 0);
  for (const [kind, count] of Object.entries(result.operations)) totals.byKind[kind] = (totals.byKind[kind] ?? 0) + count;
  for (const [kind, count] of Object.entries(result.faults)) totals.faults[kind] = (totals.faults[kind] ?? 0) + count;
  const violations = Object.values(result.counts).reduce((sum, count) => sum + count, 0);
  totals.violations += violations;
  if (result.hang) totals.hangs++;
  if (violations > 0 || result.hang) failing.push(result);
  seed = (seed + 1) % 2 ** 31;
} while (monotonicMs() < endAt);

const faultTotal = Object.values(totals.faults).reduce((sum, count) => sum + count, 0);
console.log(
  `\nsummary: ${((monotonicMs() - startedAt) / 60_000).toFixed(1)} min, ${totals.runs} runs (seeds ${firstSeed}…${(seed - 1 + 2 ** 31) % 2 ** 31}), ${
    totals.operations
  } operations (${Object.entries(totals.byKind)
    .map(([kind, count]) => `${kind} ${count}`)
    .join(', ')}), ${faultTotal} faults (${
    Object.entries(totals.faults)
      .map(([kind, count]) => `${kind} ${count}`)
      .join(', ') || 'none'
  }), ${totals.violations} violations, ${totals.hangs} hung runs`,
);
for (const result of failing) console.log(`  failing seed ${result.seed}${result.hang ? ' (hung)' : ''}: ${result.replay}`);
process.exit(failing.length > 0 ? 1 : 0);
