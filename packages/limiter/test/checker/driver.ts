/**
 * The randomized fault checker (DESIGN §10). One run: start a Redis of its own (with
 * `--enable-debug-command local` and AOF), a witness server, and several client processes; play a
 * seeded schedule of acquires, releases, aborts, pauses, concurrency changes, limit applies and
 * faults; let everything drain; then check the five invariants from what the witnesses saw.
 * `runChecker({ seed })` replays a run: the schedule depends on the seed only.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { RedisServerProcess, uniqueName } from '@tollgate/test-support';
import { Redis } from 'ioredis';
import { limiterKeys } from '../../src/index.js';
import { toError } from '../../src/internal.js';
import {
  checkInvariants,
  INVARIANT_NAMES,
  maxIn,
  SCHEDULING_SLACK_MS,
  type AcquireRecord,
  type DrainResult,
  type History,
  type InvariantId,
  type Segment,
  type TokenLimit,
  type Violation,
} from './invariants.js';
import { ANY_POOL, monotonicMs, type CheckerLimits, type CheckerTimings, type ClientMessage, type DriverCommand, type ErrorInfo } from './protocol.js';
import { FAULT_KINDS, makeSchedule, type FaultKind, type Omittable, type ScheduledOp } from './schedule.js';
import { concurrencySegments, endSupersededSegments, heardWindow, LOST_REPLY_RUNS_WITHIN_MS, type ConcurrencyEvent } from './segments.js';
import { startWitnessServer, type WitnessServer } from './witness-server.js';
import type { ClientSettings } from './client-process.js';

const CLIENT = fileURLToPath(new URL('./client-process.ts', import.meta.url));

export const CHECKER_LIMITS: CheckerLimits = { concurrency: 4, tokensLimit: 120, tokensIntervalMs: 1_000, pools: 0, groups: false }; // tokens bind less than concurrency

/** Pools of a run's limiter at start: even seeds run a limiter with 2 pools (DESIGN §9), odd seeds one without. */
export function poolsForSeed(seed: number): number {
  return seed % 2 === 0 ? 2 : 0;
}
/** Groups (fair share) of a run's limiter at start: seeds 2, 3, 6, 7, 10, 11, … (every pools / no-pools mix). */
export function groupsForSeed(seed: number): boolean {
  return Math.floor(seed / 2) % 2 === 1;
}
export const CHECKER_TIMINGS: CheckerTimings = { leaseTtlMs: 1_500, heartbeatMs: 300, redisTimeoutMs: 150 };

/** How long the drain waits for every acquire to settle and every release to answer. */
const SETTLE_WAIT_MS = 2 * CHECKER_TIMINGS.leaseTtlMs + 3_000;
/** Faults during which Redis answers nobody's heartbeat: no process hears the fleet's limits meanwhile. */
const REDIS_AWAY_FAULTS: ReadonlySet<FaultKind> = new Set(['stall', 'pauseWrites', 'restartKeep', 'restartEmpty']);
/** Longest wait for a process to start (tsx compiles on the fly; 2 busy cores). */
const PROCESS_START_MS = 30_000;
/** Polling of Redis during the drain. */
const DRAIN_POLL_MS = 25;
/** Offset samples of Redis TIME against the monotonic clock (the fastest round trip wins). */
const CLOCK_SAMPLES = 15;
/** Trace lines kept per violation. */
const TRACE_LINES_MAX = 40;
/** Process stderr kept for diagnostics. */
const STDERR_TAIL_CHARS = 4_000;
/** Leases and waiters listed when the drain finds some left over. */
const LEFTOVER_SHOWN_MAX = 5;
/**
 * The drain's fresh acquires start no sooner than this after the last fault ended: ioredis
 * reconnects with a backoff (50 ms × attempt) after a restart, and until then the limiter fails
 * closed, which is right (G8), not a leak.
 */
const RECONNECT_GRACE_MS = 1_000;
/** How long the driver waits for a process's snapshot. */
const SNAPSHOT_WAIT_MS = 2_000;
/** Op numbers of snapshot requests start here. */
const SNAPSHOT_OP_BASE = 2_000_000;
/** Fresh acquires per process at the end, and the pause between them (only LIMITER_UNAVAILABLE is tried again). */
const FRESH_ATTEMPTS = 3;
const FRESH_RETRY_MS = 200;
/** Op numbers of the drain's fresh acquires start here. */
const FRESH_OP_BASE = 1_000_000;
/** Longest a Redis restart may take (test-support's RedisServerProcess waits this long for it to answer). */
const REDIS_RESTART_MS = 10_000;
/** How long close() gives a process to exit before it kills it, and the witness and Redis to close. */
const CLOSE_MS = 2_000 + 1_000;
/** Stderr shown for a client process that ended by itself. */
const EXIT_STDERR_CHARS = 1_500;
/** Events kept per process for a hang's report. */
const RECENT_EVENTS_MAX = 8;
/** Unsettled acquires named per process in a hang's report. */
const UNSETTLED_SHOWN_MAX = 5;

/**
 * The hard deadline of one run, from its schedule: every bounded wait the driver may make, at its
 * worst, one after another. Starting the processes; the schedule's span; each fault's duration plus
 * the restart or the new process it may wait for (faults run one after another, so they may outlast
 * the span); the drain: every acquire served one at a time (its hold and one round trip, as if the
 * concurrency were 1 throughout), then its fixed waits (settling, leases, pause and debt, reconnect,
 * the fresh acquires); and close. A run still going then has hung: that is a failure, never a wait.
 */
export function runDeadlineMs(schedule: readonly ScheduledOp[], timings: CheckerTimings = CHECKER_TIMINGS): number {
  let ms = PROCESS_START_MS + (schedule.at(-1)?.atMs ?? 0);
  for (const op of schedule) {
    if (op.kind === 'fault') {
      const startsProcess = op.fault === 'killProcess' || op.newProcess || op.fleetFreeze;
      const restartsRedis = op.fault === 'restartKeep' || op.fault === 'restartEmpty';
      ms += op.durationMs + (startsProcess ? PROCESS_START_MS : 0) + (restartsRedis ? REDIS_RESTART_MS : 0);
    } else if (op.kind === 'acquire') {
      ms += op.holdMs + timings.redisTimeoutMs;
    } else {
      ms += timings.redisTimeoutMs;
    }
  }
  const drainFixed =
    SETTLE_WAIT_MS + timings.leaseTtlMs + SCHEDULING_SLACK_MS + 2 * SNAPSHOT_WAIT_MS + SETTLE_WAIT_MS + RECONNECT_GRACE_MS + FRESH_ATTEMPTS * (SETTLE_WAIT_MS + FRESH_RETRY_MS);
  return ms + drainFixed + CLOSE_MS;
}

