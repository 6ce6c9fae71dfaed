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
  /** count_tokens requests admitted (always 0 in a pool's series: count_tokens uses no pool). */
  countTokens: number;
}

/** One model pool of one key: what it delivered, its own 429s, and its buckets' lowest balances. */
export interface PoolStats {
  /** Messages requests admitted into this pool. */
  requests: number;
  inFlight: number;
  maxConcurrent: number;
  /** ITPM-counted input tokens (settled). */
  inputTokens: number;
  /** Output tokens generated. */
  outputTokens: number;
  /** 429s of this pool's buckets, by dimension. */
  rateLimited: Record<LimitDimension, number>;
  /** The lowest balance of each of this pool's buckets (may be negative); `null` when that limit is off or unused. */
  lowestBalance: Record<LimitDimension, number | null>;
  /** Per `windowMs`, as the top-level `windows`: this pool's delivered requests and tokens per window. */
  windows: StatsWindow[];
}

/** Where a Messages request is metered: its key (by fingerprint) and the pool of its model. */
export interface Metered {
  keyId: string;
  pool: string;
}

/** Per-key counters; keys are listed by {@link apiKeyFingerprint}, never in clear. */
export interface KeyStats {
  /** Requests that reached the API routes with this key. */
  requests: number;
  inFlight: number;
  maxConcurrent: number;
  /** count_tokens requests admitted (past the count_tokens RPM). */
  countTokens: number;
  /** This key's 429s by kind, as the top-level `rateLimited`. */
  rateLimited: Record<RateLimitKind, number>;
  /** This key's delivered requests, tokens and count_tokens per window, all pools together. */
  windows: StatsWindow[];
  /** Per model pool (`default` holds models that match no configured pool). */
  pools: Record<string, PoolStats>;
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
 * - `byKey[key].pools[pool]`: the same per key and model pool, so a per-pool limit can be checked from outside.
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

const noRateLimits = (): Record<RateLimitKind, number> => ({ concurrency: 0, requests: 0, input_tokens: 0, output_tokens: 0, spend: 0, injected: 0, count_tokens: 0 });
const noBalances = (): Record<LimitDimension, number | null> => ({ requests: null, input_tokens: null, output_tokens: null });
const emptyKey = (): KeyStats => ({ requests: 0, inFlight: 0, maxConcurrent: 0, countTokens: 0, rateLimited: noRateLimits(), windows: [], pools: {} });
const emptyPool = (): PoolStats => ({
  requests: 0,
  inFlight: 0,
  maxConcurrent: 0,
  inputTokens: 0,
  outputTokens: 0,
  rateLimited: { requests: 0, input_tokens: 0, output_tokens: 0 },
  lowestBalance: noBalances(),
  windows: [],
});

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
      rateLimited: noRateLimits(),
      retries: 0,
      tokens: { requests: zero(), input_tokens: zero(), output_tokens: zero() },
      lowestBalance: noBalances(),
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
      if (keyStats.inFlight === 0) continue;
      const kept = this.#key(key);
      kept.inFlight = keyStats.inFlight;
      kept.maxConcurrent = keyStats.inFlight;
      for (const [name, pool] of Object.entries(keyStats.pools)) {
        if (pool.inFlight === 0) continue;
        const keptPool = this.#pool({ keyId: key, pool: name });
        keptPool.inFlight = pool.inFlight;
        keptPool.maxConcurrent = pool.inFlight;
      }
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

  /** A 429 of `kind` for `keyId`; a pool bucket's 429 (RPM, ITPM, OTPM) also counts in that pool. */
  rateLimited(kind: RateLimitKind, keyId: string, pool?: string): void {
    this.#stats.rateLimited[kind] += 1;
    this.#key(keyId).rateLimited[kind] += 1;
    if (pool !== undefined && (kind === 'requests' || kind === 'input_tokens' || kind === 'output_tokens')) this.#pool({ keyId, pool }).rateLimited[kind] += 1;
  }

