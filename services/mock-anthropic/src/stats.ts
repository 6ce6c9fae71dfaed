import type { LimitDimension, RateLimitKind } from './limits.js';

/** Tokens per bucket dimension: what admission charged and what was finally settled (actual usage). */
export interface TokenTotals {
  /** Charged at admission: prompt estimates, and `max_tokens` in `max_tokens` mode. */
  admitted: number;
  /** Actual usage counted against the limit: ITPM-counted input, generated output. */
  settled: number;
}

/** One window of the per-window series: what was charged while it lasted. */
export interface StatsWindow {
  /** Window number since the last reset; window i covers [i·windowMs, (i+1)·windowMs). */
  index: number;
  /** Messages requests admitted. */
  requests: number;
  /** ITPM-counted input tokens of requests admitted in this window. */
  inputTokens: number;
  /** Output tokens generated in this window. */
  outputTokens: number;
}

/** Per-key counters; keys are listed by {@link apiKeyFingerprint}, never in clear. */
export interface KeyStats {
  requests: number;
  inFlight: number;
  maxConcurrent: number;
}

/**
 * What the mock saw since the last reset; `GET /_mock/stats` returns the same JSON.
 * - `requests`: every request outside `/_mock` (413s and unknown paths included); `messages` and `countTokens` count
 *   those that reached the two API routes, `models` the model routes.
 * - `inFlight` / `maxConcurrent`: admitted Messages requests still running (open streams included), now and at most.
 * - `byStatus`: answers by HTTP status (`"200"`, `"429"`, …); `"reset"` counts sockets destroyed on purpose.
 * - `byErrorType`: error answers by `error.type` (mid-stream error events included).
 * - `rateLimited`: 429s by kind: `concurrency`, `requests`, `input_tokens`, `output_tokens`, `spend`, `injected`
 *   (injected 429 and ramp faults), `count_tokens` (the count_tokens RPM).
 * - `retries`: requests sent with `X-Stainless-Retry-Count` > 0.
 * - `tokens`: per dimension, admitted and settled totals.
 * - `lowestBalance`: the lowest balance any key's bucket reached per dimension (may be negative); `null` when that limit is off.
 * - `windows`: one entry per `windowMs` since `startedAtMs`, oldest first, so tokens per minute delivered is
 *   `windows[i].outputTokens * 60_000 / windowMs`.
 * - `faults`: injected faults by kind.
 */
export interface MockStats {
  startedAtMs: number;
  windowMs: number;
  requests: number;
  messages: number;
  countTokens: number;
  /** `GET /v1/models` and `GET /v1/models/{id}` requests. */
  models: number;
  inFlight: number;
  maxConcurrent: number;
  byKey: Record<string, KeyStats>;
  byStatus: Record<string, number>;
  byErrorType: Record<string, number>;
  rateLimited: Record<RateLimitKind, number>;
  retries: number;
  tokens: Record<LimitDimension, TokenTotals>;
  lowestBalance: Record<LimitDimension, number | null>;
  windows: StatsWindow[];
  faults: Record<string, number>;
}

function increment(counts: Record<string, number>, key: string, by = 1): void {
  counts[key] = (counts[key] ?? 0) + by;
}

/** Collects {@link MockStats}; every method is O(1) so it stays cheap at hundreds of requests per second. */
export class StatsRecorder {
  #stats: MockStats;
  #startedAtMonoMs: number;

  constructor(windowMs: number, nowMs: number, wallMs: number) {
    this.#startedAtMonoMs = nowMs;
    this.#stats = StatsRecorder.#empty(windowMs, wallMs);
  }

