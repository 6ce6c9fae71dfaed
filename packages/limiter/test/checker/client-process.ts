/**
 * One client process of the fault checker (started by driver.ts with fork()). It runs CLIENTS
 * limiters of one name and does exactly what the driver's commands say; it makes no random
 * choices of its own. For every acquire it reports when it was called, when it settled, when the
 * guarded work held the permit and whether the permit's signal aborted, all on the shared
 * monotonic clock. The work itself is one call to the driver's witness server, which counts calls
 * in flight from outside the limiter.
 *
 * Settings come as JSON in CHECKER_CLIENT (see ClientSettings). `limiterName` may differ from the
 * fleet's: the checker's self-test starts such a process on purpose, a configuration that
 * double-grants, to prove that the invariants catch it.
 */
import { request } from 'node:http';
import { createLimiter, type Limiter, type Permit } from '../../src/index.js';
import { applyLimits, groupOf, limiterOptions, TOKENS } from './limits.js';
import { ANY_POOL, errorInfo, monotonicMs, type CheckerLimits, type CheckerTimings, type ClientMessage, type DriverCommand } from './protocol.js';

export interface ClientSettings {
  redisUrl: string;
  /** The name this process's limiters use (the fleet's name, unless a self-test breaks it). */
  limiterName: string;
  clients: number;
  limits: CheckerLimits;
  timings: CheckerTimings;
  witnessUrl: string;
  /** Load, then wait for the driver's `start` before connecting (a warm spare, to start as fast as a real process). */
  standby: boolean;
  /** Self-test of the driver's deadline: once ready, ignore every command (close too), as a wedged process would. */
  wedged: boolean;
}

const settings = JSON.parse(process.env.CHECKER_CLIENT ?? '{}') as ClientSettings;
const send = (message: ClientMessage): void => {
  if (process.connected) process.send?.(message);
};

function hold(op: number, holdMs: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const req = request(`${settings.witnessUrl}/hold?op=${op}&ms=${holdMs}&pid=${process.pid}`, { agent: false, signal }, (res) => {
      res.resume();
      res.on('end', () => resolve());
      res.on('error', () => resolve());
    });
    req.on('error', () => resolve()); // aborted by the signal, or the witness went away: the work ends either way
    req.end();
  });
}

async function holdAndRelease(command: Extract<DriverCommand, { type: 'acquire' }>, permit: Permit): Promise<void> {
  const onLost = () => send({ type: 'lost', op: command.op, lostAt: monotonicMs() });
  if (permit.signal.aborted) onLost();
  else permit.signal.addEventListener('abort', onLost, { once: true });
  if (!permit.signal.aborted) await hold(command.op, command.holdMs, permit.signal);
  send({ type: 'ended', op: command.op, endedAt: monotonicMs() });
  const calledAt = monotonicMs();
  try {
    const result = await permit.release(command.used === undefined ? {} : { used: { [TOKENS]: command.used } });
    send({ type: 'released', op: command.op, calledAt, settledAt: monotonicMs(), leaseLost: result.leaseLost });
  } catch (error) {
    send({ type: 'released', op: command.op, calledAt, settledAt: monotonicMs(), error: errorInfo(error) });
  }
}

function acquire(limiter: Limiter, command: Extract<DriverCommand, { type: 'acquire' }>): void {
  const controller = command.abortAfterMs === undefined ? undefined : new AbortController();
  let abortedAt: number | undefined;
  let abortTimer: NodeJS.Timeout | undefined;
  const abort = () => {
    abortedAt = monotonicMs();
    controller?.abort(new Error('aborted by the checker'));
  };
  const calledAt = monotonicMs();
  const pool = command.pool === ANY_POOL ? limiter.pools?.[0] : command.pool;
  const acquiring = limiter.acquire({
    ...(pool === undefined ? {} : { pool }),
    cost: { [TOKENS]: command.tokens },
    group: groupOf(command.op), // changes nothing in a limiter without groups
    priority: command.priority,
    ...(command.timeoutMs === undefined ? {} : { timeoutMs: command.timeoutMs }),
    ...(controller === undefined ? {} : { signal: controller.signal }),
  });
  if (command.abortAfterMs === 0)
    abort(); // during the acquire's first round trip
  else if (command.abortAfterMs !== undefined) abortTimer = setTimeout(abort, command.abortAfterMs);
  acquiring.then(
    (permit) => {
      const settledAt = monotonicMs();
      clearTimeout(abortTimer);
      const budgeted = Object.keys(permit.cost).some((dimension) => dimension.startsWith('~')); // '~<group>/<bucket>': a budget's
      send({ type: 'granted', op: command.op, calledAt, settledAt, abortedAt, permitId: permit.id, fence: permit.fence, grantedAtMs: permit.grantedAtMs, budgeted });
      void holdAndRelease(command, permit);
    },
    (error: unknown) => {
      const settledAt = monotonicMs();
      clearTimeout(abortTimer);
      send({ type: 'rejected', op: command.op, calledAt, settledAt, abortedAt, error: errorInfo(error) });
    },
  );
}

