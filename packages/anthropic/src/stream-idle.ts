import { APIConnectionTimeoutError } from '@anthropic-ai/sdk';

/**
 * A stream that sent no event for `idleMs` while the caller was waiting for one (`waitingFor: 'upstream'`), or that
 * its caller did not start reading within `idleMs` of its headers (`waitingFor: 'caller'`): the request was aborted
 * and its permit released. The SDK's own `timeout` stops counting once the headers arrive, so a stalled body, or a
 * stream nobody reads, would otherwise hold its permit forever. It is the SDK's {@link APIConnectionTimeoutError},
 * so code that handles the SDK's timeouts handles it too; branch on `code` to tell it apart.
 */
export class StreamIdleTimeoutError extends APIConnectionTimeoutError {
  /** Stable: messages may change, codes never. */
  readonly code = 'STREAM_IDLE_TIMEOUT';

  constructor(
    readonly idleMs: number,
    readonly waitingFor: 'upstream' | 'caller' = 'upstream',
  ) {
    super({
      message:
        waitingFor === 'upstream'
          ? `no stream event for ${idleMs} ms; the request was aborted`
          : `the stream was not read within ${idleMs} ms of its headers; the request was aborted and its permit released`,
    });
    this.name = 'StreamIdleTimeoutError';
  }
}

/** Yields `events`, aborting `idle` with a {@link StreamIdleTimeoutError} when the next one takes longer than `idleMs`
 * to arrive. Only the wait for the upstream counts: time the consumer spends between reads does not. */
export async function* idleLimited<T>(events: AsyncIterable<T>, idleMs: number, idle: AbortController): AsyncGenerator<T> {
  const iterator = events[Symbol.asyncIterator]();
  try {
    for (;;) {
      const timer = setTimeout(() => idle.abort(new StreamIdleTimeoutError(idleMs)), idleMs);
      let next: IteratorResult<T>;
      try {
        next = await iterator.next();
      } finally {
        clearTimeout(timer);
      }
      if (next.done === true) return;
      yield next.value;
    }
  } finally {
    await iterator.return?.(); // the consumer stopped early: the SDK's stream aborts its request
  }
}
