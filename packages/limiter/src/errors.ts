import { formatValue } from './options.js';
/** Stable codes: callers may branch on them; messages may change, codes never. */
export type TollgateErrorCode =
  | 'LIMITER_UNAVAILABLE'
  | 'ACQUIRE_TIMEOUT'
  | 'ACQUIRE_ABORTED'
  | 'COST_EXCEEDS_CAPACITY'
  | 'INVALID_CONFIG'
  | 'INVALID_COST'
  | 'INVALID_ARGUMENT'
  | 'LEASE_LOST'
  | 'LIMITER_CLOSED';

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

/** An option passed to a limiter method is out of range (priority, timeoutMs, a pause, a concurrency); names the field and the value. */
export class InvalidArgumentError extends TollgateError {
  readonly field: string;
  constructor(field: string, value: unknown, expected: string) {
    super('INVALID_ARGUMENT', `${field}: expected ${expected} (got ${formatValue(value)})`);
    this.field = field;
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
