import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { seededRandom } from './random.js';

/** Hold time when the caller gives none. */
export const OVERLAP_HOLD_MS_DEFAULT = 20;
/** Seed of the hold-time PRNG when the caller gives none. */
export const OVERLAP_SEED_DEFAULT = 1;
/** Longest hold a `?holdMs=N` query may ask for, so a typo cannot park a socket for hours. */
export const OVERLAP_HOLD_MS_MAX = 60_000;
/** Keeps idle keep-alive sockets open across a benchmark's pauses, so no call pays a reconnect. */
const KEEP_ALIVE_TIMEOUT_MS = 60_000;
const RESPONSE_BODY = '{"ok":true}';

/** A hold time in milliseconds: fixed, or drawn uniformly from `[min, max]` by a seeded PRNG. */
export type OverlapHoldMs = number | { min: number; max: number };

export interface OverlapServerOptions {
  /** How long each request is held before the 200 answer; default {@link OVERLAP_HOLD_MS_DEFAULT}. */
  holdMs?: OverlapHoldMs;
  /** Seed for drawing hold times from a range; the same seed gives the same sequence of holds. */
  seed?: number;
  /** Port on 127.0.0.1; a free one when omitted. */
  port?: number;
}

export interface OverlapStatsOptions {
  /**
   * The fleet limit. Refill gaps are measured only from the moment `limit` calls were first in
   * flight at once (before that the fleet is still ramping up). Default: the `maxInFlight` seen.
   */
  limit?: number;
}

/**
 * Refill gaps: once `limit` calls have been in flight at once, every later call start is matched
 * to the earliest end (at or after that moment, before the start) not yet matched to another start;
 * the gap is start − end. In a saturated fleet each end frees one slot and each start fills one, so
 * a gap is how long a freed slot sat idle. Ends never matched (the tail of a run) are ignored.
 */
export interface RefillGapStats {
  /** Starts that were matched to an end. */
  count: number;
  /** Starts after saturation with no unmatched earlier end: a slot not freed by a release (ramp-up or overshoot). */
  unmatchedStarts: number;
  medianMs: number;
  p99Ms: number;
  meanMs: number;
  maxMs: number;
}

/** What the server counted since start or the last `reset()`. */
export interface OverlapStats {
  /** Requests that started. */
  calls: number;
  /** Requests that ended (answered, or closed by the client before the answer). */
  completed: number;
  /** Requests closed by the client before they were answered. */
  aborted: number;
  inFlight: number;
  maxInFlight: number;
  /** Last end − first start (or now − first start while calls are in flight); 0 before any call. */
  busyMs: number;
  /** Integral of in-flight over the busy window ÷ `busyMs`. */
  inFlightMean: number;
  /** The limit used for refill gaps and `utilization`. */
  limit: number;
  /** `inFlightMean ÷ limit`. */
  utilization: number;
  refillGap: RefillGapStats;
}

export interface OverlapServer {
  /** `http://127.0.0.1:<port>`; any path and method is held and answered the same way. */
  readonly url: string;
  readonly port: number;
  stats(options?: OverlapStatsOptions): OverlapStats;
  /** Forgets every call and counter and restarts the hold-time PRNG from its seed. Calls in flight are not counted. */
  reset(): void;
  /** Stops listening and drops every open connection. */
  close(): Promise<void>;
}

interface CallEvent {
  kind: 'start' | 'end';
  atMs: number;
}

/** The value at quantile `q` (0..1) of sorted numbers, nearest rank; 0 for none. */
function quantileSorted(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank] ?? 0;
}

function validateHold(holdMs: OverlapHoldMs): void {
  const bounds = typeof holdMs === 'number' ? [holdMs, holdMs] : [holdMs.min, holdMs.max];
  const [min = 0, max = 0] = bounds;
  if (!(Number.isFinite(min) && Number.isFinite(max) && min >= 0 && max >= min && max <= OVERLAP_HOLD_MS_MAX)) {
    throw new RangeError(`holdMs must be 0..${OVERLAP_HOLD_MS_MAX} with min ≤ max, got ${JSON.stringify(holdMs)}`);
  }
}

function queryHoldMs(request: IncomingMessage): number | undefined {
  const raw = new URL(request.url ?? '/', 'http://127.0.0.1').searchParams.get('holdMs');
  if (raw === null) return undefined;
  const holdMs = Number(raw);
  return Number.isFinite(holdMs) && holdMs >= 0 && holdMs <= OVERLAP_HOLD_MS_MAX ? holdMs : undefined;
}

