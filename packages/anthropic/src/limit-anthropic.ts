import type Anthropic from '@anthropic-ai/sdk';
import { APIError, APIUserAbortError } from '@anthropic-ai/sdk';
import { Stream } from '@anthropic-ai/sdk/core/streaming';
import { MessageStream } from '@anthropic-ai/sdk/lib/MessageStream';
import type { MessageCreateParamsBase } from '@anthropic-ai/sdk/resources/messages/messages';
import { describeZodError, formatValue, InvalidConfigError, PRIORITY_MAX, PRIORITY_MIN, type Cost, type Limiter, type Permit } from '@tollgate/limiter';
import type { Logger } from 'pino';
import { AdaptiveConcurrency } from './adaptive.js';
import { LimitedAPIPromise, type WithResponse } from './api-promise.js';
import { backoffMs, classifyFailure, type Failure } from './classify.js';
import { estimateInputTokens } from './estimate.js';
import { idleLimited, StreamIdleTimeoutError } from './stream-idle.js';
import { limitAnthropicOptionsSchema, type LimitAnthropicOptions, type ResolvedLimitAnthropicOptions } from './options.js';
import { ANTHROPIC_DIMENSIONS, readRateLimitHeaders, type AnthropicDimension } from './ratelimit-headers.js';
import { countedInputTokens, deliversOutput, StreamUsage, type KnownUsage } from './usage.js';

type SdkMessages = Anthropic['messages'];
type RequestOptions = NonNullable<Parameters<SdkMessages['countTokens']>[1]>;
type RawEvent = Anthropic.RawMessageStreamEvent;

/** Log paths that could carry a secret; pino replaces them with "[Redacted]". */
export const REDACTED_LOG_PATHS = [
  'apiKey',
  '*.apiKey',
  'authorization',
  'headers.authorization',
  'headers["x-api-key"]',
  '*.headers.authorization',
  '*.headers["x-api-key"]',
];

/** The wrapped `messages` resource: the SDK's signatures and return types. */
export interface LimitedMessages {
  create: SdkMessages['create'];
  stream: SdkMessages['stream'];
  countTokens: SdkMessages['countTokens'];
}

/** Counters of one wrapped client (this process only). */
export interface LimitedAnthropicStats {
  /** Messages calls started (create and stream). */
  calls: number;
  /** Attempts made, each with its own permit. */
  attempts: number;
  /** 429s by kind: `concurrency`, `rate` (with retry-after), `other` (spend limit, no retry-after). */
  rateLimited: { concurrency: number; rate: number; other: number };
  /** Other failed attempts, by status (`"500"`, `"529"`, `"stream"` for a mid-stream error, `"connection"`). */
  failures: Record<string, number>;
  /** Calls to `limiter.observe` (Redis round trips for rate-limit headers). */
  observes: number;
  concurrencyDecreases: number;
  concurrencyRaises: number;
}

/** A client whose every Messages call takes a fleet-wide permit. See {@link limitAnthropic}. */
export interface LimitedAnthropic {
  readonly messages: LimitedMessages;
  readonly client: Anthropic;
  readonly limiter: Limiter;
  stats(): LimitedAnthropicStats;
  /**
   * The same client taking its permits at another priority (0 first … 9 last). Views share one
   * runner: the adaptive concurrency state, the stats and the header sync are the client's, not the view's.
   */
  withPriority(priority: number): LimitedAnthropic;
}

/** Per-call retry bookkeeping: attempts made and the time spent waiting between them. */
interface CallState {
  readonly cost: Cost;
  readonly priority: number | undefined;
  readonly callerSignal: AbortSignal | undefined;
  attempts: number;
  retryWaitedMs: number;
}

