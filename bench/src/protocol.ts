import type { AdapterParams, ContenderName } from './contenders.js';

/** direct: lanes call the upstream; queue: BullMQ jobs call it; micro: acquire+release with no upstream. */
export type TrialKind = 'direct' | 'queue' | 'micro';

/** What one worker process runs in one trial. */
export interface TrialSpec {
  kind: TrialKind;
  contender: ContenderName;
  adapter: AdapterParams;
  /** Local slots (direct, micro) or BullMQ worker concurrency (queue). */
  lanes: number;
  /** direct: the calls this process makes. */
  calls: number;
  /** micro: how long the lanes loop. */
  durationMs: number;
  upstreamUrl: string;
  queueName: string;
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
