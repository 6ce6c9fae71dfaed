import { JobLostError, JobWaitTimeoutError, UpstreamError, type Producer, type UpstreamMeta } from '@tollgate/queue';
import { toError } from '@tollgate/limiter/internal';
import { JOB_FAILED_EVENT, JOB_UPSTREAM_EVENT, anthropicError, decodeFailure, upstreamMetaSchema, type JobEvent } from '@tollgate/queue/internal';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { failedJobBody } from './http-errors.js';

/** SSE events after which the answer is over (anthropic-api.md §1.3). */
const TERMINAL_EVENTS: ReadonlySet<string> = new Set(['message_stop', 'error']);

const sse = (name: string, data: string) => `event: ${name}\ndata: ${data}\n\n`;

export interface RelayOptions {
  request: FastifyRequest;
  reply: FastifyReply;
  producer: Producer;
  jobId: string;
  /** The job's events from the start of its stream, until `signal` aborts (a shared reader's subscription). */
  follow: (signal: AbortSignal) => AsyncIterable<JobEvent>;
  waitMs: number;
  /** The answer's headers from what the worker saw of the upstream call (its first event). */
  headers: (upstream: UpstreamMeta) => Record<string, string>;
}

/**
 * Relays a streaming job's events as SSE. Nothing is sent until the first event: a job that fails before any output
 * gets a plain JSON error with the upstream status, as the API does. Once events flow, a failure becomes an
 * `event: error`. If the worker dies mid-answer and another attempt starts, the half-sent answer ends with an error
 * event (the client never sees two answers spliced together).
 */
export async function relayJobEvents(options: RelayOptions): Promise<void> {
  const { request, reply, producer, jobId, follow, waitMs } = options;
  let answerHeaders: Record<string, string> = { 'request-id': request.id, 'tollgate-request-id': request.id, 'tollgate-job-id': jobId };
  const stop = new AbortController();
  const raw = reply.raw;
  let attempt: number | undefined;
  let done = false;
  reply.hijack();
  raw.on('close', () => {
    stop.abort();
    // the client left before the end: its job is removed if still queued, else aborted by its worker, whose permit is
    // released as the call ends (nothing is billed beyond what the upstream did until then)
    if (!done) void producer.abandon(jobId, { abortRunning: true }).catch(() => {});
  });

  const fail = (status: number, body: ReturnType<typeof anthropicError>, upstreamHeaders: Record<string, string> = {}) => {
    if (done) return;
    done = true;
    if (!raw.headersSent) {
      raw.writeHead(status, { ...answerHeaders, ...upstreamHeaders, 'content-type': 'application/json' });
      raw.end(JSON.stringify(body));
    } else {
      raw.end(sse('error', JSON.stringify({ type: 'error', error: body.error })));
    }
    stop.abort();
  };

  // The job may fail without writing to its stream (e.g. stalled too often) or not finish in time: watch it too.
  const watched = producer.wait(jobId, { timeoutMs: waitMs }).catch((error: unknown) => {
    if (error instanceof UpstreamError) fail(error.status, failedJobBody(error, request), error.headers);
    else if (error instanceof JobLostError) fail(503, anthropicError(503, error.message, request.id));
    else if (error instanceof JobWaitTimeoutError) fail(504, anthropicError(504, `no answer within ${waitMs} ms (job ${jobId} continues)`, request.id));
    else fail(503, anthropicError(503, 'the queue is unavailable', request.id));
  });

  try {
    for await (const event of follow(stop.signal)) {
      if (done) break;
      if (event.name === JOB_FAILED_EVENT) {
        const failure = decodeFailure(event.data);
        fail(failure.status, failure.body, failure.headers);
        break;
      }
      if (event.name === JOB_UPSTREAM_EVENT) {
        // the upstream's headers, before its first SSE event: they go on this answer's 200
        const upstream = upstreamMetaSchema.safeParse(JSON.parse(event.data));
        if (upstream.success && !raw.headersSent) answerHeaders = options.headers(upstream.data);
        continue;
      }
      if (attempt !== undefined && event.attempt !== attempt) {
        fail(529, anthropicError(529, 'the worker running this answer stopped; the answer was cut', request.id));
        break;
      }
      attempt = event.attempt;
      if (!raw.headersSent) {
        raw.writeHead(200, { ...answerHeaders, 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive' });
      }
      raw.write(sse(event.name, event.data));
      if (TERMINAL_EVENTS.has(event.name)) {
        done = true;
        raw.end();
        break;
      }
    }
  } catch (error) {
    if (!done && !stop.signal.aborted) fail(503, anthropicError(503, `the event stream broke: ${toError(error).message}`, request.id));
  } finally {
    stop.abort();
    if (!done && !raw.writableEnded) raw.end();
    void watched;
  }
}