  static #empty(windowMs: number, wallMs: number): MockStats {
    const zero = (): TokenTotals => ({ admitted: 0, settled: 0 });
    return {
      startedAtMs: wallMs,
      windowMs,
      requests: 0,
      messages: 0,
      countTokens: 0,
      models: 0,
      inFlight: 0,
      maxConcurrent: 0,
      byKey: {},
      byStatus: {},
      byErrorType: {},
      rateLimited: { concurrency: 0, requests: 0, input_tokens: 0, output_tokens: 0, spend: 0, injected: 0, count_tokens: 0 },
      retries: 0,
      tokens: { requests: zero(), input_tokens: zero(), output_tokens: zero() },
      lowestBalance: { requests: null, input_tokens: null, output_tokens: null },
      windows: [],
      faults: {},
    };
  }

  /** Starts over; requests still in flight stay counted in `inFlight`. */
  reset(windowMs: number, nowMs: number, wallMs: number): void {
    const inFlight = this.#stats.inFlight;
    const byKey = this.#stats.byKey;
    this.#startedAtMonoMs = nowMs;
    this.#stats = StatsRecorder.#empty(windowMs, wallMs);
    this.#stats.inFlight = inFlight;
    this.#stats.maxConcurrent = inFlight;
    for (const [key, keyStats] of Object.entries(byKey)) {
      if (keyStats.inFlight > 0) this.#stats.byKey[key] = { requests: 0, inFlight: keyStats.inFlight, maxConcurrent: keyStats.inFlight };
    }
  }

  /** Any request outside `/_mock`, counted on arrival, before the body is read. */
  request(isRetry: boolean): void {
    this.#stats.requests += 1;
    if (isRetry) this.#stats.retries += 1;
  }

  route(route: 'messages' | 'count_tokens' | 'models'): void {
    if (route === 'messages') this.#stats.messages += 1;
    else if (route === 'count_tokens') this.#stats.countTokens += 1;
    else this.#stats.models += 1;
  }

  keyRequest(keyId: string): void {
    this.#key(keyId).requests += 1;
  }

  answered(status: number | 'reset', errorType?: string): void {
    increment(this.#stats.byStatus, String(status));
    if (errorType !== undefined) increment(this.#stats.byErrorType, errorType);
  }

  errorEvent(errorType: string): void {
    increment(this.#stats.byErrorType, errorType);
  }

  rateLimited(kind: RateLimitKind): void {
    this.#stats.rateLimited[kind] += 1;
  }

  fault(kind: string): void {
    increment(this.#stats.faults, kind);
  }

  started(keyId: string): void {
    const key = this.#key(keyId);
    key.inFlight += 1;
    key.maxConcurrent = Math.max(key.maxConcurrent, key.inFlight);
    this.#stats.inFlight += 1;
    this.#stats.maxConcurrent = Math.max(this.#stats.maxConcurrent, this.#stats.inFlight);
  }

  finished(keyId: string): void {
    this.#key(keyId).inFlight -= 1;
    this.#stats.inFlight -= 1;
  }

  admitted(dimension: LimitDimension, tokens: number, nowMs: number): void {
    this.#stats.tokens[dimension].admitted += tokens;
    if (dimension === 'requests') this.#window(nowMs).requests += tokens;
  }

  settled(dimension: LimitDimension, tokens: number, nowMs: number): void {
    this.#stats.tokens[dimension].settled += tokens;
    if (dimension === 'input_tokens') this.#window(nowMs).inputTokens += tokens;
    if (dimension === 'output_tokens') this.#window(nowMs).outputTokens += tokens;
  }

  balance(dimension: LimitDimension, balance: number): void {
    const lowest = this.#stats.lowestBalance[dimension];
    if (lowest === null || balance < lowest) this.#stats.lowestBalance[dimension] = balance;
  }

  /** A deep copy, so callers may keep or change it; `windows` runs up to the current window. */
  snapshot(nowMs: number): MockStats {
    this.#window(nowMs);
    return structuredClone(this.#stats);
  }

  #key(keyId: string): KeyStats {
    let key = this.#stats.byKey[keyId];
    if (key === undefined) {
      key = { requests: 0, inFlight: 0, maxConcurrent: 0 };
      this.#stats.byKey[keyId] = key;
    }
    return key;
  }

  #window(nowMs: number): StatsWindow {
    const index = Math.floor((nowMs - this.#startedAtMonoMs) / this.#stats.windowMs);
    const windows = this.#stats.windows;
    for (let next = windows.length; next <= index; next += 1) windows.push({ index: next, requests: 0, inputTokens: 0, outputTokens: 0 });
    const window = windows[index];
    if (window === undefined) throw new Error(`stats window ${index} missing`);
    return window;
  }
}