/** The lowest of some bucket levels (0 without buckets). */
function lowest(levels: number[]): number {
  return levels.length === 0 ? 0 : Math.min(...levels);
}

async function snapshot(op: number, limiter: Limiter): Promise<void> {
  try {
    const state = await limiter.snapshot();
    send({
      type: 'snapshot',
      op,
      nowMs: state.nowMs,
      inFlight: state.inFlight,
      waiting: state.waiting,
      // with pools, the latest pause and the lowest bucket of any pool (what the drain waits out)
      pausedUntilMs: Math.max(state.pausedUntilMs, ...Object.values(state.pools).map((pool) => pool.pausedUntilMs)),
      tokens: lowest([...Object.values(state.buckets), ...Object.values(state.budgets).flatMap((budgets) => Object.values(budgets))].map((bucket) => bucket.tokens)),
      concurrency: state.concurrency,
    });
  } catch (error) {
    send({ type: 'snapshot', op, nowMs: 0, inFlight: 0, waiting: 0, pausedUntilMs: 0, tokens: 0, concurrency: null, error: errorInfo(error) });
  }
}

async function control(command: Exclude<DriverCommand, { type: 'acquire' | 'close' | 'start' | 'snapshot' }>, limiter: Limiter): Promise<void> {
  const calledAt = monotonicMs();
  try {
    let value: number | undefined;
    if (command.type === 'pause') await limiter.pause(command.ms, 'checker', command.pool === undefined ? {} : { pool: command.pool });
    else if (command.type === 'setConcurrency') value = await limiter.setConcurrency(command.concurrency);
    else await applyLimits(limiter, command.limits, settings.timings);
    send({ type: 'done', op: command.op, calledAt, settledAt: monotonicMs(), value });
  } catch (error) {
    send({ type: 'done', op: command.op, calledAt, settledAt: monotonicMs(), error: errorInfo(error) });
  }
}

const limiters = Array.from({ length: settings.clients }, () => {
  const limiter = createLimiter(limiterOptions(settings.redisUrl, settings.limiterName, settings.limits, settings.timings));
  limiter.on('redisError', () => {}); // faults are the point of the checker
  return limiter;
});

/**
 * Time this process did not run: a check every RUN_CHECK_MS that finds the gap since the last one
 * longer than the interval plus the CPU the process used meanwhile reports the difference, when it
 * is at least NOT_RUNNING_MIN_MS. A process the machine gives no CPU is stopped as surely as one
 * sent SIGSTOP (the driver treats both alike); time it spent running its own code is never counted.
 */
const RUN_CHECK_MS = 10;
const NOT_RUNNING_MIN_MS = 50;
let checkedAt = monotonicMs();
let cpuAt = process.cpuUsage();
setInterval(() => {
  const now = monotonicMs();
  const used = process.cpuUsage(cpuAt);
  cpuAt = process.cpuUsage();
  const notRunningMs = now - checkedAt - RUN_CHECK_MS - (used.user + used.system) / 1000;
  if (notRunningMs >= NOT_RUNNING_MIN_MS) send({ type: 'notRunning', from: now - notRunningMs, to: now });
  checkedAt = now;
}, RUN_CHECK_MS).unref();

/** A process started during a fault retries its ready() this often, this many times. */
const READY_RETRY_MS = 100;
const READY_ATTEMPTS_MAX = 100;

async function start(limiter: Limiter): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await limiter.ready();
      return;
    } catch (error) {
      if (attempt >= READY_ATTEMPTS_MAX) throw error;
      await new Promise((resolve) => setTimeout(resolve, READY_RETRY_MS));
    }
  }
}

if (settings.standby) {
  await new Promise<void>((resolve) => {
    const onStart = (command: DriverCommand) => {
      if (command.type !== 'start') return;
      process.off('message', onStart);
      resolve();
    };
    process.on('message', onStart);
    send({ type: 'standing' });
  });
}

try {
  await Promise.all(limiters.map(start));
  send({ type: 'ready', pid: process.pid, ownerIds: limiters.map((limiter) => limiter.ownerId) });
} catch (error) {
  send({ type: 'startFailed', error: errorInfo(error) });
}

process.on('message', (command: DriverCommand) => {
  if (settings.wedged) return; // answers nothing, and stays (only SIGKILL ends it)
  if (command.type === 'start') return;
  if (command.type === 'close') {
    void Promise.all(limiters.map((limiter) => limiter.close())).finally(() => process.exit(0));
    return;
  }
  if (command.type === 'snapshot') {
    if (limiters[0] !== undefined) void snapshot(command.op, limiters[0]);
    return;
  }
  const limiter = limiters[command.client % limiters.length];
  if (limiter === undefined) return;
  if (command.type === 'acquire') acquire(limiter, command);
  else void control(command, limiter);
});
process.on('disconnect', () => {
  if (!settings.wedged) process.exit(0);
}); // the driver is gone: nothing left to report to
