import type Anthropic from '@anthropic-ai/sdk';
import { APIUserAbortError } from '@anthropic-ai/sdk';
import { InvalidArgumentError, type Cost, type Limiter, type Permit } from '@tollgate/limiter';
import { toError } from '@tollgate/limiter/internal';
import type { Logger } from 'pino';
import { AdaptiveConcurrency } from './adaptive.js';
import type { WithResponse } from './api-promise.js';
import { backoffMs, classifyFailure, sdkError, type Failure } from './classify.js';
import { estimateInputTokens } from './estimate.js';
import type { ResolvedLimitAnthropicOptions } from './options.js';
import { ANTHROPIC_DIMENSIONS, readRateLimitHeaders, type AnthropicDimension } from './ratelimit-headers.js';
import { CallStats, failureLabel, type LimitedAnthropicStats } from './stats.js';
import { countedInputTokens, type KnownUsage } from './usage.js';

export type SdkMessages = Anthropic['messages'];
export type RequestOptions = NonNullable<Parameters<SdkMessages['countTokens']>[1]>;

/** Log paths that could carry a secret; pino replaces them with "[Redacted]". */
export const REDACTED_LOG_PATHS = ['apiKey', '*.apiKey', 'authorization', 'headers.authorization', 'headers["x-api-key"]', '*.headers.authorization', '*.headers["x-api-key"]'];

/** Per-call retry bookkeeping: attempts made and the time spent waiting between them. */
export interface CallState {
  readonly model: string;
  /** The pool its permits come from; undefined for a limiter without pools. Taken again when an apply changed the pools. */
  pool: string | undefined;
  cost: Cost;
  /** The input-token estimate made once per call (undefined when no bucket needed it), for a cost made again. */
  inputTokens: number | undefined;
  readonly maxTokens: number;
  /** The local estimate, for a cost made again in a pool that needs input tokens when none was estimated. */
  readonly localEstimate: () => number;
  readonly priority: number | undefined;
  /** The limiter group (tenant) of its permits. */
  readonly tenant: string | undefined;
  readonly callerSignal: AbortSignal | undefined;
  attempts: number;
  retryWaitedMs: number;
}

/** Who a view's calls are for: the priority and the tenant (the limiter's group) of their permits. */
export interface CallView {
  priority?: number | undefined;
  tenant?: string | undefined;
}

/** The caller's client's own abort class: a CommonJS caller's `instanceof Anthropic.APIUserAbortError` holds too. */
function abortErrorClass(client: Anthropic): typeof APIUserAbortError {
  const own = (client.constructor as { APIUserAbortError?: unknown }).APIUserAbortError;
  return typeof own === 'function' ? (own as typeof APIUserAbortError) : APIUserAbortError;
}

