import { TollgateError } from '@tollgate/limiter';
import { z } from 'zod';

/** Anthropic's error envelope (anthropic-api.md §2); extra fields (`error.details`) are kept. */
export const errorBodySchema = z.looseObject({
  type: z.literal('error'),
  error: z.looseObject({ type: z.string(), message: z.string() }),
  request_id: z.string().nullable().optional(),
});

export type ErrorBody = z.infer<typeof errorBodySchema>;

/** A Messages request (or job option) that fails validation; `message` names each bad field. Nothing was enqueued. */
export class InvalidRequestError extends TollgateError {
  readonly status = 400;
  readonly type = 'invalid_request_error';
  constructor(message: string, options?: ErrorOptions) {
    super('INVALID_REQUEST', message, options);
  }
}

/**
 * A job that failed for good: the upstream error (status, `error.type`, message and body as the API sent them) or a
 * Tollgate failure put in the same shape.
 */
export class UpstreamError extends TollgateError {
  readonly status: number;
  readonly type: string;
  /** The whole error body, Anthropic's envelope. */
  readonly body: ErrorBody;
  readonly requestId: string | null;
  readonly jobId: string;
  /** The upstream's relayed response headers (request id, rate-limit figures); empty when the upstream did not answer. */
  readonly headers: Readonly<Record<string, string>>;
  constructor(jobId: string, status: number, body: ErrorBody, headers: Readonly<Record<string, string>> = {}) {
    super('UPSTREAM_ERROR', body.error.message);
    this.headers = headers;
    this.jobId = jobId;
    this.status = status;
    this.type = body.error.type;
    this.body = body;
    this.requestId = body.request_id ?? null;
  }
}

/** `enqueueAndWait` / `wait` gave up before the job finished; the job itself goes on. */
export class JobWaitTimeoutError extends TollgateError {
  readonly jobId: string;
  readonly timeoutMs: number;
  constructor(jobId: string, timeoutMs: number) {
    super('JOB_WAIT_TIMEOUT', `job ${jobId} did not finish within ${timeoutMs} ms`);
    this.jobId = jobId;
    this.timeoutMs = timeoutMs;
  }
}

/** Redis did not answer in time: nothing was enqueued (BullMQ adds a job in one script, all or nothing). */
export class QueueUnavailableError extends TollgateError {
  constructor(message: string, options?: ErrorOptions) {
    super('QUEUE_UNAVAILABLE', message, options);
  }
}

/** The same `Idempotency-Key` came back with a different request body: the first job stands, nothing was enqueued. */
export class IdempotencyConflictError extends TollgateError {
  readonly status = 409;
  readonly type = 'invalid_request_error';
  readonly jobId: string;
  constructor(jobId: string) {
    super('IDEMPOTENCY_CONFLICT', 'Idempotency-Key reused with a different body');
    this.jobId = jobId;
  }
}

/** A tenant has as many unfinished jobs as it may; nothing was enqueued. */
export class TenantQueueFullError extends TollgateError {
  readonly status = 429;
  readonly type = 'rate_limit_error';
  readonly tenant: string;
  readonly max: number;
  constructor(tenant: string, max: number) {
    super('TENANT_QUEUE_FULL', `tenant ${tenant} has ${max} unfinished jobs, the most it may have queued; retry when some have finished`);
    this.tenant = tenant;
    this.max = max;
  }
}

/**
 * A waited-for job is gone while it had not finished: Redis lost its data (a restart without persistence, a flush,
 * a failover to an empty replica) or the job was removed. Sending the request again is safe and is what to do.
 */
export class JobLostError extends TollgateError {
  readonly status = 503;
  readonly jobId: string;
  constructor(jobId: string) {
    super('JOB_LOST', `job ${jobId} was lost with the queue's data; retry`);
    this.jobId = jobId;
  }
}