  /** A count_tokens request past the count_tokens RPM. */
  countTokensAdmitted(keyId: string, nowMs: number): void {
    const key = this.#key(keyId);
    key.countTokens += 1;
    this.#window(this.#stats.windows, nowMs).countTokens += 1;
    this.#window(key.windows, nowMs).countTokens += 1;
  }

  fault(kind: string): void {
    increment(this.#stats.faults, kind);
  }

  started(at: Metered): void {
    const key = this.#key(at.keyId);
    key.inFlight += 1;
    key.maxConcurrent = Math.max(key.maxConcurrent, key.inFlight);
    const pool = this.#pool(at);
    pool.inFlight += 1;
    pool.maxConcurrent = Math.max(pool.maxConcurrent, pool.inFlight);
    this.#stats.inFlight += 1;
    this.#stats.maxConcurrent = Math.max(this.#stats.maxConcurrent, this.#stats.inFlight);
  }

  finished(at: Metered): void {
    this.#key(at.keyId).inFlight -= 1;
    this.#pool(at).inFlight -= 1;
    this.#stats.inFlight -= 1;
  }

  admitted(dimension: LimitDimension, tokens: number, nowMs: number, at: Metered): void {
    this.#stats.tokens[dimension].admitted += tokens;
    if (dimension !== 'requests') return;
    this.#pool(at).requests += tokens;
    for (const windows of this.#series(at)) this.#window(windows, nowMs).requests += tokens;
  }

  settled(dimension: LimitDimension, tokens: number, nowMs: number, at: Metered): void {
    this.#stats.tokens[dimension].settled += tokens;
    const pool = this.#pool(at);
    if (dimension === 'input_tokens') pool.inputTokens += tokens;
    if (dimension === 'output_tokens') pool.outputTokens += tokens;
    for (const windows of this.#series(at)) {
      if (dimension === 'input_tokens') this.#window(windows, nowMs).inputTokens += tokens;
      if (dimension === 'output_tokens') this.#window(windows, nowMs).outputTokens += tokens;
    }
  }

  balance(dimension: LimitDimension, balance: number, at: Metered): void {
    for (const lowestBalance of [this.#stats.lowestBalance, this.#pool(at).lowestBalance]) {
      const lowest = lowestBalance[dimension];
      if (lowest === null || balance < lowest) lowestBalance[dimension] = balance;
    }
  }

  /** A deep copy, so callers may keep or change it; every `windows` series runs up to the current window. */
  snapshot(nowMs: number): MockStats {
    this.#window(this.#stats.windows, nowMs);
    for (const key of Object.values(this.#stats.byKey)) {
      this.#window(key.windows, nowMs);
      for (const pool of Object.values(key.pools)) this.#window(pool.windows, nowMs);
    }
    return structuredClone(this.#stats);
  }

  #key(keyId: string): KeyStats {
    let key = Object.hasOwn(this.#stats.byKey, keyId) ? this.#stats.byKey[keyId] : undefined;
    if (key === undefined) {
      key = emptyKey();
      this.#stats.byKey[keyId] = key;
    }
    return key;
  }

  #pool(at: Metered): PoolStats {
    const pools = this.#key(at.keyId).pools;
    let pool = Object.hasOwn(pools, at.pool) ? pools[at.pool] : undefined; // a pool may be named `constructor`
    if (pool === undefined) {
      pool = emptyPool();
      pools[at.pool] = pool;
    }
    return pool;
  }

  /** The window series a Messages request counts in: the whole mock's, its key's, its pool's. */
  #series(at: Metered): StatsWindow[][] {
    return [this.#stats.windows, this.#key(at.keyId).windows, this.#pool(at).windows];
  }

  #window(windows: StatsWindow[], nowMs: number): StatsWindow {
    const index = Math.floor((nowMs - this.#startedAtMonoMs) / this.#stats.windowMs);
    for (let next = windows.length; next <= index; next += 1) windows.push({ index: next, requests: 0, inputTokens: 0, outputTokens: 0, countTokens: 0 });
    const window = windows[index];
    if (window === undefined) throw new Error(`stats window ${index} missing`);
    return window;
  }
}
