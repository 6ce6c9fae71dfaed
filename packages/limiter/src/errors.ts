import type { z } from 'zod';
import { describeZodError, formatValue } from './options.js';
/**
 * Stable codes: callers may branch on them; messages may change, codes never. One list for every package (the queue's
 * errors are TollgateErrors too), so a code names one failure across Tollgate.
 */
export type TollgateErrorCode =
  // @tollgate/limiter (and the options of every package)
  | 'LIMITER_UNAVAILABLE'
  | 'ACQUIRE_TIMEOUT'
  | 'ACQUIRE_ABORTED'
  | 'COST_EXCEEDS_CAPACITY'
  | 'BUDGET_EXCEEDED'
  | 'INVALID_CONFIG'
  | 'INVALID_COST'
  | 'INVALID_ARGUMENT'
  | 'LEASE_LOST'
  | 'LIMITER_CLOSED'
  // @tollgate/queue
  | 'QUEUE_UNAVAILABLE'
  | 'INVALID_REQUEST'
  | 'UPSTREAM_ERROR'
  | 'JOB_WAIT_TIMEOUT'
  | 'JOB_LOST'
  | 'IDEMPOTENCY_CONFLICT'
  | 'TENANT_QUEUE_FULL'
  // @tollgate/cli
  | 'CLI_FAILED';

/** The root of every error Tollgate throws on purpose. */
export class TollgateError extends Error {
  readonly code: TollgateErrorCode;
  constructor(code: TollgateErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.name = new.target.name; // 'LeaseLostError' in logs, not 'Error'
  }
}

/** Redis did not answer within `redisTimeoutMs`, or the connection is down. Fail closed: no permit. */
export class LimiterUnavailableError extends TollgateError {
  constructor(limiterName: string, options?: ErrorOptions) {
    super('LIMITER_UNAVAILABLE', `limiter ${limiterName}: Redis is unreachable, no permit was granted`, options);
  }
}

/** No permit was granted within `timeoutMs`; the waiter has left the queue. */
export class AcquireTimeoutError extends TollgateError {
  readonly timeoutMs: number;
  constructor(limiterName: string, timeoutMs: number) {
    super('ACQUIRE_TIMEOUT', `limiter ${limiterName}: no permit within ${timeoutMs} ms`);
    this.timeoutMs = timeoutMs;
  }
}

/** The caller's signal aborted the wait; the waiter has left the queue. */
export class AcquireAbortedError extends TollgateError {
  constructor(limiterName: string, options?: ErrorOptions) {
    super('ACQUIRE_ABORTED', `limiter ${limiterName}: acquire was aborted`, options);
  }
}

/** The cost can never be granted: it is larger than a bucket's capacity. */
export class CostExceedsCapacityError extends TollgateError {
  readonly dimension: string;
  readonly cost: number;
  readonly capacity: number;
  constructor(limiterName: string, dimension: string, cost: number, capacity: number) {
    super('COST_EXCEEDS_CAPACITY', `limiter ${limiterName}: cost ${cost} of "${dimension}" exceeds its capacity ${capacity}`);
    this.dimension = dimension;
    this.cost = cost;
    this.capacity = capacity;
  }
}

/**
 * A budget of the call's group (a tenant's, DESIGN §9) cannot cover its cost now: the call was refused at once, or
 * left the queue when its group's other calls spent the budget while it waited. Nothing was granted. `dimension` is
 * the budget's name in the group (e.g. `outputTokensPerDay`); `retryAfterMs`, how long until it will have refilled
 * enough for this cost (Redis time). Recognize it by shape across builds with {@link isBudgetExceededError}.
 */
export class BudgetExceededError extends TollgateError {
  readonly group: string;
  readonly dimension: string;
  readonly retryAfterMs: number;
  constructor(limiterName: string, group: string, dimension: string, retryAfterMs: number) {
    super('BUDGET_EXCEEDED', `limiter ${limiterName}: group ${group} has spent its budget ${dimension}; it covers this call again in ${retryAfterMs} ms`);
    this.group = group;
    this.dimension = dimension;
    this.retryAfterMs = retryAfterMs;
  }
}

/** A {@link BudgetExceededError} of either build of this package (ESM or CommonJS), read by its shape (STYLE 19). */
export function isBudgetExceededError(error: unknown): error is BudgetExceededError {
  if (!(error instanceof Error)) return false;
  const shape = error as Partial<Record<'code' | 'group' | 'dimension' | 'retryAfterMs', unknown>>;
  return shape.code === 'BUDGET_EXCEEDED' && typeof shape.group === 'string' && typeof shape.dimension === 'string' && typeof shape.retryAfterMs === 'number';
}

/** The options (or environment) are invalid; the message names the field and the value. */
export class InvalidConfigError extends TollgateError {
  constructor(message: string, options?: ErrorOptions) {
    super('INVALID_CONFIG', message, options);
  }
}

/** A cost names a dimension that is not configured, or is not a finite number ≥ 0. */
export class InvalidCostError extends TollgateError {
  constructor(message: string) {
    super('INVALID_COST', message);
  }
}

/**
 * An argument or option passed to a method is out of range (a priority, `timeoutMs`, a pause, a concurrency, a job
 * id, enqueue options); names the field and the value.
 */
export class InvalidArgumentError extends TollgateError {
  readonly field: string;
  constructor(field: string, value: unknown, expected: string, options?: ErrorOptions) {
    super('INVALID_ARGUMENT', `${field}: expected ${expected} (got ${formatValue(value)})`, options);
    this.field = field;
  }

  /** A failed zod parse of a method's options (`method` names them): `field` is the first bad one, the message names each. */
  static fromZod(method: string, error: z.ZodError, input: unknown): InvalidArgumentError {
    const field = error.issues[0]?.path.map(String).join('.') || '(root)';
    const invalid = new InvalidArgumentError(field, undefined, '', { cause: error });
    invalid.message = `invalid ${method}: ${describeZodError(error, input)}`;
    return invalid;
  }
}

/** The lease behind a permit expired before release: its work may have run beyond the limit. */
export class LeaseLostError extends TollgateError {
  readonly permitId: string;
  constructor(permitId: string) {
    super('LEASE_LOST', `lease ${permitId} was lost before release`);
    this.permitId = permitId;
  }
}

/** The limiter was closed while this call waited or after it closed. */
export class LimiterClosedError extends TollgateError {
  constructor(limiterName: string) {
    super('LIMITER_CLOSED', `limiter ${limiterName} is closed`);
  }
}

/** Any thrown value as an Error: an Error as is, anything else (a string, an object) wrapped with its `String()`. */
export function toError(value: unknown): Error {
  if (value instanceof Error) return value;
  return new Error(String(value));
}