function sleep(ms: number, signal: AbortSignal | undefined, AbortError: typeof APIUserAbortError): Promise<void> {
  if (ms <= 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new AbortError());
    const onAbort = () => {
      clearTimeout(timer);
      reject(new AbortError());
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

/**
 * Runs the SDK's Messages calls under the limiter, one attempt per permit; one instance per wrapped client. The
 * retrying stream (retrying-stream.ts) drives its attempts through the same steps.
 */
export class LimitedRunner {
  readonly client: Anthropic;
  readonly limiter: Limiter;
  readonly options: ResolvedLimitAnthropicOptions;
  /** Per pool ('' without pools), the Anthropic dimensions the fleet limits, cached per list the limiter reports (its fleet's, once ready). */
  readonly #dimensionsFor = new Map<string, { from: readonly string[]; set: ReadonlySet<AnthropicDimension> }>();
  readonly #logger: Logger | undefined;
  readonly #adaptive: AdaptiveConcurrency | undefined;
  readonly #stats = new CallStats();
  readonly #abortError: typeof APIUserAbortError;
  /** Callers of this process waiting for a permit right now. */
  #waiting = 0;
  /** Per pool ('' without pools): when its server figures last went to the limiter. */
  readonly #lastObserveAt = new Map<string, number>();
  /** Dimensions ('<pool>/<dimension>') whose last server figure was 0: the next 0 is no news, a 0 after a non-zero figure is. */
  readonly #seenEmpty = new Set<string>();

  constructor(client: Anthropic, limiter: Limiter, options: ResolvedLimitAnthropicOptions) {
    this.client = client;
    this.limiter = limiter;
    this.options = options;
    this.#abortError = abortErrorClass(client);
    this.#logger = options.logger?.child({ component: 'tollgate-anthropic', limiter: limiter.name }, { redact: REDACTED_LOG_PATHS });
    const adaptive = options.adaptiveConcurrency;
    this.#adaptive = adaptive !== false && limiter.options.concurrency !== undefined ? new AdaptiveConcurrency(limiter, adaptive, this.#logger) : undefined;
  }

  /**
   * The dimensions a call's cost names (in `pool`, for `tenant`): the pool's buckets and the tenant's budgets (its
   * limiter group's), by the fleet's limits, which may differ from this process's options (DESIGN §8).
   */
  #charged(pool: string | undefined, tenant: string | undefined): ReadonlySet<AnthropicDimension> {
    const pooled = this.#dimensions(pool);
    if (tenant === undefined) return pooled;
    const budgeted = this.limiter.budgetDimensions(tenant);
    if (budgeted.length === 0) return pooled;
    return new Set(ANTHROPIC_DIMENSIONS.filter((dimension) => pooled.has(dimension) || budgeted.includes(dimension)));
  }

  /** The dimensions costs are charged to (in `pool`): the fleet's limits, which may differ from this process's options (DESIGN §8). */
  #dimensions(pool: string | undefined): ReadonlySet<AnthropicDimension> {
    const from = pool === undefined ? this.limiter.rateDimensions : this.limiter.poolDimensions(pool);
    let cached = this.#dimensionsFor.get(pool ?? '');
    if (cached?.from.join() !== from.join()) {
      cached = { from, set: new Set(ANTHROPIC_DIMENSIONS.filter((dimension) => from.includes(dimension))) };
      this.#dimensionsFor.set(pool ?? '', cached);
    }
    return cached.set;
  }

  /**
   * The pool a request's model takes its permits from: `poolFor(model)`, for a limiter with pools. Without `poolFor`
   * none, which the limiter refuses when the fleet's limits have pools (after reading them again: a call made just after
   * an apply that removed the pools is not refused for this process's stale view of them).
   */
  async #poolOf(model: string): Promise<string | undefined> {
    await this.limiter.ready(); // the fleet's pools, not only this process's own
    if (this.limiter.pools === undefined || this.options.poolFor === undefined) return undefined;
    return this.options.poolFor(model);
  }

  stats(): LimitedAnthropicStats {
    return this.#stats.snapshot(this.#adaptive);
  }

  // ---- the steps of one call ----

  async begin(params: Anthropic.MessageCreateParams, options: RequestOptions | undefined, view: CallView): Promise<CallState> {
    this.#stats.called();
    const pool = await this.#poolOf(params.model);
    const inputTokens = this.#charged(pool, view.tenant).has('inputTokens') ? await this.#estimate(params, options) : undefined;
    const local = () => estimateInputTokens(params, { imageTokens: this.options.imageTokens, documentTokens: this.options.documentTokens });
    return {
      model: params.model,
      pool,
      cost: this.#costOf(pool, view.tenant, params.max_tokens, () => inputTokens ?? local()),
      inputTokens,
      maxTokens: params.max_tokens,
      localEstimate: local,
      priority: view.priority,
      tenant: view.tenant,
      callerSignal: options?.signal ?? undefined,
      attempts: 0,
      retryWaitedMs: 0,
    };
  }

  /** A call's cost in `pool`'s dimensions and its tenant's budgets' (the fleet's, which may differ from this process's options). */
  #costOf(pool: string | undefined, tenant: string | undefined, maxTokens: number, inputTokens: () => number): Cost {
    const dimensions = this.#charged(pool, tenant);
    const cost: Record<string, number> = {};
    if (dimensions.has('inputTokens')) cost.inputTokens = inputTokens();
    if (dimensions.has('outputTokens')) cost.outputTokens = maxTokens;
    return cost;
  }

  async #estimate(params: Anthropic.MessageCreateParams, options: RequestOptions | undefined): Promise<number> {
    const { estimate } = this.options;
    if (typeof estimate === 'function') return estimate(params);
    const figures = { imageTokens: this.options.imageTokens, documentTokens: this.options.documentTokens };
    if (estimate === 'local') return estimateInputTokens(params, figures);
    // count_tokens has its own fleet-wide rate: a permit of its limiter first, or the local estimate
    let permit: Permit | undefined;
    const { countTokensLimiter, countTokensWaitMs } = this.options;
    if (countTokensLimiter !== undefined) {
      try {
        permit = await countTokensLimiter.acquire({ timeoutMs: countTokensWaitMs, ...(options?.signal ? { signal: options.signal } : {}) });
      } catch (error) {
        this.#logger?.warn({ errorName: toError(error).name }, 'no count_tokens permit in time; using the local estimate');
        return estimateInputTokens(params, figures);
      }
    }
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
      this.#logger?.warn({ errorName: toError(error).name }, 'count_tokens failed; using the local estimate');
      return estimateInputTokens(params, figures);
    } finally {
      await permit?.release().catch((error: unknown) => this.#logger?.warn({ errorName: toError(error).name }, 'count_tokens permit release failed'));
    }
  }

  async acquire(state: CallState): Promise<Permit> {
    this.#waiting += 1;
    let permit: Permit;
    const { acquireTimeoutMs } = this.options;
    const startedAt = performance.now();
    // a second try (the pools changed) gets what is left of the permit's wait, counted from the first
    const take = () =>
      this.limiter.acquire({
        ...(state.pool === undefined ? {} : { pool: state.pool }),
        cost: state.cost,
        ...(state.callerSignal === undefined ? {} : { signal: state.callerSignal }),
        ...(state.priority === undefined ? {} : { priority: state.priority }),
        ...(state.tenant === undefined ? {} : { group: state.tenant }),
        ...(acquireTimeoutMs === undefined ? {} : { timeoutMs: Math.max(0, Math.ceil(acquireTimeoutMs - (performance.now() - startedAt))) }),
      });
    try {
      try {
        permit = await take();
      } catch (error) {
        // an apply changed the account's pools (the limiter has read them): the model's pool, and its cost, once more
        if (!(error instanceof InvalidArgumentError && error.field === 'pool')) throw error;
        const pool = await this.#poolOf(state.model);
        if (pool === state.pool) throw error;
        state.pool = pool;
        state.cost = this.#costOf(pool, state.tenant, state.maxTokens, () => state.inputTokens ?? state.localEstimate());
        permit = await take();
      }
    } finally {
      this.#waiting -= 1;
    }
    state.attempts += 1;
    this.#stats.attempted();
    this.#adaptive?.granted(permit.fence);
    return permit;
  }

  /** The SDK's request options for one attempt: no SDK retries, aborted by the caller or a lost lease. */
  sdkOptions(options: RequestOptions | undefined, permit: Permit, ...extra: AbortSignal[]): RequestOptions {
    return { ...options, maxRetries: 0, signal: anySignal([options?.signal, permit.signal, ...extra]) };
  }

  /** Releases, settling `used` for the dimensions its cost named (pool buckets and tenant budgets); a failed release is logged (the lease then expires). */
  async release(permit: Permit, used: KnownUsage | undefined): Promise<void> {
    const settle: Record<string, number> = {};
    for (const dimension of ['inputTokens', 'outputTokens'] as const) {
      const amount = used?.[dimension];
      // the limiter settles each bucket and budget that reserved it, once (a dimension nothing reserved is ignored)
      if (amount !== undefined) settle[dimension] = amount;
    }
    try {
      const { leaseLost } = await permit.release(used === undefined ? {} : { used: settle });
      if (leaseLost) this.#logger?.warn({ permitId: permit.id }, 'permit released after its lease was lost');
    } catch (error) {
      // the call's outcome matters more than the release: the lease expires by itself within leaseTtlMs
      this.#logger?.error({ permitId: permit.id, errorName: toError(error).name }, 'permit release failed');
    }
  }

  /**
   * Sends the server's rate-limit figures to the limiter: always after a 429 and whenever a dimension has just run
   * empty at the server, else at most once per interval. An empty server bucket resets the drift between the fleet's
   * bucket and the server's (an outside client of the key, a burst guessed too large, the time a call spends between
   * its grant and the server) before it turns into a 429.
   */
  async observe(pool: string | undefined, headers: Headers | undefined, force: boolean): Promise<void> {
    const dimensions = this.#dimensions(pool);
    if (headers === undefined || dimensions.size === 0) return;
    const now = performance.now();
    const observed = readRateLimitHeaders(headers, [...dimensions]);
    let emptied = false;
    for (const dimension of Object.keys(observed) as AnthropicDimension[]) {
      const empty = observed[dimension]?.remaining === 0;
      const key = `${pool ?? ''}/${dimension}`;
      if (empty && !this.#seenEmpty.has(key)) emptied = true;
      if (empty) this.#seenEmpty.add(key);
      else this.#seenEmpty.delete(key);
    }
    if (!force && !emptied && now - (this.#lastObserveAt.get(pool ?? '') ?? Number.NEGATIVE_INFINITY) < this.options.observeIntervalMs) return;
    if (Object.keys(observed).length === 0) return;
    this.#lastObserveAt.set(pool ?? '', now);
    this.#stats.observed();
    try {
      await this.limiter.observe(observed, pool === undefined ? {} : { pool });
    } catch (error) {
      // advisory only: the buckets stay as they are
      this.#logger?.warn({ errorName: toError(error).name }, 'observe failed');
    }
  }

  /** A clean end: settle, release, feed the headers and the adaptive limit. */
  async succeeded(permit: Permit, used: KnownUsage, headers: Headers): Promise<void> {
    const saturated = this.#waiting > 0;
    await Promise.all([this.release(permit, used), this.observe(permit.pool, headers, false)]);
    await this.#adaptive?.clean(saturated, permit.fence).catch((error: unknown) => {
      this.#logger?.warn({ errorName: toError(error).name }, 'raising concurrency failed');
    });
  }

  /**
   * After a failed attempt: reacts (fleet pause, lower concurrency, observe headers), releases the permit, then
   * either throws the SDK's error (not retryable, attempts or time used up) or waits and returns for the next one.
   */
  async failed(state: CallState, permit: Permit, error: unknown, used?: KnownUsage): Promise<void> {
    const failure = classifyFailure(error, permit.leaseLost);
    this.count(error, failure, state);
    let fleetPaused = false;
    try {
      const observed = this.observe(state.pool, sdkError(error)?.headers, failure.kind === 'rate_limited' || failure.kind === 'concurrency');
      // the pause goes out with the observe, not after it: the fleet stops one Redis round trip sooner. A rate limit
      // is the pool's (Anthropic meters RPM, ITPM and OTPM per model pool): only that pool pauses
      if (failure.kind === 'rate_limited') {
        await Promise.all([this.limiter.pause(failure.pauseMs, 'upstream 429 with retry-after', state.pool === undefined ? {} : { pool: state.pool }), observed]);
        fleetPaused = true;
      } else await observed;
      if (failure.kind === 'concurrency') await this.#adaptive?.limited(permit.fence);
    } catch (reactionError) {
      // Redis failed the pause or the decrease: the call's own outcome and its permit matter more (below)
      const reaction = failure.kind === 'rate_limited' ? 'fleet pause failed; this call waits out retry-after alone' : 'lowering concurrency failed';
      this.#logger?.warn({ permitId: permit.id, errorName: toError(reactionError).name }, reaction);
    } finally {
      // after the pause and the decrease, so the freed slot obeys both; and whatever failed there, or the heartbeat
      // would renew this lease for ever (release() itself never throws)
      await this.release(permit, used);
    }
    const waitMs = this.#retryWaitMs(state, failure, fleetPaused);
    this.#logger?.warn(
      { permitId: permit.id, attempt: state.attempts, failure: failure.kind, status: failureLabel(error), retryInMs: waitMs ?? null },
      waitMs === undefined ? 'upstream call failed; not retrying' : 'upstream call failed; retrying',
    );
    if (waitMs === undefined) throw error;
    state.retryWaitedMs += failure.kind === 'rate_limited' ? failure.pauseMs : waitMs;
    await sleep(waitMs, state.callerSignal, this.#abortError);
  }

  /** The wait before the next attempt, or undefined when there is none. `fleetPaused`: the limiter took the pause. */
  #retryWaitMs(state: CallState, failure: Failure, fleetPaused: boolean): number | undefined {
    if (failure.kind === 'fatal' || state.attempts >= this.options.maxAttempts) return undefined;
    const { backoffBaseMs, backoffMaxMs, maxRetryMs } = this.options;
    let waitMs: number;
    if (failure.kind === 'rate_limited')
      waitMs = fleetPaused ? 0 : Math.ceil(failure.pauseMs); // the fleet-wide pause holds the next acquire
    else if (failure.kind === 'transient' && failure.serverWaitMs !== undefined) waitMs = Math.ceil(failure.serverWaitMs);
    else waitMs = backoffMs(state.attempts, backoffBaseMs, backoffMaxMs);
    const budgetMs = failure.kind === 'rate_limited' ? failure.pauseMs : waitMs;
    return state.retryWaitedMs + budgetMs > maxRetryMs ? undefined : waitMs;
  }

  /** Counts a failed attempt of `state`'s call (its tenant and pool). */
  count(error: unknown, failure: Failure, state: Pick<CallState, 'tenant' | 'pool'>): void {
    this.#stats.failed(error, failure, { tenant: state.tenant, pool: state.pool });
  }

  // ---- the attempt loop of a non-streaming call ----

  async createMessage(params: Anthropic.MessageCreateParamsNonStreaming, options: RequestOptions | undefined, view: CallView): Promise<WithResponse<Anthropic.Message>> {
    const state = await this.begin(params, options, view);
    for (;;) {
      const permit = await this.acquire(state);
      let result: WithResponse<Anthropic.Message>;
      try {
        result = await this.client.messages.create(params, this.sdkOptions(options, permit)).withResponse();
      } catch (error) {
        await this.failed(state, permit, error);
        continue;
      }
      const usage = result.data.usage;
      const inputTokens = countedInputTokens(usage);
      await this.succeeded(permit, inputTokens === undefined ? { outputTokens: usage.output_tokens } : { inputTokens, outputTokens: usage.output_tokens }, result.response.headers);
      return result;
    }
  }
}