interface OpenedStream {
  permit: Permit;
  /** Aborted by the idle timer: ends this attempt's request. */
  idle: AbortController;
  stream: Stream<RawEvent>;
  response: Response;
  request_id: string | null | undefined;
  workspace_id: string | null | undefined;
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  if (ms <= 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new APIUserAbortError());
    const onAbort = () => {
      clearTimeout(timer);
      reject(new APIUserAbortError());
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function anySignal(signals: ReadonlyArray<AbortSignal | null | undefined>): AbortSignal {
  const present = signals.filter((signal): signal is AbortSignal => signal !== null && signal !== undefined);
  return present.length === 1 && present[0] !== undefined ? present[0] : AbortSignal.any(present);
}

function failureLabel(error: unknown): string {
  if (error instanceof StreamIdleTimeoutError) return 'stream_idle';
  if (error instanceof APIError) return error.status === undefined ? (error instanceof APIUserAbortError ? 'abort' : 'stream') : String(error.status);
  return 'connection';
}

/** Runs the SDK's Messages calls under the limiter; one instance per wrapped client. */
class LimitedRunner {
  readonly client: Anthropic;
  readonly limiter: Limiter;
  readonly #options: ResolvedLimitAnthropicOptions;
  readonly #dimensions: ReadonlySet<AnthropicDimension>;
  readonly #logger: Logger | undefined;
  readonly #adaptive: AdaptiveConcurrency | undefined;
  /** Callers of this process waiting for a permit right now. */
  #waiting = 0;
  #lastObserveAt = Number.NEGATIVE_INFINITY;
  /** Dimensions whose last server figure was 0: the next 0 is no news, a 0 after a non-zero figure is. */
  readonly #seenEmpty = new Set<AnthropicDimension>();
  readonly #stats: LimitedAnthropicStats = {
    calls: 0,
    attempts: 0,
    rateLimited: { concurrency: 0, rate: 0, other: 0 },
    failures: {},
    observes: 0,
    concurrencyDecreases: 0,
    concurrencyRaises: 0,
  };

  constructor(client: Anthropic, limiter: Limiter, options: ResolvedLimitAnthropicOptions) {
    this.client = client;
    this.limiter = limiter;
    this.#options = options;
    const rates = limiter.options.rates ?? {};
    this.#dimensions = new Set(ANTHROPIC_DIMENSIONS.filter((dimension) => rates[dimension] !== undefined));
    this.#logger = options.logger?.child({ component: 'tollgate-anthropic', limiter: limiter.name }, { redact: REDACTED_LOG_PATHS });
    const adaptive = options.adaptiveConcurrency;
    this.#adaptive = adaptive !== false && limiter.options.concurrency !== undefined ? new AdaptiveConcurrency(limiter, adaptive, this.#logger) : undefined;
  }

  stats(): LimitedAnthropicStats {
    return {
      ...structuredClone(this.#stats),
      concurrencyDecreases: this.#adaptive?.decreases ?? 0,
      concurrencyRaises: this.#adaptive?.raises ?? 0,
    };
  }

  // ---- one call ----

  async #begin(params: Anthropic.MessageCreateParams, options: RequestOptions | undefined, priority: number | undefined): Promise<CallState> {
    this.#stats.calls += 1;
    const cost: Record<string, number> = {};
    if (this.#dimensions.has('inputTokens')) cost.inputTokens = await this.#estimate(params, options);
    if (this.#dimensions.has('outputTokens')) cost.outputTokens = params.max_tokens;
    return { cost, priority, callerSignal: options?.signal ?? undefined, attempts: 0, retryWaitedMs: 0 };
  }

  async #estimate(params: Anthropic.MessageCreateParams, options: RequestOptions | undefined): Promise<number> {
    const { estimate } = this.#options;
    if (typeof estimate === 'function') return estimate(params);
    const figures = { imageTokens: this.#options.imageTokens, documentTokens: this.#options.documentTokens };
    if (estimate === 'local') return estimateInputTokens(params, figures);
    try {
      const counted = await this.client.messages.countTokens(
        {
          model: params.model,
          messages: params.messages,
          ...(params.system === undefined ? {} : { system: params.system }),
          ...(params.tools === undefined ? {} : { tools: params.tools }),
          ...(params.tool_choice === undefined ? {} : { tool_choice: params.tool_choice }),
          ...(params.thinking === undefined ? {} : { thinking: params.thinking }),
        },
        { maxRetries: 0, ...(options?.signal ? { signal: options.signal } : {}) },
      );
      return counted.input_tokens;
    } catch (error) {
      // count_tokens has its own rate limit; a failure there must not fail the call: the local estimate stands in
      this.#logger?.warn({ errorName: error instanceof Error ? error.name : typeof error }, 'count_tokens failed; using the local estimate');
      return estimateInputTokens(params, figures);
    }
  }

  async #acquire(state: CallState): Promise<Permit> {
    this.#waiting += 1;
    let permit: Permit;
    try {
      permit = await this.limiter.acquire({
        cost: state.cost,
        ...(state.callerSignal === undefined ? {} : { signal: state.callerSignal }),
        ...(state.priority === undefined ? {} : { priority: state.priority }),
        ...(this.#options.acquireTimeoutMs === undefined ? {} : { timeoutMs: this.#options.acquireTimeoutMs }),
      });
    } finally {
      this.#waiting -= 1;
    }
    state.attempts += 1;
    this.#stats.attempts += 1;
    this.#adaptive?.granted(permit.fence);
    return permit;
  }

  /** The SDK's request options for one attempt: no SDK retries, aborted by the caller or a lost lease. */
  #sdkOptions(options: RequestOptions | undefined, permit: Permit, ...extra: AbortSignal[]): RequestOptions {
    return { ...options, maxRetries: 0, signal: anySignal([options?.signal, permit.signal, ...extra]) };
  }

  /** Releases, settling `used` for the configured dimensions; a failed release is logged (the lease then expires). */
  async #release(permit: Permit, used: KnownUsage | undefined): Promise<void> {
    const settle: Record<string, number> = {};
    for (const dimension of ['inputTokens', 'outputTokens'] as const) {
      const amount = used?.[dimension];
      if (amount !== undefined && this.#dimensions.has(dimension)) settle[dimension] = amount;
    }
    try {
      const { leaseLost } = await permit.release(used === undefined ? {} : { used: settle });
      if (leaseLost) this.#logger?.warn({ permitId: permit.id }, 'permit released after its lease was lost');
    } catch (error) {
      // the call's outcome matters more than the release: the lease expires by itself within leaseTtlMs
      this.#logger?.error({ permitId: permit.id, errorName: error instanceof Error ? error.name : typeof error }, 'permit release failed');
    }
  }

  /**
   * Sends the server's rate-limit figures to the limiter: always after a 429 and whenever a dimension has just run
   * empty at the server, else at most once per interval. An empty server bucket resets the drift between the fleet's
   * bucket and the server's (an outside client of the key, a burst guessed too large, the time a call spends between
   * its grant and the server) before it turns into a 429.
   */
  async #observe(headers: Headers | undefined, force: boolean): Promise<void> {
    if (headers === undefined || this.#dimensions.size === 0) return;
    const now = performance.now();
    const observed = readRateLimitHeaders(headers, [...this.#dimensions]);
    let emptied = false;
    for (const dimension of Object.keys(observed) as AnthropicDimension[]) {
      const empty = observed[dimension]?.remaining === 0;
      if (empty && !this.#seenEmpty.has(dimension)) emptied = true;
      if (empty) this.#seenEmpty.add(dimension);
      else this.#seenEmpty.delete(dimension);
    }
    if (!force && !emptied && now - this.#lastObserveAt < this.#options.observeIntervalMs) return;
    if (Object.keys(observed).length === 0) return;
    this.#lastObserveAt = now;
    this.#stats.observes += 1;
    try {
      await this.limiter.observe(observed);
    } catch (error) {
      // advisory only: the buckets stay as they are
      this.#logger?.warn({ errorName: error instanceof Error ? error.name : typeof error }, 'observe failed');
    }
  }

  /** A clean end: settle, release, feed the headers and the adaptive limit. */
  async #succeeded(permit: Permit, used: KnownUsage, headers: Headers): Promise<void> {
    const saturated = this.#waiting > 0;
    await Promise.all([this.#release(permit, used), this.#observe(headers, false)]);
    await this.#adaptive?.clean(saturated).catch((error: unknown) => {
      this.#logger?.warn({ errorName: error instanceof Error ? error.name : typeof error }, 'raising concurrency failed');
    });
  }

  /**
   * After a failed attempt: reacts (fleet pause, lower concurrency, observe headers), releases the permit, then
   * either throws the SDK's error (not retryable, attempts or time used up) or waits and returns for the next one.
   */
  async #failed(state: CallState, permit: Permit, error: unknown, used?: KnownUsage): Promise<void> {
    const failure = classifyFailure(error, permit.leaseLost);
    const headers = error instanceof APIError ? error.headers : undefined;
    this.#count(error, failure);
    const observed = this.#observe(headers, failure.kind === 'rate_limited' || failure.kind === 'concurrency');
    // the pause goes out with the observe, not after it: the fleet stops one Redis round trip sooner
    if (failure.kind === 'rate_limited') await Promise.all([this.limiter.pause(failure.pauseMs, 'upstream 429 with retry-after'), observed]);
    else await observed;
    if (failure.kind === 'concurrency') await this.#adaptive?.limited(permit.fence);
    await this.#release(permit, used); // after the pause and the decrease: the freed slot obeys both
    const waitMs = this.#retryWaitMs(state, failure);
    this.#logger?.warn(
      { permitId: permit.id, attempt: state.attempts, failure: failure.kind, status: failureLabel(error), retryInMs: waitMs ?? null },
      waitMs === undefined ? 'upstream call failed; not retrying' : 'upstream call failed; retrying',
    );
    if (waitMs === undefined) throw error;
    state.retryWaitedMs += failure.kind === 'rate_limited' ? failure.pauseMs : waitMs;
    await sleep(waitMs, state.callerSignal);
  }

  /** The wait before the next attempt, or undefined when there is none. */
  #retryWaitMs(state: CallState, failure: Failure): number | undefined {
    if (failure.kind === 'fatal' || state.attempts >= this.#options.maxAttempts) return undefined;
    const { backoffBaseMs, backoffMaxMs, maxRetryMs } = this.#options;
    let waitMs: number;
    if (failure.kind === 'rate_limited') waitMs = 0; // the fleet-wide pause holds the next acquire
    else if (failure.kind === 'transient' && failure.serverWaitMs !== undefined) waitMs = Math.ceil(failure.serverWaitMs);
    else waitMs = backoffMs(state.attempts, backoffBaseMs, backoffMaxMs);
    const budgetMs = failure.kind === 'rate_limited' ? failure.pauseMs : waitMs;
    return state.retryWaitedMs + budgetMs > maxRetryMs ? undefined : waitMs;
  }

  #count(error: unknown, failure: Failure): void {
    if (failure.kind === 'concurrency') this.#stats.rateLimited.concurrency += 1;
    else if (failure.kind === 'rate_limited') this.#stats.rateLimited.rate += 1;
    else if (error instanceof APIError && error.status === 429) this.#stats.rateLimited.other += 1;
    else {
      const label = failureLabel(error);
      this.#stats.failures[label] = (this.#stats.failures[label] ?? 0) + 1;
    }
  }

  // ---- non-streaming ----

  async createMessage(params: Anthropic.MessageCreateParamsNonStreaming, options: RequestOptions | undefined, priority: number | undefined): Promise<WithResponse<Anthropic.Message>> {
    const state = await this.#begin(params, options, priority);
    for (;;) {
      const permit = await this.#acquire(state);
      let result: WithResponse<Anthropic.Message>;
      try {
        result = await this.client.messages.create(params, this.#sdkOptions(options, permit)).withResponse();
      } catch (error) {
        await this.#failed(state, permit, error);
        continue;
      }
      const usage = result.data.usage;
      const inputTokens = countedInputTokens(usage);
      await this.#succeeded(permit, inputTokens === undefined ? { outputTokens: usage.output_tokens } : { inputTokens, outputTokens: usage.output_tokens }, result.response.headers);
      return result;
    }
  }

  // ---- streaming ----

  /** Attempts until a stream's headers arrive; the permit stays held for the stream. */
  async #openStream(state: CallState, params: Anthropic.MessageCreateParamsStreaming, options: RequestOptions | undefined, stop: AbortSignal): Promise<OpenedStream> {
    for (;;) {
      const permit = await this.#acquire(state);
      const idle = new AbortController();
      try {
        const opened = await this.client.messages.create(params, this.#sdkOptions(options, permit, stop, idle.signal)).withResponse();
        await this.#observe(opened.response.headers, false);
        return { permit, idle, stream: opened.data, response: opened.response, request_id: opened.request_id, workspace_id: opened.workspace_id };
      } catch (error) {
        await this.#failed(state, permit, error);
      }
    }
  }

  async createStream(params: Anthropic.MessageCreateParamsStreaming, options: RequestOptions | undefined, priority: number | undefined): Promise<WithResponse<Stream<RawEvent>>> {
    const state = await this.#begin(params, options, priority);
    const stop = new AbortController(); // the returned Stream's controller: aborting it stops whichever attempt runs
    const first = await this.#openStream(state, params, options, stop.signal);
    let current = first;
    let usage = new StreamUsage();
    let started = false;
    let finished = false;
    const finish = async (outcome: 'clean' | 'stopped') => {
      if (finished) return;
      finished = true;
      if (outcome === 'clean') await this.#succeeded(current.permit, usage.used(), current.response.headers);
      else await this.#release(current.permit, usage.used());
    };
    // Aborted before anyone iterates: nothing will read the stream, so give the permit back now.
    stop.signal.addEventListener('abort', () => void (started ? undefined : finish('stopped')), { once: true });

    const count = (error: unknown) => this.#count(error, classifyFailure(error, current.permit.leaseLost));
    const idleMs = this.#options.streamIdleTimeoutMs;
    const retry = async (failure: unknown) => {
      await this.#failed(state, current.permit, failure, usage.used());
      current = await this.#openStream(state, params, options, stop.signal);
    };
    async function* events(): AsyncGenerator<RawEvent> {
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
          finished = true; // #failed releases this attempt's permit
          await retry(failure);
          usage = new StreamUsage();
          finished = false;
        }
      } finally {
        await finish('stopped'); // the consumer broke out, or an error above: released once either way
      }
    }

    return { data: new Stream(events, stop, this.client), response: first.response, request_id: first.request_id, workspace_id: first.workspace_id };
  }
}

/**
 * Wraps an Anthropic client so that every `messages.create` / `messages.stream` call takes a fleet-wide permit from
 * `limiter` first: one request, the estimated input tokens and `max_tokens` output tokens (only the dimensions the
 * limiter has rates for). The permit is settled with the real usage when the call (or the stream) ends. Retries are
 * done here, each with a fresh permit; build the client with `maxRetries: 0`.
 * `countTokens` passes straight through (it uses none of the Messages limits).
 * @throws {@link InvalidConfigError} when an option is invalid.
 * @example
 * const anthropic = limitAnthropic(new Anthropic({ maxRetries: 0 }), limiter);
 * const message = await anthropic.messages.create({ model, max_tokens: 1024, messages });
 */
export function limitAnthropic(client: Anthropic, limiter: Limiter, options: LimitAnthropicOptions = {}): LimitedAnthropic {
  const parsed = limitAnthropicOptionsSchema.safeParse(options);
  if (!parsed.success) throw new InvalidConfigError(`invalid limitAnthropic options: ${describeZodError(parsed.error, options)}`, { cause: parsed.error });
  const runner = new LimitedRunner(client, limiter, parsed.data);
  return limitedView(runner, parsed.data.priority);
}

/** The SDK-shaped surface over one runner, taking its permits at `priority`. */
function limitedView(runner: LimitedRunner, priority: number | undefined): LimitedAnthropic {
  const { client, limiter } = runner;
  function create(params: Anthropic.MessageCreateParams, requestOptions?: RequestOptions): LimitedAPIPromise<Anthropic.Message> | LimitedAPIPromise<Stream<RawEvent>> {
    return params.stream === true
      ? LimitedAPIPromise.from(runner.createStream(params, requestOptions, priority))
      : LimitedAPIPromise.from(runner.createMessage(params, requestOptions, priority));
  }
  // The SDK types these as APIPromise; LimitedAPIPromise has its public surface (await, withResponse, asResponse).
  const limitedCreate = create as unknown as SdkMessages['create'];
  // MessageStream only calls `create(…).withResponse()` on what it is given, so it runs over the limited create.
  const limitedResource = { create: limitedCreate } as unknown as SdkMessages;
  const stream: SdkMessages['stream'] = (body, requestOptions) =>
    // the SDK's own stream() makes the same cast: its parse-aware params are a MessageCreateParamsBase at run time
    MessageStream.createMessage(limitedResource, body as MessageCreateParamsBase, requestOptions, { logger: client.logger, client });
  const countTokens: SdkMessages['countTokens'] = (params, requestOptions) => client.messages.countTokens(params, requestOptions);
  return {
    messages: { create: limitedCreate, stream, countTokens },
    client,
    limiter,
    stats: () => runner.stats(),
    withPriority: (other) => {
      if (!Number.isInteger(other) || other < PRIORITY_MIN || other > PRIORITY_MAX) {
        throw new InvalidConfigError(`withPriority: priority must be an integer from ${PRIORITY_MIN} to ${PRIORITY_MAX} (got ${formatValue(other)})`);
      }
      return limitedView(runner, other);
    },
  };
}
