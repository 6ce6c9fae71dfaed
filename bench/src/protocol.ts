import type { AdapterParams, ContenderName } from './contenders.js';

/**
 * direct: lanes call the upstream; queue: BullMQ jobs call it; micro: acquire+release with no upstream;
 * tokens: lanes send Messages calls to the mock Anthropic API (scenario 4); fairness: each tenant's lanes take a
 * permit for their tenant, then call the mock (scenario fairness); steady: acquire+release with no upstream,
 * measured in a window once the lanes have been running (the scale scenario).
 */
export type TrialKind = 'direct' | 'queue' | 'micro' | 'tokens' | 'fairness' | 'steady';

/** One Messages call of scenario 4: its prompt size, `max_tokens` and the answer length the mock is told to produce. */
export interface TokenCall {
  inputTokens: number;
  maxTokens: number;
  outputTokens: number;
  /** The call's model, when not the spec's (scenario 4-pools: Sonnet and Haiku calls); each model's calls get their own lanes. */
  model?: string;
}

/** A per-minute limit and the limiter's bucket for it. */
export interface TokenRate {
  perMinute: number;
  burst: number;
}

/** Scenario 4-pools: one model pool of the limiter (its buckets) and the models it holds (by prefix). */
export interface TokenPoolSpec {
  modelPrefix: string;
  requests: TokenRate;
  inputTokens: TokenRate;
  outputTokens: TokenRate;
}

/** Scenario 4: what one process sends and how its client is limited. */
export interface TokenTrialSpec {
  mockUrl: string;
  model: string;
  /** This process's calls, in order; its lanes take the next one as they free up. */
  calls: TokenCall[];
  /** tollgate: the fleet limits the limiter enforces. */
  concurrency: number;
  inputTokens: TokenRate;
  outputTokens: TokenRate;
  /** tollgate: a requests bucket too (scenario 4-pools' one set of buckets for every model). */
  requests?: TokenRate;
  /** tollgate: a limiter with these pools instead of one set of buckets (the rates above are then unused). */
  pools?: Record<string, TokenPoolSpec>;
  /** When set, the lanes go round their calls until this long has passed, instead of making each call once. */
  durationMs?: number;
  /** The plain SDK's own retries (the tollgate client keeps them off and retries itself). */
  sdkMaxRetries: number;
}

/** Scenario fairness: one tenant's callers in one process. */
export interface FairnessTenantSpec {
  /** The limiter group of its permits (with `groups`), else only the row its figures go to. */
  tenant: string;
  /** Callers of this tenant in this process; each asks again as soon as its call ends. */
  lanes: number;
}

/** Scenario fairness: the limiter every process shares and what each tenant's callers send. */
export interface FairnessTrialSpec {
  mockUrl: string;
  model: string;
  /** The account's concurrency limit, fleet-wide. */
  concurrency: number;
  /** The tenants as limiter groups with these weights (fair share); absent: one FIFO for everyone. */
  groups?: Record<string, number>;
  tenants: FairnessTenantSpec[];
  /** How long the lanes keep asking; a grant after this is released unused and not counted. */
  durationMs: number;
  /** Every call's prompt, `max_tokens` and answer length (the mock's fixed latency makes the calls alike). */
  call: TokenCall;
}

/** What one worker process runs in one trial. */
export interface TrialSpec {
  kind: TrialKind;
  contender: ContenderName;
  adapter: AdapterParams;
  /** Local slots (direct, micro) or BullMQ worker concurrency (queue). */
  lanes: number;
  /** direct: the calls this process makes. */
  calls: number;
  /** micro: how long the lanes loop; steady: how long the measured window lasts. */
  durationMs: number;
  /** steady: contender clients in this process (each a limiter, or a Redis connection, of its own, as a process would have), `lanes` callers each. */
  clients?: number;
  /** steady: the longest the lanes run before `ready`, until every lane has held a slot once (the queue has turned over). */
  primeMsMax?: number;
  upstreamUrl: string;
  queueName: string;
  /** tokens: the calls and limits of scenario 4. */
  tokens?: TokenTrialSpec;
  /** fairness: the tenants and the limiter of scenario fairness. */
  fairness?: FairnessTrialSpec;
}

/** Scenario 4: what one process's Messages calls came to. */
export interface TokenWorkerResult {
  /** Calls that failed for good (the plain SDK's retries or the wrapper's attempts ran out), by status. */
  failed: Record<string, number>;
  /** From a call's start to its answer, retries and limiter waits included, one entry per successful call. */
  callMs: number[];
}

/** Scenario fairness: one tenant's grants in one process. */
export interface FairnessTenantResult {
  /** From asking for a permit to holding it, one entry per grant within the run's duration. */
  waitsMs: number[];
  /** Calls that failed (by status, as scenario 4 counts them). */
  failed: Record<string, number>;
}

/** What a worker measured in one trial, between `go` and the end of its work. */
export interface WorkerResult {
  /** Upstream calls (direct, queue) or acquire+release pairs (micro) completed. */
  operations: number;
  /** Time from asking a contender for a slot to holding it, one entry per acquire. */
  acquireWaitsMs: number[];
  elapsedMs: number;
  /** Commands this process's ioredis clients wrote, and the round trips they took. */
  commands: number;
  roundTrips: number;
  /** CPU time (user + system) this worker process used between `go` and its report, µs. */
  cpuUs: number;
  /** tokens: the outcome of the Messages calls. */
  tokens?: TokenWorkerResult;
  /** fairness: per tenant. */
  fairness?: Record<string, FairnessTenantResult>;
}

export type CoordinatorMessage =
  | { type: 'setup'; spec: TrialSpec }
  | { type: 'go' }
  /** queue: every job is done; report now. */
  | { type: 'stop' }
  | { type: 'teardown' };

export type WorkerMessage =
  | { type: 'ready' }
  /** queue: one job finished. */
  | { type: 'tick' }
  | { type: 'done'; result: WorkerResult }
  | { type: 'tornDown' }
  | { type: 'failed'; message: string };

const COORDINATOR_TYPES = new Set(['setup', 'go', 'stop', 'teardown']);
const WORKER_TYPES = new Set(['ready', 'tick', 'done', 'tornDown', 'failed']);

function hasType(value: unknown, types: ReadonlySet<string>): value is { type: string } {
  return typeof value === 'object' && value !== null && 'type' in value && typeof value.type === 'string' && types.has(value.type);
}

/** IPC between our own processes: the shape is ours, so checking the tag is enough. */
export function parseCoordinatorMessage(value: unknown): CoordinatorMessage {
  if (!hasType(value, COORDINATOR_TYPES)) throw new Error(`unexpected message from the coordinator: ${JSON.stringify(value)}`);
  return value as CoordinatorMessage;
}

export function parseWorkerMessage(value: unknown): WorkerMessage {
  if (!hasType(value, WORKER_TYPES)) throw new Error(`unexpected message from a worker: ${JSON.stringify(value)}`);
  return value as WorkerMessage;
}