export interface CheckerOptions {
  seed: number;
  /** Scheduled operations (faults included). */
  operations?: number;
  processes?: number;
  clientsPerProcess?: number;
  faults?: readonly FaultKind[];
  meanGapMs?: number;
  /** Parts of the mix to leave out (to look past a known bug). */
  without?: readonly Omittable[];
  /** Self-test: the first process's limiters use another limiter name, a configuration that double-grants. */
  brokenProcess?: boolean;
  /** Self-test: the first process stops answering once it is ready (it ignores every command, close too). */
  wedgedProcess?: boolean;
  /** Pools of the limiter at start (0: none); default {@link poolsForSeed}. */
  pools?: number;
  /** The run's hard deadline (default: {@link runDeadlineMs} of its schedule). */
  deadlineMs?: number;
  log?: (line: string) => void;
}

export interface CheckerResult {
  seed: number;
  replay: string;
  operations: Record<string, number>;
  faults: Record<string, number>;
  violations: Violation[];
  counts: Record<InvariantId, number>;
  /** Per shown violation: the events around it, times in ms from the start of the schedule. */
  traces: string[][];
  durationMs: number;
  /** The run did not end by its deadline: what it was doing, and what each process did last. Its processes were killed. */
  hang?: { deadlineMs: number; lines: string[] } | undefined;
}

interface ClientProcess {
  child: ChildProcess;
  stderr: string;
  /** A standby process has loaded and waits for `start`. */
  standing: boolean;
  ready: Promise<void>;
}

interface Slot {
  index: number;
  gen: number;
  child: ChildProcess | undefined;
  process: ClientProcess | undefined;
  ready: boolean;
  starting: Promise<void> | undefined;
}

interface ControlRecord {
  op: number;
  kind: 'pause' | 'setConcurrency' | 'apply';
  proc: string;
  value: number;
  limits?: CheckerLimits | undefined;
  calledAt?: number | undefined;
  settledAt?: number | undefined;
  error?: ErrorInfo | undefined;
}

interface FaultRecord {
  kind: FaultKind;
  detail: string;
  from: number;
  to: number | undefined;
  error?: string | undefined;
}

export function replayCommand(options: CheckerOptions): string {
  const parts = [`npm run soak -- --seed ${options.seed}`];
  if (options.operations !== undefined) parts.push(`--operations ${options.operations}`);
  if (options.faults !== undefined && options.faults.length !== FAULT_KINDS.length) parts.push(`--faults ${options.faults.join(',') || 'none'}`);
  if (options.without !== undefined && options.without.length > 0) parts.push(`--without ${options.without.join(',')}`);
  if (options.pools !== undefined) parts.push(`--pools ${options.pools}`);
  if (options.brokenProcess) parts.push('--broken-process');
  if (options.wedgedProcess) parts.push('--wedged-process');
  return parts.join(' ');
}

/**
 * One run. It ends by its hard deadline: a run still going then has hung, and is reported as a
 * failure (`hang`) with its seed and what each process did last, after every process it started
 * (clients, the standby, redis-server) was killed and the witness server closed.
 */
export async function runChecker(options: CheckerOptions): Promise<CheckerResult> {
  const run = new CheckerRun(options);
  const playing = run.play();
  playing.catch(() => {}); // after a hang, what is left of the run fails as its processes are killed
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<'hung'>((resolve) => {
    timer = setTimeout(() => resolve('hung'), run.deadlineMs);
  });
  try {
    const outcome = await Promise.race([playing, hung]);
    if (outcome !== 'hung') return outcome;
    const result = run.hangResult();
    await run.killAll();
    return result;
  } finally {
    clearTimeout(timer);
    await run.close();
  }
}

class CheckerRun {
  readonly #options: Required<Omit<CheckerOptions, 'log' | 'deadlineMs' | 'pools'>> & { log: (line: string) => void };
  /** The limits every process is started with (its environment), whatever was applied since. */
  readonly #limits: CheckerLimits;
  readonly #schedule: ScheduledOp[];
  readonly deadlineMs: number;
  readonly #startedAt = monotonicMs();
  /** Every process forked, for the kill after a hang. */
  readonly #children = new Set<ChildProcess>();
  /** The last events of each process (commands sent, messages received), for a hang's report. */
  readonly #recent = new Map<string, string[]>();
  /** What the run is doing now, for a hang's report. */
  #phase = 'starting';
  readonly #name = uniqueName('checker');
  readonly #acquires = new Map<number, AcquireRecord>();
  readonly #controls = new Map<number, ControlRecord>();
  readonly #faultLog: FaultRecord[] = [];
  /** SIGSTOP windows, and the windows a process reported it did not run (the machine gave it no CPU). */
  readonly #frozen: Array<{ proc: string; from: number; to: number; notRunning?: true }> = [];
  /** Client processes that ended by themselves (not killed by the driver): how, with their stderr. */
  readonly #exits = new Map<string, string>();
  /** The slot and generation of each forked process (for the messages that name no op). */
  readonly #procOf = new Map<ChildProcess, string>();
  readonly #dataLoss: Array<{ from: number; to: number }> = [];
  readonly #opCounts: Record<string, number> = {};
  readonly #faultCounts: Record<string, number> = {};
  readonly #slots: Slot[] = [];
  /** Processes started after the first ones (replacements of killed ones): [spawned, ready]. */
  readonly #restarts: Array<{ from: number; to: number }> = [];
  #redis: RedisServerProcess | undefined;
  #admin: Redis | undefined;
  #witness: WitnessServer | undefined;
  #offsetMs = 0;
  /** The start of the schedule (the origin of every time in a trace); the run's start until then. */
  #t0 = monotonicMs();
  #faultChain: Promise<void> = Promise.resolve();
  readonly #snapshotWaiters = new Map<number, (snapshot: Extract<ClientMessage, { type: 'snapshot' }> | undefined) => void>();
  #nextSnapshotOp = SNAPSHOT_OP_BASE;
  /** The concurrency segments with what started each (for the traces of invariant 1). */
  #concurrencyCauses: Array<Segment<number> & { cause: string }> = [];
  /** The effective concurrency Redis held before the drain's fresh acquires, when it could be read. */
  #quietConcurrency: { at: number; value: number } | undefined;
  /** One process loaded and waiting, so a "new process" can start as fast as a real one would. */
  #standby: ClientProcess | undefined;

