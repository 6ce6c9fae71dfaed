import type Anthropic from '@anthropic-ai/sdk';
import { Stream } from '@anthropic-ai/sdk/core/streaming';
import type { Permit } from '@tollgate/limiter';
import type { WithResponse } from './api-promise.js';
import type { CallState, CallView, LimitedRunner, RequestOptions } from './attempts.js';
import { classifyFailure } from './classify.js';
import { idleLimited, StreamIdleTimeoutError } from './stream-idle.js';
import { deliversOutput, StreamUsage } from './usage.js';

type RawEvent = Anthropic.RawMessageStreamEvent;

interface OpenedStream {
  permit: Permit;
  /** Aborted by the idle timer: ends this attempt's request. */
  idle: AbortController;
  stream: Stream<RawEvent>;
  response: Response;
  request_id: string | null | undefined;
  workspace_id: string | null | undefined;
}

/** Attempts until a stream's headers arrive; the permit stays held for the stream. */
async function openStream(
  runner: LimitedRunner,
  state: CallState,
  params: Anthropic.MessageCreateParamsStreaming,
  options: RequestOptions | undefined,
  stop: AbortSignal,
): Promise<OpenedStream> {
  for (;;) {
    const permit = await runner.acquire(state);
    const idle = new AbortController();
    try {
      const opened = await runner.client.messages.create(params, runner.sdkOptions(options, permit, stop, idle.signal)).withResponse();
      await runner.observe(permit.pool, opened.response.headers, false);
      return { permit, idle, stream: opened.data, response: opened.response, request_id: opened.request_id, workspace_id: opened.workspace_id };
    } catch (error) {
      await runner.failed(state, permit, error);
    }
  }
}

/**
 * `create({ stream: true })` under the limiter: one permit per attempt, held until the stream ends. An attempt that
 * fails before any output reached the caller is retried under a fresh permit, invisibly; after output, the error
 * surfaces and what was produced is settled.
 */
export async function createRetryingStream(
  runner: LimitedRunner,
  params: Anthropic.MessageCreateParamsStreaming,
  options: RequestOptions | undefined,
  view: CallView,
): Promise<WithResponse<Stream<RawEvent>>> {
  const state = await runner.begin(params, options, view);
  const stop = new AbortController(); // the returned Stream's controller: aborting it stops whichever attempt runs
  const first = await openStream(runner, state, params, options, stop.signal);
  let current = first;
  let usage = new StreamUsage();
  let started = false;
  let finished = false;
  const finish = async (outcome: 'clean' | 'stopped') => {
    if (finished) return;
    finished = true;
    if (outcome === 'clean') await runner.succeeded(current.permit, usage.used(), current.response.headers);
    else await runner.release(current.permit, usage.used());
  };
  // Aborted before anyone iterates: nothing will read the stream, so give the permit back now.
  stop.signal.addEventListener('abort', () => void (started ? undefined : finish('stopped')), { once: true });

  const count = (error: unknown) => runner.count(error, classifyFailure(error, current.permit.leaseLost), state);
  const idleMs = runner.options.streamIdleTimeoutMs;
  // Never read within idleMs of its headers: nobody may ever read it, and the open request holds a slot upstream too,
  // so end the request and give the permit back; a late reader gets the error.
  let unread: StreamIdleTimeoutError | undefined;
  const unreadTimer = setTimeout(() => {
    if (started || finished) return;
    unread = new StreamIdleTimeoutError(idleMs, 'caller');
    count(unread);
    current.idle.abort(unread);
    void finish('stopped');
  }, idleMs);
  unreadTimer.unref(); // a stream nobody reads must not keep the process alive
  stop.signal.addEventListener('abort', () => clearTimeout(unreadTimer), { once: true });
  const retry = async (failure: unknown) => {
    await runner.failed(state, current.permit, failure, usage.used());
    current = await openStream(runner, state, params, options, stop.signal);
  };
  async function* events(): AsyncGenerator<RawEvent> {
    clearTimeout(unreadTimer);
    if (unread !== undefined) throw unread;
    if (finished) return;
    started = true;
    let delivered = false;
    try {
      for (;;) {
        const held: RawEvent[] = []; // events before the first output: dropped if this attempt is retried
        let failure: unknown;
        try {
          for await (const event of idleLimited(current.stream, idleMs, current.idle)) {
            usage.add(event);
            if (!delivered && !deliversOutput(event)) {
              held.push(event);
              continue;
            }
            if (!delivered) {
              delivered = true;
              yield* held;
            }
            yield event;
          }
        } catch (error) {
          failure = error;
        }
        const consumerStopped = stop.signal.aborted || state.callerSignal?.aborted === true;
        if (failure === undefined && !usage.stopped && !consumerStopped && current.permit.leaseLost) failure = current.permit.signal.reason;
        // an aborted SDK stream ends silently: the idle timer's abort is a failure like a reset socket
        if (failure === undefined && !consumerStopped && current.idle.signal.aborted) failure = current.idle.signal.reason;
        if (failure === undefined) {
          if (!delivered) yield* held;
          await finish(usage.stopped ? 'clean' : 'stopped');
          return;
        }
        if (delivered || consumerStopped) {
          // text reached the caller: not retried; settle what was produced
          count(failure);
          await finish('stopped');
          throw failure;
        }
        finished = true; // runner.failed releases this attempt's permit
        await retry(failure);
        usage = new StreamUsage();
        finished = false;
      }
    } finally {
      await finish('stopped'); // the consumer broke out, or an error above: released once either way
    }
  }

  return { data: new Stream(events, stop, runner.client), response: first.response, request_id: first.request_id, workspace_id: first.workspace_id };
}
