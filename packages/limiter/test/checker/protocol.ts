import { TollgateError } from '../../src/index.js';
import { toError } from '../../src/internal.js';

/** Error messages travel cut to this length. */
const ERROR_MESSAGE_MAX = 200;

/**
 * The messages between the checker's driver and its client processes (over the fork() IPC channel).
 * Every timestamp is `monotonicMs()`: CLOCK_MONOTONIC, one clock for every process on the machine,
 * so the driver can order events from different processes without trusting any of them.
 */

/** Milliseconds of the system-wide monotonic clock (the same value in every process at one instant). */
export function monotonicMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** An acquire's pool that the client resolves: the first pool of the limits in force, or none without pools. */
export const ANY_POOL = '*';

/** The limits a client starts with, or that an apply writes for the whole fleet. */
export interface CheckerLimits {
  concurrency: number;
  /** The one rate dimension the checker uses: capacity `tokensLimit`, refilled over `tokensIntervalMs`. */
  tokensLimit: number;
  tokensIntervalMs: number;
  /** 0: no pools; else the limiter has this many pools ('p0', 'p1', …), each with that one rate (DESIGN §9). */
  pools: number;
  /** Fair share between groups (DESIGN §9, issue 15): each acquire names group g0, g1 or g2 ({@link CHECKER_GROUPS} weights). */
  groups: boolean;
}

export interface CheckerTimings {
  leaseTtlMs: number;
  heartbeatMs: number;
  redisTimeoutMs: number;
}

/** One acquire as the schedule draws it: the arguments, and what the caller does with the permit. */
export interface AcquireSpec {
  /** The limiter within its process (the schedule numbers clients fleet-wide; the driver maps them). */
  client: number;
  /** The pool it takes from (a limiter with pools); undefined: none; {@link ANY_POOL}: the first of the pools in force, if any. */
  pool?: string | undefined;
  tokens: number;
  priority: number;
  timeoutMs?: number | undefined;
  /** 0: abort synchronously right after the call (during its first round trip). */
  abortAfterMs?: number | undefined;
  /** How long the caller holds the permit (one call to the witness server). */
  holdMs: number;
  /** Tokens reported as used on release; undefined = release without `used`. */
  used?: number | undefined;
}

export type DriverCommand =
  | ({ type: 'acquire'; op: number } & AcquireSpec)
  | { type: 'pause'; op: number; client: number; ms: number; pool?: string | undefined }
  | { type: 'setConcurrency'; op: number; client: number; concurrency: number }
  | { type: 'apply'; op: number; client: number; limits: CheckerLimits }
  /** Answer with `limiter.snapshot()` of the process's first limiter. */
  | { type: 'snapshot'; op: number }
  /** A standby process: connect now. */
  | { type: 'start' }
  | { type: 'close' };

export interface ErrorInfo {
  name: string;
  /** The TollgateError code; undefined when the error is not a TollgateError. */
  code: string | undefined;
  message: string;
}

export type ClientMessage =
  /** A standby process has loaded and waits for `start`. */
  | { type: 'standing' }
  | { type: 'ready'; pid: number; ownerIds: string[] }
  | { type: 'startFailed'; error: ErrorInfo }
  | {
      type: 'granted';
      op: number;
      calledAt: number;
      settledAt: number;
      abortedAt?: number | undefined;
      permitId: string;
      fence: number;
      grantedAtMs: number;
      /** Its cost was charged to its group's budget (the permit's cost names one): what invariant 4 counts per group. */
      budgeted?: boolean | undefined;
    }
  | { type: 'rejected'; op: number; calledAt: number; settledAt: number; abortedAt?: number | undefined; error: ErrorInfo }
  /** The permit's signal aborted (lease lost). */
  | { type: 'lost'; op: number; lostAt: number }
  /** The guarded work ended (before release was called). */
  | { type: 'ended'; op: number; endedAt: number }
  | { type: 'released'; op: number; calledAt: number; settledAt: number; leaseLost?: boolean | undefined; error?: ErrorInfo | undefined }
  | {
      type: 'snapshot';
      op: number;
      nowMs: number;
      inFlight: number;
      waiting: number;
      pausedUntilMs: number;
      tokens: number;
      /** The effective concurrency Redis holds (null: none). */
      concurrency: number | null;
      error?: ErrorInfo | undefined;
    }
  | { type: 'done'; op: number; calledAt: number; settledAt: number; error?: ErrorInfo | undefined; value?: number | undefined }
  /** The process did not run for `to − from` ms (its event loop ran late and it used no CPU meanwhile: the machine gave it none). */
  | { type: 'notRunning'; from: number; to: number };

export function errorInfo(error: unknown): ErrorInfo {
  if (error instanceof Error) {
    const cause = error.cause === undefined ? '' : ` (cause: ${toError(error.cause).message})`;
    const message = `${error.message}${cause}`.slice(0, ERROR_MESSAGE_MAX);
    return { name: error.name, code: error instanceof TollgateError ? error.code : undefined, message };
  }
  return { name: typeof error, code: undefined, message: String(error).slice(0, ERROR_MESSAGE_MAX) };
}
