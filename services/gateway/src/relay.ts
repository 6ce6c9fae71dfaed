import { JOB_FAILED_EVENT, JOB_UPSTREAM_EVENT, JobLostError, JobWaitTimeoutError, UpstreamError, anthropicError, decodeFailure, type JobEvent, type Producer } from '@tollgate/queue';
import type { FastifyReply, FastifyRequest } from 'fastify';

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
}

/**
 * Relays a streaming job's events as SSE. Nothing is sent until the first event: a job that fails before any output
 * gets a plain JSON error with the upstream status, as the API does. Once events flow, a failure becomes an
 * `event: error`. If the worker dies mid-answer and another attempt starts, the half-sent answer ends with an error
 * event (the client never sees two answers spliced together).
 */
export async function relayJobEvents(options: RelayOptions): Promise<void> {
  const { request, reply, producer, jobId, follow, waitMs } = options;
  const stop = new AbortController();
  const raw = reply.raw;
  let attempt: number | undefined;
  let done = false;
  reply.hijack();
  raw.on('close', () => stop.abort()); // the client left: stop reading (the job itself finishes and is kept)

  const fail = (status: number, body: ReturnType<typeof anthropicError>) => {
    if (done) return;
    done = true;
    if (!raw.headersSent) {
      raw.writeHead(status, { 'content-type': 'application/json', 'request-id': request.id, 'tollgate-job-id': jobId });
      raw.end(JSON.stringify(body));
    } else {
      raw.end(sse('error', JSON.stringify({ type: 'error', error: body.error })));
    }
    stop.abort();
  };

  // The job may fail without writing to its stream (e.g. stalled too often) or not finish in time: watch it too.
  const watched = producer.wait(jobId, { timeoutMs: waitMs }).catch((error: unknown) => {
    if (error instanceof UpstreamError) fail(error.status, { ...error.body, request_id: error.requestId ?? request.id });
    else if (error instanceof JobLostError) fail(503, anthropicError(503, error.message, request.id));
    else if (error instanceof JobWaitTimeoutError) fail(504, anthropicError(504, `no answer within ${waitMs} ms (job ${jobId} continues)`, request.id));
    else fail(503, anthropicError(503, 'the queue is unavailable', request.id));
  });

  try {
    for await (const event of follow(stop.signal)) {
      if (done) break;
      if (event.name === JOB_FAILED_EVENT) {
        const failure = decodeFailure(event.data);
        fail(failure.status, failure.body);
        break;
      }
      if (event.name === JOB_UPSTREAM_EVENT) continue; // the upstream's headers: not an SSE event of the answer
      if (attempt !== undefined && event.attempt !== attempt) {
        fail(529, anthropicError(529, 'the worker running this answer stopped; the answer was cut', request.id));
        break;
      }
      attempt = event.attempt;
      if (!raw.headersSent) {
        raw.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive', 'request-id': request.id, 'tollgate-job-id': jobId });
      }
      raw.write(sse(event.name, event.data));
      if (TERMINAL_EVENTS.has(event.name)) {
        done = true;
        raw.end();
        break;
      }
    }
  } catch (error) {
    if (!done && !stop.signal.aborted) fail(503, anthropicError(503, `the event stream broke: ${error instanceof Error ? error.message : String(error)}`, request.id));
  } finally {
    stop.abort();
    if (!done && !raw.writableEnded) raw.end();
    void watched;
  }
}