  constructor(options: CheckerOptions) {
    this.#options = {
      operations: 200,
      processes: 3,
      clientsPerProcess: 2,
      faults: FAULT_KINDS,
      meanGapMs: 25,
      brokenProcess: false,
      wedgedProcess: false,
      without: [],
      log: () => {},
      ...options,
    };
    this.#limits = { ...CHECKER_LIMITS, pools: options.pools ?? poolsForSeed(options.seed), groups: groupsForSeed(options.seed) };
    this.#schedule = makeSchedule({
      seed: this.#options.seed,
      operations: this.#options.operations,
      processes: this.#options.processes,
      clientsPerProcess: this.#options.clientsPerProcess,
      limits: this.#limits,
      leaseTtlMs: CHECKER_TIMINGS.leaseTtlMs,
      faults: this.#options.faults,
      meanGapMs: this.#options.meanGapMs,
      without: this.#options.without,
    });
    this.deadlineMs = options.deadlineMs ?? runDeadlineMs(this.#schedule);
  }

  async play(): Promise<CheckerResult> {
    const startedAt = this.#startedAt;
    const options = this.#options;
    const schedule = this.#schedule;
    this.#redis = await RedisServerProcess.start({ appendonly: true, args: ['--enable-debug-command', 'local'] });
    this.#admin = new Redis(this.#redis.url, { maxRetriesPerRequest: 2 });
    this.#admin.on('error', () => {}); // Redis restarts are part of the run
    this.#witness = await startWitnessServer();
    this.#offsetMs = await this.#measureOffset();
    for (let index = 0; index < options.processes; index++) this.#slots.push({ index, gen: -1, child: undefined, process: undefined, ready: false, starting: undefined });
    await Promise.all(this.#slots.map((slot) => this.#spawn(slot, { useStandby: false })));
    if (options.faults.includes('killProcess') || options.faults.includes('flushall') || options.faults.includes('restartEmpty')) this.#standby = this.#fork(this.#name, true);

    this.#t0 = monotonicMs();
    for (const [index, op] of schedule.entries()) {
      const wait = this.#t0 + op.atMs - monotonicMs();
      if (wait > 0) await sleep(wait);
      this.#phase = `schedule: op ${index} of ${schedule.length}`;
      this.#dispatch(index, op);
    }
    const drain = await this.#drain();
    this.#phase = 'checking';
    const history: History = {
      timings: CHECKER_TIMINGS,
      redisOffsetMs: this.#offsetMs,
      acquires: [...this.#acquires.values()],
      witnessCalls: [...this.#witness.calls.values()],
      frozen: this.#frozen,
      concurrency: this.#concurrencySegments(),
      tokens: this.#tokenSegments(),
      dataLoss: this.#dataLoss,
      drain,
    };
    const report = checkInvariants(history);
    const result: CheckerResult = {
      seed: options.seed,
      replay: replayCommand(options),
      operations: this.#opCounts,
      faults: this.#faultCounts,
      violations: report.violations,
      counts: report.counts,
      traces: report.violations.map((violation) => this.#trace(violation)),
      durationMs: monotonicMs() - startedAt,
    };
    return result;
  }

  /** After a hang: kills every process the run started (clients, the standby, redis-server) and closes the witness. */
  async killAll(): Promise<void> {
    for (const child of this.#children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await Promise.all(
      [...this.#children].map((child) => (child.exitCode === null && child.signalCode === null ? new Promise((resolve) => child.once('exit', resolve)) : undefined)),
    );
    this.#admin?.disconnect();
    await this.#witness?.close();
    await this.#redis?.close();
  }

  /** The report of a run that did not end by its deadline. */
  hangResult(): CheckerResult {
    const at = (ms: number | undefined) => (ms === undefined ? '—' : `${(ms - this.#t0).toFixed(0)}`);
    const lines = [
      `run hung: not done ${(this.deadlineMs / 1000).toFixed(0)} s after it started (its deadline); it was at: ${this.#phase}`,
      `  redis-server ${this.#redis?.url ?? '(not started)'}`,
    ];
    for (const fault of this.#faultLog) if (fault.to === undefined) lines.push(`  fault in progress: ${fault.kind} ${fault.detail} since @${at(fault.from)}`);
    const procs = new Set([...this.#recent.keys(), ...this.#slots.map((slot) => this.#proc(slot))]);
    for (const proc of procs) {
      const slot = this.#slots.find((candidate) => this.#proc(candidate) === proc);
      const child = slot?.child;
      const state =
        slot === undefined
          ? 'replaced'
          : child === undefined
            ? 'no process'
            : `pid ${String(child.pid)}${slot.ready ? ' ready' : ' not ready'}${
                child.exitCode === null && child.signalCode === null ? '' : ` exited (${String(child.exitCode ?? child.signalCode)})`
              }`;
      const unsettled = [...this.#acquires.values()].filter(
        (record) => record.proc === proc && record.killedAt === undefined && (record.settledAt === undefined || (record.outcome === 'granted' && record.release === undefined)),
      );
      const shown = unsettled
        .slice(0, UNSETTLED_SHOWN_MAX)
        .map((record) => `op ${record.op} ${record.settledAt === undefined ? `called @${at(record.calledAt)}, unsettled` : `granted @${at(record.settledAt)}, not released`}`);
      lines.push(`  ${proc} (${state}): ${unsettled.length} acquires not done${shown.length > 0 ? ` (${shown.join('; ')})` : ''}`);
      const exit = this.#exits.get(proc);
      if (exit !== undefined) lines.push(`    ${exit}`);
      for (const event of this.#recent.get(proc) ?? []) lines.push(`    ${event}`);
    }
    return {
      seed: this.#options.seed,
      replay: replayCommand(this.#options),
      operations: this.#opCounts,
      faults: this.#faultCounts,
      violations: [],
      counts: { 1: 0, 2: 0, 3: 0, 4: 0, 5: 0 },
      traces: [],
      durationMs: monotonicMs() - this.#startedAt,
      hang: { deadlineMs: this.deadlineMs, lines },
    };
  }

  #note(proc: string, event: string): void {
    const events = this.#recent.get(proc) ?? [];
    events.push(`@${(monotonicMs() - this.#t0).toFixed(0)} ${event}`);
    if (events.length > RECENT_EVENTS_MAX) events.shift();
    this.#recent.set(proc, events);
  }

  async close(): Promise<void> {
    this.#phase = 'closing';
    this.#standby?.child.kill('SIGKILL');
    await Promise.all(
      this.#slots.map(async (slot) => {
        const child = slot.child;
        if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
        child.kill('SIGCONT');
        const exited = new Promise((resolve) => child.once('exit', resolve));
        try {
          if (child.connected) child.send({ type: 'close' } satisfies DriverCommand, () => {}); // a failed send: it is killed below
        } catch {
          // already gone
        }
        await Promise.race([exited, sleep(2_000)]);
        child.kill('SIGKILL');
      }),
    );
    this.#admin?.disconnect();
    await this.#witness?.close();
    await this.#redis?.close();
  }

  #proc(slot: Slot): string {
    return `p${slot.index}.${slot.gen}`;
  }

  #count(table: Record<string, number>, key: string): void {
    table[key] = (table[key] ?? 0) + 1;
  }

  async #measureOffset(): Promise<number> {
    let best = Infinity;
    let offset = 0;
    for (let sample = 0; sample < CLOCK_SAMPLES; sample++) {
      const before = monotonicMs();
      const [seconds, micros] = await this.#admin!.time();
      const after = monotonicMs();
      if (after - before < best) {
        best = after - before;
        offset = Number(seconds) * 1000 + Number(micros) / 1000 - (before + after) / 2;
      }
    }
    return offset;
  }

  /** Forks a client process; a standby one loads everything, then waits for `start` before it connects. */
  #fork(limiterName: string, standby: boolean): ClientProcess {
    const settings: ClientSettings = {
      redisUrl: this.#redis!.url,
      limiterName,
      clients: this.#options.clientsPerProcess,
      limits: this.#limits, // what a process is started with (its environment), whatever was applied since
      timings: CHECKER_TIMINGS,
      witnessUrl: this.#witness!.url,
      standby,
      wedged: this.#options.wedgedProcess && this.#children.size === 0,
    };
    const child = fork(CLIENT, [], {
      execArgv: ['--conditions=tollgate-source', '--import', 'tsx'],
      env: { ...process.env, CHECKER_CLIENT: JSON.stringify(settings) },
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    this.#children.add(child);
    const started: ClientProcess = { child, stderr: '', standing: false, ready: undefined as unknown as Promise<void> };
    child.stderr?.on('data', (chunk: Buffer) => (started.stderr = (started.stderr + chunk.toString()).slice(-STDERR_TAIL_CHARS)));
    started.ready = new Promise<void>((resolve, reject) => {
      let ready = false;
      child.on('message', (message: ClientMessage) => {
        if (message.type === 'standing') started.standing = true;
        else if (message.type === 'ready') {
          ready = true;
          resolve();
        } else if (message.type === 'startFailed') reject(new Error(`client process could not start: ${message.error.message}`));
        else if (message.type === 'notRunning') {
          const proc = this.#procOf.get(child);
          if (proc !== undefined) this.#frozen.push({ proc, from: message.from, to: message.to, notRunning: true });
        } else this.#onMessage(message);
      });
      child.once('exit', (code, signal) => {
        if (!ready) reject(new Error(`client process exited at start (${String(code ?? signal)}): ${started.stderr}`));
        // a client process that ends by itself crashed (an unhandled rejection in the limiter, say): its acquires never settle
        const proc = this.#procOf.get(child);
        if (proc !== undefined && signal !== 'SIGKILL' && this.#phase !== 'closing') {
          this.#exits.set(
            proc,
            `exited by itself (${String(code ?? signal)}) @${(monotonicMs() - this.#t0).toFixed(0)} ms; stderr: ${started.stderr.slice(-EXIT_STDERR_CHARS) || '(none)'}`,
          );
        }
      });
    });
    started.ready.catch(() => {}); // a standby killed at the end never becomes ready
    return started;
  }

  /**
   * Starts the slot's next process: the warm standby when it is waiting (it connects within a few
   * ms, as a new process would right after a deploy), else a fresh fork; then warms a new standby.
   */
  #spawn(slot: Slot, { useStandby }: { useStandby: boolean }): Promise<void> {
    slot.gen++;
    slot.ready = false;
    const proc = this.#proc(slot);
    const standby = this.#standby;
    let started: ClientProcess;
    if (useStandby && standby?.standing && standby.child.connected) {
      this.#standby = undefined;
      standby.child.send({ type: 'start' } satisfies DriverCommand);
      started = standby;
      this.#standby = this.#fork(this.#name, true);
    } else {
      started = this.#fork(this.#options.brokenProcess && slot.index === 0 ? `${this.#name}-other` : this.#name, false);
    }
    slot.child = started.child;
    slot.process = started;
    this.#procOf.set(started.child, proc);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`client process ${proc} did not start within ${PROCESS_START_MS} ms: ${started.stderr}`)), PROCESS_START_MS);
    });
    slot.starting = Promise.race([started.ready, timeout])
      .then(() => {
        slot.ready = true;
      })
      .finally(() => {
        clearTimeout(timer);
        slot.starting = undefined;
      });
    return slot.starting;
  }

  #onMessage(message: ClientMessage): void {
    if (message.type === 'ready' || message.type === 'startFailed' || message.type === 'standing' || message.type === 'notRunning') return;
    if (message.type === 'snapshot') {
      this.#snapshotWaiters.get(message.op)?.(message);
      return;
    }
    if (message.type === 'done') {
      const control = this.#controls.get(message.op);
      if (control === undefined) return;
      this.#note(control.proc, `← ${control.kind} op ${message.op} done${message.error ? ` (${message.error.code ?? message.error.name})` : ''}`);
      control.calledAt = message.calledAt;
      control.settledAt = message.settledAt;
      control.error = message.error;
      return;
    }
    const record = this.#acquires.get(message.op);
    if (record === undefined) return;
    this.#note(record.proc, `← ${message.type} op ${message.op}${message.type === 'rejected' ? ` (${message.error.code ?? message.error.name})` : ''}`);
    switch (message.type) {
      case 'granted':
        Object.assign(record, { outcome: 'granted', calledAt: message.calledAt, settledAt: message.settledAt, abortedAt: message.abortedAt });
        Object.assign(record, { permitId: message.permitId, fence: message.fence, grantedAtMs: message.grantedAtMs, budgeted: message.budgeted });
        break;
      case 'rejected':
        Object.assign(record, { outcome: 'rejected', calledAt: message.calledAt, settledAt: message.settledAt, abortedAt: message.abortedAt, error: message.error });
        break;
      case 'lost':
        record.lostAt = message.lostAt;
        break;
      case 'ended':
        record.endedAt = message.endedAt;
        break;
      case 'released':
        record.release = { calledAt: message.calledAt, settledAt: message.settledAt, leaseLost: message.leaseLost, error: message.error };
        break;
    }
  }

  #send(slot: Slot, command: DriverCommand): boolean {
    if (!slot.ready || slot.child === undefined || !slot.child.connected) return false;
    try {
      slot.child.send(command, () => {}); // a process that died meanwhile: its acquires show as unsettled or killed
      this.#note(this.#proc(slot), `→ ${command.type}${'op' in command ? ` op ${command.op}` : ''}`);
      return true;
    } catch {
      return false;
    }
  }

  #dispatch(op: number, scheduled: ScheduledOp): void {
    if (scheduled.kind === 'fault') {
      this.#count(this.#opCounts, 'fault');
      this.#faultChain = this.#faultChain.then(() => this.#fault(scheduled));
      return;
    }
    const slot = this.#slots[Math.floor(scheduled.client / this.#options.clientsPerProcess)]!;
    const client = scheduled.client % this.#options.clientsPerProcess;
    const proc = this.#proc(slot);
    if (!slot.ready) {
      this.#count(this.#opCounts, 'skipped (process restarting)');
      return;
    }
    this.#count(this.#opCounts, scheduled.kind);
    if (scheduled.kind === 'acquire') {
      const { atMs: _atMs, kind: _kind, ...rest } = scheduled;
      this.#acquires.set(op, { op, proc, ...rest, client });
      this.#send(slot, { type: 'acquire', op, ...rest, client });
    } else if (scheduled.kind === 'pause') {
      this.#controls.set(op, { op, kind: 'pause', proc, value: scheduled.ms });
      this.#send(slot, { type: 'pause', op, client, ms: scheduled.ms, ...(scheduled.pool === undefined ? {} : { pool: scheduled.pool }) });
    } else if (scheduled.kind === 'setConcurrency') {
      this.#controls.set(op, { op, kind: 'setConcurrency', proc, value: scheduled.concurrency });
      this.#send(slot, { type: 'setConcurrency', op, client, concurrency: scheduled.concurrency });
    } else {
      this.#controls.set(op, { op, kind: 'apply', proc, value: scheduled.limits.concurrency, limits: scheduled.limits });
      this.#send(slot, { type: 'apply', op, client, limits: scheduled.limits });
    }
  }

  async #fault(op: Extract<ScheduledOp, { kind: 'fault' }>): Promise<void> {
    const redis = this.#redis!;
    const slot = this.#slots[op.process]!;
    const record: FaultRecord = { kind: op.fault, detail: '', from: monotonicMs(), to: undefined };
    this.#faultLog.push(record);
    this.#count(this.#faultCounts, op.fault);
    try {
      switch (op.fault) {
        case 'stall': {
          record.detail = `DEBUG SLEEP ${op.durationMs} ms`;
          const connection = new Redis(redis.url, { maxRetriesPerRequest: 0 });
          connection.on('error', () => {});
          try {
            await connection.call('DEBUG', 'SLEEP', (op.durationMs / 1000).toFixed(3));
          } finally {
            connection.disconnect();
          }
          break;
        }
        case 'pauseWrites':
          record.detail = `CLIENT PAUSE ${op.durationMs} WRITE`;
          await this.#admin!.call('CLIENT', 'PAUSE', op.durationMs, 'WRITE');
          await sleep(op.durationMs);
          break;
        case 'flushall': {
          record.detail = 'FLUSHALL';
          const from = monotonicMs();
          try {
            await this.#admin!.flushall();
          } finally {
            this.#dataLoss.push({ from, to: monotonicMs() });
          }
          if (op.newProcess) record.detail += `, then ${await this.#replaceProcess(slot)}`;
          break;
        }
        case 'restartKeep':
          record.detail = 'kill -9 of Redis, restart with its AOF';
          await redis.kill();
          await redis.start();
          break;
        case 'restartEmpty': {
          record.detail = 'kill -9 of Redis, restart without data';
          const from = monotonicMs();
          try {
            await redis.restart({ keepData: false });
          } finally {
            this.#dataLoss.push({ from, to: monotonicMs() });
          }
          if (op.newProcess) record.detail += `, then ${await this.#replaceProcess(slot)}`;
          break;
        }
        case 'freeze': {
          if (op.fleetFreeze) {
            record.detail = await this.#fleetFreeze(slot, op.durationMs);
            break;
          }
          const child = slot.child;
          if (!slot.ready || child === undefined) break;
          record.detail = `SIGSTOP ${this.#proc(slot)} for ${op.durationMs} ms`;
          const from = monotonicMs();
          child.kill('SIGSTOP');
          await sleep(op.durationMs);
          const to = monotonicMs();
          child.kill('SIGCONT');
          this.#frozen.push({ proc: this.#proc(slot), from, to });
          break;
        }
        case 'killProcess':
          record.detail = await this.#replaceProcess(slot);
          break;
      }
    } catch (error) {
      record.error = toError(error).message;
    } finally {
      record.to = monotonicMs();
    }
  }

  /** Freezes every process, FLUSHALL, a new process in place of the slot's, then resumes the others after `durationMs`. */
  async #fleetFreeze(replaced: Slot, durationMs: number): Promise<string> {
    // the new process must be the first to see the empty dataset: wait until the standby is loaded
    const standbyBy = monotonicMs() + PROCESS_START_MS;
    while (this.#standby?.standing !== true && monotonicMs() < standbyBy) {
      this.#standby ??= this.#fork(this.#name, true);
      await sleep(DRAIN_POLL_MS);
    }
    const frozen = this.#slots.filter((slot) => slot.ready && slot.child !== undefined && slot !== replaced);
    const from = monotonicMs();
    for (const slot of frozen) slot.child!.kill('SIGSTOP');
    const lossFrom = monotonicMs();
    try {
      await this.#admin!.flushall();
    } finally {
      this.#dataLoss.push({ from: lossFrom, to: monotonicMs() });
    }
    const replacing = this.#replaceProcess(replaced);
    await sleep(Math.max(0, from + durationMs - monotonicMs()));
    const to = monotonicMs();
    for (const slot of frozen) {
      slot.child!.kill('SIGCONT');
      this.#frozen.push({ proc: this.#proc(slot), from, to });
    }
    const replacement = await replacing;
    return `SIGSTOP ${frozen.map((slot) => this.#proc(slot)).join(', ')}, FLUSHALL, ${replacement}; SIGCONT after ${(to - from).toFixed(0)} ms`;
  }

  /** kill -9 of the slot's process, and a new process in its place (the standby, when one is waiting). */
  async #replaceProcess(slot: Slot): Promise<string> {
    const child = slot.child;
    if (!slot.ready || child === undefined) return 'no process to kill (still starting)';
    const proc = this.#proc(slot);
    slot.ready = false;
    // a process that died by itself has fired 'exit' already: waiting for it would wait for ever
    const exited = child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((resolve) => child.once('exit', resolve));
    this.#note(proc, 'kill -9');
    child.kill('SIGKILL');
    const killedAt = monotonicMs();
    for (const acquire of this.#acquires.values()) if (acquire.proc === proc) acquire.killedAt ??= killedAt;
    await exited;
    const spawnedAt = monotonicMs();
    try {
      await this.#spawn(slot, { useStandby: true });
    } finally {
      this.#restarts.push({ from: spawnedAt, to: monotonicMs() });
    }
    return `kill -9 ${proc}, new process ${this.#proc(slot)} ready after ${(monotonicMs() - spawnedAt).toFixed(0)} ms`;
  }

  /** Every acquire sent to a live process has settled, and every granted one was released. */
  #allSettled(): boolean {
    for (const record of this.#acquires.values()) {
      if (record.killedAt !== undefined) continue;
      if (record.settledAt === undefined) return false;
      if (record.outcome === 'granted' && record.release === undefined) return false;
    }
    return true;
  }

  async #liveLeases(): Promise<number> {
    const nowMs = await this.#redisNowMs();
    return this.#admin!.zcount(limiterKeys(this.#name).leases, `(${nowMs}`, '+inf');
  }

  /** The latest moment an acquire settled or a release answered (the backlog moves while this does). */
  #lastProgressAt(): number {
    let latest = 0;
    for (const record of this.#acquires.values()) latest = Math.max(latest, record.settledAt ?? 0, record.release?.settledAt ?? 0);
    return latest;
  }

  /**
   * Waits until every acquire settled and every permit was released, for as long as that keeps
   * moving: a backlog of waiters with no deadline (the concurrency lowered to 1, long holds) may take
   * longer than any fixed wait after the faults, and drains one hand-off at a time; the wait ends
   * when nothing settled for SETTLE_WAIT_MS (what is left is then reported), or at the run's deadline.
   */
  async #settle(): Promise<void> {
    const from = monotonicMs();
    while (!this.#allSettled() && monotonicMs() < Math.max(from, this.#lastProgressAt()) + SETTLE_WAIT_MS) await sleep(DRAIN_POLL_MS);
  }

  async #drain(): Promise<DrainResult> {
    this.#phase = 'drain: waiting for the last fault to end';
    await this.#faultChain;
    for (const slot of this.#slots) slot.child?.kill('SIGCONT');
    await Promise.all(this.#slots.map((slot) => slot.starting?.catch(() => {})));
    this.#phase = 'drain: waiting for every acquire to settle and every permit to be released';
    await this.#settle();
    const quietAt = monotonicMs();
    this.#phase = 'drain: waiting for the leases to return';
    const zeroBy = quietAt + CHECKER_TIMINGS.leaseTtlMs + SCHEDULING_SLACK_MS;
    let zeroAt: number | undefined;
    let inFlightLeft: number;
    for (;;) {
      inFlightLeft = await this.#liveLeases().catch(() => -1);
      if (inFlightLeft === 0) {
        zeroAt = monotonicMs();
        break;
      }
      if (monotonicMs() > zeroBy) break;
      await sleep(DRAIN_POLL_MS);
    }
    const leftover = zeroAt === undefined ? (await this.#leftover()).map((line) => `at the lease deadline: ${line}`) : [];
    this.#phase = 'drain: waiting out a pause and a bucket debt';
    await this.#waitForPauseAndDebt();
    // a connection that Redis dropped reconnects with a backoff, failing closed meanwhile (G8, as it should)
    const lastFaultEnd = Math.max(0, ...this.#faultLog.map((fault) => fault.to ?? 0));
    await sleep(Math.max(0, lastFaultEnd + RECONNECT_GRACE_MS - monotonicMs()));
    // nothing changes the limits from here on: the fresh acquires are held to the concurrency Redis holds now
    const quietSnapshotAt = monotonicMs();
    const quiet = await this.#snapshot();
    if (quiet !== undefined && quiet.error === undefined && quiet.concurrency !== null) this.#quietConcurrency = { at: quietSnapshotAt, value: quiet.concurrency };
    // one fresh acquire per process: granted at once, now that nothing is held. A round trip slower
    // than redisTimeoutMs on a loaded machine fails closed (LIMITER_UNAVAILABLE): only that is tried again
    const fresh = new Map<Slot, number>();
    for (let attempt = 0; attempt < FRESH_ATTEMPTS; attempt++) {
      const sent: number[] = [];
      for (const slot of this.#slots) {
        const previous = fresh.get(slot);
        if (previous !== undefined && this.#acquires.get(previous)?.error?.code !== 'LIMITER_UNAVAILABLE') continue;
        const op = FRESH_OP_BASE + attempt * this.#slots.length + slot.index;
        // with pools: the first pool of the limits in force, whichever an apply left (the process knows them)
        const pool = this.#limits.pools > 0 ? ANY_POOL : undefined;
        const spec = { client: 0, pool, tokens: 0, priority: 0, timeoutMs: CHECKER_TIMINGS.redisTimeoutMs + SCHEDULING_SLACK_MS, holdMs: 1, used: 0 };
        this.#acquires.set(op, { op, proc: this.#proc(slot), ...spec });
        if (this.#send(slot, { type: 'acquire', op, ...spec })) {
          fresh.set(slot, op);
          sent.push(op);
        }
      }
      if (sent.length === 0) break;
      this.#phase = `drain: fresh acquires, attempt ${attempt + 1}`;
      const freshBy = monotonicMs() + SETTLE_WAIT_MS;
      while (!this.#allSettled() && monotonicMs() < freshBy) await sleep(DRAIN_POLL_MS);
      await sleep(FRESH_RETRY_MS);
    }
    return {
      quietAt,
      zeroAt,
      inFlightLeft,
      leftover: [...fresh.values()].every((op) => this.#acquires.get(op)?.outcome === 'granted')
        ? leftover
        : [...leftover, ...(await this.#leftover()).map((line) => `after the fresh acquires: ${line}`)],
      fresh: [...fresh.values()].map((op) => {
        const record = this.#acquires.get(op)!;
        return { proc: record.proc, calledAt: record.calledAt ?? quietAt, settledAt: record.settledAt, granted: record.outcome === 'granted', error: record.error };
      }),
    };
  }

  /** Live leases and queued waiters in Redis now (the first few of each). */
  async #leftover(): Promise<string[]> {
    return this.#readLeftover().catch((error: unknown) => [`(could not read Redis: ${String(error)})`]);
  }

  async #readLeftover(): Promise<string[]> {
    const keys = limiterKeys(this.#name);
    const nowMs = await this.#redisNowMs();
    const leases = await this.#admin!.zrangebyscore(keys.leases, `(${nowMs}`, '+inf', 'WITHSCORES', 'LIMIT', 0, LEFTOVER_SHOWN_MAX);
    const waiting = await this.#admin!.zrange(keys.waiting, '0', String(LEFTOVER_SHOWN_MAX - 1));
    const lines: string[] = [];
    for (let index = 0; index < leases.length; index += 2) lines.push(`lease ${leases[index]} expires in ${Number(leases[index + 1]) - nowMs} ms`);
    for (const member of waiting) lines.push(`waiter '${member}'`);
    const snapshot = await this.#snapshot();
    if (snapshot === undefined) lines.push('(no snapshot: no process answered)');
    else lines.push(`snapshot: ${JSON.stringify(snapshot)}`);
    return lines;
  }

  /** Redis TIME in ms. */
  async #redisNowMs(): Promise<number> {
    const [seconds, micros] = await this.#admin!.time();
    return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
  }

  /** `limiter.snapshot()` in one of the processes (the public API: the data model differs between branches). */
  async #snapshot(): Promise<Extract<ClientMessage, { type: 'snapshot' }> | undefined> {
    const slot = this.#slots.find((candidate) => candidate.ready);
    if (slot?.child === undefined) return undefined;
    const op = this.#nextSnapshotOp++;
    const answer = new Promise<Extract<ClientMessage, { type: 'snapshot' }> | undefined>((resolve) => this.#snapshotWaiters.set(op, resolve));
    if (!this.#send(slot, { type: 'snapshot', op })) return undefined;
    const timer = setTimeout(() => this.#snapshotWaiters.get(op)?.(undefined), SNAPSHOT_WAIT_MS);
    try {
      return await answer;
    } finally {
      clearTimeout(timer);
      this.#snapshotWaiters.delete(op);
    }
  }

  /**
   * What a fresh acquire may legitimately wait for after the run: a fleet-wide pause (a `pause` op,
   * or the grace pause after data loss), or a bucket in debt (actual use above the reservation is
   * paid back before anyone is granted). Neither is a leak: wait them out first.
   */
  async #waitForPauseAndDebt(): Promise<void> {
    const snapshot = await this.#snapshot();
    if (snapshot === undefined || snapshot.error !== undefined) return;
    const pausedMs = Math.max(0, snapshot.pausedUntilMs - snapshot.nowMs);
    const refillPerMs = Math.min(...this.#tokenSegments().map((segment) => segment.value.refillPerMs));
    const debtMs = snapshot.tokens < 0 ? -snapshot.tokens / refillPerMs : 0;
    const waitMs = Math.max(pausedMs, debtMs);
    if (waitMs > 0) await sleep(Math.min(SETTLE_WAIT_MS, waitMs + DRAIN_POLL_MS));
  }

  /**
   * Limits that some process may still have held as the fleet's when Redis lost its data, and so
   * may write back: those in force within one heartbeat (+ slack) before the loss, or before the
   * freeze of a process frozen across it. An apply answered just before a data loss can be undone
   * by it (Redis lost the only copy): a decision, see the checker README and docs/ARCHITECTURE.md.
   */
  #heardBefore(loss: { calledAt: number; settledAt: number }): [number, number] {
    const redisAway = this.#faultLog.filter((fault) => REDIS_AWAY_FAULTS.has(fault.kind)).map((fault) => ({ from: fault.from, to: fault.to ?? loss.settledAt }));
    return heardWindow(loss, CHECKER_TIMINGS.heartbeatMs + SCHEDULING_SLACK_MS, redisAway, this.#frozen);
  }

  /** The concurrency in force over time, as the driver asked for it (see segments.ts for the rules). */
  #concurrencySegments(): Array<Segment<number>> {
    const events: ConcurrencyEvent[] = [
      ...[...this.#controls.values()]
        .filter((control) => control.kind !== 'pause' && control.calledAt !== undefined)
        .map((control) => ({
          kind: control.kind as 'setConcurrency' | 'apply',
          calledAt: control.calledAt!,
          settledAt: control.settledAt!,
          value: control.value,
          unanswered: control.error !== undefined,
        })),
      ...this.#dataLoss.map((loss) => ({ kind: 'dataLoss' as const, calledAt: loss.from, settledAt: loss.to, value: 0, unanswered: false })),
      ...this.#restarts.map((start) => ({ kind: 'processStart' as const, calledAt: start.from, settledAt: start.to, value: this.#limits.concurrency, unanswered: false })),
    ];
    const segments = concurrencySegments(this.#limits.concurrency, events, (loss) => this.#heardBefore(loss));
    if (this.#quietConcurrency !== undefined) {
      // once the run is quiet (no change in flight, none to come), the limit is the one Redis holds: no wider bound excuses a grant
      const { at, value } = this.#quietConcurrency;
      for (const segment of segments) if (segment.to === undefined || segment.to > at) segment.to = at;
      segments.push({ from: at, to: undefined, value, settleBy: at, cause: 'held in Redis once the run was quiet' });
    }
    this.#concurrencyCauses = segments;
    return segments.map(({ from, to, value }) => ({ from, to, value }));
  }

  #tokenSegments(): Array<Segment<TokenLimit>> {
    const limit = (limits: CheckerLimits): TokenLimit => ({ capacity: limits.tokensLimit, refillPerMs: limits.tokensLimit / limits.tokensIntervalMs });
    const segments: Array<Segment<TokenLimit> & { settleBy: number }> = [{ from: 0, to: undefined, value: limit(this.#limits), settleBy: 0 }];
    const events = [
      ...[...this.#controls.values()].filter((control) => control.kind === 'apply' && control.calledAt !== undefined).map((apply) => ({ ...apply, kind: 'apply' as const })),
      ...this.#dataLoss.map((loss) => ({ kind: 'dataLoss' as const, calledAt: loss.from, settledAt: loss.to, limits: undefined, error: undefined })),
      ...this.#restarts.map((start) => ({ kind: 'processStart' as const, calledAt: start.from, settledAt: start.to, limits: this.#limits, error: undefined })),
    ].sort((a, b) => a.calledAt! - b.calledAt!);
    let lostSinceApply = false;
    for (const event of events) {
      const answered = event.error === undefined;
      const settleBy = answered ? event.settledAt! : event.settledAt! + LOST_REPLY_RUNS_WITHIN_MS;
      if (event.kind === 'dataLoss') {
        lostSinceApply = true;
        const [recentFrom, recentTo] = this.#heardBefore(event);
        const capacity = maxIn(segments, recentFrom, recentTo, (limit) => limit.capacity);
        const refillPerMs = maxIn(segments, recentFrom, recentTo, (limit) => limit.refillPerMs);
        segments.push({ from: event.calledAt, to: undefined, value: { capacity, refillPerMs }, settleBy });
        continue;
      }
      if (event.kind === 'processStart') {
        if (lostSinceApply) segments.push({ from: event.calledAt!, to: undefined, value: limit(event.limits), settleBy }); // a first boot (see above)
        continue;
      }
      if (answered) {
        lostSinceApply = false;
        endSupersededSegments(segments, event.calledAt!, settleBy);
      }
      segments.push({ from: event.calledAt!, to: undefined, value: limit(event.limits!), settleBy });
    }
    return segments.map(({ from, to, value }) => ({ from, to, value }));
  }

  /** The violation, the acquires involved, and the faults and limit changes around it. */
  #trace(violation: Violation): string[] {
    const at = (ms: number | undefined) => (ms === undefined ? '—' : `${(ms - this.#t0).toFixed(0)}`);
    const involved = violation.ops.map((op) => this.#acquires.get(op)).filter((record) => record !== undefined);
    // a leak found by the drain may come from anywhere in the run: list every fault then
    const from = violation.invariant === 3 ? this.#t0 : Math.min(violation.atMs, ...involved.map((record) => record.calledAt ?? violation.atMs)) - 500;
    const lines = [`@${at(violation.atMs)} ms: invariant ${violation.invariant} (${INVARIANT_NAMES[violation.invariant]}): ${violation.message}`];
    for (const record of involved.slice(0, TRACE_LINES_MAX)) {
      const outcome =
        record.outcome === 'granted' ? `granted ${record.permitId} fence ${record.fence}` : `${record.outcome ?? 'unsettled'} ${record.error?.code ?? record.error?.name ?? ''}`;
      lines.push(
        `  op ${record.op} ${record.proc}/c${record.client} acquire(${record.pool === undefined ? '' : `pool ${record.pool}, `}tokens ${record.tokens}, priority ${record.priority}, timeoutMs ${String(record.timeoutMs)}, abort ${String(
          record.abortAfterMs,
        )}): ` +
          `called @${at(record.calledAt)} ${outcome} @${at(record.settledAt)}${record.abortedAt === undefined ? '' : ` aborted @${at(record.abortedAt)}`}` +
          `${record.lostAt === undefined ? '' : ` lost @${at(record.lostAt)}`} ended @${at(record.endedAt)} released @${at(record.release?.calledAt)}→${at(
            record.release?.settledAt,
          )}` +
          `${record.release?.leaseLost ? ' (leaseLost)' : ''}${record.release?.error ? ` (release failed ${record.release.error.code ?? record.release.error.name})` : ''}${
            record.killedAt === undefined ? '' : ` killed @${at(record.killedAt)}`
          }`,
      );
    }
    for (const proc of new Set(involved.map((record) => record.proc))) {
      const exit = this.#exits.get(proc);
      if (exit !== undefined) lines.push(`  process ${proc} ${exit}`);
    }
    for (const fault of this.#faultLog) {
      if ((fault.to ?? Infinity) >= from && fault.from <= violation.atMs)
        lines.push(`  fault ${fault.kind}: ${fault.detail} @${at(fault.from)}→${at(fault.to)}${fault.error ? ` (${fault.error})` : ''}`);
    }
    for (const control of this.#controls.values()) {
      if (control.kind === 'pause' || control.calledAt === undefined) continue;
      if ((control.settledAt ?? Infinity) >= from - (violation.invariant === 1 ? 2_000 : 0) && control.calledAt <= violation.atMs) {
        lines.push(
          `  op ${control.op} ${control.proc} ${control.kind}(${control.value}) @${at(control.calledAt)}→${at(control.settledAt)}${
            control.error ? ` failed ${control.error.code ?? control.error.name}` : ''
          }`,
        );
      }
    }
    if (violation.invariant === 1) {
      for (const segment of this.#concurrencyCauses) {
        if ((segment.to ?? Infinity) >= from - 2_000 && segment.from <= violation.atMs)
          lines.push(`  concurrency ${segment.value} in force @${at(segment.from)}→${at(segment.to)} (${segment.cause})`);
      }
    }
    for (const window of this.#frozen) {
      if (window.to >= from && window.from <= violation.atMs)
        lines.push(`  ${window.notRunning ? 'not running (no CPU)' : 'frozen'} ${window.proc} @${at(window.from)}→${at(window.to)}`);
    }
    return lines;
  }
}