/** Computes refill gaps from the ordered call events; see {@link RefillGapStats}. */
function refillGaps(events: readonly CallEvent[], limit: number): RefillGapStats {
  const gapsMs: number[] = [];
  const unmatchedEndsMs: number[] = [];
  let head = 0; // unmatchedEndsMs[head..] are still unmatched: a FIFO without shift()'s O(n)
  let inFlight = 0;
  let saturated = false;
  let unmatchedStarts = 0;
  for (const event of events) {
    if (event.kind === 'start') {
      if (saturated) {
        const endMs = unmatchedEndsMs[head];
        if (endMs === undefined) unmatchedStarts += 1;
        else {
          gapsMs.push(event.atMs - endMs);
          head += 1;
        }
      }
      inFlight += 1;
      if (inFlight >= limit) saturated = true;
    } else {
      inFlight -= 1;
      if (saturated) unmatchedEndsMs.push(event.atMs);
    }
  }
  const sorted = gapsMs.sort((a, b) => a - b);
  const totalMs = sorted.reduce((sum, gapMs) => sum + gapMs, 0);
  return {
    count: sorted.length,
    unmatchedStarts,
    medianMs: quantileSorted(sorted, 0.5),
    p99Ms: quantileSorted(sorted, 0.99),
    meanMs: sorted.length === 0 ? 0 : totalMs / sorted.length,
    maxMs: sorted.at(-1) ?? 0,
  };
}

/**
 * Starts a plain HTTP upstream on 127.0.0.1 that holds every request for `holdMs`, answers 200 with
 * a tiny JSON body, and counts overlap exactly: how many calls were in flight at once, the mean
 * in flight over the busy window, and refill gaps. Tests use it to prove a limit from the outside;
 * bench/ uses it to measure utilization. A request may override the hold with `?holdMs=N`.
 * @example
 * const upstream = await startOverlapServer({ holdMs: { min: 10, max: 50 }, seed: 7 });
 * await fetch(upstream.url);
 * upstream.stats({ limit: 10 }).maxInFlight; // 1
 * await upstream.close();
 */
export async function startOverlapServer(options: OverlapServerOptions = {}): Promise<OverlapServer> {
  const hold = options.holdMs ?? OVERLAP_HOLD_MS_DEFAULT;
  validateHold(hold);
  const seed = options.seed ?? OVERLAP_SEED_DEFAULT;
  let random = seededRandom(seed);
  const nextHoldMs = (): number => (typeof hold === 'number' ? hold : hold.min + random() * (hold.max - hold.min));

  let generation = 0; // calls started before a reset() belong to an older generation and are not counted
  let events: CallEvent[] = [];
  let calls = 0;
  let completed = 0;
  let aborted = 0;
  let inFlight = 0;
  let maxInFlight = 0;
  let firstStartMs: number | undefined;
  let lastEndMs: number | undefined;
  let lastChangeMs = 0;
  let inFlightAreaMs = 0; // integral of inFlight dt since the first start

  const change = (atMs: number, delta: 1 | -1): void => {
    if (firstStartMs !== undefined) inFlightAreaMs += inFlight * (atMs - lastChangeMs);
    lastChangeMs = atMs;
    inFlight += delta;
  };

  const onRequest = (request: IncomingMessage, response: ServerResponse): void => {
    const startMs = performance.now();
    const callGeneration = generation;
    change(startMs, 1);
    firstStartMs ??= startMs;
    calls += 1;
    maxInFlight = Math.max(maxInFlight, inFlight);
    events.push({ kind: 'start', atMs: startMs });
    const holdMs = queryHoldMs(request) ?? nextHoldMs();
    request.resume(); // drain any body so the socket stays reusable

    let ended = false;
    const end = (wasAborted: boolean): void => {
      if (ended) return;
      ended = true;
      clearTimeout(timer);
      if (callGeneration !== generation) return;
      const endMs = performance.now();
      change(endMs, -1);
      lastEndMs = endMs;
      completed += 1;
      if (wasAborted) aborted += 1;
      events.push({ kind: 'end', atMs: endMs });
    };
    const timer = setTimeout(() => {
      end(false); // counted before the bytes leave, so a client's next call always starts after this end
      response.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(RESPONSE_BODY) });
      response.end(RESPONSE_BODY);
    }, holdMs);
    response.once('close', () => end(true)); // no-op after a normal answer
  };

  const server = createServer({ keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS }, onRequest);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    stats(statsOptions: OverlapStatsOptions = {}): OverlapStats {
      const limit = statsOptions.limit ?? Math.max(1, maxInFlight);
      const nowMs = performance.now();
      const windowEndMs = inFlight > 0 ? nowMs : (lastEndMs ?? nowMs);
      const busyMs = firstStartMs === undefined ? 0 : windowEndMs - firstStartMs;
      const areaMs = inFlightAreaMs + inFlight * (windowEndMs - lastChangeMs);
      const inFlightMean = busyMs > 0 ? areaMs / busyMs : 0;
      return {
        calls,
        completed,
        aborted,
        inFlight,
        maxInFlight,
        busyMs,
        inFlightMean,
        limit,
        utilization: inFlightMean / limit,
        refillGap: refillGaps(events, limit),
      };
    },
    reset(): void {
      generation += 1;
      random = seededRandom(seed);
      events = [];
      calls = 0;
      completed = 0;
      aborted = 0;
      inFlight = 0;
      maxInFlight = 0;
      firstStartMs = undefined;
      lastEndMs = undefined;
      lastChangeMs = 0;
      inFlightAreaMs = 0;
    },
    async close(): Promise<void> {
      server.closeAllConnections();
      await new Promise<void>((resolve, reject) => server.close((error) => (error ? reject(error) : resolve())));
    },
  };
}
